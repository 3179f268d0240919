#include "cli/run.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>

#include "arch/x86/boot/linux.hpp"
#include "arch/x86/boot/pvh.hpp"
#include "base/log.hpp"
#include "base/mapped_file.hpp"
#include "base/size.hpp"
#include "base/unique_fd.hpp"
#include "hv/hypervisor.hpp"
#include "virtio/slirp.hpp"
#include "vmm/console.hpp"
#include "vmm/vm.hpp"

namespace vireo::cli {

namespace {

constexpr const char* kDefaultCmdline = "console=ttyS0 reboot=k panic=-1 quiet";

std::string default_guest_dir() {
    if (const char* d = std::getenv("VIREO_GUEST_DIR")) return d;
    if (const char* c = std::getenv("VIREO_CACHE")) return std::string(c) + "/guest";
    const char* home = std::getenv("HOME");
    return std::string(home ? home : "/root") + "/.cache/vireo/guest";
}

// Stop requests (SIGINT/SIGTERM on a sigwait thread, the console escape) reach the running
// machine, and are remembered so that one arriving between two boots is not lost.
class StopControl {
  public:
    void request(const char* why) {
        std::lock_guard lock(mu_);
        if (!requested_) why_ = why;
        requested_ = true;
        if (vm_ != nullptr) vm_->stop(vmm::Fate::Stopped, why_);
    }
    /// Makes `vm` the one to stop; if a stop was already requested, stops it at once.
    void set(vmm::Vm* vm) {
        std::lock_guard lock(mu_);
        vm_ = vm;
        if (vm_ != nullptr && requested_) vm_->stop(vmm::Fate::Stopped, why_);
    }
    bool requested() {
        std::lock_guard lock(mu_);
        return requested_;
    }

  private:
    std::mutex mu_;
    vmm::Vm* vm_ = nullptr;
    bool requested_ = false;
    std::string why_;
};
StopControl g_stop;

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
    run->add_option("-c,--cpus", o.cpus, "vCPUs, 1 to 256")->capture_default_str();
    run->add_option("--console", o.console, "Serial console: stdio, file:PATH or none")
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

    // Console.
    int console_fd = STDOUT_FILENO;
    UniqueFd console_file;
    if (o.console == "none") {
        console_fd = -1;
    } else if (o.console.rfind("file:", 0) == 0) {
        std::string path = o.console.substr(5);
        if (path.empty()) return fail_with("--console file:PATH needs a path");
        console_file.reset(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
        if (!console_file)
            return fail_with(
                fmt::format("--console: cannot open {}: {}", path, std::strerror(errno)));
        console_fd = console_file.get();
    } else if (o.console != "stdio") {
        return fail_with(fmt::format("--console \"{}\": use stdio, file:PATH or none", o.console));
    }

    vmm::VmConfig config;
    config.memory_bytes = *memory;
    config.cpus = o.cpus;
    config.cmdline = o.cmdline.empty() ? kDefaultCmdline : o.cmdline;
    if (!o.append.empty()) config.cmdline += " " + o.append;
    config.console_fd = console_fd;
    // Disks are opened (and locked) once, before anything runs, and kept across reboots.
    for (const auto& spec : o.disks) {
        auto opts = virtio::parse_disk_option(spec);
        if (!opts) return fail_with(opts.error().message());
        auto disk = virtio::DiskImage::open(*opts);
        if (!disk) return fail_with(disk.error().message());
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
    if (config.disks.size() + nets.size() + (config.rng ? 1 : 0) + (vsock ? 1 : 0) >
        vmm::kMaxVirtioDevices)
        return fail_with(fmt::format("at most {} virtio devices (disks + nets + rng + vsock)",
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

    // SIGINT/SIGTERM stop the guest cleanly (the terminal is restored on the way out).
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    std::thread([stop_signals] {
        int sig = 0;
        while (sigwait(&stop_signals, &sig) == 0) {
            g_stop.request("stopped by a signal");
        }
    }).detach();

    vmm::ConsoleInput console([] { g_stop.request("stopped from the console"); });
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
    for (;;) {
        ++boots;
        log::debug("boot {}: building the machine", boots);
        auto vm = vmm::Vm::create(*hv, config, images);
        if (!vm) return fail_with(vm.error().message());
        log::debug("boot {}: running {} vCPU(s)", boots, config.cpus);
        console.attach((*vm)->serial());
        g_stop.set(vm->get());
        auto outcome = (*vm)->run();
        g_stop.set(nullptr);
        console.attach(nullptr);
        if (outcome.fate == vmm::Fate::Reboot && o.on_reboot == "restart" && !g_stop.requested()) {
            log::info("guest rebooted: restarting it");
            continue;
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

}  // namespace vireo::cli
