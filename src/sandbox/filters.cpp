#include "sandbox/filters.hpp"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/seccomp.h>
#include <linux/sockios.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <initializer_list>

#include "base/unique_fd.hpp"
#include "hv/ioctls.hpp"
#include "sandbox/sandbox.hpp"

namespace vireo::sandbox {

namespace {

// A comparison of system call argument `index` (libseccomp's SCMP_An macros leave the second
// datum out, which clang's -Wmissing-field-initializers does not accept).
constexpr scmp_arg_cmp arg(unsigned index, scmp_compare op, scmp_datum_t a, scmp_datum_t b = 0) {
    return scmp_arg_cmp{index, op, a, b};
}

// One filter under construction; the first failing rule is kept and reported by finish().
class Filter {
  public:
    Filter() : ctx_(seccomp_init(SCMP_ACT_TRAP)) {
        if (ctx_ == nullptr) {
            err_ = ENOMEM;
            return;
        }
        // A call through another ABI (int 0x80, x32) is a violation too.
        (void)seccomp_attr_set(ctx_, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_TRAP);
        // A binary tree of system call numbers instead of a chain: every call (a vCPU exit's
        // ioctl included) walks O(log n) instructions, and the kernel's per-call action cache,
        // which runs the program once per system call number when it is loaded, is built
        // faster.
        if (int e = seccomp_attr_set(ctx_, SCMP_FLTATR_CTL_OPTIMIZE, 2); e < 0) err_ = -e;
    }
    ~Filter() {
        if (ctx_ != nullptr) seccomp_release(ctx_);
    }
    Filter(const Filter&) = delete;
    Filter& operator=(const Filter&) = delete;

    void allow(std::initializer_list<int> calls) {
        for (int nr : calls)
            add(SCMP_ACT_ALLOW, nr, 0, nullptr);
    }
    void allow_if(int nr, scmp_arg_cmp cmp) { add(SCMP_ACT_ALLOW, nr, 1, &cmp); }
    void allow_all(int nr, std::initializer_list<scmp_arg_cmp> cmps) {
        add(SCMP_ACT_ALLOW, nr, static_cast<unsigned>(cmps.size()), cmps.begin());
    }
    void refuse_if(int nr, scmp_arg_cmp cmp, int err) {
        add(SCMP_ACT_ERRNO(static_cast<uint32_t>(err)), nr, 1, &cmp);
    }
    void refuse(int nr, int err) {
        add(SCMP_ACT_ERRNO(static_cast<uint32_t>(err)), nr, 0, nullptr);
    }
    void allow_ioctls(std::span<const unsigned long> requests) {
        for (unsigned long r : requests)
            allow_if(SCMP_SYS(ioctl), arg(1, SCMP_CMP_EQ, r));
    }
    void allow_socket_family(int family) {
        allow_if(SCMP_SYS(socket), arg(0, SCMP_CMP_EQ, static_cast<scmp_datum_t>(family)));
    }

    Result<std::vector<sock_filter>> finish(ThreadClass c) {
        if (err_ != 0) return fail_errno(err_, "seccomp filter for {} threads", to_string(c));
        // libseccomp 2.5 exports only to a file descriptor.
        UniqueFd mem(::memfd_create("vireo-seccomp", MFD_CLOEXEC));
        if (!mem) return fail_errno(errno, "memfd_create");
        if (int e = seccomp_export_bpf(ctx_, mem.get()); e < 0)
            return fail_errno(-e, "seccomp filter for {} threads: export", to_string(c));
        const off_t size = ::lseek(mem.get(), 0, SEEK_END);
        if (size <= 0 || size % static_cast<off_t>(sizeof(sock_filter)) != 0)
            return fail(ErrorCode::System, "seccomp filter for {} threads: bad program size {}",
                        to_string(c), size);
        std::vector<sock_filter> prog(static_cast<size_t>(size) / sizeof(sock_filter));
        if (::pread(mem.get(), prog.data(), static_cast<size_t>(size), 0) != size)
            return fail_errno(errno, "seccomp filter for {} threads: read back", to_string(c));
        return prog;
    }

