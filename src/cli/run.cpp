#include "cli/run.hpp"

#include <unistd.h>

#include <cstdio>

#include "api/server.hpp"
#include "base/log.hpp"
#include "domain/runner.hpp"
#include "sandbox/sandbox.hpp"

namespace vireo::cli {

namespace {

// The options of how a domain runs on this host — its console, sockets, placement, jail — which
// `vireo run` and `vireo restore` share (a snapshot holds the machine, not these).
void add_host_side_options(CLI::App* cmd, RunOptions& o) {
    cmd->add_option("--console", o.console,
                    "Serial console: stdio, file:PATH (emptied first), append:PATH or none")
        ->capture_default_str();
    cmd->add_option("--console-log-max", o.console_log_max,
                    "A console file (file:/append:) is renamed PATH.1 and started again when it "
                    "reaches this size: 64K to 1T")
        ->capture_default_str();
    cmd->add_option("--api-socket", o.process.api_socket,
                    "Serve the JSON control API on this Unix socket (mode 0600; see docs/api.md)");
    cmd->add_option("--console-socket", o.process.console_socket,
                    "Also serve the serial console on this Unix socket (mode 0600), for "
                    "`vireo console --socket PATH`: attach and detach while the guest runs");
    cmd->add_option("--metrics", o.process.metrics,
                    "Serve Prometheus metrics at http://ADDR:PORT/metrics (loopback addresses "
                    "only), e.g. 127.0.0.1:9100");
    cmd->add_option("--cpu-affinity", o.cpu_affinity,
                    "Host CPUs vireo's threads may run on, e.g. 0-3,^1");
    cmd->add_option("--pin-vcpus", o.pin_vcpus,
                    "One host CPU per vCPU, comma-separated (vCPU i runs only on the i-th)");
    cmd->add_flag("--allow-software-kvm", o.process.allow_software_kvm,
                  "Run even on a software KVM (e.g. kvm_pvm) that cannot run a full kernel: for "
                  "tiny guests such as PVH test images");
    cmd->add_option_function<std::string>(
           "--sandbox", [&o](const std::string& v) { o.process.sandbox = v == "on"; },
           "on: jail the domain once its machine is built (docs/security.md); off: run it with "
           "vireo's own privileges (a warning says so) [default: on]")
        ->check(CLI::IsMember({"on", "off"}));
    cmd->add_option("--uid", o.process.uid,
                    "The unprivileged uid the sandboxed domain runs as, when vireo runs as root "
                    "(default: 69999)")
        ->check(CLI::Range(1u, 4294967294u));
    cmd->add_option("--gid", o.process.gid, "Its gid (default: the uid given, else 69999)")
        ->check(CLI::Range(1u, 4294967294u));
    cmd->add_flag("--stats", o.process.stats,
                  "At exit, print one line: boots, wall time, guest memory, peak RSS of vireo, "
                  "and each virtio device's counters (DEVICE.COUNTER=N)");
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
        "--on-reboot exit; 7 KVM failed to run the guest; 8 sandbox violation (a vireo thread made "
        "a system call outside its allow-list; the log line names it).\n\n"
        "Sandbox (docs/security.md): once the machine is built, vireo runs as an unprivileged "
        "uid (as root: --uid, default 69999) without capabilities, in its own mount, IPC, UTS, "
        "PID and (without --net user) network namespaces, with an empty root and a seccomp "
        "allow-list per thread.");
    run->add_option("--kernel", o.kernel,
                    "bzImage (64-bit boot protocol) or PVH ELF to boot (default: the default "
                    "guest's)");
    run->add_option("--initrd", o.initrd,
                    "initramfs (default: the default guest's, when --kernel is not given)");
    run->add_option("--cmdline", o.cmdline, "Kernel command line")
        ->default_str(domain::kDefaultCmdline);
    run->add_option("--append", o.append, "Text appended to the kernel command line");
    run->add_option("-m,--memory", o.memory, "Guest memory: 64M to 1T (bare number: MiB)")
        ->capture_default_str();
    run->add_option("-c,--cpus", o.cpus,
                    "vCPUs, 1 to 1024 (Linux guests: up to 255 with xAPIC; more need x2APIC)")
        ->capture_default_str();
    run->add_option("--on-reboot", o.on_reboot, "What a guest reboot does")
        ->check(CLI::IsMember({"restart", "exit"}))
        ->capture_default_str();
    run->add_option("--disk", o.disks,
                    "virtio-blk disk from a raw image: PATH[,readonly][,serial=ID][,queue-size=N]"
                    "[,bps=RATE][,iops=N][,bps-burst=SIZE][,iops-burst=N] (rate limits on reads "
                    "and writes, per second); repeatable (/dev/vda, /dev/vdb, ... in order)")
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
    run->add_option("--shm", o.shm,
                    "Shared memory with a host program, shown to the guest as an ivshmem PCI "
                    "device (QEMU's ivshmem-plain: BAR2 is the region): PATH,size=N[,readonly]"
                    "[,name=NAME]; PATH a file on tmpfs (e.g. /dev/shm/NAME), created 0600 "
                    "when missing; size a power of two from 4K to 64G; repeatable "
                    "(docs/shm.md)")
        ->allow_extra_args(false);
    run->add_flag("--balloon", o.balloon,
                  "A virtio-balloon device (with statistics and free page reporting): "
                  "`vireo mem-set` then shrinks or regrows the running guest");
    run->add_option("--cpu", o.cpu,
                    "CPU features the guest sees: host (what KVM offers), x86-64-v2 or x86-64-v3 "
                    "(that psABI level's features on any host that has them: for moving guests "
                    "between hosts), then ,-FEATURE / ,+FEATURE or ,LEAF[.SUB]:REG-=MASK / +=MASK "
                    "overrides, e.g. x86-64-v3,-avx2 (docs/cli.md)")
        ->capture_default_str();
    run->add_option("--spec-ctrl", o.spec_ctrl,
                    "Speculation controls the guest sees (IBRS, IBPB, STIBP, SSBD, ...): on (what "
                    "the host has, so the guest can protect itself) or off, then ,-CONTROL / "
                    ",+CONTROL, e.g. on,-psfd (docs/cli.md)")
        ->capture_default_str();
    run->add_option("--msr-filter", o.msr_filter,
                    "MSRs the guest may read and write: on (those its CPU needs; any other gets "
                    "#GP and is counted) or off (every MSR KVM knows); on,+MSR or "
                    "on,+FIRST-LAST allows more, e.g. on,+0x34 (docs/cli.md)")
        ->capture_default_str();
    run->add_option("--irqchip", o.irqchip,
                    "Where the interrupt controllers live: kernel (KVM's local APICs, I/O APIC, "
                    "8259s and PIT), split (KVM's local APICs; vireo's I/O APIC, 8259s and PIT, "
                    "in user space) or userspace (all of them vireo's; KVM has none) "
                    "(docs/cli.md)")
        ->capture_default_str();
    run->add_option("--vmm-pool", o.vmm_pool,
                    "The VMM-side memory a guest can make this domain allocate (vsock "
                    "connections and the data they hold); beyond it that work is refused and "
                    "counted, the domain runs on (256K to 64G; default 80M with --vsock, 8M "
                    "without)");
    run->add_option("--memory-backing", o.memory_backing,
                    "anonymous: pages on first touch; prefault: all allocated before the guest "
                    "starts; locked: prefaulted and never swapped (mlock); hugepages: 2 MiB "
                    "huge pages (/proc/sys/vm/nr_hugepages), reserved before the guest starts")
        ->check(CLI::IsMember({"anonymous", "prefault", "locked", "hugepages"}))
        ->capture_default_str();
    run->add_option("--on-crash", o.on_crash,
                    "After a guest panic or failure: exit, or preserve (keep the stopped domain "
                    "and its memory until SIGTERM, for inspection)")
        ->check(CLI::IsMember({"exit", "preserve"}))
        ->capture_default_str();
    run->add_option("--launch-fd", o.process.ctl_fd,
                    "(for vireo up) the launch socket: the domain's spec comes on it, and the "
                    "guest starts only after the supervisor's go (domain/protocol.hpp)")
        ->group("");
    run->add_option("--name", o.name,
                    "Domain name (the default MAC addresses derive from it, so they stay the "
                    "same from run to run)")
        ->capture_default_str();
    run->add_flag("--rng", o.rng, "A virtio-rng device (entropy from the host's getrandom)");
    add_host_side_options(run, o);
    run->add_option(
           "--restore", o.process.restore,
           "Go on from a snapshot (vireo save) instead of booting: the same memory, "
           "--cpus and devices in the same order must be given (checked; docs/snapshot.md); "
           "--kernel is booted if the guest later reboots")
        ->check(CLI::ExistingFile);
    return run;
}

namespace {

// A jailed domain, and `vireo run`'s keeper, end here once the domain's objects are gone
// (terminal restored, sockets closed): _exit, without the exit handlers. Nothing is left that
// the kernel does not tear down, and a sanitizer build's leak check would need ptrace and a new
// process (in the jail, or in a PID namespace whose first process has ended).
int finish(int status) {
    if (!sandbox::active() && !sandbox::is_keeper()) return status;
    std::fflush(nullptr);
    ::_exit(status);
}

}  // namespace

int finish_domain(int status) {
    return finish(status);
}

CLI::App* add_restore_command(CLI::App& app, RestoreOptions& r) {
    auto* cmd = app.add_subcommand(
        "restore", "Go on with a saved domain (vireo save) in the foreground, like vireo run");
    cmd->footer(
        "The snapshot holds the machine: its kernel, initrd and command line, memory, vCPUs and "
        "devices (disk images by absolute path, as they were given). Everything about how it "
        "runs here is given anew, as to vireo run: console, sockets, placement, sandbox. "
        "Disks are not copied into the snapshot: keep each image exactly as it was at the save "
        "(a disk written since corrupts the guest's file system), or give a copy taken then "
        "with --disk. A restore is a clone: restoring one snapshot several times gives "
        "independent domains; give each its own --name, --vsock (cid=, socket=) and sockets "
        "(docs/snapshot.md says what clones share).\n\n"
        "Exit status: as vireo run.");
    cmd->add_option("FILE", r.file, "The snapshot")->required()->check(CLI::ExistingFile);
    r.name = cmd->add_option("--name", r.given.name, "Domain name (default: the saved one)");
    r.disks = cmd->add_option("--disk", r.given.disks,
                              "Replaces the saved disks, one each in the same order (same "
                              "options as vireo run --disk)")
                  ->allow_extra_args(false);
    r.nets = cmd->add_option("--net", r.given.nets,
                             "Replaces the saved network devices, one each in the same order "
                             "(e.g. to give a clone its own mac=)")
                 ->allow_extra_args(false);
    r.vsock = cmd->add_option("--vsock", r.given.vsock,
                              "Replaces the saved vsock device: cid=N,socket=PATH (the guest "
                              "learns the new CID with the transport reset a restore sends)");
    r.on_reboot = cmd->add_option("--on-reboot", r.given.on_reboot,
                                  "What a guest reboot does (default: the saved setting)")
                      ->check(CLI::IsMember({"restart", "exit"}));
    r.on_crash = cmd->add_option("--on-crash", r.given.on_crash,
                                 "exit or preserve (default: the saved setting)")
                     ->check(CLI::IsMember({"exit", "preserve"}));
    r.backing = cmd->add_option("--memory-backing", r.given.memory_backing,
                                "anonymous, prefault or locked (default: the saved one; guest "
                                "memory is mapped from the snapshot, so hugepages cannot be used)")
                    ->check(CLI::IsMember({"anonymous", "prefault", "locked"}));
    add_host_side_options(cmd, r.given);
    return cmd;
}

int restore_guest(const RestoreOptions& r) {
    // The machine from the snapshot; read here, before anything is opened or created.
    auto saved = domain::saved_machine(r.file);
    if (!saved) {
        log::error("{}", saved.error().message());
        return kExitError;
    }
    RunOptions t = std::move(saved).value();
    const RunOptions& g = r.given;
    if (r.name->count() > 0) t.name = g.name;
    // A list given replaces the saved one, device for device.
    auto replace = [](const CLI::Option* opt, const std::vector<std::string>& given,
                      std::vector<std::string>& into, const char* what) {
        if (opt->count() == 0) return true;
        if (given.size() != into.size()) {
            log::error("{}: the saved domain has {} {}; give as many, in order", opt->get_name(),
                       into.size(), what);
            return false;
        }
        into = given;
        return true;
    };
    if (!replace(r.disks, g.disks, t.disks, "disk(s)") ||
        !replace(r.nets, g.nets, t.nets, "network device(s)"))
        return kExitError;
    if (r.vsock->count() > 0) {
        if (t.vsock.empty()) {
            log::error("--vsock: the saved domain has no vsock device");
            return kExitError;
        }
        t.vsock = g.vsock;
    }
    if (r.on_reboot->count() > 0) t.on_reboot = g.on_reboot;
    if (r.on_crash->count() > 0) t.on_crash = g.on_crash;
    if (r.backing->count() > 0) t.memory_backing = g.memory_backing;
    t.console = g.console;
    t.console_log_max = g.console_log_max;
    t.cpu_affinity = g.cpu_affinity;
    t.pin_vcpus = g.pin_vcpus;
    t.process = g.process;
    t.process.restore = r.file;
    auto spec = domain::parse_spec(t, domain::default_guest_dir());
    if (!spec) {
        log::error("restore: {}", spec.error().message());
        return kExitError;
    }
    return finish(domain::run_domain(*spec));
}

bool launch_fd_alone(const RunOptions& o) {
    RunOptions only_fd;
    only_fd.process.ctl_fd = o.process.ctl_fd;
    if (o == only_fd) return true;
    log::error(
        "--launch-fd: the domain's configuration comes on the launch socket; give no other "
        "option");
    return false;
}

int run_guest(const RunOptions& o) {
    if (o.process.ctl_fd >= 0) {
        if (!launch_fd_alone(o)) return kExitError;
        return finish(domain::run_launched(o.process.ctl_fd, domain::default_guest_dir()));
    }
    auto spec = domain::parse_spec(o, domain::default_guest_dir());
    if (!spec) {
        log::error("--{}", spec.error().message());  // the message starts with the flag's name
        return kExitError;
    }
    return finish(domain::run_domain(*spec));
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
