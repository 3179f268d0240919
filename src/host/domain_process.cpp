#include "host/domain_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "base/cpu_list.hpp"

namespace vireo::host {

domain::DomainText launch_text(const DomainConfig& c, const std::string& run_dir, const Pool& pool,
                               const std::vector<int>& pins, uint32_t id) {
    domain::DomainText t;
    t.name = c.name;
    t.kernel = c.kernel;
    t.initrd = c.initrd;
    t.cmdline = c.cmdline;
    t.memory = std::to_string(c.memory) + "B";
    t.cpus = c.vcpus;
    t.console = "append:" + run_dir + "/" + c.name + ".log";
    t.console_log_max = std::to_string(c.console_log_max) + "B";
    // A reboot restarts in place when that is the policy (resources stay reserved); a crash
    // is kept in place for inspection with preserve. Anything else is the supervisor's.
    t.on_reboot = c.on_reboot == Action::Restart ? "restart" : "exit";
    t.on_crash = c.on_crash == Action::Preserve ? "preserve" : "exit";
    t.disks = c.disks;
    t.nets = c.nets;
    t.vsock = c.vsock;
    t.balloon = c.balloon;
    t.rng = c.rng;
    t.memory_backing = vmm::to_string(c.memory_backing);
    t.cpu = c.cpu;
    t.spec_ctrl = c.spec_ctrl;
    t.msr_filter = c.msr_filter;
    t.irqchip = c.irqchip;
    t.vmm_pool = std::to_string(vmm_pool_of(c)) + "B";
    t.cpu_affinity = cpu_list(pool.cpus);
    for (int cpu : pins)
        t.pin_vcpus += (t.pin_vcpus.empty() ? "" : ",") + std::to_string(cpu);
    t.process.api_socket = run_dir + "/" + c.name + ".api";
    t.process.console_socket = run_dir + "/" + c.name + ".console";
    t.process.allow_software_kvm = c.allow_software_kvm;
    t.process.sandbox = c.sandbox;
    t.process.uid = id;
    t.process.gid = id;
    t.process.restore = c.restore;
    return t;
}

Result<DomainProcess> DomainProcess::spawn(const std::string& exe, const domain::DomainText& text,
                                           int log_fd, const std::string& cgroup,
                                           const std::string& incoming,
                                           const std::vector<int>& fds) {
    if (fds.size() > kMaxInheritedFds)
        return fail(ErrorCode::ResourceExhausted, "{} descriptors to hand a domain; at most {}",
                    fds.size(), kMaxInheritedFds);
    std::vector<int> moved(fds.size(), -1);  // the child's copies above the targets
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return fail_errno(errno, "socketpair");
    UniqueFd ours(sv[0]), theirs(sv[1]);
    // Everything the child needs is made before fork: after it, only async-signal-safe calls.
    const std::string procs = cgroup.empty() ? "" : cgroup + "/cgroup.procs";
    const std::string spec = domain::encode_spec(text);
    char run[] = "run", flag[] = "--launch-fd", three[] = "3", in_flag[] = "--incoming";
    char* const argv[] = {const_cast<char*>(exe.c_str()),
                          run,
                          flag,
                          three,
                          incoming.empty() ? nullptr : in_flag,
                          const_cast<char*>(incoming.c_str()),
                          nullptr};
    // clone() as fork(), in a new PID namespace: the child only execs (async-signal-safe
    // calls until then, as after fork).
    const pid_t pid = text.process.sandbox
                          ? static_cast<pid_t>(::syscall(SYS_clone, CLONE_NEWPID | SIGCHLD, nullptr,
                                                         nullptr, nullptr, 0))
                          : ::fork();
    if (pid < 0) return fail_errno(errno, "fork");
    if (pid == 0) {
        ::setpgid(0, 0);  // its own process group: a ^C on the supervisor is not its
        if (!procs.empty()) {
            const int fd = ::open(procs.c_str(), O_WRONLY | O_CLOEXEC);
            if (fd >= 0) {
                (void)!::write(fd, "0", 1);
                ::close(fd);
            }
        }
        // The inherited descriptors go to 4, 5, ...: first above every target (a source may
        // sit on a target's number), then down.
        const int above = kFirstInheritedFd + static_cast<int>(fds.size());
        for (size_t i = 0; i < fds.size(); ++i) {
            moved[i] = ::fcntl(fds[i], F_DUPFD_CLOEXEC, above);
            if (moved[i] < 0) _exit(127);
        }
        // dup2 onto itself would keep FD_CLOEXEC, and exec would close the launch socket.
        if (theirs.get() == 3)
            ::fcntl(3, F_SETFD, 0);
        else
            ::dup2(theirs.get(), 3);
        const int devnull = ::open("/dev/null", O_RDONLY);
        ::dup2(devnull, 0);
        ::dup2(log_fd, 1);
        ::dup2(log_fd, 2);
        for (size_t i = 0; i < fds.size(); ++i) {  // dup2 leaves the copy open across exec
            if (::dup2(moved[i], kFirstInheritedFd + static_cast<int>(i)) < 0) _exit(127);
            ::close(moved[i]);
        }
        sigset_t none;
        sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);
        ::execv(argv[0], argv);
        _exit(127);
    }
    DomainProcess p;
    p.pid = pid;
    p.ctl = std::move(ours);
    // The spec fits the socket's buffer many times over; a domain that exited at once makes
    // the write fail (EPIPE, SIGPIPE ignored), and its exit is reported as any other.
    size_t off = 0;
    while (off < spec.size()) {
        const ssize_t n = ::send(p.ctl.get(), spec.data() + off, spec.size() - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        off += static_cast<size_t>(n);
    }
    return p;
}

DomainProcess::Read DomainProcess::read() {
    char buf[256];
    for (;;) {
        pollfd p{ctl.get(), POLLIN, 0};
        if (::poll(&p, 1, 0) != 1 || !(p.revents & (POLLIN | POLLHUP))) return Read::Open;
        const ssize_t n = ::read(ctl.get(), buf, sizeof buf);
        if (n == 0) return Read::Closed;
        if (n < 0) return errno == EINTR || errno == EAGAIN ? Read::Open : Read::Closed;
        if (!lines.feed({buf, static_cast<size_t>(n)})) return Read::TooLong;
    }
}

std::optional<domain::Message> DomainProcess::first_message(int timeout_ms) {
    using Clock = std::chrono::steady_clock;
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
        if (auto line = lines.next()) return domain::decode(*line);
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0) return std::nullopt;
        pollfd p{ctl.get(), POLLIN, 0};
        const int ready = ::poll(&p, 1, static_cast<int>(left.count()));
        if (ready < 0 && errno != EINTR) return std::nullopt;
        if (ready <= 0) continue;
        const Read r = read();
        if (r == Read::TooLong) return std::nullopt;
        if (r == Read::Closed) {  // a last line may have come before the end
            auto line = lines.next();
            return line ? domain::decode(*line) : std::nullopt;
        }
    }
}

void DomainProcess::go() {
    (void)!::send(ctl.get(), &domain::kGo, 1, MSG_NOSIGNAL);
}

}  // namespace vireo::host
