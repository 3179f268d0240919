// vireo-bench: performance figures for vireo, printed (and with --json, machine-readable).
#include <CLI/CLI.hpp>
#include <cstdio>

#include "api_latency.hpp"
#include "blk_path.hpp"
#include "boot.hpp"
#include "exits.hpp"
#include "jail.hpp"

int main(int argc, char** argv) {
    CLI::App app{"vireo benchmarks", "vireo-bench"};
    app.require_subcommand(1);

    vireo::bench::ExitsOptions exits;
    auto* cmd = app.add_subcommand(
        "exits",
        "ns per PIO / MMIO exit through the vireo API vs raw KVM ioctls, and per "
        "in-kernel exit (CPUID)");
    cmd->add_option("-n,--iterations", exits.iterations, "Exits per timed run")
        ->capture_default_str()
        ->check(CLI::Range(uint64_t{100}, uint64_t{100000000}));
    cmd->add_option("-r,--runs", exits.runs, "Timed runs per loop (the median is reported)")
        ->capture_default_str()
        ->check(CLI::Range(1, 1000));
    cmd->add_flag("--user", exits.user_mode, "Run the guest loops in ring 3 instead of ring 0");
    cmd->add_flag("--json", exits.json, "End with one line of JSON");
    cmd->add_flag("--sandbox", exits.sandbox,
                  "Run vireo's loops on a thread under a sandboxed vCPU thread's seccomp filter "
                  "(raw KVM unfiltered)");

    vireo::bench::BootOptions boot;
    std::vector<std::string> cases;
    auto* boot_cmd = app.add_subcommand(
        "boot",
        "Launch VMM commands alternately; time to a marker line and to exit, peak RSS, "
        "VMM overhead (RSS outside guest RAM)");
    boot_cmd->add_option("-r,--runs", boot.runs, "Runs per case")->capture_default_str();
    boot_cmd->add_option("--marker", boot.marker, "Line that marks a booted guest")
        ->capture_default_str();
    boot_cmd
        ->add_option("--case", cases,
                     "NAME=SHELL-COMMAND (repeatable; the first is the "
                     "baseline of the ratios)")
        ->required();
    boot_cmd->add_option("--timeout", boot.timeout_s, "Seconds before a run is killed")
        ->capture_default_str();
    boot_cmd
        ->add_option("--pause-ms", boot.pause_ms,
                     "Idle milliseconds before each run (lets the previous VM's teardown "
                     "finish in the kernel)")
        ->capture_default_str();
    boot_cmd->add_flag("--json", boot.json, "End with one line of JSON");
    boot_cmd->add_flag("--stop-at-marker", boot.stop_at_marker,
                       "Send the VMM SIGTERM once its marker appears (for guests that do not "
                       "end by themselves; the time to exit is then the time to stop)");

    vireo::bench::BlkPathOptions blk;
    auto* blk_cmd = app.add_subcommand(
        "blk-path",
        "virtio-blk's device path alone (virtqueue + request parser + io_uring, driven by a "
        "driver-side harness) vs the host's own pread of the same image");
    blk_cmd->add_option("--image", blk.image, "Raw image (default: a temporary one)");
    blk_cmd->add_option("--size-mib", blk.size_mib, "Size of the temporary image")
        ->capture_default_str();
    blk_cmd->add_option("--seconds", blk.seconds, "Seconds per timed run")->capture_default_str();
    blk_cmd->add_option("-r,--runs", blk.runs, "Timed runs per case")->capture_default_str();
    blk_cmd->add_option("--depth", blk.depth, "Requests in flight")->capture_default_str();
    auto* limit_bps =
        blk_cmd->add_option("--limit-bps", blk.limit_bps,
                            "A bytes-per-second limit on the device (bps=; 0: none): set far above "
                            "the rate reached, it shows what the limiter costs");
    limit_bps->capture_default_str();
    blk_cmd->add_flag("--accuracy", blk.accuracy,
                      "Also the rate limiter's accuracy: the rate reached against the rate set, "
                      "at three byte and three operation rates");
    blk_cmd
        ->add_flag("--limit-cost", blk.limit_cost,
                   "Also what a rate limit far above the rate reached costs: runs without "
                   "and with one alternate (-r pairs), each pair's ratio is a sample, the "
                   "median and quartiles are shown (drift between runs cancels)")
        ->excludes(limit_bps);
    blk_cmd->add_option("--request-kib", blk.request_kib, "Sequential request size")
        ->capture_default_str();
    blk_cmd->add_flag("--json", blk.json, "End with one line of JSON");

    vireo::bench::ApiOptions api_opts;
    auto* api_cmd = app.add_subcommand(
        "api",
        "Control API latency on a running domain: info, pause + unpause, concurrent clients");
    api_cmd
        ->add_option("SOCKET", api_opts.socket, "The domain's API socket (vireo run --api-socket)")
        ->required();
    api_cmd->add_option("--requests", api_opts.requests, "Requests per case")
        ->capture_default_str();
    api_cmd->add_option("--clients", api_opts.clients, "Concurrent clients")->capture_default_str();
    api_cmd->add_flag("--json", api_opts.json, "End with one line of JSON");

    vireo::bench::JailOptions jail;
    auto* jail_cmd = app.add_subcommand(
        "jail",
        "A domain's jail at start-up, without KVM (as root): keeper, PID namespace, prepare, "
        "enter, confined threads, against the same threads unconfined");
    jail_cmd->add_option("-r,--runs", jail.runs, "Runs per case")->capture_default_str();
    jail_cmd->add_option("--threads", jail.threads, "Threads the domain starts")
        ->capture_default_str();
    jail_cmd->add_flag("--json", jail.json, "End with one line of JSON");

    CLI11_PARSE(app, argc, argv);
    if (*jail_cmd) return vireo::bench::run_jail(jail);
    if (*api_cmd) return vireo::bench::run_api(api_opts);
    if (*blk_cmd) return vireo::bench::run_blk_path(blk);
    if (*cmd) return vireo::bench::run_exits(exits);
    if (*boot_cmd) {
        for (const auto& c : cases) {
            auto eq = c.find('=');
            if (eq == std::string::npos || eq == 0) {
                std::fprintf(stderr, "--case %s: expected NAME=COMMAND\n", c.c_str());
                return 2;
            }
            boot.cases.emplace_back(c.substr(0, eq), c.substr(eq + 1));
        }
        return vireo::bench::run_boot(boot);
    }
    return 0;
}
