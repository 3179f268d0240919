// vireo up / list / destroy / down: the static host configuration and its supervisor.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "api/metrics.hpp"
#include "api/server.hpp"
#include "base/log.hpp"
#include "cli/run.hpp"
#include "host/config.hpp"
#include "host/supervisor.hpp"

namespace vireo::cli {

// The running host's API socket: --run-dir, or the only one under the default roots.
Result<std::string> find_host_socket(const std::string& run_dir) {
    if (!run_dir.empty()) {
        if (!std::filesystem::exists(run_dir + "/vireo.sock"))
            return fail(ErrorCode::NotFound,
                        "no host is up in {} (start one with: vireo up HOST.toml)", run_dir);
        return run_dir + "/vireo.sock";
    }
    std::vector<std::string> found;
    std::vector<std::string> roots{"/run/vireo"};
    if (const char* x = std::getenv("XDG_RUNTIME_DIR")) roots.push_back(std::string(x) + "/vireo");
    roots.push_back(fmt::format("/tmp/vireo-{}", ::geteuid()));
    for (const auto& root : roots) {
        std::error_code ec;
        for (const auto& e : std::filesystem::directory_iterator(root, ec))
            if (std::filesystem::exists(e.path() / "vireo.sock"))
                found.push_back(e.path() / "vireo.sock");
    }
    if (found.empty())
        return fail(ErrorCode::NotFound, "no host is up (start one with: vireo up HOST.toml)");
    if (found.size() > 1)
        return fail(ErrorCode::InvalidArgument,
                    "several hosts are up ({} and more): pass --run-dir", found[0]);
    return found[0];
}

std::function<int()> add_host_commands(CLI::App& app) {
    struct Opts {
        std::string file, run_dir, name, metrics;
        bool check = false, detach = false, json = false;
        int timeout = 30;
    };
    auto o = std::make_shared<Opts>();
    auto* up = app.add_subcommand(
        "up", "Start every domain of a host configuration (TOML; docs/host-config.md)");
    up->add_option("HOST.toml", o->file, "The host configuration")->required();
    up->add_flag("--check", o->check, "Only validate the file and check admission; start nothing");
    up->add_flag("--detach", o->detach, "Run the supervisor in the background");
    up->add_option("--metrics", o->metrics,
                   "Serve every domain's metrics in Prometheus format at "
                   "http://ADDR:PORT/metrics (loopback only), e.g. 127.0.0.1:9100");
    up->add_option("--down-timeout", o->timeout,
                   "Seconds a domain gets to power off after the ACPI shutdown when the host goes "
                   "down (SIGTERM, vireo down) before it is stopped")
        ->capture_default_str();
    auto* list = app.add_subcommand("list", "List the running host's domains");
    list->add_flag("--json", o->json, "JSON instead of a table");
    auto* destroy = app.add_subcommand("destroy", "Kill a domain at once (no restart)");
    destroy->add_option("NAME", o->name, "Domain")->required();
    auto* down = app.add_subcommand(
        "down",
        "Stop every domain (ACPI power button, then stopped after --timeout) and the supervisor");
    down->add_option("--timeout", o->timeout,
                     "Seconds the guests get to power off before they are stopped (0: at once)");
    for (auto* c : {list, destroy, down})
        c->add_option("--run-dir", o->run_dir,
                      "The host's run directory (default: the only one up)");

    return [o, up, list, destroy, down]() -> int {
        if (*up) {
            const auto ncpu = static_cast<uint32_t>(::sysconf(_SC_NPROCESSORS_CONF));
            if (!o->metrics.empty())
                if (auto r = api::check_metrics_address(o->metrics); !r) {
                    log::error("{}", r.error().message());
                    return kExitError;
                }
            auto cfg = host::load_host_config(o->file, ncpu);
            if (!cfg) {
                std::fprintf(stderr, "%s\n", cfg.error().message().c_str());
                log::error("{}: not started (fix the problems above)", o->file);
                return kExitError;
            }
            const auto facts = host::HostFacts::probe();
            if (auto r = host::admit(*cfg, facts); !r) {
                std::fprintf(stderr, "%s\n", r.error().message().c_str());
                log::error("{}: admission refused; no domain was started", o->file);
                return kExitError;
            }
            if (o->check) {
                std::printf("%s: %zu domain(s) in %zu pool(s), admitted\n", o->file.c_str(),
                            cfg->domains.size(), cfg->pools.size());
                return 0;
            }
            host::UpOptions uo;
            uo.vireo_exe = std::filesystem::read_symlink("/proc/self/exe").string();
            uo.detach = o->detach;
            uo.metrics = o->metrics;
            uo.facts = facts;
            uo.down_timeout_s = o->timeout;
            return host::up(*cfg, uo);
        }
        if (!*list && !*destroy && !*down) return -1;
        auto sock = find_host_socket(o->run_dir);
        if (!sock) {
            log::error("{}", sock.error().message());
            return kExitError;
        }
        if (*list) {
            auto r = api::call(*sock, "list");
            if (!r) {
                log::error("{}", r.error().message());
                return kExitError;
            }
            if (o->json) {
                std::printf("%s\n", r->dump(2).c_str());
                return 0;
            }
            std::printf("%-16s %8s %-10s %-10s %5s %9s %9s %8s\n", "NAME", "ID", "STATE", "POOL",
                        "VCPUS", "MEMORY", "UPTIME", "CPU(s)");
            for (const auto& d : *r)
                std::printf(
                    "%-16s %8d %-10s %-10s %5u %8lluM %8.0fs %8.1f\n",
                    d["name"].get<std::string>().c_str(), d["id"].get<int>(),
                    d["state"].get<std::string>().c_str(), d["pool"].get<std::string>().c_str(),
                    d["vcpus"].get<unsigned>(),
                    static_cast<unsigned long long>(d["memory_bytes"].get<uint64_t>() >> 20),
                    d["uptime_s"].get<double>(), d["cpu_s"].get<double>());
            return 0;
        }
        auto r = *destroy
                     ? api::call(*sock, "destroy", api::Json{{"name", o->name}})
                     : api::call(*sock, "down",
                                 down->count("--timeout") ? api::Json{{"timeout_s", o->timeout}}
                                                          : api::Json::object());
        if (!r) {
            log::error("{}", r.error().message());
            return kExitError;
        }
        return 0;
    };
}

}  // namespace vireo::cli
