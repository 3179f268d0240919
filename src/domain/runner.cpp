#include "domain/runner.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <optional>
#include <thread>

#include "api/metrics.hpp"
#include "api/server.hpp"
#include "arch/x86/boot/kernel.hpp"
#include "base/file_id.hpp"
#include "base/host_facts.hpp"
#include "base/log.hpp"
#include "base/mapped_file.hpp"
#include "base/thread_class.hpp"
#include "base/unix_socket.hpp"
#include "domain/domain.hpp"
#include "domain/migrate.hpp"
#include "hv/hypervisor.hpp"
#include "sandbox/sandbox.hpp"
#include "snapshot/stream.hpp"
#include "virtio/net/slirp.hpp"
#include "vmm/console.hpp"

namespace vireo::domain {

namespace {

// Guest reboots restarted at full speed; beyond this many within the window, one a second.
constexpr size_t kRebootBurst = 10;
constexpr auto kRebootWindow = std::chrono::seconds(10);
// A domain's threads besides its vCPUs: I/O loop, API and its workers, console, metrics, slirp,
// signals, control, and room for a reboot's new threads while the old ones end.
constexpr uint64_t kThreadsBesideVcpus = 64;

static_assert(static_cast<int>(kExitSandboxViolation) == sandbox::kExitSandboxViolation);

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
        confine_thread(ThreadClass::Control);
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

namespace {

// The process's CPUs, set before any thread exists so that every thread inherits them.
Result<void> set_process_affinity(const std::vector<uint32_t>& cpus) {
    if (cpus.empty()) return {};
    cpu_set_t set;
    CPU_ZERO(&set);
    for (uint32_t c : cpus)
        CPU_SET(c, &set);
    if (::sched_setaffinity(0, sizeof set, &set) != 0) return fail_errno(errno, "--cpu-affinity");
    return {};
}

vmm::VmConfig machine_config(const DomainSpec& s) {
    vmm::VmConfig config;
    config.memory_bytes = s.memory_bytes;
    config.cpus = s.cpus;
    config.cmdline = s.cmdline;
    config.rng = s.rng;
    config.balloon = s.balloon;
    config.backing = s.backing;
    config.vcpu_affinity = s.vcpu_affinity;
    config.cpu = s.cpu;
    config.msrs = s.msrs;
    config.irqchip = s.irqchip;
    config.vmm_pool = s.vmm_pool;
    return config;
}

// What the domain reads, opened once and kept across reboots: the kernel and initrd mapped
// (every boot loads from these mappings), the disks opened and locked (into `config`), and
// all of them by identity, so that no output (a console file, a writable disk) may be one.
struct Inputs {
    MappedFile kernel;
    std::optional<MappedFile> initrd;
    std::vector<InputFile> ids;
};

Result<Inputs> open_inputs(const DomainSpec& s, vmm::VmConfig& config) {
    VIREO_TRY_ASSIGN(auto kernel, MappedFile::open(s.kernel_path, "kernel"));
    Inputs in{std::move(kernel), std::nullopt, {}};
    in.ids.push_back({in.kernel.id(), "kernel " + s.kernel_path});
    if (!s.initrd_path.empty()) {
        VIREO_TRY_ASSIGN(in.initrd, MappedFile::open(s.initrd_path, "initrd"));
        in.ids.push_back({in.initrd->id(), "initrd " + s.initrd_path});
    }
    for (const auto& opts : s.disks) {
        // An incoming domain's source holds its disks' locks until it hands the domain over:
        // they are taken then (domain::receive_in).
        VIREO_TRY_ASSIGN(auto disk,
                         virtio::DiskImage::open(opts, in.ids, s.process.incoming_fd < 0));
        in.ids.push_back({disk->id(), "disk " + opts.path});
        config.disks.push_back(std::move(disk));
    }
    return in;
}

// Memory that is allocated before the guest starts must be there: checked against the host
// now, not found missing by the OOM killer halfway through prefaulting.
Result<void> check_preallocation(const vmm::VmConfig& config) {
    if (config.backing != vmm::VmConfig::Backing::Prefault &&
        config.backing != vmm::VmConfig::Backing::Locked)
        return {};
    const auto facts = HostFacts::probe();
    if (config.memory_bytes > facts.mem_available)
        return fail(ErrorCode::ResourceExhausted,
                    "--memory-backing {}: {} MiB of guest memory is allocated before the guest "
                    "starts, but the host has {} MiB available",
                    vmm::to_string(config.backing), config.memory_bytes >> 20,
                    facts.mem_available >> 20);
    return {};
}

// The console's output; a file is created (or emptied) here, once every input was checked.
Result<std::shared_ptr<vmm::ConsoleLog>> open_console(const DomainSpec& s,
                                                      std::span<const InputFile> inputs) {
    switch (s.console) {
        case ConsoleKind::None:
            return std::shared_ptr<vmm::ConsoleLog>();
        case ConsoleKind::Stdio:
            return vmm::ConsoleLog::stream(STDOUT_FILENO);
        case ConsoleKind::File:
        case ConsoleKind::Append:
            break;
    }
    VIREO_TRY_ASSIGN(
        auto f, open_output(s.console_path, inputs, "--console", s.console == ConsoleKind::Append));
    return vmm::ConsoleLog::file(std::move(f), s.console_path, s.console_log_max, inputs);
}

// Files open_shm created (a region shared with a host program, missing before): removed again
// if the domain does not start, so a failed start leaves nothing behind. Each is removed only
// if the path still names the file created (a file put there since stays).
class CreatedFiles {
  public:
    CreatedFiles() = default;
    CreatedFiles(const CreatedFiles&) = delete;
    CreatedFiles& operator=(const CreatedFiles&) = delete;
    ~CreatedFiles() {
        for (const auto& f : files_) {
            struct stat now {};
            if (::lstat(f.path.c_str(), &now) == 0 && now.st_dev == f.dev && now.st_ino == f.ino)
                (void)::unlink(f.path.c_str());
        }
    }
    void add(const std::string& path, const struct stat& st) {
        files_.push_back({path, st.st_dev, st.st_ino});
    }
    /// The domain started: the files are the host program's to keep.
    void keep() noexcept { files_.clear(); }

