#include "domain/runner.hpp"

#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <deque>
#include <optional>
#include <thread>

#include "api/metrics.hpp"
#include "api/server.hpp"
#include "arch/x86/boot/kernel.hpp"
#include "base/file_id.hpp"
#include "base/host_facts.hpp"
#include "base/log.hpp"
#include "base/mapped_file.hpp"
#include "domain/domain.hpp"
#include "hv/hypervisor.hpp"
#include "virtio/net/slirp.hpp"
#include "vmm/console.hpp"

namespace vireo::domain {

namespace {

// Guest reboots restarted at full speed; beyond this many within the window, one a second.
constexpr size_t kRebootBurst = 10;
constexpr auto kRebootWindow = std::chrono::seconds(10);

// The process runs one domain; signal and endpoint threads reach it here.
Domain g_domain;

// Tells the supervisor (if any) why the domain could not start.
void report_error(int ctl_fd, const std::string& msg) {
    if (ctl_fd < 0) return;
    const std::string line = encode({Message::Kind::Error, msg});
    (void)!::write(ctl_fd, line.data(), line.size());
}

// After the supervisor's go, the socket ends only when the supervisor does (it exited, crashed
// or was killed). Its domains stop with it rather than run on unmanaged, holding their
// resources and names (docs/host-config.md).
void watch_supervisor(int fd) {
    std::thread([fd] {
        ::pthread_setname_np(::pthread_self(), "vireo-ctl");
        for (;;) {
            pollfd p{fd, POLLIN, 0};
            if (::poll(&p, 1, -1) < 0 && errno == EINTR) continue;
            char buf[64];
            const ssize_t n = ::read(fd, buf, sizeof buf);
            if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
            if (n <= 0) break;
        }
        log::error("the supervisor (vireo up) is gone: stopping the domain");
        g_domain.stop.request("the supervisor is gone");
    }).detach();
}

}  // namespace

ExitStatus exit_status_for(vmm::Fate fate) noexcept {
    switch (fate) {
        case vmm::Fate::PowerOff:
        case vmm::Fate::Stopped:
            return kExitPowerOff;
        case vmm::Fate::Reboot:
            return kExitReboot;
        case vmm::Fate::Panic:
            return kExitPanic;
        case vmm::Fate::TripleFault:
            return kExitTripleFault;
        case vmm::Fate::InternalError:
            return kExitKvmError;
        case vmm::Fate::HostError:
            return kExitError;
    }
    return kExitError;
}

int run_launched(int fd, const std::string& default_guest) {
    auto text = receive_spec(fd);
    if (!text) {
        log::error("{}", text.error().message());
        return kExitError;
    }
    text->process.ctl_fd = fd;
    auto spec = parse_spec(*text, default_guest);
    if (!spec) {
        // The supervisor's configuration passed the same parser; this is a host that changed
        // in between (a default guest removed), said to the supervisor as any build error.
        report_error(fd, spec.error().message());
        log::error("{}", spec.error().message());
        return kExitError;
    }
    return run_domain(*spec);
}

int run_domain(const DomainSpec& s) {
    auto fail_with = [](const std::string& msg) {
        log::error("{}", msg);
        return kExitError;
    };

    if (!s.cpu_affinity.empty()) {
        cpu_set_t set;
        CPU_ZERO(&set);
        for (uint32_t c : s.cpu_affinity)
            CPU_SET(c, &set);
        if (::sched_setaffinity(0, sizeof set, &set) != 0)  // inherited by every thread
            return fail_with(fmt::format("--cpu-affinity: {}", std::strerror(errno)));
    }
    // Block SIGINT/SIGTERM before any thread exists (back-ends and the API start threads), so
    // every thread inherits the mask and only the sigwait thread below takes them.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

    // The kernel and initrd are mapped once, here; the machine of every boot loads from them.
    auto kernel = MappedFile::open(s.kernel_path, "kernel");
    if (!kernel) return fail_with(kernel.error().message());
    std::optional<MappedFile> initrd;
    if (!s.initrd_path.empty()) {
        auto f = MappedFile::open(s.initrd_path, "initrd");
        if (!f) return fail_with(f.error().message());
        initrd = std::move(f).value();
    }

    vmm::VmConfig config;
    config.memory_bytes = s.memory_bytes;
    config.cpus = s.cpus;
    config.cmdline = s.cmdline;
    config.rng = s.rng;
    config.balloon = s.balloon;
    config.backing = s.backing;
    config.vcpu_affinity = s.vcpu_affinity;
    // Disks are opened (and locked) once, before anything runs, and kept across reboots.
    // What vireo reads, by identity: no output (a console file, a writable disk) may be one.
    std::vector<InputFile> inputs{{kernel->id(), "kernel " + s.kernel_path}};
    if (initrd) inputs.push_back({initrd->id(), "initrd " + s.initrd_path});
    for (const auto& opts : s.disks) {
        auto disk = virtio::DiskImage::open(opts, inputs);
        if (!disk) return fail_with(disk.error().message());
        inputs.push_back({(*disk)->id(), "disk " + opts.path});
        config.disks.push_back(std::move(disk).value());
    }
    // Everything that can be checked without KVM is checked first, on any host. The kernel is
    // parsed here, once; every boot loads from this parse.
    auto parsed = arch::x86::boot::KernelImage::parse(kernel->bytes());
    if (!parsed)
        return fail_with(fmt::format("kernel {}: {}", s.kernel_path, parsed.error().message()));
    const vmm::BootImages images{*parsed, initrd ? initrd->bytes() : std::span<const uint8_t>{},
                                 /*file_mappings=*/true};
    if (auto r = vmm::Vm::validate(config, images); !r) return fail_with(r.error().message());

    // Memory that is allocated before the guest starts must be there: checked against the
    // host now, not found missing by the OOM killer halfway through prefaulting.
    if (config.backing == vmm::VmConfig::Backing::Prefault ||
        config.backing == vmm::VmConfig::Backing::Locked) {
        const auto facts = HostFacts::probe();
        if (config.memory_bytes > facts.mem_available)
            return fail_with(fmt::format(
                "--memory-backing {}: {} MiB of guest memory is allocated before the guest "
                "starts, but the host has {} MiB available",
                vmm::to_string(config.backing), config.memory_bytes >> 20,
                facts.mem_available >> 20));
    }

    auto hv = hv::Hypervisor::open();
    if (!hv) return fail_with(hv.error().message());
    if (!hv->hardware_assisted() && !s.process.allow_software_kvm) {
        log::error(
            "this host's KVM ({}) is a software implementation without VT-x/AMD-V and cannot run "
            "a full kernel; run vireo on a host with hardware virtualization, or inside the test "
            "host: tests/host/run.sh -- vireo run ...",
            hv->flavor());
        return kExitNoHardwareKvm;
    }

    // Every input is checked: now the console file may be created (or emptied).
    std::shared_ptr<vmm::ConsoleLog> console_log;
    if (s.console == ConsoleKind::Stdio) {
        console_log = vmm::ConsoleLog::stream(STDOUT_FILENO);
    } else if (s.console == ConsoleKind::File || s.console == ConsoleKind::Append) {
        auto f = open_output(s.console_path, inputs, "--console", s.console == ConsoleKind::Append);
        if (!f) return fail_with(f.error().message());
        console_log =
            vmm::ConsoleLog::file(std::move(f).value(), s.console_path, s.console_log_max, inputs);
    }
    config.console_out = console_log;

    // Network back-ends: opened once (taps attached, forwarded ports bound) and kept across
    // reboots, so a guest reboot keeps its network.
    for (size_t i = 0; i < s.nets.size(); ++i) {
        const auto& n = s.nets[i];
        auto backend = n.kind == virtio::NetOptions::Kind::Tap ? virtio::open_tap(n.tap, n.mtu)
                                                               : virtio::open_user_network(n);
        if (!backend) return fail_with(fmt::format("--net: {}", backend.error().message()));
        config.nets.push_back(
            {std::move(backend).value(),
             n.mac ? *n.mac : virtio::derived_mac(fmt::format("{}/net{}", s.name, i)), n.mtu,
             n.queue_size});
    }
    if (s.vsock) {
        auto listener = virtio::VsockListener::create(*s.vsock);
        if (!listener) return fail_with(listener.error().message());
        config.vsock = std::move(listener).value();
    }
    Domain& dom = g_domain;
    dom.name = s.name;
    dom.ctl_fd = s.process.ctl_fd;
    dom.console_log = console_log;
    if (!s.process.console_socket.empty()) {
        auto c = vmm::ConsoleServer::create(s.process.console_socket);
        if (!c) return fail_with(c.error().message());
        dom.console = std::move(c).value();
        config.console_tap = dom.console;
        if (auto r = dom.console->start(); !r) return fail_with(r.error().message());
    }
    dom.config = config;
    std::unique_ptr<api::Server> api_server;
    if (!s.process.api_socket.empty()) {
        auto server = api::Server::create(s.process.api_socket);
        if (!server) return fail_with(server.error().message());
        api_server = std::move(server).value();
        add_domain_methods(*api_server, dom);
        if (auto r = api_server->start(); !r) return fail_with(r.error().message());
    }
    std::unique_ptr<api::MetricsEndpoint> metrics;
    if (!s.process.metrics.empty()) {
        auto m = api::MetricsEndpoint::create(s.process.metrics, [] {
            return api::prometheus_text({{g_domain.name, domain_metrics(g_domain)}});
        });
        if (!m) return fail_with(m.error().message());
        metrics = std::move(m).value();
    }

    // SIGINT/SIGTERM stop the guest cleanly (the terminal is restored on the way out); they
    // were blocked before any thread started, so only the sigwait thread receives them.
    std::thread([stop_signals] {
        int sig = 0;
        while (sigwait(&stop_signals, &sig) == 0) {
            g_domain.stop.request("stopped by a signal");
        }
    }).detach();

    vmm::ConsoleInput console([] { g_domain.stop.request("stopped from the console"); });
    if (s.console == ConsoleKind::Stdio) {
        if (auto r = console.start(); !r) return fail_with(r.error().message());
    }

    const auto started = std::chrono::steady_clock::now();
    unsigned boots = 0;
    // One line at exit: the run, then each virtio device's counters of the last boot
    // (DEVICE.COUNTER=N, e.g. virtio-blk@0xd0000000.driver_errors=0).
    auto print_stats = [&](const vmm::Vm& vm) {
        if (!s.process.stats) return;
        rusage ru{};
        ::getrusage(RUSAGE_SELF, &ru);
        auto secs =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        std::string devices;
        for (const auto& d : vm.device_metrics()) {
            devices += fmt::format(" {}.driver_errors={}", d.name, d.driver_errors);
            for (const auto& c : d.counters)
                devices += fmt::format(" {}.{}={}", d.name, c.name, c.value);
        }
        std::fprintf(
            stderr, "vireo: stats: boots=%u wall_s=%.3f guest_memory_mib=%llu peak_rss_kib=%ld%s\n",
            boots, secs, static_cast<unsigned long long>(config.memory_bytes >> 20), ru.ru_maxrss,
            devices.c_str());
    };
    std::deque<std::chrono::steady_clock::time_point> recent_reboots;
    for (;;) {
        ++boots;
        dom.boots = boots;
        log::debug("boot {}: building the machine", boots);
        vmm::VmConfig boot_config;
        {
            std::lock_guard lock(dom.config_mu);  // the API may have re-pinned vCPUs
            boot_config = dom.config;
        }
        auto vm = vmm::Vm::create(*hv, boot_config, images);
        if (!vm) {
            report_error(s.process.ctl_fd, vm.error().message());
            return fail_with(vm.error().message());
        }
        if (s.process.ctl_fd >= 0 && boots == 1) {
            // Built: memory allocated (and prefaulted or locked), vCPUs created. Report, then
            // start only when the supervisor says every domain is ready.
            const std::string ready = encode({Message::Kind::Ready, {}});
            (void)!::write(s.process.ctl_fd, ready.data(), ready.size());
            char go = 0;
            if (::read(s.process.ctl_fd, &go, 1) != 1 || go != kGo) return 0;
            watch_supervisor(s.process.ctl_fd);
        }
        log::debug("boot {}: running {} vCPU(s)", boots, config.cpus);
        console.attach((*vm)->serial());
        if (dom.console) dom.console->attach((*vm)->serial());
        if (const uint64_t want = dom.guest_memory_request.load(); want != 0)
            (void)(*vm)->set_guest_memory(want);  // a balloon request outlives a reboot
        dom.stop.set(vm->get());
        auto outcome = (*vm)->run();
        dom.stop.set(nullptr);
        console.attach(nullptr);
        if (dom.console) dom.console->attach(nullptr);
        if (outcome.fate == vmm::Fate::Reboot && s.on_reboot == OnReboot::Restart &&
            !dom.stop.requested()) {
            log::info("guest rebooted: restarting it");
            // A guest that resets in a loop is slowed down: beyond kRebootBurst restarts
            // within kRebootWindow, one a second (counted in the metrics).
            const auto now = std::chrono::steady_clock::now();
            recent_reboots.push_back(now);
            while (now - recent_reboots.front() > kRebootWindow)
                recent_reboots.pop_front();
            if (recent_reboots.size() > kRebootBurst) {
                if (dom.reboots_throttled.fetch_add(1) == 0)
                    log::warn("the guest reboots in a loop: restarts slowed to one a second");
                for (int i = 0; i < 10 && !dom.stop.requested(); ++i)
                    std::this_thread::sleep_for(std::chrono::milliseconds(100));
                if (dom.stop.requested()) {
                    print_stats(**vm);
                    return kExitPowerOff;
                }
            }
            continue;
        }
        if (s.on_crash == OnCrash::Preserve &&
            (outcome.fate == vmm::Fate::Panic || outcome.fate == vmm::Fate::TripleFault ||
             outcome.fate == vmm::Fate::InternalError) &&
            !dom.stop.requested()) {
            log::error("{}: {}; preserved (memory kept) until stopped",
                       vmm::to_string(outcome.fate), outcome.detail);
            dom.crashed = true;
            dom.report(Message::Kind::Crashed);
            while (!dom.stop.requested())
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
            print_stats(**vm);
            return exit_status_for(outcome.fate);
        }
        if (outcome.fate == vmm::Fate::PowerOff) {
            log::debug("{}", outcome.detail);
        } else if (outcome.fate == vmm::Fate::Stopped) {
            log::info("{}", outcome.detail);
        } else {
            log::error("{}: {}", vmm::to_string(outcome.fate), outcome.detail);
        }
        print_stats(**vm);
        return exit_status_for(outcome.fate);
    }
}

}  // namespace vireo::domain
