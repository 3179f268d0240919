// The seccomp allow-lists themselves: a child process installs a thread class's real filters
// (sandbox::install: the same code and lists the domains use, the main thread's list with the
// class's own on top; a vCPU thread's own alone) and tries what must be refused and what must work.
// A refused call ends the child with kExitSandboxViolation and one line naming the call.
#include "sandbox/sandbox.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/kvm.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <string>

#include "sandbox/filters.hpp"
#include "sandbox/programs.hpp"

namespace vireo::sandbox {
namespace {

struct Outcome {
    int status = -1;  // exit status, or 128 + signal
    std::string err;  // what the child wrote to stderr
};

Outcome in_child(ThreadClass c, const std::function<void()>& attempt) {
    int p[2];
    if (::pipe(p) != 0) return {};
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::dup2(p[1], STDERR_FILENO);
        ::close(p[0]);
        // As in a domain, where the main thread has started threads (glibc sets its thread
        // signals up at the first) before a thread of another class runs.
        pthread_t t;
        ::pthread_create(
            &t, nullptr, [](void*) -> void* { return nullptr; }, nullptr);
        ::pthread_join(t, nullptr);
        if (!install(c)) ::_exit(99);
        attempt();
        ::_exit(0);
    }
    ::close(p[1]);
    Outcome o;
    char buf[512];
    ssize_t n;
    while ((n = ::read(p[0], buf, sizeof buf)) > 0)
        o.err.append(buf, static_cast<size_t>(n));
    ::close(p[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    o.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return o;
}

constexpr ThreadClass kAll[] = {
    ThreadClass::Main,    ThreadClass::Vcpu,         ThreadClass::IoLoop,  ThreadClass::Api,
    ThreadClass::Console, ThreadClass::ConsoleInput, ThreadClass::Metrics, ThreadClass::Slirp,
    ThreadClass::Control, ThreadClass::Signals,
};

class Filters : public ::testing::TestWithParam<ThreadClass> {};

void expect_violation(ThreadClass c, const char* call, const std::function<void()>& attempt) {
    const auto o = in_child(c, attempt);
    EXPECT_EQ(o.status, kExitSandboxViolation) << to_string(c) << " " << call << ": " << o.err;
    EXPECT_NE(o.err.find(std::string("called ") + call), std::string::npos)
        << to_string(c) << ": " << o.err;
    EXPECT_NE(o.err.find(std::string("(") + std::string(to_string(c)) + ")"), std::string::npos)
        << o.err;
}

void expect_allowed(ThreadClass c, const char* what, const std::function<void()>& attempt) {
    const auto o = in_child(c, attempt);
    EXPECT_EQ(o.status, 0) << to_string(c) << " " << what << ": " << o.err;
}

TEST_P(Filters, RefuseWhatNoThreadMayDo) {
    const ThreadClass c = GetParam();
    expect_violation(c, "execve", [] {
        char* const argv[] = {const_cast<char*>("/bin/true"), nullptr};
        ::execve("/bin/true", argv, nullptr);
    });
    expect_violation(c, "ptrace", [] { ::ptrace(PTRACE_TRACEME, 0, nullptr, nullptr); });
    expect_violation(c, "mprotect", [] {
        void* m = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        ::mprotect(m, 4096, PROT_READ | PROT_EXEC);
    });
    expect_violation(c, "mmap", [] {
        ::mmap(nullptr, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    });
    // A new process (fork: clone without CLONE_THREAD).
    expect_violation(c, "clone",
                     [] { ::syscall(SYS_clone, SIGCHLD, nullptr, nullptr, nullptr, 0); });
    // Creating or opening a host file for writing.
    expect_violation(c, "openat", [] {
        ::open("/tmp/vireo-sandbox-test", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    });
    expect_violation(c, "unshare", [] { ::unshare(CLONE_NEWUSER); });
    expect_violation(c, "setuid", [] { ::syscall(SYS_setuid, 0); });
}

TEST_P(Filters, KvmCallsOnlyWhereListed) {
    const ThreadClass c = GetParam();
    // The descriptor does not matter: the filter looks at the request before the kernel looks
    // at the descriptor (-1: EBADF where the call is allowed).
    const auto create_vm = [] { ::ioctl(-1, KVM_CREATE_VM, 0); };
    const auto add_memory = [] { ::ioctl(-1, KVM_SET_USER_MEMORY_REGION, nullptr); };
    const auto create_vcpu = [] { ::ioctl(-1, KVM_CREATE_VCPU, 0); };
    const auto run = [] { ::ioctl(-1, KVM_RUN, 0); };
    const auto irq = [] { ::ioctl(-1, KVM_IRQ_LINE, nullptr); };
    // No thread builds machines once the domain is jailed, the main thread included: a guest
    // reboot resets the machine in place (docs/security.md).
    expect_violation(c, "ioctl", create_vm);
    // A slot's flags change for a migration's dirty log, on the API worker (under the main
    // thread's filter too: they stack); nowhere else.
    if (c == ThreadClass::Main || c == ThreadClass::Api) {
        expect_allowed(c, "KVM_SET_USER_MEMORY_REGION", add_memory);
        expect_allowed(c, "KVM_GET_DIRTY_LOG", [] { ::ioctl(-1, KVM_GET_DIRTY_LOG, nullptr); });
    } else {
        expect_violation(c, "ioctl", add_memory);
    }
    expect_violation(c, "ioctl", create_vcpu);
    expect_violation(c, "io_uring_setup", [] { ::syscall(SYS_io_uring_setup, 8, nullptr); });
    expect_violation(c, "memfd_create", [] { ::syscall(SYS_memfd_create, "x", 0); });
    if (c == ThreadClass::Main) {
        // The reset of a reboot; no guest instruction (the vCPU threads carry their own list
        // alone: they are started before this one's).
        expect_violation(c, "ioctl", run);
        expect_allowed(c, "KVM_SET_REGS", [] { ::ioctl(-1, KVM_SET_REGS, nullptr); });
        expect_allowed(c, "KVM_SET_IRQCHIP", [] { ::ioctl(-1, KVM_SET_IRQCHIP, nullptr); });
        expect_allowed(c, "KVM_SET_PIT2", [] { ::ioctl(-1, KVM_SET_PIT2, nullptr); });
        return;
    }
    expect_violation(c, "ioctl", [] { ::ioctl(-1, KVM_SET_IRQCHIP, nullptr); });
    if (c == ThreadClass::Vcpu)
        expect_allowed(c, "KVM_RUN", run);
    else
        expect_violation(c, "ioctl", run);
    if (c == ThreadClass::Vcpu || c == ThreadClass::IoLoop || c == ThreadClass::Api ||
        c == ThreadClass::Console || c == ThreadClass::ConsoleInput)
        expect_allowed(c, "KVM_IRQ_LINE", irq);
    else
        expect_violation(c, "ioctl", irq);
}

TEST_P(Filters, SocketFamilies) {
    const ThreadClass c = GetParam();
    const auto inet = [] { ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0); };
    const auto unix_socket = [] { ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0); };
    const auto netlink = [] { ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, 0); };
    if (c == ThreadClass::Slirp)
        expect_allowed(c, "AF_INET", inet);
    else
        expect_violation(c, "socket", inet);
    // vsock connections to the host go through Unix sockets, from the devices' threads.
    if (c == ThreadClass::Main || c == ThreadClass::Vcpu || c == ThreadClass::IoLoop ||
        c == ThreadClass::Api)
        expect_allowed(c, "AF_UNIX", unix_socket);
    else
        expect_violation(c, "socket", unix_socket);
    expect_violation(c, "socket", netlink);
}

TEST_P(Filters, WhatEveryThreadDoesStillWorks) {
    const ThreadClass c = GetParam();
    expect_allowed(c, "memory, time, pipes", [] {
        void* m =
            ::mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) ::_exit(2);
        static_cast<char*>(m)[0] = 1;
        ::madvise(m, 1 << 20, MADV_DONTNEED);
        ::munmap(m, 1 << 20);
        timespec ts{};
        ::clock_gettime(CLOCK_MONOTONIC, &ts);
        const timespec tiny{0, 1000};
        ::nanosleep(&tiny, nullptr);
        const char msg[] = "";
        if (::write(STDERR_FILENO, msg, 0) != 0) ::_exit(3);
        ::sched_yield();
    });
}

INSTANTIATE_TEST_SUITE_P(EveryClass, Filters, ::testing::ValuesIn(kAll), [](const auto& p) {
    std::string n(to_string(p.param));
    std::erase(n, '-');
    return n;
});

// The programs the domains load were generated by the build from the lists: the same
// instructions libseccomp makes of them now, for each class and both network cases.
TEST_P(Filters, GeneratedProgramIsTheList) {
    for (bool host_network : {false, true}) {
        const auto built = build_filter(GetParam(), host_network);
        ASSERT_TRUE(built) << built.error().message();
        const auto generated = program(GetParam(), host_network);
        ASSERT_EQ(generated.size(), built->size()) << "host_network " << host_network;
        EXPECT_EQ(std::memcmp(generated.data(), built->data(), generated.size_bytes()), 0);
        // Ends with an action, within the kernel's limit.
        EXPECT_LE(generated.size(), BPF_MAXINSNS);
        EXPECT_EQ(generated.back().code, BPF_RET | BPF_K);
    }
}

TEST(Filters, SystemCallNames) {
    EXPECT_STREQ(syscall_name(SYS_ptrace), "ptrace");
    EXPECT_STREQ(syscall_name(SYS_ioctl), "ioctl");
    EXPECT_EQ(syscall_name(-1), nullptr);
    EXPECT_EQ(syscall_name(100000), nullptr);
}

// Reading (the domain's own /proc in its jail) but never writing: the API (vCPU threads' CPU
// times, every thread for a pool's CPUs) and the metrics.
TEST(Filters, ReadOnlyFilesWhereListed) {
    const auto list_tasks = [] {
        DIR* d = ::opendir("/proc/self/task");
        if (d == nullptr) ::_exit(5);
        while (::readdir(d) != nullptr) {
        }
        ::closedir(d);
        const int fd = ::open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
        if (fd < 0) ::_exit(6);
        ::close(fd);
    };
    expect_allowed(ThreadClass::Api, "reading /proc/self", list_tasks);
    expect_allowed(ThreadClass::Metrics, "reading /proc/self", list_tasks);
    // Elsewhere an open for reading fails (ENOENT, as in the jail's empty root) rather than
    // ending the domain: glibc reads files lazily (malloc trimming a thread's heap).
    // (A sanitizer build lets every class read: its runtime reads /proc for reports.)
    const auto o = in_child(ThreadClass::Vcpu, list_tasks);
    EXPECT_EQ(o.status, kSanitizerBuild ? 0 : 5) << o.err;
    expect_violation(ThreadClass::Api, "openat",
                     [] { ::open("/proc/self/stat", O_RDWR | O_CLOEXEC); });
}

// Threads a thread of a class starts inherit its filters: the API's workers. A vCPU thread
// may not start threads at all.
TEST(Filters, ThreadsOnlyFromClassesThatStartThem) {
    const auto start_thread = [] {
        pthread_t t;
        if (::pthread_create(
                &t, nullptr, [](void*) -> void* { return nullptr; }, nullptr) != 0)
            ::_exit(4);
        ::pthread_join(t, nullptr);
    };
    expect_allowed(ThreadClass::Api, "a worker thread", start_thread);
    expect_allowed(ThreadClass::Main, "a vCPU thread", start_thread);
    // pthread_create blocks every signal around clone: the kernel then cannot run the
    // violation handler and ends the process with SIGSYS itself (the supervisor and `vireo
    // run`'s keeper report that as a sandbox violation too).
    const auto o = in_child(ThreadClass::Vcpu, start_thread);
    EXPECT_EQ(o.status, 128 + SIGSYS) << o.err;
}

}  // namespace
}  // namespace vireo::sandbox
