// The control API of one domain (`vireo run --api-socket`, and every domain of `vireo up`).
#include <fcntl.h>
#include <sched.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "api/params.hpp"
#include "base/cpu_list.hpp"
#include "base/log.hpp"
#include "domain/device_options.hpp"
#include "domain/domain.hpp"
#include "sandbox/sandbox.hpp"

namespace vireo::domain {

namespace {

using api::Json;

// Runs fn(vm) on the running machine; bad-state between boots.
template <typename Fn>
Result<Json> on_vm(Domain& d, Fn&& fn) {
    return d.stop.with_vm([&](vmm::Vm* vm) -> Result<Json> {
        if (vm == nullptr) return fail(ErrorCode::BadState, "{} is between boots", d.name);
        return fn(*vm);
    });
}

// A CPU list: "0-3,^1" (xl's syntax), or an array of CPU numbers; `key` names it in errors.
Result<std::vector<int>> cpus_value(const Json& v, const std::string& key) {
    // Counted once, before the sandbox (sysconf reads /sys, which the jail's root does not
    // have); the first call is add_domain_methods'.
    static const auto ncpu = static_cast<uint32_t>(::sysconf(_SC_NPROCESSORS_CONF));
    std::vector<int> out;
    if (v.is_array()) {
        for (const auto& c : v) {
            if (!c.is_number_unsigned() || c.get<uint64_t>() >= ncpu)
                return fail(ErrorCode::InvalidArgument, "\"{}\": CPUs are numbers from 0 to {}",
                            key, ncpu - 1);
            out.push_back(c.get<int>());
        }
    } else if (v.is_string()) {
        auto set = parse_cpu_list(v.get<std::string>(), ncpu);
        if (!set) return fail(ErrorCode::InvalidArgument, "\"{}\": {}", key, set.error().message());
        out.assign(set->begin(), set->end());
    } else {
        return fail(ErrorCode::InvalidArgument,
                    "\"{}\" must be a CPU list (\"0-3,^1\") or an array", key);
    }
    if (out.empty()) return fail(ErrorCode::InvalidArgument, "\"{}\" names no CPU", key);
    return out;
}

Result<std::vector<int>> cpus_param(const Json& params, const char* key) {
    VIREO_TRY_ASSIGN(const Json* v, api::required(params, key));
    return cpus_value(*v, key);
}

Json balloon_json(const virtio::BalloonInfo& b) {
    return Json{{"target_bytes", b.target_pages * virtio::BalloonDevice::kPageSize},
                {"actual_bytes", b.actual_pages * virtio::BalloonDevice::kPageSize},
                {"inflated_pages", b.inflated_pages},
                {"deflated_pages", b.deflated_pages},
                {"reported_bytes", b.reported_bytes},
                {"driver_ready", b.driver_ready},
                {"stats", b.stats}};
}

std::string state_of(Domain& d, vmm::Vm* vm) {
    if (d.crashed) return "crashed";
    if (vm == nullptr) return "rebooting";
    return vm->paused() ? "paused" : "running";
}

// The domain's VMM pool (base/mem_pool.hpp).
Json pool_json(const MemoryPool& p) {
    return Json{{"limit_bytes", p.limit()},
                {"used_bytes", p.used()},
                {"high_water_bytes", p.high_water()},
                {"refused", p.refused()}};
}

// Each disk's and network device's rate limits, as --disk and --net take them.
Json io_limits_json(const vmm::Vm& vm) {
    Json out = Json::object();
    const auto disks = vm.disk_limits();
    for (size_t i = 0; i < disks.size(); ++i)
        out[fmt::format("disk{}", i)] = format_disk_limits(disks[i]);
    const auto nets = vm.net_limits();
    for (size_t i = 0; i < nets.size(); ++i)
        out[fmt::format("net{}", i)] = format_net_limits(nets[i].first, nets[i].second);
    return out;
}

}  // namespace

void Domain::report(Message::Kind state) {
    if (ctl_fd < 0) return;
    const std::string line = domain::encode({state, {}});
    (void)!::write(ctl_fd, line.data(), line.size());
}

// Between boots (a restart, or one held back by the reboot throttle) the domain's own counters
// are still answered; vCPUs and devices are those of a running machine only.
Json domain_metrics(Domain& d) {
    return d.stop.with_vm([&](vmm::Vm* vm) {
        Json vcpus = Json::array();
        Json devices = Json::array();
        Json pool = Json::object();
        uint64_t memory_bytes = 0, msrs_refused = 0;
        if (vm != nullptr) {
            memory_bytes = vm->memory_bytes();
            msrs_refused = vm->msrs_refused();
            pool = pool_json(vm->vmm_pool());
            for (const auto& m : vm->vcpu_metrics()) {
                Json exits = Json::object();
                for (size_t r = 0; r < vmm::kExitReasons; ++r)
                    if (m.exits[r] != 0)
                        exits[hv::to_string(static_cast<hv::ExitReason>(r))] = m.exits[r];
                Json kvm = Json::object();
                for (const auto& [k, v] : m.kvm)
                    kvm[k] = v;
                vcpus.push_back({{"id", m.id}, {"cpu_s", m.cpu_s}, {"exits", exits}, {"kvm", kvm}});
            }
            for (const auto& dev : vm->device_metrics()) {
                Json counters = Json::object();
                for (const auto& c : dev.counters)
                    counters[c.name] = c.value;
                devices.push_back({{"name", dev.name},
                                   {"driver_errors", dev.driver_errors},
                                   {"counters", counters}});
            }
        } else {
            std::lock_guard lock(d.config_mu);
            memory_bytes = d.config.memory_bytes;
        }
        const double up =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - d.started).count();
        const auto log = d.console_log ? d.console_log->stats() : vmm::ConsoleLog::Stats{};
        return Json{{"name", d.name},
                    {"state", state_of(d, vm)},
                    {"uptime_s", up},
                    {"boots", d.boots.load()},
                    {"reboots_throttled", d.reboots_throttled.load()},
                    {"memory_bytes", memory_bytes},
                    {"console_dropped_bytes", d.console ? d.console->dropped() : 0},
                    {"console_log_bytes", log.bytes},
                    {"console_log_rotations", log.rotations},
                    {"console_log_write_errors", log.write_errors},
                    {"console_log_dropped_bytes", log.dropped_bytes},
                    {"msrs_refused", msrs_refused},
                    {"vmm_pool", pool},
                    {"vcpus", vcpus},
                    {"devices", devices}};
    });
}