  private:
    struct File {
        std::string path;
        dev_t dev;
        ino_t ino;
    };
    std::vector<File> files_;
};

// The shared memory regions (docs/shm.md), mapped before the jail: a file shared with a host
// program (a regular file, opened, or created 0600 and sized when missing; an existing file is
// never truncated or grown, and must be none of the domain's inputs), or a region `vireo up`
// handed down as a descriptor with its doorbells' eventfds (kept open for the process's life).
// Each region's identity joins `ids`, so no output (a console file) may be it.
Result<void> open_shm(const DomainSpec& s, std::vector<InputFile>& ids, vmm::VmConfig& config,
                      CreatedFiles& created_files) {
    for (const auto& o : s.shm) {
        const std::string what =
            o.path.empty() ? fmt::format("shm {}", o.name) : fmt::format("shm {}", o.path);
        UniqueFd fd;
        bool created = false;
        if (!o.path.empty()) {
            // No symbolic link: /dev/shm is writable by everyone, and a link planted there could
            // hand the guest another user's file.
            const int flags = (o.readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW;
            fd.reset(::open(o.path.c_str(), flags));
            if (!fd && errno == ENOENT && !o.readonly) {
                fd.reset(::open(o.path.c_str(), flags | O_CREAT | O_EXCL, 0600));
                created = fd.valid();
            }
            if (!fd) return fail_errno(errno, "{}", what);
        } else {
            fd.reset(::fcntl(o.fd, F_DUPFD_CLOEXEC, 3));
            if (!fd) return fail_errno(errno, "{}: descriptor {}", what, o.fd);
        }
        struct stat st {};
        if (::fstat(fd.get(), &st) != 0) {
            const int e = errno;
            if (created) (void)::unlink(o.path.c_str());
            return fail_errno(e, "{}", what);
        }
        if (created) created_files.add(o.path, st);
        if (!S_ISREG(st.st_mode))
            return fail(ErrorCode::InvalidArgument,
                        "{}: not a regular file (share a file on tmpfs, e.g. /dev/shm/NAME)", what);
        if (const InputFile* in = find_input(ids, st))
            return fail(ErrorCode::InvalidArgument, "{}: it is the {}", what, in->name);
        if (created) {
            if (::ftruncate(fd.get(), static_cast<off_t>(o.size)) != 0)
                return fail_errno(errno, "{}: size {}", what, o.size);
        } else if (static_cast<uint64_t>(st.st_size) < o.size) {
            return fail(ErrorCode::InvalidArgument,
                        "{}: {} bytes, smaller than size={} (vireo does not grow a file it did "
                        "not create)",
                        what, st.st_size, o.size);
        }
        VIREO_TRY_ASSIGN(auto region, vmm::SharedRegion::map(fd.get(), o.size, o.readonly));
        ids.push_back({file_id(st), what});
        vmm::ShmConfig c;
        c.name = o.name;
        c.region = std::move(region);
        c.doorbells = o.doorbells;
        c.peer = o.peer;
        c.peers = o.peers;
        c.vectors = o.vectors;
        c.peer_names = o.names;
        if (o.doorbells) {
            for (int i = 0; i < int{o.peers} * o.vectors; ++i) {
                const int efd = o.doorbell_fds + i;
                char link[64] = {};
                const std::string proc = fmt::format("/proc/self/fd/{}", efd);
                const ssize_t n = ::readlink(proc.c_str(), link, sizeof link - 1);
                if (n <= 0 ||
                    std::string_view(link, static_cast<size_t>(n)) != "anon_inode:[eventfd]")
                    return fail(ErrorCode::InvalidArgument, "{}: descriptor {} is no eventfd", what,
                                efd);
                c.doorbell_fds.push_back(efd);
            }
        }
        config.shm.push_back(std::move(c));
    }
    return ok();
}

// The vsock socket by its real directory: guest connections to host port P go to PATH_P, which
// a jailed domain reaches through a bind of that directory at the same path (and from "/").
virtio::VsockOptions vsock_options(const virtio::VsockOptions& given) {
    namespace fs = std::filesystem;
    virtio::VsockOptions o = given;
    std::error_code ec;
    const fs::path p = fs::absolute(given.socket, ec);
    if (ec) return o;
    const fs::path dir = fs::canonical(p.parent_path(), ec);
    if (!ec) o.socket = (dir / p.filename()).string();
    return o;
}

// Network back-ends: opened once (taps attached, forwarded ports bound) and kept across
// reboots, so a guest reboot keeps its network; likewise the vsock listener.
Result<void> open_network(const DomainSpec& s, vmm::VmConfig& config) {
    for (size_t i = 0; i < s.nets.size(); ++i) {
        const auto& n = s.nets[i];
        auto backend = n.kind == virtio::NetOptions::Kind::Tap ? virtio::open_tap(n.tap, n.mtu)
                                                               : virtio::open_user_network(n);
        if (!backend) return fail(backend.error().code(), "--net: {}", backend.error().message());
        config.nets.push_back(
            {std::move(backend).value(),
             n.mac ? *n.mac : virtio::derived_mac(fmt::format("{}/net{}", s.name, i)), n.mtu,
             n.queue_size, n.rx_limits, n.tx_limits});
    }
    if (s.vsock) {
        VIREO_TRY_ASSIGN(config.vsock, virtio::VsockListener::create(vsock_options(*s.vsock)));
    }
    return {};
}

// What the domain serves while it runs: its console socket (into `config`), its API and its
// metrics. Their sockets are bound here; their threads start after the sandbox is entered.
struct Endpoints {
    std::unique_ptr<api::Server> api;
    std::unique_ptr<api::MetricsEndpoint> metrics;
};

Result<Endpoints> open_endpoints(const DomainSpec& s, Domain& dom, vmm::VmConfig& config) {
    Endpoints e;
    if (!s.process.console_socket.empty()) {
        VIREO_TRY_ASSIGN(dom.console, vmm::ConsoleServer::create(s.process.console_socket));
        config.console_tap = dom.console;
    }
    dom.config = config;
    if (!s.process.api_socket.empty()) {
        VIREO_TRY_ASSIGN(e.api, api::Server::create(s.process.api_socket));
        add_domain_methods(*e.api, dom);
    }
    if (!s.process.metrics.empty()) {
        VIREO_TRY_ASSIGN(
            e.metrics, api::MetricsEndpoint::create(s.process.metrics, [] {
                return api::prometheus_text({{g_domain.name, domain_metrics(g_domain)}});
            }));
    }
    return e;
}

Result<void> start_endpoints(Domain& dom, Endpoints& e, const vmm::VmConfig& config) {
    if (dom.console) VIREO_TRY(dom.console->start());
    if (e.api) VIREO_TRY(e.api->start());
    if (e.metrics) e.metrics->start();
    for (const auto& n : config.nets)
        n.backend->start();
    return {};
}

// `--stats`: one line at exit: the run, then each virtio device's counters of the last boot
// (DEVICE.COUNTER=N, e.g. virtio-blk@0xd0000000.driver_errors=0).
void print_stats(const DomainSpec& s, unsigned boots, std::chrono::steady_clock::time_point started,
                 const vmm::Vm& vm) {
    if (const uint64_t n = vm.msrs_refused(); n != 0)
        log::info(
            "the guest's RDMSR/WRMSR outside its MSR allow-list: {} refused with #GP "
            "(--msr-filter)",
            n);
    if (!s.process.stats) return;
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    std::string devices;
    for (const auto& d : vm.device_metrics()) {
        devices += fmt::format(" {}.driver_errors={}", d.name, d.driver_errors);
        for (const auto& c : d.counters)
            devices += fmt::format(" {}.{}={}", d.name, c.name, c.value);
    }
    std::fprintf(stderr,
                 "vireo: stats: boots=%u wall_s=%.3f guest_memory_mib=%llu peak_rss_kib=%ld%s\n",
                 boots, secs, static_cast<unsigned long long>(s.memory_bytes >> 20), ru.ru_maxrss,
                 devices.c_str());
}

// A guest that resets in a loop is slowed down: beyond kRebootBurst restarts within
// kRebootWindow, one a second (counted in the metrics).
class RebootThrottle {
  public:
    // Called at each restart; waits if it must. False if the domain was stopped meanwhile.
    bool pass(Domain& dom) {
        const auto now = std::chrono::steady_clock::now();
        recent_.push_back(now);
        while (now - recent_.front() > kRebootWindow)
            recent_.pop_front();
        if (recent_.size() <= kRebootBurst) return true;
        if (dom.reboots_throttled.fetch_add(1) == 0)
            log::warn("the guest reboots in a loop: restarts slowed to one a second");
        for (int i = 0; i < 10 && !dom.stop.requested(); ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        return !dom.stop.requested();
    }

  private:
    std::deque<std::chrono::steady_clock::time_point> recent_;
};

// The launch handshake, once the first machine is built (memory allocated, prefaulted or
// locked, vCPUs created): say ready, then start only on the supervisor's go (an incoming
// domain had it already). False: no go.
bool go_from_supervisor(const ProcessOptions& p) {
    if (!p.go_given && !ready_and_wait_for_go(p.ctl_fd)) return false;
    watch_supervisor(p.ctl_fd);
    return true;
}

// Boots the machine, and again after each guest reboot the policy restarts, until it ends.
int run_boots(const DomainSpec& s, const vmm::BootImages& images, vmm::ConsoleInput& console,
              std::unique_ptr<vmm::Vm> vm) {
    Domain& dom = g_domain;
    const auto started = std::chrono::steady_clock::now();
    unsigned boots = 0;
    RebootThrottle throttle;
    for (;;) {
        ++boots;
        dom.boots = boots;
        // The machine was built before the sandbox; a guest reboot resets it in place.
        if (boots > 1) {
            std::vector<std::vector<int>> affinity;
            {
                std::lock_guard lock(dom.config_mu);  // the API may have re-pinned vCPUs
                affinity = dom.config.vcpu_affinity;
            }
            if (auto r = vm->reboot(images, std::move(affinity)); !r) {
                log::error("guest reboot: {}", r.error().message());
                return kExitError;
            }
        }
        if (s.process.ctl_fd >= 0 && boots == 1 && !go_from_supervisor(s.process))
            return kExitPowerOff;
        log::debug("boot {}: running {} vCPU(s)", boots, s.cpus);
        if (boots == 1 && !s.process.restore.empty())
            log::info("restored from {}: running, {:.1f} ms after vireo started", s.process.restore,
                      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() -
                                                                dom.started)
                          .count());
        console.attach(vm->serial());
        if (dom.console) dom.console->attach(vm->serial());
        if (const uint64_t want = dom.guest_memory_request.load(); want != 0)
            (void)vm->set_guest_memory(want);  // a balloon request outlives a reboot
        dom.stop.set(vm.get());
        auto outcome = vm->run();
        dom.stop.set(nullptr);
        console.attach(nullptr);
        if (dom.console) dom.console->attach(nullptr);
        if (outcome.fate == vmm::Fate::Reboot && s.on_reboot == OnReboot::Restart &&
            !dom.stop.requested()) {
            log::info("guest rebooted: restarting it");
            if (throttle.pass(dom)) continue;
            print_stats(s, boots, started, *vm);
            return kExitPowerOff;
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
            print_stats(s, boots, started, *vm);
            return exit_status_for(outcome.fate);
        }
        if (outcome.fate == vmm::Fate::PowerOff) {
            log::debug("{}", outcome.detail);
        } else if (outcome.fate == vmm::Fate::Stopped) {
            log::info("{}", outcome.detail);
        } else {
            log::error("{}: {}", vmm::to_string(outcome.fate), outcome.detail);
        }
        print_stats(s, boots, started, *vm);
        return exit_status_for(outcome.fate);
    }
}

// The jail of this domain (docs/security.md): its ids, the directories it still reaches by
// name, the sockets it serves (given to its uid), its locked memory and threads.
sandbox::Plan sandbox_plan(const DomainSpec& s, const vmm::VmConfig& config) {
    sandbox::Plan p;
    p.uid = s.process.uid != 0 ? s.process.uid : sandbox::kDefaultRunUid;
    p.gid = s.process.gid != 0 ? s.process.gid : p.uid;
    for (const auto& n : s.nets)
        if (n.kind == virtio::NetOptions::Kind::User) p.host_network = true;
    if (config.vsock) {
        p.binds.push_back(std::filesystem::path(config.vsock->path()).parent_path().string());
        p.owned_sockets.push_back(config.vsock->path());
    }
    for (const auto* path : {&s.process.api_socket, &s.process.console_socket})
        if (!path->empty()) p.owned_sockets.push_back(*path);
    if (s.backing == vmm::VmConfig::Backing::Locked) p.locked_bytes = s.memory_bytes;
    // An id of its own (vireo up gives one per domain): its threads can be counted. The
    // default id of `vireo run` is shared by every run, so it is not limited per id.
    if (s.process.uid != 0) p.max_threads = uint64_t{s.cpus} + kThreadsBesideVcpus;
    return p;
}

// `vireo run` as root with the sandbox: the domain runs as the first process of a new PID
// namespace, a child of this one, which stays outside the jail only to pass signals on, wait,
// and then remove the sockets the jailed domain cannot (its root no longer holds them).
// Returns the child's exit status (128 + N if a signal N ended it).
int keep(pid_t child, const DomainSpec& s, const termios* terminal) {
    sigset_t set;
    sigemptyset(&set);
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD})
        sigaddset(&set, sig);
    int status = 0;
    for (;;) {
        const int sig = ::sigwaitinfo(&set, nullptr);
        if (sig < 0) continue;
        if (sig != SIGCHLD) {
            (void)::kill(child, sig);
            continue;
        }
        const pid_t r = ::waitpid(child, &status, WNOHANG);
        if (r == child) break;
        if (r < 0 && errno == ECHILD) return kExitError;
    }
    for (const auto* path : {&s.process.api_socket, &s.process.console_socket,
                             s.vsock ? &s.vsock->socket : static_cast<const std::string*>(nullptr)})
        if (path != nullptr && !path->empty()) (void)remove_stale_socket(*path);
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (terminal != nullptr) ::tcsetattr(STDIN_FILENO, TCSANOW, terminal);
    const int sig = WTERMSIG(status);
    if (sig == SIGSYS) {
        // A forbidden call made with signals blocked: the kernel ended it without the handler.
        log::error(
            "sandbox violation: the domain made a system call outside its allow-list with "
            "signals blocked (no handler could name it)");
        return kExitSandboxViolation;
    }
    log::error("the domain was ended by signal {} ({})", sig, ::strsignal(sig));
    return 128 + sig;
}

}  // namespace

int run_domain(const DomainSpec& s) {
    const int incoming = s.process.incoming_fd;
    auto fail_with = [&s, incoming](const std::string& msg) {
        report_error(s.process.ctl_fd, msg);
        if (incoming >= 0) {  // the sender learns why (its domain runs on)
            snapshot::stream::Channel ch(incoming, 1000);
            (void)snapshot::stream::send_reply(ch, snapshot::stream::Reply::Error, msg);
        }
        log::error("{}", msg);
        return kExitError;
    };
    // The jail needs root for its namespaces and ids; without root a domain runs as its user
    // (no_new_privs and the seccomp lists still apply).
    const bool jail = s.process.sandbox && ::geteuid() == 0;
    if (!s.process.sandbox) {
        log::warn("the sandbox is off: the domain runs with vireo's own privileges{}",
                  ::geteuid() == 0 ? " (root)" : "");
    } else if (!jail) {
        log::warn(
            "not root: the domain runs as uid {} without its own namespaces and root; only "
            "no_new_privs and the seccomp allow-lists confine it",
            ::getuid());
    }
    const bool in_foreground = vmm::stdin_in_foreground();
    if (jail && s.process.ctl_fd < 0 && ::getpid() != 1) {
        termios saved{};
        const bool tty = ::isatty(STDIN_FILENO) && ::tcgetattr(STDIN_FILENO, &saved) == 0;
        if (::unshare(CLONE_NEWPID) != 0)
            return fail_with(fmt::format("sandbox: new PID namespace: {}", std::strerror(errno)));
        sigset_t keep_signals;
        sigemptyset(&keep_signals);
        for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD})
            sigaddset(&keep_signals, sig);
        sigset_t old;
        pthread_sigmask(SIG_BLOCK, &keep_signals, &old);
        // The keeper holds `alive`'s write end until it ends: the child sees it gone even if
        // that happened before its parent-death signal was set.
        int alive[2];
        if (::pipe2(alive, O_CLOEXEC) != 0)
            return fail_with(fmt::format("pipe: {}", std::strerror(errno)));
        const pid_t child = ::fork();
        if (child < 0) return fail_with(fmt::format("fork: {}", std::strerror(errno)));
        if (child > 0) {
            ::close(alive[0]);
            if (incoming >= 0) ::close(incoming);  // the domain's alone: its end is the end
            sandbox::mark_keeper();
            return keep(child, s, tty ? &saved : nullptr);
        }
        ::close(alive[1]);
        pthread_sigmask(SIG_SETMASK, &old, nullptr);
        (void)::prctl(PR_SET_PDEATHSIG, SIGKILL);
        pollfd gone{alive[0], 0, 0};
        if (::poll(&gone, 1, 0) == 1 && (gone.revents & POLLHUP)) return kExitError;
        ::close(alive[0]);
    }
    if (jail) {
        if (auto r = sandbox::prepare(); !r) return fail_with(r.error().message());
    }
    if (auto r = set_process_affinity(s.cpu_affinity); !r) return fail_with(r.error().message());
    // Block SIGINT/SIGTERM before any thread exists (back-ends and the API start threads), so
    // every thread inherits the mask and only the sigwait thread below takes them.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

    vmm::VmConfig config = machine_config(s);
    auto inputs = open_inputs(s, config);
    if (!inputs) return fail_with(inputs.error().message());
    // Everything that can be checked without KVM is checked first, on any host. The kernel is
    // parsed here, once; every boot loads from this parse.
    auto kernel = arch::x86::boot::KernelImage::parse(inputs->kernel.bytes());
    if (!kernel)
        return fail_with(fmt::format("kernel {}: {}", s.kernel_path, kernel.error().message()));
    const vmm::BootImages images{
        *kernel, inputs->initrd ? inputs->initrd->bytes() : std::span<const uint8_t>{},
        /*file_mappings=*/true};
    if (auto r = vmm::Vm::validate(config, images); !r) return fail_with(r.error().message());
    if (auto r = check_preallocation(config); !r) return fail_with(r.error().message());

    // A snapshot to restore is an input: opened (read-only) before any output is created.
    UniqueFd snapshot;
    if (!s.process.restore.empty()) {
        snapshot.reset(::open(s.process.restore.c_str(), O_RDONLY | O_CLOEXEC));
        if (!snapshot)
            return fail_with(
                fmt::format("--restore {}: {}", s.process.restore, std::strerror(errno)));
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
    // The CPU template against this host (a feature it lacks is named).
    if (auto r = arch::x86::apply_cpu_template(config.cpu, hv->supported_cpuid()); !r)
        return fail_with(fmt::format("cpu: {}", r.error().message()));

    // Every input is checked: now outputs may be created and back-ends opened.
    CreatedFiles created_files;
    if (auto r = open_shm(s, inputs->ids, config, created_files); !r)
        return fail_with(r.error().message());
    auto console_log = open_console(s, inputs->ids);
    if (!console_log) return fail_with(console_log.error().message());
    config.console_out = *console_log;
    if (auto r = open_network(s, config); !r) return fail_with(r.error().message());
    Domain& dom = g_domain;
    dom.name = s.name;
    dom.snapshot_config = spec_json(s.machine);
    dom.ctl_fd = s.process.ctl_fd;
    dom.console_log = *console_log;
    auto endpoints = open_endpoints(s, dom, config);
    if (!endpoints) return fail_with(endpoints.error().message());

    // The first machine (memory allocated, prefaulted or locked, vCPUs created), then the jail:
    // from here on the process has no way back to the host's files, ids or privileges.
    log::debug("boot 1: building the machine{}", snapshot        ? " from the snapshot"
                                                 : incoming >= 0 ? " for the incoming domain"
                                                                 : "");
    auto first = snapshot        ? vmm::Vm::restore(*hv, config, images, snapshot.get())
                 : incoming >= 0 ? vmm::Vm::prepare_incoming(*hv, config, images)
                                 : vmm::Vm::create(*hv, config, images);
    if (!first) return fail_with(first.error().message());
    snapshot.reset();  // guest RAM maps the file; the descriptor is not needed
    if (*console_log) {
        if (auto r = (*console_log)->confine(); !r) return fail_with(r.error().message());
    }
    if (s.process.sandbox) {
        sandbox::Plan plan;
        if (jail)
            plan = sandbox_plan(s, config);
        else
            plan.unprivileged = true;
        plan.vcpu_threads = s.cpus;
        if (auto r = sandbox::enter(plan); !r) return fail_with(r.error().message());
        const auto t = sandbox::step_times();
        log::debug(
            "sandbox entered: namespaces {} µs, network {} µs, root {} µs, ids {} µs, "
            "vCPU threads {} µs, main filter {} µs",
            t.prepare_us, t.network_us, t.root_us, t.identity_us, t.vcpus_us, t.filter_us);
    }

    // An incoming migration: memory and state come now, parsed in the jail.
    if (incoming >= 0) {
        if (auto r = receive_in(**first, incoming); !r)
            return fail_with(fmt::format("incoming migration: {}", r.error().message()));
        snapshot::stream::Channel ch(incoming, 1000);
        (void)snapshot::stream::send_reply(ch, snapshot::stream::Reply::Running);
        ::close(incoming);
        log::info("migration: {} received; running", s.name);
        dom.report(Message::Kind::Running);  // vireo up lists it running from here
    }

    // SIGINT/SIGTERM stop the guest cleanly (the terminal is restored on the way out); they
    // were blocked before any thread started, so only the sigwait thread receives them.
    std::thread([stop_signals] {
        ::pthread_setname_np(::pthread_self(), "vireo-signals");
        confine_thread(ThreadClass::Signals);
        int sig = 0;
        while (sigwait(&stop_signals, &sig) == 0) {
            g_domain.stop.request("stopped by a signal");
        }
    }).detach();
    if (auto r = start_endpoints(dom, *endpoints, config); !r)
        return fail_with(r.error().message());

    vmm::ConsoleInput console([] { g_domain.stop.request("stopped from the console"); });
    if (s.console == ConsoleKind::Stdio) {
        if (auto r = console.start(in_foreground); !r) return fail_with(r.error().message());
    }
    created_files.keep();
    return run_boots(s, images, console, std::move(*first));
}

}  // namespace vireo::domain
