// The kinds of threads a domain process runs. Each calls confine_thread() with its class first
// thing; once the process is jailed (sandbox/sandbox.hpp) that adds the class's own seccomp
// allow-list to the thread, before that (and without a sandbox) it only records the class.
// Lower layers (the API server, the event loop, the vCPU loop) call it without depending on the
// sandbox, which registers itself here.
//
// A vCPU thread must carry one filter, its own: a thread inherits the filters of the thread
// that starts it, and every stacked filter costs each system call (KVM_RUN, once per exit) a
// fixed amount. So the sandbox starts the vCPU threads as workers before the main thread loads
// its filter (start_workers); each confines itself and parks, and start_thread() hands it a
// vCPU's loop at every boot. Without workers, start_thread() is a plain std::thread.
#pragma once

#include <pthread.h>

#include <functional>
#include <string_view>
#include <thread>

#include "base/result.hpp"

namespace vireo {

enum class ThreadClass {
    Main,          ///< builds machines (and rebuilds them at a guest reboot), waits on them
    Vcpu,          ///< KVM_RUN and the exits it handles (device registers, notifications)
    IoLoop,        ///< the devices' event loop: virtqueues, disks, taps, vsock
    Api,           ///< the domain's JSON API and its workers
    Console,       ///< the console socket (vireo console)
    ConsoleInput,  ///< the terminal (--console stdio)
    Metrics,       ///< the Prometheus endpoint
    Slirp,         ///< user-mode networking: the host's TCP/UDP sockets
    Control,       ///< watches the supervisor's launch socket
    Signals,       ///< SIGINT/SIGTERM
};
constexpr int kThreadClasses = 10;

std::string_view to_string(ThreadClass c) noexcept;

/// Called by every thread of a domain first thing (threads started by the thread's own code
/// inherit its filter and need not call it again, e.g. the API's workers).
void confine_thread(ThreadClass c) noexcept;

/// The sandbox's implementation of confine_thread(), registered once it is active. False: the
/// thread could not be confined (it runs under the filter it was born with, if any).
using ConfineHook = bool (*)(ThreadClass) noexcept;
void set_confine_hook(ConfineHook hook) noexcept;

struct Worker;

/// A function running on a thread of some class: a std::thread of its own, or a parked worker
/// lent for the function's run. join() waits until the function has returned (the worker parks
/// again for the next one); the destructor joins.
class ClassThread {
  public:
    ClassThread() = default;
    ClassThread(ClassThread&& o) noexcept;
    ClassThread& operator=(ClassThread&& o) noexcept;
    ClassThread(const ClassThread&) = delete;
    ClassThread& operator=(const ClassThread&) = delete;
    ~ClassThread();

    pthread_t native_handle();
    void join();
    bool joinable() const noexcept { return thread_.joinable() || worker_ != nullptr; }

  private:
    friend ClassThread start_thread(ThreadClass c, std::function<void()> fn);
    std::thread thread_;
    Worker* worker_ = nullptr;
};

/// Runs `fn` on a parked worker of class `c` if one is free, else on a new thread (which calls
/// nothing for itself: `fn` confines it).
ClassThread start_thread(ThreadClass c, std::function<void()> fn);

/// Starts `n` more workers of class `c`, named NAME_PREFIX + their number ("vireo-vcpu" + 0,
/// 1, ...). Each confines itself (confine_thread(c)) before it parks; this returns once every
/// one has, or an error if one could not (it ends instead of parking unconfined).
Result<void> start_workers(ThreadClass c, size_t n, const char* name_prefix);

/// Parked workers of class `c` (for tests and reports).
size_t idle_workers(ThreadClass c) noexcept;

}  // namespace vireo