// The jail as the domain sees it: its ids, its namespaces, and each thread's seccomp mode
// and allow-list class ("filter": its class's list stacked on the main thread's).
Json sandbox_info() {
    const auto r = sandbox::report();
    Json threads = Json::array();
    for (const auto& t : r.threads)
        threads.push_back({{"tid", t.tid},
                           {"name", t.name},
                           {"class", t.thread_class},
                           {"seccomp", r.active ? "filter" : "disabled"}});
    return Json{{"active", r.active},
                {"uid", r.uid},
                {"gid", r.gid},
                {"namespaces", r.namespaces},
                {"threads", threads}};
}

void add_domain_methods(api::Server& server, Domain& d) {
    (void)cpus_value(Json("all"), "cpus");  // counts the host's CPUs now, before the sandbox
    // The violation path end to end (tests, audits): this thread makes a call outside its
    // allow-list (ptrace). A sandboxed domain ends with status 8; without the sandbox the
    // call fails harmlessly and the answer says so.
    server.add("sandbox.selftest", [](const Json&) -> Result<Json> {
        errno = 0;
        const long r = ::ptrace(PTRACE_ATTACH, 0, nullptr, nullptr);  // pid 0: none (ESRCH)
        return fail(ErrorCode::BadState,
                    "sandbox.selftest: ptrace was not refused by a filter (returned {}, {}): the "
                    "sandbox is off",
                    r, std::strerror(errno));
    });
    // Each shared region: its size, where the guest has it, its peers and doorbells.
    auto shm_json = [](vmm::Vm* vm) {
        Json out = Json::array();
        if (vm == nullptr) return out;
        for (const auto& r : vm->shm_info()) {
            Json peers = Json::array();
            for (const auto& n : r.peer_names)
                peers.push_back(n);
            out.push_back(Json{{"name", r.name},
                               {"size", r.size},
                               {"readonly", r.readonly},
                               {"pci", fmt::format("0000:00:{:02x}.0", r.pci_device)},
                               {"address", r.address},
                               {"peer", r.peer},
                               {"peers", peers},
                               {"doorbells", r.doorbells},
                               {"vectors", r.doorbells ? r.vectors : 0},
                               {"doorbells_in", r.doorbells_in},
                               {"doorbells_dropped", r.doorbells_dropped}});
        }
        return out;
    };
    server.add("info", [&d, shm_json](const Json&) -> Result<Json> {
        return d.stop.with_vm([&](vmm::Vm* vm) {
            std::lock_guard lock(d.config_mu);
            const auto& c = d.config;
            const double up =
                std::chrono::duration<double>(std::chrono::steady_clock::now() - d.started).count();
            return Json{{"name", d.name},
                        {"pid", ::getpid()},
                        {"state", state_of(d, vm)},
                        {"memory_bytes", c.memory_bytes},
                        {"vcpus", c.cpus},
                        {"cpu", arch::x86::to_string(c.cpu)},
                        {"spec_ctrl", arch::x86::to_string(c.cpu.spec_ctrl)},
                        {"spec_controls",
                         vm ? arch::x86::spec_controls_seen(vm->guest_cpuid()) : std::string("-")},
                        {"msr_filter", arch::x86::to_string(c.msrs)},
                        {"irqchip", vmm::irqchip_name(c.irqchip)},
                        {"msrs_refused", vm ? vm->msrs_refused() : 0},
                        {"disks", c.disks.size()},
                        {"nets", c.nets.size()},
                        {"vsock", c.vsock ? c.vsock->cid() : 0},
                        {"rng", c.rng},
                        {"balloon", c.balloon},
                        {"console", d.console != nullptr},
                        {"boots", d.boots.load()},
                        {"uptime_s", up},
                        {"io_limits", vm ? io_limits_json(*vm) : Json::object()},
                        {"vmm_pool", vm ? pool_json(vm->vmm_pool()) : Json::object()},
                        {"shm", shm_json(vm)},
                        {"sandbox", sandbox_info()}};
        });
    });
    server.add("pause", [&d](const Json&) {
        return on_vm(d, [&](vmm::Vm& vm) -> Result<Json> {
            VIREO_TRY(vm.pause());
            d.report(Message::Kind::Paused);
            log::info("{}: paused", d.name);
            return Json{{"name", d.name}, {"state", "paused"}};
        });
    });
    server.add(
        "save",
        [&d](const Json& params, UniqueFd fd) -> Result<Json> {
            // The file comes as a descriptor (a jailed domain opens nothing): vireo save creates
            // it, new and empty, and sends it with the request.
            if (!fd)
                return fail(
                    ErrorCode::InvalidArgument,
                    "save: send the snapshot file's descriptor with the request (SCM_RIGHTS; "
                    "vireo save does)");
            struct stat st {};
            const int flags = ::fcntl(fd.get(), F_GETFL);
            if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))
                return fail(ErrorCode::InvalidArgument,
                            "save: the descriptor is not a regular file");
            if (st.st_size != 0)
                return fail(ErrorCode::InvalidArgument,
                            "save: the file is not empty (a snapshot goes into a new file)");
            if (flags < 0 || (flags & O_ACCMODE) == O_RDONLY)
                return fail(ErrorCode::InvalidArgument, "save: the file is not open for writing");
            VIREO_TRY_ASSIGN(const bool keep, api::bool_param(params, "keep_running", false));
            return on_vm(d, [&](vmm::Vm& vm) -> Result<Json> {
                const bool was_paused = vm.paused();
                if (!was_paused) VIREO_TRY(vm.pause());
                const auto t0 = std::chrono::steady_clock::now();
                auto stats = vm.save(fd.get(), d.snapshot_config);
                if (stats && ::fsync(fd.get()) != 0)
                    stats = fail_errno(errno, "save: writing the snapshot out");
                const double ms =
                    std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                        .count();
                if (!stats || keep) {
                    if (!was_paused) {
                        if (auto r = vm.resume(); !r)
                            log::warn("{}: {}", d.name, r.error().message());
                    }
                    if (!stats) return Unexpected{stats.error()};
                }
                log::info("{}: saved in {:.1f} ms ({} of {} MiB of guest memory written){}", d.name,
                          ms, stats->written_bytes >> 20, stats->guest_bytes >> 20,
                          keep ? "" : "; stopping");
                if (!keep) vm.stop(vmm::Fate::Stopped, "saved to a snapshot");
                return Json{{"name", d.name},
                            {"state", keep ? (was_paused ? "paused" : "running") : "saved"},
                            {"guest_bytes", stats->guest_bytes},
                            {"written_bytes", stats->written_bytes},
                            {"ms", ms}};
            });
        },
        api::Server::Kind::Blocking);
    server.add(
        "migrate",
        [&d](const Json& params, UniqueFd fd) -> Result<Json> {
            // The connection comes as a descriptor (a jailed domain connects nowhere): vireo
            // migrate connects to the destination and sends it with the request.
            int type = 0;
            socklen_t len = sizeof type;
            if (!fd || ::getsockopt(fd.get(), SOL_SOCKET, SO_TYPE, &type, &len) != 0 ||
                type != SOCK_STREAM)
                return fail(ErrorCode::InvalidArgument,
                            "migrate: send a connected stream socket to the destination with the "
                            "request (SCM_RIGHTS; vireo migrate does)");
            MigrationOptions o;
            if (params.contains("downtime_ms")) {
                VIREO_TRY_ASSIGN(const uint64_t v, api::uint_param(params, "downtime_ms", 60000));
                o.downtime_ms = static_cast<uint32_t>(v);
            }
            if (params.contains("timeout_s")) {
                VIREO_TRY_ASSIGN(const uint64_t v, api::uint_param(params, "timeout_s", 86400));
                o.timeout_s = static_cast<uint32_t>(std::max<uint64_t>(v, 1));
            }
            if (params.contains("max_bandwidth_mib")) {
                VIREO_TRY_ASSIGN(const uint64_t v,
                                 api::uint_param(params, "max_bandwidth_mib", 1u << 20));
                o.max_bandwidth_mib = static_cast<uint32_t>(v);
            }
            VIREO_TRY_ASSIGN(o.auto_converge, api::bool_param(params, "auto_converge", false));
            if (auto it = params.find("token"); it != params.end()) {
                if (!it->is_string() || it->get<std::string>().size() > 256)
                    return fail(ErrorCode::InvalidArgument,
                                "\"token\" must be a string of at most 256 bytes");
                o.token = it->get<std::string>();
            }
            if (d.migration.active.exchange(true))
                return fail(ErrorCode::BadState, "a migration is already in progress");
            d.migration.begin();
            auto r = on_vm(d, [&](vmm::Vm& vm) -> Result<Json> {
                log::info("{}: migrating (downtime {} ms, timeout {} s{})", d.name, o.downtime_ms,
                          o.timeout_s, o.auto_converge ? ", auto-converge" : "");
                auto out = migrate_out(vm, d.snapshot_config, fd.get(), o, d.migration);
                if (out) {
                    log::info("{}: migrated in {:.0f} ms (downtime {:.1f} ms, {} passes, {} MiB)",
                              d.name, (*out)["total_ms"].get<double>(),
                              (*out)["downtime_ms"].get<double>(), (*out)["passes"].get<int>(),
                              (*out)["bytes"].get<uint64_t>() >> 20);
                    (*out)["name"] = d.name;
                    d.report(Message::Kind::Migrated);  // vireo up drops it from its table
                } else {
                    log::warn("{}: migration failed: {}", d.name, out.error().message());
                }
                return out;
            });
            d.migration.active.store(false);
            return r;
        },
        api::Server::Kind::Blocking);
    server.add("migrate.status", [&d](const Json&) -> Result<Json> {
        const auto& m = d.migration;
        if (!m.active.load()) return Json{{"name", d.name}, {"active", false}};
        const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::steady_clock::now().time_since_epoch())
                                .count();
        return Json{{"name", d.name},
                    {"active", true},
                    {"pass", m.pass.load()},
                    {"bytes", m.bytes.load()},
                    {"dirty_pages", m.dirty_pages.load()},
                    {"dirty_rate", m.dirty_rate.load()},
                    {"bandwidth", m.bandwidth.load()},
                    {"remaining_ms", m.remaining_ms.load()},
                    {"throttle_percent", m.throttle_percent.load()},
                    {"elapsed_ms", now - m.started_ms.load()}};
    });
    server.add("migrate.cancel", [&d](const Json&) -> Result<Json> {
        if (!d.migration.active.load())
            return fail(ErrorCode::BadState, "{}: no migration in progress", d.name);
        d.migration.cancel.store(true);
        return Json{{"name", d.name}, {"state", "cancelling"}};
    });
    server.add("unpause", [&d](const Json&) {
        return on_vm(d, [&](vmm::Vm& vm) -> Result<Json> {
            VIREO_TRY(vm.resume());
            d.report(Message::Kind::Running);
            log::info("{}: unpaused", d.name);
            return Json{{"name", d.name}, {"state", "running"}};
        });
    });
    server.add("shutdown", [&d](const Json&) {
        return on_vm(d, [&](vmm::Vm& vm) -> Result<Json> {
            // A paused guest cannot see the button: it runs again first.
            if (vm.paused()) {
                VIREO_TRY(vm.resume());
                d.report(Message::Kind::Running);
            }
            VIREO_TRY(vm.press_power_button());
            log::info("{}: ACPI power button pressed", d.name);
            return Json{{"name", d.name}, {"state", "shutting-down"}};
        });
    });
    server.add("reboot", [&d](const Json&) {
        return on_vm(d, [&](vmm::Vm& vm) -> Result<Json> {
            vm.reset();
            log::info("{}: reset by the host", d.name);
            return Json{{"name", d.name}, {"state", "rebooting"}};
        });
    });
    server.add("vcpu.list", [&d](const Json&) {
        return on_vm(d, [&](vmm::Vm& vm) -> Result<Json> {
            Json out = Json::array();
            for (const auto& v : vm.vcpu_info())
                out.push_back({{"vcpu", v.id},
                               {"tid", v.tid},
                               {"cpu", v.host_cpu},
                               {"affinity", v.affinity},
                               {"cpu_s", v.cpu_s},
                               {"state", v.paused ? "paused" : "running"}});
            return out;
        });
    });
    server.add("vcpu.pin", [&d](const Json& p) -> Result<Json> {
        VIREO_TRY_ASSIGN(const uint64_t vcpu, api::uint_param(p, "vcpu", vmm::kMaxCpus - 1));
        const auto id = static_cast<uint32_t>(vcpu);
        std::vector<int> cpus;  // "all": none, the vCPU floats
        if (!(p.contains("cpus") && p["cpus"] == "all")) {
            VIREO_TRY_ASSIGN(cpus, cpus_param(p, "cpus"));
        }
        return on_vm(d, [&](vmm::Vm& vm) -> Result<Json> {
            VIREO_TRY(vm.pin_vcpu(id, cpus));
            std::lock_guard lock(d.config_mu);  // and for the next boot
            auto& aff = d.config.vcpu_affinity;
            aff.resize(d.config.cpus);
            aff[id] = cpus;
            return Json{{"vcpu", id}, {"cpus", cpus}};
        });
    });
    // Moves every thread to `cpus` (a new pool), then pins vCPUs as `vcpus` says (a pinned
    // pool: one list per vCPU) or lets them float. For vireo up's cpupool-migrate.
    server.add("affinity.set", [&d](const Json& p) -> Result<Json> {
        VIREO_TRY_ASSIGN(const std::vector<int> cpus, cpus_param(p, "cpus"));
        std::vector<std::vector<int>> pins;
        if (p.contains("vcpus")) {
            if (!p["vcpus"].is_array())
                return fail(ErrorCode::InvalidArgument, "\"vcpus\" must be an array of CPU lists");
            for (size_t i = 0; i < p["vcpus"].size(); ++i) {
                VIREO_TRY_ASSIGN(auto list, cpus_value(p["vcpus"][i], fmt::format("vcpus[{}]", i)));
                pins.push_back(std::move(list));
            }
        }
        return on_vm(d, [&](vmm::Vm& vm) -> Result<Json> {
            if (!pins.empty() && pins.size() != vm.num_vcpus())
                return fail(ErrorCode::InvalidArgument, "\"vcpus\": {} lists for {} vCPUs",
                            pins.size(), vm.num_vcpus());
            cpu_set_t set;
            CPU_ZERO(&set);
            for (int c : cpus)
                CPU_SET(static_cast<size_t>(c), &set);
            std::error_code ec;
            for (const auto& t : std::filesystem::directory_iterator("/proc/self/task", ec)) {
                const pid_t tid = static_cast<pid_t>(std::stol(t.path().filename().string()));
                if (::sched_setaffinity(tid, sizeof set, &set) != 0)
                    return fail_errno(errno, "thread {}", tid);
            }
            for (size_t i = 0; i < pins.size(); ++i)
                VIREO_TRY(vm.pin_vcpu(static_cast<uint32_t>(i), pins[i]));
            std::lock_guard lock(d.config_mu);
            d.config.vcpu_affinity = pins;
            return Json{{"cpus", cpus}, {"vcpus", pins}};
        });
    });
    server.add("metrics", [&d](const Json&) -> Result<Json> { return domain_metrics(d); });
    server.add("balloon.set", [&d](const Json& params) -> Result<Json> {
        VIREO_TRY_ASSIGN(const uint64_t bytes, api::size_param(params, "memory"));
        return on_vm(d, [&](vmm::Vm& vm) -> Result<Json> {
            VIREO_TRY_ASSIGN(const uint64_t target, vm.set_guest_memory(bytes));
            d.guest_memory_request.store(bytes);
            return Json{{"memory_bytes", bytes}, {"balloon_target_bytes", target}};
        });
    });
    // A disk's or network device's rate limits: shown, or replaced at once (same syntax as
    // --disk and --net; "none" lifts them).
    server.add("io.limit", [&d](const Json& params) -> Result<Json> {
        VIREO_TRY_ASSIGN(const std::string device, api::string_param(params, "device"));
        const bool disk = device.rfind("disk", 0) == 0, net = device.rfind("net", 0) == 0;
        const std::string digits = device.substr(disk ? 4 : net ? 3 : 0);
        if ((!disk && !net) || digits.empty() || digits.size() > 2 ||
            !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
            return fail(ErrorCode::InvalidArgument,
                        "device: \"{}\" is not diskN or netN (N from 0: the order of the "
                        "domain's disks and network devices)",
                        device);
        const size_t index = std::stoul(digits);
        std::optional<std::string> text;
        if (params.contains("limits")) {
            VIREO_TRY_ASSIGN(text, api::string_param(params, "limits"));
        }
        return on_vm(d, [&](vmm::Vm& vm) -> Result<Json> {
            if (text && disk) {
                VIREO_TRY_ASSIGN(const IoLimits l, parse_disk_limits(*text));
                VIREO_TRY(vm.set_disk_limits(index, l));
                log::info("{}: {}: rate limits {}", d.name, device, format_disk_limits(l));
            } else if (text) {
                VIREO_TRY_ASSIGN(const auto l, parse_net_limits(*text));
                VIREO_TRY(vm.set_net_limits(index, l.first, l.second));
                log::info("{}: {}: rate limits {}", d.name, device,
                          format_net_limits(l.first, l.second));
            }
            const Json all = io_limits_json(vm);
            if (!all.contains(device))
                return fail(ErrorCode::NotFound, "{}: the domain has no such device", device);
            return Json{{"device", device}, {"limits", all[device]}};
        });
    });
    server.add("balloon.info", [&d](const Json& params) {
        const bool refresh = params.value("refresh", true);
        return on_vm(d, [&](vmm::Vm& vm) -> Result<Json> {
            VIREO_TRY_ASSIGN(auto info, vm.balloon_info(refresh));
            return balloon_json(info);
        });
    });
}

}  // namespace vireo::domain
