// One domain's process, as the supervisor sees it: the spec it is launched with (built from
// the host configuration in one place, launch_text), its start (fork + exec of `vireo run
// --launch-fd 3`, the spec sent on the socket), and its side of the launch protocol
// (domain/protocol.hpp), read bounded and without blocking the supervisor.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "domain/protocol.hpp"
#include "host/config.hpp"

namespace vireo::host {

/// What a domain of the host configuration runs as: its console to RUN_DIR/NAME.log (rotated
/// at console_log_max), its API and console sockets in RUN_DIR, its pool's CPUs (and one per
/// vCPU in a pinned pool). A reboot restarts in place when on_reboot says restart; a crash is
/// kept in place when on_crash says preserve; everything else ends the process and the
/// supervisor applies the policy. Sandboxed, it runs as uid = gid = `id` (0: `vireo run`'s
/// default).
domain::DomainText launch_text(const DomainConfig& domain, const std::string& run_dir,
                               const Pool& pool, const std::vector<int>& pins, uint32_t id = 0);

/// The first descriptor number a domain inherits beyond its launch socket (3), and how many it
/// may inherit.
inline constexpr int kFirstInheritedFd = 4;
inline constexpr size_t kMaxInheritedFds = kMaxHandedFds;

/// A started domain process and its end of the launch socket.
struct DomainProcess {
    pid_t pid = -1;
    UniqueFd ctl;
    domain::LineReader lines;  ///< what it wrote, as lines

    /// Starts `exe run --launch-fd 3` in its own process group with stdout and stderr to
    /// `log_fd`, in cgroup `cgroup` (if not ""), and sends it `text`. A sandboxed domain starts
    /// as the first process of a new PID namespace.
    /// `incoming`: the address an incoming domain listens on (vireo run --incoming), or "".
    /// `fds`: descriptors the domain inherits, at 4, 5, ... in order (its shared regions).
    static Result<DomainProcess> spawn(const std::string& exe, const domain::DomainText& text,
                                       int log_fd, const std::string& cgroup,
                                       const std::string& incoming = {},
                                       const std::vector<int>& fds = {});

    enum class Read { Open, Closed, TooLong };
    /// Feeds what the domain wrote to `lines`, without waiting. Closed: the domain's end is
    /// closed (it exited); TooLong: a line grew past the protocol's bound.
    Read read();
    /// Its first message, waiting up to `timeout_ms`: nullopt if it sent none, not one of the
    /// protocol's, or a line past the bound.
    std::optional<domain::Message> first_message(int timeout_ms);
    /// Tells it to start the guest.
    void go();
};

}  // namespace vireo::host
