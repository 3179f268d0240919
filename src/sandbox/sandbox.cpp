#include "sandbox/sandbox.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/seccomp.h>
#include <malloc.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/ucontext.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <mutex>

#include "base/log.hpp"
#include "base/unix_socket.hpp"
#include "sandbox/programs.hpp"

namespace vireo::sandbox {

namespace {

// File descriptors a domain may open beyond those it has at the jail's door: API clients (128),
// vsock connections (256), metrics connections (32), a spare for accept, slirp's sockets.
constexpr rlim_t kFdHeadroom = 512;
// The empty root: a few directories for the binds, nothing else.
constexpr const char* kRootOptions = "mode=0755,size=64k,nr_inodes=256";
std::atomic<bool> g_active{false};
std::atomic<bool> g_keeper{false};
bool g_host_network = false;  // set before any thread confines itself
std::vector<std::string> g_namespaces;
StepTimes g_steps;

// Microseconds since `from`, and `from` moved to now.
uint32_t lap(std::chrono::steady_clock::time_point& from) {
    const auto now = std::chrono::steady_clock::now();
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(now - from).count();
    from = now;
    return static_cast<uint32_t>(us);
}

thread_local int t_class = -1;
thread_local char t_name[16] = "?";

std::mutex g_threads_mu;
std::vector<ThreadReport> g_threads;

// Removes the thread from the report when it ends.
struct ThreadEntry {
    int tid = 0;
    ~ThreadEntry() {
        if (tid == 0) return;
        std::lock_guard lock(g_threads_mu);
        std::erase_if(g_threads, [&](const ThreadReport& t) { return t.tid == tid; });
    }
};
thread_local ThreadEntry t_entry;

// The violation handler writes with these: no allocation, no locks, no libc formatting.
struct Line {
    char buf[256];
    size_t len = 0;
    void add(const char* s) {
        while (*s != '\0' && len < sizeof buf - 1)
            buf[len++] = *s++;
    }
    void add_number(unsigned long v, int base = 10) {
        char digits[24];
        int n = 0;
        do {
            digits[n++] = "0123456789abcdef"[v % static_cast<unsigned>(base)];
            v /= static_cast<unsigned>(base);
        } while (v != 0 && n < 24);
        if (base == 16) add("0x");
        while (n > 0 && len < sizeof buf - 1)
            buf[len++] = digits[--n];
    }
};

void on_violation(int, siginfo_t* info, void* context) {
    const int nr = info->si_syscall;
    Line l;
    l.add("vireo: sandbox violation: thread ");
    l.add(t_name);
    l.add(" (");
    l.add(t_class >= 0 ? to_string(static_cast<ThreadClass>(t_class)).data() : "main");
    l.add(") called ");
    const char* name = syscall_name(nr);
    l.add(name != nullptr ? name : "an unknown system call");
    l.add(" (");
    l.add_number(static_cast<unsigned long>(nr));
    l.add(")");
    if (nr == SYS_ioctl && context != nullptr) {
        l.add(" request ");
        l.add_number(static_cast<unsigned long>(
                         static_cast<ucontext_t*>(context)->uc_mcontext.gregs[REG_RSI]),
                     16);
    }
    if ((nr == SYS_openat || nr == SYS_open) && context != nullptr) {
        // The path, from the caller's own memory (what it tried to open says who it was).
        const auto& regs = static_cast<ucontext_t*>(context)->uc_mcontext.gregs;
        const auto* path =
            reinterpret_cast<const char*>(nr == SYS_open ? regs[REG_RDI] : regs[REG_RSI]);
        if (path != nullptr) {
            l.add(" on ");
            char cut[96] = {};
            for (size_t i = 0; i + 1 < sizeof cut && path[i] != '\0'; ++i)
                cut[i] = path[i];
            l.add(cut);
        }
    }
    if (info->si_arch != AUDIT_ARCH_X86_64) l.add(" through another ABI");
    l.add(", outside its allow-list: the domain is stopped\n");
    (void)!::write(STDERR_FILENO, l.buf, l.len);
    ::syscall(SYS_exit_group, kExitSandboxViolation);
}

Result<void> install_handler() {
    struct sigaction sa {};
    sa.sa_sigaction = on_violation;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (::sigaction(SIGSYS, &sa, nullptr) != 0) return fail_errno(errno, "sigaction(SIGSYS)");
    sigset_t sys;
    sigemptyset(&sys);
    sigaddset(&sys, SIGSYS);
    ::pthread_sigmask(SIG_UNBLOCK, &sys, nullptr);
    return {};
}

Result<void> load(ThreadClass c) {
    const auto prog = program(c, g_host_network);
    sock_fprog p{static_cast<unsigned short>(prog.size()), const_cast<sock_filter*>(prog.data())};
    if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &p) != 0)
        return fail_errno(errno, "seccomp filter for {} threads", to_string(c));
    return {};
}

