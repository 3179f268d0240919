// The kinds of threads a domain process runs. Each calls confine_thread() with its class first
// thing; once the process is jailed (sandbox/sandbox.hpp) that adds the class's own seccomp
// allow-list to the thread, before that (and without a sandbox) it only records the class.
// Lower layers (the API server, the event loop, the vCPU loop) call it without depending on the
// sandbox, which registers itself here.
#pragma once

#include <string_view>

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

/// The sandbox's implementation of confine_thread(), registered once it is active.
using ConfineHook = void (*)(ThreadClass) noexcept;
void set_confine_hook(ConfineHook hook) noexcept;

}  // namespace vireo