  private:
    void add(uint32_t action, int nr, unsigned n, const scmp_arg_cmp* cmp) {
        if (ctx_ == nullptr || err_ != 0) return;
        const int e = n == 0 ? seccomp_rule_add(ctx_, action, nr, 0)
                             : seccomp_rule_add_array(ctx_, action, nr, n, cmp);
        // -EEXIST: the same rule twice (a call in two groups of one class) is fine.
        if (e < 0 && e != -EEXIST) err_ = -e;
    }

    scmp_filter_ctx ctx_;
    int err_ = 0;
};

// O_TMPFILE's own bit: glibc's O_TMPFILE includes O_DIRECTORY, which reading a directory sets.
constexpr unsigned kTmpfileBit = 020000000;
constexpr scmp_arg_cmp kReadOnlyOpen =
    arg(2, SCMP_CMP_MASKED_EQ, O_ACCMODE | O_CREAT | O_TRUNC | O_APPEND | kTmpfileBit | O_PATH,
        O_RDONLY);

// What every thread needs: its memory (never executable), futexes, time, its own signals
// (tgkill: the pid namespace holds only this process), naming itself, ending.
void base(Filter& f) {
    f.allow({SCMP_SYS(read),
             SCMP_SYS(write),
             SCMP_SYS(readv),
             SCMP_SYS(writev),
             SCMP_SYS(close),
             SCMP_SYS(futex),
             SCMP_SYS(set_robust_list),
             SCMP_SYS(rseq),
             SCMP_SYS(munmap),
             SCMP_SYS(mremap),
             SCMP_SYS(madvise),
             SCMP_SYS(brk),
             SCMP_SYS(rt_sigprocmask),
             SCMP_SYS(rt_sigreturn),
             SCMP_SYS(clock_gettime),
             SCMP_SYS(clock_nanosleep),
             SCMP_SYS(nanosleep),
             SCMP_SYS(gettimeofday),
             SCMP_SYS(clock_getres),
             SCMP_SYS(getpid),
             SCMP_SYS(gettid),
             SCMP_SYS(getuid),
             SCMP_SYS(geteuid),
             SCMP_SYS(getgid),
             SCMP_SYS(getegid),
             SCMP_SYS(tgkill),
             SCMP_SYS(exit),
             SCMP_SYS(exit_group),
             SCMP_SYS(restart_syscall),
             SCMP_SYS(sched_yield),
             SCMP_SYS(fstat),
             SCMP_SYS(newfstatat),
             SCMP_SYS(lseek),
             SCMP_SYS(fcntl),
             SCMP_SYS(getrandom),
             SCMP_SYS(poll),
             SCMP_SYS(ppoll),
             SCMP_SYS(epoll_wait),
             SCMP_SYS(epoll_pwait),
             SCMP_SYS(epoll_ctl)});
    f.allow_if(SCMP_SYS(mmap), arg(2, SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
    f.allow_if(SCMP_SYS(mprotect), arg(2, SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
    // A thread adds its own class's filter on top of the one it was born with (only ever
    // narrower: filters stack), without flags (no TSYNC onto other threads).
    {
        const scmp_arg_cmp mode = arg(0, SCMP_CMP_EQ, SECCOMP_SET_MODE_FILTER);
        const scmp_arg_cmp flags = arg(1, SCMP_CMP_EQ, 0);
        f.allow_all(SCMP_SYS(seccomp), {mode, flags});
    }
    f.allow_if(SCMP_SYS(prctl), arg(0, SCMP_CMP_EQ, PR_SET_NAME));
    f.allow_if(SCMP_SYS(prctl), arg(0, SCMP_CMP_EQ, PR_GET_NAME));
    if (kSanitizerBuild) {
        // AddressSanitizer's runtime: its own signal stacks and handlers, limits, /proc reads
        // for a report (which find nothing in the empty root), a pipe to probe whether memory
        // is readable (IsAccessibleMemoryRange).
        f.allow({SCMP_SYS(sigaltstack), SCMP_SYS(rt_sigaction), SCMP_SYS(prlimit64),
                 SCMP_SYS(getrlimit), SCMP_SYS(sched_getaffinity), SCMP_SYS(readlink),
                 SCMP_SYS(getppid), SCMP_SYS(uname), SCMP_SYS(pipe2), SCMP_SYS(pipe)});
        static constexpr unsigned long kIsatty[] = {TCGETS};  // a report's colours
        f.allow_ioctls(kIsatty);
        f.allow_if(SCMP_SYS(openat), kReadOnlyOpen);  // its /proc reads (never a write)
        f.allow({SCMP_SYS(getdents64)});
    }
}

// Starting threads: clone only for a thread of this process (no fork: no new process), clone3
// answered ENOSYS so that glibc falls back to clone, whose flags a filter can see.
void threads(Filter& f) {
    f.allow_if(SCMP_SYS(clone), arg(0, SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
    f.refuse(SCMP_SYS(clone3), ENOSYS);
}

// Serving connections on sockets made before the jail.
void serving(Filter& f) {
    f.allow({SCMP_SYS(accept4), SCMP_SYS(sendto), SCMP_SYS(recvfrom), SCMP_SYS(sendmsg),
             SCMP_SYS(recvmsg), SCMP_SYS(shutdown), SCMP_SYS(getsockopt), SCMP_SYS(setsockopt)});
}

// libslirp: the host's TCP and UDP sockets for the guest's connections.
void host_sockets(Filter& f) {
    serving(f);
    f.allow({SCMP_SYS(connect), SCMP_SYS(bind), SCMP_SYS(listen), SCMP_SYS(accept),
             SCMP_SYS(getsockname), SCMP_SYS(getpeername)});
    f.allow_socket_family(AF_INET);
    f.allow_socket_family(AF_INET6);
    static constexpr unsigned long kSlirpIoctls[] = {FIONREAD, FIONBIO};
    f.allow_ioctls(kSlirpIoctls);
}

// The devices' work, on whichever thread a notification lands: disks (positioned I/O,
// io_uring_enter on rings restricted to those operations), taps, eventfds, vsock connections
// to the host (Unix sockets only), interrupts into the guest.
void devices(Filter& f, bool host_network) {
    serving(f);
    // User networking's slirp takes the guest's frames on the thread that handles them and
    // makes its host sockets there.
    if (host_network) host_sockets(f);
    f.allow({SCMP_SYS(pread64), SCMP_SYS(pwrite64), SCMP_SYS(preadv), SCMP_SYS(pwritev),
             SCMP_SYS(preadv2), SCMP_SYS(pwritev2), SCMP_SYS(fsync), SCMP_SYS(fdatasync),
             SCMP_SYS(fallocate), SCMP_SYS(io_uring_enter), SCMP_SYS(connect),
             // the console log's rotation in place (vmm/console_log.hpp), on the UART's writer
             SCMP_SYS(ftruncate), SCMP_SYS(copy_file_range),
             // a rate limit's resume timer (virtio/blk, virtio/net; io.limit re-arms it)
             SCMP_SYS(timerfd_settime)});
    f.allow_socket_family(AF_UNIX);
    f.allow_ioctls(hv::interrupt_requests());
    static constexpr unsigned long kDeviceIoctls[] = {TUNSETOFFLOAD, FIONREAD};
    f.allow_ioctls(kDeviceIoctls);
}

// Reading files, never writing or creating one: the jail's root holds only /proc (the domain's
// own process directory: its threads' CPU times) and the read-only binds.

void read_only_files(Filter& f) {
    f.allow_if(SCMP_SYS(openat), kReadOnlyOpen);
    f.allow({SCMP_SYS(getdents64)});
}

// Classes that read no file: an open for reading fails with ENOENT, as it would in the jail's
// empty root anyway, instead of ending the domain, so that a lazy read inside glibc (malloc's
// /proc/sys/vm/overcommit_memory when it trims a thread's heap) cannot kill a guest. An open
// for writing or creating is still a violation.
void no_files(Filter& f) {
    f.refuse_if(SCMP_SYS(openat), kReadOnlyOpen, ENOENT);
}

void terminal(Filter& f) {
    static constexpr unsigned long kTty[] = {TCGETS, TCSETS, TCSETSW, TCSETSF, TIOCGPGRP};
    f.allow_ioctls(kTty);
}

}  // namespace

Result<std::vector<sock_filter>> build_filter(ThreadClass c, bool host_network) {
    Filter f;
    base(f);
    switch (c) {
        case ThreadClass::Main:
            // The union of every class started under it (all but the vCPU threads, started
            // before its filter), and resetting the machine in place at a guest reboot: vCPU
            // state (not KVM_RUN: no guest instruction runs on this thread), the interrupt
            // controllers and PIT, guest memory cleared. The machine was built before the
            // jail; no thread may build one (KVM_CREATE_VM, KVM_CREATE_VCPU, io_uring_setup,
            // memfd_create are nowhere in these lists; KVM_SET_USER_MEMORY_REGION only to turn
            // a migration's dirty log on and off).
            threads(f);
            devices(f, host_network);
            terminal(f);
            read_only_files(f);
            f.allow_ioctls(hv::vcpu_state_requests());
            f.allow_ioctls(hv::pause_requests());
            f.allow_ioctls(hv::reset_requests());
            f.allow_ioctls(hv::msi_routing_requests());  // a reboot's MSI-X reset
            f.allow_ioctls(hv::migration_requests());    // the API worker's (filters stack)
            // flock: an incoming migration takes its disks' locks at the hand-over.
            f.allow({SCMP_SYS(eventfd2), SCMP_SYS(sched_setaffinity), SCMP_SYS(sched_getaffinity),
                     SCMP_SYS(getrusage), SCMP_SYS(rt_sigtimedwait), SCMP_SYS(dup), SCMP_SYS(dup3),
                     SCMP_SYS(flock)});
            // Signal handlers (the console's); never SIGSYS's (the violation handler stays).
            f.allow_if(SCMP_SYS(rt_sigaction), arg(0, SCMP_CMP_NE, SIGSYS));
            break;
        case ThreadClass::Vcpu:
            devices(f, host_network);
            f.allow_ioctls(hv::vcpu_requests());
            // The guest's MSI-X writes land here: a vector's route and irqfd (shared memory).
            f.allow_ioctls(hv::msi_routing_requests());
            break;
        case ThreadClass::IoLoop:
            devices(f, host_network);
            break;
        case ThreadClass::Api:
            // Its workers (create, pin, pause, save) are threads it starts; pause reads and sets
            // the VM's clock; pinning moves vCPU threads; shutdown and balloon raise
            // interrupts; save reads the paused machine's state (and writes the file it was
            // handed, as a device writes its disk).
            threads(f);
            devices(f, host_network);
            read_only_files(f);
            f.allow_ioctls(hv::pause_requests());
            f.allow_ioctls(hv::snapshot_requests());
            // migrate: the dirty log (hv/ioctls.cpp says why a slot's flags may change).
            f.allow_ioctls(hv::migration_requests());
            // migrate: the disks' locks handed over (flock on images opened before the jail).
            f.allow({SCMP_SYS(sched_setaffinity), SCMP_SYS(sched_getaffinity), SCMP_SYS(getrusage),
                     SCMP_SYS(dup), SCMP_SYS(flock)});
            break;
        case ThreadClass::Console:
            // What a client types goes into the UART, which raises its interrupt.
            serving(f);
            f.allow_ioctls(hv::interrupt_requests());
            break;
        case ThreadClass::ConsoleInput:
            terminal(f);
            f.allow_ioctls(hv::interrupt_requests());
            break;
        case ThreadClass::Metrics:
            serving(f);
            read_only_files(f);
            f.allow({SCMP_SYS(pread64), SCMP_SYS(getrusage)});
            break;
        case ThreadClass::Slirp:
            host_sockets(f);
            break;
        case ThreadClass::Control:
            break;
        case ThreadClass::Signals:
            f.allow({SCMP_SYS(rt_sigtimedwait)});
            break;
    }
    // (Sanitizer builds allow reading already.)
    if (!kSanitizerBuild && c != ThreadClass::Main && c != ThreadClass::Api &&
        c != ThreadClass::Metrics)
        no_files(f);
    return f.finish(c);
}

}  // namespace vireo::sandbox