void record(ThreadClass c) {
    t_class = static_cast<int>(c);
    ::prctl(PR_GET_NAME, t_name);
    t_entry.tid = static_cast<int>(::gettid());
    std::lock_guard lock(g_threads_mu);
    g_threads.push_back({t_entry.tid, t_name, std::string(to_string(c))});
}

bool confine_hook(ThreadClass c) noexcept {
    if (t_class >= 0 || c == ThreadClass::Main) return true;  // once per thread
    ::prctl(PR_GET_NAME, t_name);                             // for a violation report from here on
    if (auto r = load(c); !r) {
        // Only a kernel out of memory gets here; a thread without its own list still runs
        // under the main thread's (a vCPU worker, born before it, ends instead).
        log::error("sandbox: {}", r.error().message());
        return false;
    }
    record(c);
    return true;
}

// mkdir -p inside the new root; every directory 0755 and root's.
Result<void> make_path(const std::string& path) {
    for (size_t i = 1; i <= path.size(); ++i) {
        if (i != path.size() && path[i] != '/') continue;
        const std::string dir = path.substr(0, i);
        if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST)
            return fail_errno(errno, "sandbox: mkdir {}", dir);
    }
    return {};
}

// The empty root, bubblewrap's way: a tmpfs over /tmp (in this mount namespace only) becomes
// the root with the host's root under /.old, the binds come from /.old, then /.old is
// detached and the root made read-only.
Result<void> pivot(const std::vector<std::string>& binds) {
    if (::mount("vireo", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, kRootOptions) != 0)
        return fail_errno(errno, "sandbox: mount a tmpfs on /tmp for the root");
    if (::mkdir("/tmp/.old", 0700) != 0) return fail_errno(errno, "sandbox: mkdir /tmp/.old");
    if (::chdir("/tmp") != 0) return fail_errno(errno, "sandbox: chdir /tmp");
    if (::syscall(SYS_pivot_root, ".", ".old") != 0)
        return fail_errno(errno,
                          "sandbox: pivot_root (a host running from its initramfs must switch "
                          "to a real root first)");
    if (::chdir("/") != 0) return fail_errno(errno, "sandbox: chdir /");
    for (const auto& dir : binds) {
        VIREO_TRY(make_path(dir));
        const std::string source = "/.old" + dir;
        if (::mount(source.c_str(), dir.c_str(), nullptr, MS_BIND, nullptr) != 0)
            return fail_errno(errno, "sandbox: bind {}", dir);
        if (::mount(nullptr, dir.c_str(), nullptr,
                    MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                    nullptr) != 0)
            return fail_errno(errno, "sandbox: bind {} read-only", dir);
    }
    // The domain's own process directory (vCPU threads' CPU time for metrics): only in its own
    // PID namespace, and only the process directories (subset=pid).
    if (::getpid() == 1) {
        VIREO_TRY(make_path("/proc"));
        if (::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "subset=pid") != 0)
            log::warn("sandbox: no /proc for the domain ({}): per-vCPU CPU times read 0",
                      std::strerror(errno));
    }
    if (::umount2("/.old", MNT_DETACH) != 0)
        return fail_errno(errno, "sandbox: detach the host's root");
    if (::rmdir("/.old") != 0) return fail_errno(errno, "sandbox: rmdir /.old");
    if (::mount(nullptr, "/", nullptr, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                kRootOptions) != 0)
        return fail_errno(errno, "sandbox: make the root read-only");
    return {};
}

