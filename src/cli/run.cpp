#include "cli/run.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <mutex>

#include "api/metrics.hpp"
#include "api/server.hpp"
#include "arch/x86/boot/linux.hpp"
#include "arch/x86/boot/pvh.hpp"
#include "base/cpu_list.hpp"
#include "base/limits.hpp"
#include "base/log.hpp"
#include "base/mapped_file.hpp"
#include "base/size.hpp"
#include "base/split.hpp"
#include "base/unique_fd.hpp"
#include "domain/domain.hpp"
#include "host/config.hpp"
#include "hv/hypervisor.hpp"
#include "virtio/slirp.hpp"
#include "vmm/console.hpp"
#include "vmm/vm.hpp"

namespace vireo::cli {

namespace {

constexpr const char* kDefaultCmdline = "console=ttyS0 reboot=k panic=-1 quiet";
// Guest reboots restarted at full speed; beyond this many within the window, one a second.
constexpr size_t kRebootBurst = 10;
constexpr auto kRebootWindow = std::chrono::seconds(10);

std::string default_guest_dir() {
    if (const char* d = std::getenv("VIREO_GUEST_DIR")) return d;
    if (const char* c = std::getenv("VIREO_CACHE")) return std::string(c) + "/guest";
    const char* home = std::getenv("HOME");
    return std::string(home ? home : "/root") + "/.cache/vireo/guest";
}

domain::Domain g_domain;

int status_for(vmm::Fate fate) {
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

}  // namespace

CLI::App* add_run_command(CLI::App& app, RunOptions& o) {
    auto* run = app.add_subcommand("run", "Boot a Linux guest in the foreground");
    run->footer(
        "Without --kernel, boots the default guest (Debian's cloud kernel and vireo's busybox "
        "initramfs, built by scripts/guest-image.sh into ~/.cache/vireo/guest; VIREO_GUEST_DIR "
        "overrides). Commands after \"--\" on the kernel command line run in that guest, e.g.\n"
        "  vireo run --append '-- nproc; poweroff -f'\n\n"
        "Console: on a terminal, Ctrl-A x quits and Ctrl-A Ctrl-A sends Ctrl-A.\n\n"
        "Exit status: 0 guest powered off; 1 vireo error; 3 this host's KVM cannot run a full "
        "kernel; 4 guest kernel panic; 5 guest triple fault; 6 guest rebooted with "
        "--on-reboot exit; 7 KVM failed to run the guest.");
    run->add_option("--kernel", o.kernel,
                    "bzImage (64-bit boot protocol) or PVH ELF to boot (default: the default "
                    "guest's)");
    run->add_option("--initrd", o.initrd,
                    "initramfs (default: the default guest's, when --kernel is not given)");
    run->add_option("--cmdline", o.cmdline, "Kernel command line")->default_str(kDefaultCmdline);
    run->add_option("--append", o.append, "Text appended to the kernel command line");
    run->add_option("-m,--memory", o.memory, "Guest memory: 64M to 1T (bare number: MiB)")
        ->capture_default_str();
    run->add_option("-c,--cpus", o.cpus,
                    "vCPUs, 1 to 1024 (Linux guests: up to 255 with xAPIC; more need x2APIC)")
        ->capture_default_str();
    run->add_option("--console", o.console,
                    "Serial console: stdio, file:PATH (emptied first), append:PATH or none")
        ->capture_default_str();
    run->add_option("--console-log-max", o.console_log_max,
                    "A console file (file:/append:) is renamed PATH.1 and started again when it "
                    "reaches this size: 64K to 1T")
        ->capture_default_str();
    run->add_option("--on-reboot", o.on_reboot, "What a guest reboot does")
        ->check(CLI::IsMember({"restart", "exit"}))
        ->capture_default_str();
    run->add_option("--disk", o.disks,
                    "virtio-blk disk from a raw image: PATH[,readonly][,serial=ID][,queue-size=N]; "
                    "repeatable (/dev/vda, /dev/vdb, ... in order)")
        ->allow_extra_args(false);
    run->add_option("--net", o.nets,
                    "virtio-net device: user[,hostfwd=tcp:[HOSTADDR]:PORT-[GUESTADDR]:PORT]... "
                    "(user-mode networking, no privileges) or tap=NAME (an existing tap, or a new "
                    "one with CAP_NET_ADMIN); both take [,mac=XX:XX:XX:XX:XX:XX][,mtu=N]"
                    "[,queue-size=N]; repeatable (eth0, eth1, ...)")
        ->allow_extra_args(false);
    run->add_option("--vsock", o.vsock,
                    "virtio-vsock device: cid=N,socket=PATH. The host connects to PATH and "
                    "writes \"CONNECT <port>\\n\" to reach a guest port; guest connections to "
                    "CID 2 port P go to the Unix socket PATH_P (Firecracker's scheme)");
    run->add_flag("--balloon", o.balloon,
                  "A virtio-balloon device (with statistics and free page reporting): "
                  "`vireo mem-set` then shrinks or regrows the running guest");
    run->add_option("--api-socket", o.api_socket,
                    "Serve the JSON control API on this Unix socket (mode 0600; see docs/api.md)");
    run->add_option("--console-socket", o.console_socket,
                    "Also serve the serial console on this Unix socket (mode 0600), for "
                    "`vireo console --socket PATH`: attach and detach while the guest runs");
    run->add_option("--metrics", o.metrics,
                    "Serve Prometheus metrics at http://ADDR:PORT/metrics (loopback addresses "
                    "only), e.g. 127.0.0.1:9100");
    run->add_option("--memory-backing", o.memory_backing,
                    "anonymous: pages on first touch; prefault: all allocated before the guest "
                    "starts; locked: prefaulted and never swapped (mlock); hugepages: 2 MiB "
                    "huge pages (/proc/sys/vm/nr_hugepages), reserved before the guest starts")
        ->check(CLI::IsMember({"anonymous", "prefault", "locked", "hugepages"}))
        ->capture_default_str();
    run->add_option("--cpu-affinity", o.cpu_affinity,
                    "Host CPUs vireo's threads may run on, e.g. 0-3,^1");
    run->add_option("--pin-vcpus", o.pin_vcpus,
                    "One host CPU per vCPU, comma-separated (vCPU i runs only on the i-th)");
    run->add_option("--on-crash", o.on_crash,
                    "After a guest panic or failure: exit, or preserve (keep the stopped domain "
                    "and its memory until SIGTERM, for inspection)")
        ->check(CLI::IsMember({"exit", "preserve"}))
        ->capture_default_str();
    run->add_option("--ready-fd", o.ready_fd,
                    "(for vireo up) write ready to this fd once the machine is built, then "
                    "start the guest only after reading g from it")
        ->group("");
    run->add_option("--name", o.name,
                    "Domain name (the default MAC addresses derive from it, so they stay the "
                    "same from run to run)")
        ->capture_default_str();
    run->add_flag("--rng", o.rng, "A virtio-rng device (entropy from the host's getrandom)");
    run->add_flag("--allow-software-kvm", o.allow_software_kvm,
                  "Run even on a software KVM (e.g. kvm_pvm) that cannot run a full kernel: for "
                  "tiny guests such as PVH test images");
    run->add_flag("--stats", o.stats,
                  "At exit, print one line: boots, wall time, guest memory, peak RSS of vireo");
    return run;
}

int run_guest(const RunOptions& o) {
    auto fail_with = [](const std::string& msg) {
        log::error("{}", msg);
        return kExitError;
    };

    if (!o.cpu_affinity.empty()) {
        auto cpus =
            parse_cpu_list(o.cpu_affinity, static_cast<uint32_t>(::sysconf(_SC_NPROCESSORS_CONF)));
        if (!cpus) return fail_with("--cpu-affinity: " + cpus.error().message());
        cpu_set_t set;
        CPU_ZERO(&set);
        for (uint32_t c : *cpus)
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

    auto memory = parse_size(o.memory);
    if (!memory) return fail_with("--memory: " + memory.error().message());

    // Files: explicit, or the default guest.
    std::string kernel_path = o.kernel, initrd_path = o.initrd;
    if (kernel_path.empty()) {
        const std::string dir = default_guest_dir();
        kernel_path = dir + "/vmlinuz";
        if (initrd_path.empty()) initrd_path = dir + "/initrd.img";
        if (!std::filesystem::exists(kernel_path))
            return fail_with(fmt::format(
                "no --kernel given and the default guest is not built ({} is missing): run "
                "scripts/guest-image.sh",
                kernel_path));
    }
    auto kernel = MappedFile::open(kernel_path, "kernel");
    if (!kernel) return fail_with(kernel.error().message());
    std::optional<MappedFile> initrd;
    if (!initrd_path.empty()) {
        auto f = MappedFile::open(initrd_path, "initrd");
        if (!f) return fail_with(f.error().message());
        initrd = std::move(f).value();
    }

    // The console is checked here and opened only once every input has been (below).
    const bool console_file_mode = o.console.rfind("file:", 0) == 0,
               console_append_mode = o.console.rfind("append:", 0) == 0;
    const std::string console_path = console_file_mode     ? o.console.substr(5)
                                     : console_append_mode ? o.console.substr(7)
                                                           : "";
    if (o.console != "none" && o.console != "stdio" && console_path.empty())
        return fail_with(
            fmt::format("--console \"{}\": use stdio, file:PATH, append:PATH or none", o.console));
    auto console_log_max = parse_size(o.console_log_max);
    if (!console_log_max || *console_log_max < kMinConsoleLogMax ||
        *console_log_max > kMaxConsoleLogMax)
        return fail_with(
            fmt::format("--console-log-max \"{}\": a size from 64K to 1T", o.console_log_max));

    vmm::VmConfig config;
    config.memory_bytes = *memory;
    config.cpus = o.cpus;
    config.cmdline = o.cmdline.empty() ? kDefaultCmdline : o.cmdline;
    if (!o.append.empty()) config.cmdline += " " + o.append;
    // Disks are opened (and locked) once, before anything runs, and kept across reboots.
    // What vireo reads, by identity: no output (a console file, a writable disk) may be one.
    std::vector<InputFile> inputs{{kernel->id(), "kernel " + kernel_path}};
    if (initrd) inputs.push_back({initrd->id(), "initrd " + initrd_path});
    for (const auto& spec : o.disks) {
        auto opts = virtio::parse_disk_option(spec);
        if (!opts) return fail_with(opts.error().message());
        auto disk = virtio::DiskImage::open(*opts, inputs);
        if (!disk) return fail_with(disk.error().message());
        inputs.push_back({(*disk)->id(), "disk " + opts->path});
        config.disks.push_back(std::move(disk).value());
    }
    std::vector<virtio::NetOptions> nets;
    for (const auto& spec : o.nets) {
        auto opts = virtio::parse_net_option(spec);
        if (!opts) return fail_with(opts.error().message());
        nets.push_back(std::move(opts).value());
    }
    std::optional<virtio::VsockOptions> vsock;
    if (!o.vsock.empty()) {
        auto v = virtio::parse_vsock_option(o.vsock);
        if (!v) return fail_with(v.error().message());
        vsock = std::move(v).value();
    }
    config.rng = o.rng;
    config.balloon = o.balloon;
    config.backing = o.memory_backing == "prefault"    ? vmm::VmConfig::Backing::Prefault
                     : o.memory_backing == "locked"    ? vmm::VmConfig::Backing::Locked
                     : o.memory_backing == "hugepages" ? vmm::VmConfig::Backing::HugePages
                                                       : vmm::VmConfig::Backing::Anonymous;
    for (const std::string_view field :
         o.pin_vcpus.empty() ? std::vector<std::string_view>{} : split(o.pin_vcpus, ',')) {
        const std::string item(field);
        char* end = nullptr;
        const long cpu = std::strtol(item.c_str(), &end, 10);
        if (item.empty() || *end != '\0' || cpu < 0 || cpu >= CPU_SETSIZE)
            return fail_with(fmt::format("--pin-vcpus: \"{}\" is not a CPU number", item));
        config.vcpu_affinity.push_back({static_cast<int>(cpu)});
    }
    if (!config.vcpu_affinity.empty() && config.vcpu_affinity.size() != o.cpus)
        return fail_with(
            fmt::format("--pin-vcpus: {} CPUs for {} vCPUs", config.vcpu_affinity.size(), o.cpus));
    if (config.disks.size() + nets.size() + (config.rng ? 1 : 0) + (vsock ? 1 : 0) +
            (config.balloon ? 1 : 0) >
        vmm::kMaxVirtioDevices)
        return fail_with(
            fmt::format("at most {} virtio devices (disks + nets + rng + vsock + balloon)",
                        vmm::kMaxVirtioDevices));
    vmm::BootImages images{kernel->bytes(), initrd ? initrd->bytes() : std::span<const uint8_t>{},
                           /*file_mappings=*/true};
    // Everything that can be checked without KVM is checked first, on any host.
    if (arch::x86::boot::is_elf(images.kernel)) {
        if (auto r = arch::x86::boot::parse_pvh(images.kernel); !r)
            return fail_with(fmt::format("kernel {}: {}", kernel_path, r.error().message()));
    } else if (auto r = arch::x86::boot::parse_bzimage(images.kernel); !r) {
        return fail_with(fmt::format("kernel {}: {}", kernel_path, r.error().message()));
    }
    if (auto r = vmm::Vm::validate(config, images); !r) return fail_with(r.error().message());

    // Memory that is allocated before the guest starts must be there: checked against the
    // host now, not found missing by the OOM killer halfway through prefaulting.
    if (config.backing == vmm::VmConfig::Backing::Prefault ||
        config.backing == vmm::VmConfig::Backing::Locked) {
        const auto facts = host::HostFacts::probe();
        if (config.memory_bytes > facts.mem_available)
            return fail_with(fmt::format(
                "--memory-backing {}: {} MiB of guest memory is allocated before the guest "
                "starts, but the host has {} MiB available",
                o.memory_backing, config.memory_bytes >> 20, facts.mem_available >> 20));
    }

    auto hv = hv::Hypervisor::open();
    if (!hv) return fail_with(hv.error().message());
    if (!hv->hardware_assisted() && !o.allow_software_kvm) {
        log::error(
            "this host's KVM ({}) is a software implementation without VT-x/AMD-V and cannot run "
            "a full kernel; run vireo on a host with hardware virtualization, or inside the test "
            "host: tests/host/run.sh -- vireo run ...",
            hv->flavor());
        return kExitNoHardwareKvm;
    }

    // Every input is checked: now the console file may be created (or emptied).
    std::shared_ptr<vmm::ConsoleLog> console_log;
    if (o.console == "stdio") {
        console_log = vmm::ConsoleLog::stream(STDOUT_FILENO);
    } else if (!console_path.empty()) {
        auto f = open_output(console_path, inputs, "--console", console_append_mode);
        if (!f) return fail_with(f.error().message());
        console_log =
            vmm::ConsoleLog::file(std::move(f).value(), console_path, *console_log_max, inputs);
    }
    config.console_out = console_log;

    // Network back-ends: opened once (taps attached, forwarded ports bound) and kept across
    // reboots, so a guest reboot keeps its network.
    for (size_t i = 0; i < nets.size(); ++i) {
        const auto& n = nets[i];
        auto backend = n.kind == virtio::NetOptions::Kind::Tap ? virtio::open_tap(n.tap, n.mtu)
                                                               : virtio::open_user_network(n);
        if (!backend) return fail_with(fmt::format("--net: {}", backend.error().message()));
        config.nets.push_back(
            {std::move(backend).value(),
             n.mac ? *n.mac : virtio::derived_mac(fmt::format("{}/net{}", o.name, i)), n.mtu,
             n.queue_size});
    }
    if (vsock) {
        auto listener = virtio::VsockListener::create(*vsock);
        if (!listener) return fail_with(listener.error().message());
        config.vsock = std::move(listener).value();
    }
    domain::Domain& dom = g_domain;
    dom.name = o.name;
    dom.ctl_fd = o.ready_fd;
    dom.console_log = console_log;
    if (!o.console_socket.empty()) {
        auto c = vmm::ConsoleServer::create(o.console_socket);
        if (!c) return fail_with(c.error().message());
        dom.console = std::move(c).value();
        config.console_tap = dom.console;
        if (auto r = dom.console->start(); !r) return fail_with(r.error().message());
    }
    dom.config = config;
    std::unique_ptr<api::Server> api_server;
    if (!o.api_socket.empty()) {
        auto server = api::Server::create(o.api_socket);
        if (!server) return fail_with(server.error().message());
        api_server = std::move(server).value();
        domain::add_domain_methods(*api_server, dom);
        if (auto r = api_server->start(); !r) return fail_with(r.error().message());
    }
    std::unique_ptr<api::MetricsEndpoint> metrics;
    if (!o.metrics.empty()) {
        auto m = api::MetricsEndpoint::create(o.metrics, [] {
            return api::prometheus_text({{g_domain.name, domain::domain_metrics(g_domain)}});
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
    if (o.console == "stdio") {
        if (auto r = console.start(); !r) return fail_with(r.error().message());
    }

    const auto started = std::chrono::steady_clock::now();
    unsigned boots = 0;
    auto print_stats = [&] {
        if (!o.stats) return;
        rusage ru{};
        ::getrusage(RUSAGE_SELF, &ru);
        auto secs =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        std::fprintf(
            stderr, "vireo: stats: boots=%u wall_s=%.3f guest_memory_mib=%llu peak_rss_kib=%ld\n",
            boots, secs, static_cast<unsigned long long>(config.memory_bytes >> 20), ru.ru_maxrss);
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
            if (o.ready_fd >= 0) {
                const std::string msg =
                    domain::encode({domain::Message::Kind::Error, vm.error().message()});
                (void)!::write(o.ready_fd, msg.data(), msg.size());
            }
            return fail_with(vm.error().message());
        }
        if (o.ready_fd >= 0 && boots == 1) {
            // Built: memory allocated (and prefaulted or locked), vCPUs created. Report, then
            // start only when the supervisor says every domain is ready.
            const std::string ready = domain::encode({domain::Message::Kind::Ready, {}});
            (void)!::write(o.ready_fd, ready.data(), ready.size());
            char go = 0;
            if (::read(o.ready_fd, &go, 1) != 1 || go != domain::kGo) return 0;
            // The supervisor sends nothing more: the socket ends only when the supervisor does
            // (it exited, crashed or was killed). Its domains stop with it rather than run on
            // unmanaged, holding their resources and names (docs/host-config.md).
            std::thread([fd = o.ready_fd] {
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
        if (outcome.fate == vmm::Fate::Reboot && o.on_reboot == "restart" &&
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
                    print_stats();
                    return kExitPowerOff;
                }
            }
            continue;
        }
        if (o.on_crash == "preserve" &&
            (outcome.fate == vmm::Fate::Panic || outcome.fate == vmm::Fate::TripleFault ||
             outcome.fate == vmm::Fate::InternalError) &&
            !dom.stop.requested()) {
            log::error("{}: {}; preserved (memory kept) until stopped",
                       vmm::to_string(outcome.fate), outcome.detail);
            dom.crashed = true;
            dom.report(domain::Message::Kind::Crashed);
            while (!dom.stop.requested())
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
            print_stats();
            return status_for(outcome.fate);
        }
        if (outcome.fate == vmm::Fate::PowerOff) {
            log::debug("{}", outcome.detail);
        } else if (outcome.fate == vmm::Fate::Stopped) {
            log::info("{}", outcome.detail);
        } else {
            log::error("{}: {}", vmm::to_string(outcome.fate), outcome.detail);
        }
        print_stats();
        return status_for(outcome.fate);
    }
}

std::function<int()> add_client_commands(CLI::App& app) {
    struct Opts {
        std::string socket, method, params;
    };
    auto o = std::make_shared<Opts>();
    auto* raw =
        app.add_subcommand("api", "Send one request to a vireo API socket, print the reply");
    raw->add_option("SOCKET", o->socket, "API socket")->required();
    raw->add_option("METHOD", o->method, "Method, e.g. info, balloon.info")->required();
    raw->add_option("PARAMS", o->params, "Parameters as a JSON object");
    return [o, raw]() -> int {
        if (!*raw) return -1;
        api::Json params = api::Json::object();
        if (!o->params.empty()) {
            params = api::Json::parse(o->params, nullptr, false);
            if (params.is_discarded()) {
                log::error("PARAMS is not valid JSON");
                return kExitError;
            }
        }
        auto r = api::call(o->socket, o->method, params);
        if (!r) {
            log::error("{}", r.error().message());
            return kExitError;
        }
        std::printf("%s\n", r->dump(2).c_str());
        return 0;
    };
}

}  // namespace vireo::cli
