// The jail every domain process enters once its machine is built and everything it uses is
// open, before the guest's first instruction (docs/security.md). Two steps:
//
//   prepare()  at the very start, while the process has one thread: new mount, IPC and UTS
//              namespaces (every thread made later is born in them);
//   enter()    once the first machine is built, still with one thread: an empty read-only root
//              (pivot_root) holding only the directories the domain reaches at run time, a new
//              network namespace unless a device needs the host's, tight rlimits, an
//              unprivileged uid/gid, no capabilities, no_new_privs, not dumpable; then the
//              vCPU threads (parked workers, base/thread_class.hpp), each under its own list
//              alone; then the main thread's seccomp filter.
//
// Every thread the domain starts afterwards calls confine_thread() (base/thread_class.hpp) with
// its class first thing: it adds that class's own, narrower allow-list on top of the main
// thread's (filters stack; every one must allow a call). The vCPU threads, born before the
// main thread's filter, carry one filter: a vCPU exit's KVM_RUN runs one program, not two.
// A call outside the lists raises SIGSYS; the handler writes one line naming the call and the
// thread and ends the process with kExitSandboxViolation.
//
// Nothing here is on a hot path: confine_thread() loads a program compiled at build time
// (programs.hpp).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.hpp"
#include "base/thread_class.hpp"

#if defined(__SANITIZE_ADDRESS__)
#define VIREO_SANITIZER_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define VIREO_SANITIZER_BUILD 1
#endif
#endif

namespace vireo::sandbox {

/// An AddressSanitizer build: its runtime makes calls of its own, which the allow-lists add
/// (docs/security.md).
#ifdef VIREO_SANITIZER_BUILD
constexpr bool kSanitizerBuild = true;
#else
constexpr bool kSanitizerBuild = false;
#endif

/// Why a sandboxed process ended: a system call outside its thread's allow-list.
constexpr int kExitSandboxViolation = 8;

/// What a domain's jail holds.
struct Plan {
    /// vireo is not root: no namespaces, root or id change; only rlimits, no_new_privs and
    /// the seccomp lists (the other fields are ignored).
    bool unprivileged = false;
    uid_t uid = 0;  ///< not 0
    gid_t gid = 0;
    /// Keep the host's network namespace: user-mode networking opens host sockets at run time.
    bool host_network = false;
    /// Directories the domain still reaches by name at run time, bound read-only into the
    /// empty root at the same path (the directory of a vsock socket: guest connections to host
    /// port P connect to PATH_P).
    std::vector<std::string> binds;
    /// Sockets the domain serves: owned by the domain's uid so that only root and the domain's
    /// own id may connect (they stay 0600).
    std::vector<std::string> owned_sockets;
    /// Memory the domain may lock (--memory-backing locked: the guest, again at each reboot).
    uint64_t locked_bytes = 0;
    /// Threads the domain may run (RLIMIT_NPROC, per uid); 0: not limited by vireo.
    uint64_t max_threads = 0;
    /// vCPU threads to start before the main thread's filter (one per vCPU): they run every
    /// boot's vCPU loops (start_thread(ThreadClass::Vcpu, ...)).
    uint32_t vcpu_threads = 0;
};

/// The default id of `vireo run`'s domain when run as root (also its gid).
constexpr uid_t kDefaultRunUid = 69999;

/// Step one, while the process has a single thread: new mount (private), IPC and UTS
/// namespaces. Needs root (CAP_SYS_ADMIN).
Result<void> prepare();

/// Step two, still with a single thread, after every file and socket is open and the first
/// machine is built. On failure the process may be half-confined: it must exit.
Result<void> enter(const Plan& plan);

/// Whether enter() succeeded in this process.
bool active() noexcept;

/// `vireo run`'s keeper (the parent left outside the jail) says so: sanitizer builds skip their
/// leak check in it as in the jailed domain.
void mark_keeper() noexcept;
bool is_keeper() noexcept;

/// How long each step of prepare() and enter() took in this process (µs; 0: not run). For
/// `vireo-bench jail` and the debug log.
struct StepTimes {
    uint32_t prepare_us = 0;   ///< mount, IPC, UTS namespaces
    uint32_t network_us = 0;   ///< sockets' owners, the network namespace
    uint32_t root_us = 0;      ///< the empty root (tmpfs, pivot_root, binds, /proc, detach)
    uint32_t identity_us = 0;  ///< rlimits, capabilities, uid/gid
    uint32_t vcpus_us = 0;     ///< no_new_privs, the handler, the vCPU threads (own filters)
    uint32_t filter_us = 0;    ///< the main thread's filter
};
StepTimes step_times() noexcept;

/// What `vireo info` shows of the jail.
struct ThreadReport {
    int tid = 0;
    std::string name;
    std::string thread_class;  ///< "" if the thread never confined itself
};
struct Report {
    bool active = false;
    uid_t uid = 0;
    gid_t gid = 0;
    std::vector<std::string> namespaces;  ///< "mnt", "ipc", "uts", "net", "pid"
    std::vector<ThreadReport> threads;
};
Report report();

/// Installs on the calling thread what a domain's thread of class `c` runs under: the main
/// thread's filter, then the class's own (a vCPU thread: its own alone), and the violation
/// handler. For tests and audits: the
/// same code the domains use (with the host's network for Slirp, as user networking has it).
/// Sets no_new_privs; irreversible.
Result<void> install(ThreadClass c);

}  // namespace vireo::sandbox