// The highest open descriptor, read before the root is gone.
int highest_fd() {
    int highest = 2;
    DIR* d = ::opendir("/proc/self/fd");
    if (d == nullptr) return 1024;
    while (const dirent* e = ::readdir(d)) {
        const int fd = std::atoi(e->d_name);
        if (fd > highest) highest = fd;
    }
    ::closedir(d);
    return highest;
}

Result<void> set_limit(int resource, rlim_t value, const char* what) {
    rlimit cur{};
    ::getrlimit(resource, &cur);
    // Only ever lowered, except locked memory, raised to what the guest needs (as root).
    if (resource != RLIMIT_MEMLOCK && cur.rlim_max != RLIM_INFINITY && value > cur.rlim_max)
        value = cur.rlim_max;
    const rlimit r{value, value};
    if (::setrlimit(resource, &r) != 0) return fail_errno(errno, "sandbox: setrlimit {}", what);
    return {};
}

Result<void> drop_identity(uid_t uid, gid_t gid) {
    // Bounding set first: dropping needs CAP_SETPCAP, which the uid change takes away.
    for (int cap = 0;; ++cap) {
        if (::prctl(PR_CAPBSET_DROP, cap) == 0) continue;
        if (errno == EINVAL) break;  // past the last capability this kernel knows
        return fail_errno(errno, "sandbox: drop capability {} from the bounding set", cap);
    }
    if (::setgroups(0, nullptr) != 0) return fail_errno(errno, "sandbox: setgroups");
    if (::setresgid(gid, gid, gid) != 0) return fail_errno(errno, "sandbox: setresgid {}", gid);
    if (::setresuid(uid, uid, uid) != 0) return fail_errno(errno, "sandbox: setresuid {}", uid);
    // The uid change cleared effective, permitted and ambient; inheritable goes too.
    __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2] = {};
    if (::syscall(SYS_capset, &hdr, data) != 0) return fail_errno(errno, "sandbox: capset");
    (void)::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    if (::getuid() != uid || ::geteuid() != uid || ::getgid() != gid)
        return fail(ErrorCode::System, "sandbox: the uid/gid change did not hold");
    return {};
}

// What glibc reads from files once, lazily, is read here, not in the jail. malloc reads
// /sys/devices/system/cpu/online the first time a thread would need a new arena beyond its test
// count (to cap arenas at 8 per CPU): fixed to what it would compute. The first time conversion
// (even gmtime_r, the RTC's) reads /etc/localtime.
void read_glibc_files_now() {
    (void)::mallopt(M_ARENA_MAX, 8 * ::get_nprocs());
    ::tzset();
}

// The last steps, root or not: no_new_privs, not dumpable, the violation handler; the vCPU
// threads, each under its own list alone (born before the main thread's filter, they do not
// inherit it); the main thread's filter. Threads started after that confine themselves on top
// of it.
Result<void> confine_process(uint32_t vcpu_threads) {
    auto t = std::chrono::steady_clock::now();
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return fail_errno(errno, "sandbox: no_new_privs");
    if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) return fail_errno(errno, "sandbox: dumpable");
    VIREO_TRY(install_handler());
    set_confine_hook(confine_hook);
    g_active.store(true, std::memory_order_release);
    VIREO_TRY(start_workers(ThreadClass::Vcpu, vcpu_threads, "vireo-vcpu"));
    g_steps.vcpus_us = lap(t);
    VIREO_TRY(load(ThreadClass::Main));
    record(ThreadClass::Main);
    g_steps.filter_us = lap(t);
    return {};
}

}  // namespace

Result<void> prepare() {
    auto t = std::chrono::steady_clock::now();
    if (::unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS) != 0)
        return fail_errno(errno, "sandbox: new mount, IPC and UTS namespaces");
    // Nothing mounted or unmounted here reaches the host, and the host's changes stay out.
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
        return fail_errno(errno, "sandbox: make the mounts private");
    (void)::sethostname("vireo", 5);
    g_namespaces = {"mnt", "ipc", "uts"};
    g_steps.prepare_us = lap(t);
    return {};
}

Result<void> enter(const Plan& plan) {
    read_glibc_files_now();  // while the host's files are still there
    if (plan.unprivileged) {
        g_host_network = true;
        VIREO_TRY(set_limit(RLIMIT_CORE, 0, "core size"));
        return confine_process(plan.vcpu_threads);
    }
    if (plan.uid == 0 || plan.gid == 0)
        return fail(ErrorCode::InvalidArgument,
                    "sandbox: the domain must not run as uid or gid 0 (--uid/--gid)");
    if (g_namespaces.empty()) VIREO_TRY(prepare());
    auto t = std::chrono::steady_clock::now();
    g_host_network = plan.host_network;
    for (const auto& s : plan.owned_sockets)
        if (::fchownat(AT_FDCWD, s.c_str(), plan.uid, plan.gid, AT_SYMLINK_NOFOLLOW) != 0)
            return fail_errno(errno, "sandbox: give {} to uid {}", s, plan.uid);
    if (!plan.host_network) {
        if (::unshare(CLONE_NEWNET) != 0)
            return fail_errno(errno, "sandbox: new network namespace");
        g_namespaces.push_back("net");
    }
    g_steps.network_us = lap(t);
    if (::getpid() == 1) g_namespaces.push_back("pid");
    const rlim_t files = static_cast<rlim_t>(highest_fd()) + 1 + kFdHeadroom;
    VIREO_TRY(pivot(plan.binds));
    leave_socket_files();  // its keeper or supervisor removes them
    g_steps.root_us = lap(t);
    VIREO_TRY(set_limit(RLIMIT_NOFILE, files, "open files"));
    VIREO_TRY(set_limit(RLIMIT_CORE, 0, "core size"));
    VIREO_TRY(set_limit(RLIMIT_MEMLOCK, plan.locked_bytes, "locked memory"));
    if (plan.max_threads != 0) VIREO_TRY(set_limit(RLIMIT_NPROC, plan.max_threads, "processes"));
    // The id change clears the parent-death signal (a `vireo run` domain has its keeper's).
    int death_signal = 0;
    (void)::prctl(PR_GET_PDEATHSIG, &death_signal);
    VIREO_TRY(drop_identity(plan.uid, plan.gid));
    if (death_signal != 0) (void)::prctl(PR_SET_PDEATHSIG, death_signal);
    g_steps.identity_us = lap(t);
    return confine_process(plan.vcpu_threads);
}

StepTimes step_times() noexcept {
    return g_steps;
}

bool active() noexcept {
    return g_active.load(std::memory_order_acquire);
}

void mark_keeper() noexcept {
    g_keeper.store(true, std::memory_order_relaxed);
}
bool is_keeper() noexcept {
    return g_keeper.load(std::memory_order_relaxed);
}

Report report() {
    Report r;
    r.active = active();
    r.uid = ::getuid();
    r.gid = ::getgid();
    if (r.active) r.namespaces = g_namespaces;
    std::lock_guard lock(g_threads_mu);
    r.threads = g_threads;
    return r;
}

Result<void> install(ThreadClass c) {
    g_host_network = c == ThreadClass::Slirp;
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return fail_errno(errno, "no_new_privs");
    read_glibc_files_now();
    VIREO_TRY(install_handler());
    // As in a domain: vCPU threads carry their own list alone; the others are born under the
    // main thread's and add their own.
    if (c != ThreadClass::Vcpu) VIREO_TRY(load(ThreadClass::Main));
    if (c != ThreadClass::Main) VIREO_TRY(load(c));
    t_class = static_cast<int>(c);
    ::prctl(PR_GET_NAME, t_name);
    return {};
}

}  // namespace vireo::sandbox

#ifdef VIREO_SANITIZER_BUILD
// LeakSanitizer's check at exit stops the world with ptrace and reads /proc: neither exists in
// the sandbox. A sandboxed process skips it (docs/security.md); tests of the code itself and
// unsandboxed runs keep it.
extern "C" int __lsan_is_turned_off() {
    return vireo::sandbox::active() ? 1 : 0;
}
#endif
