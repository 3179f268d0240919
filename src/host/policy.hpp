// The supervisor's policy, apart from processes and sockets so it can be tested alone: a
// domain's states, what a domain process's end means under its on_poweroff / on_reboot /
// on_crash policy, and when restarting is given up.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "domain/protocol.hpp"
#include "host/config.hpp"

namespace vireo::host {

/// A domain as `vireo list` shows it.
enum class DomainState {
    Starting,   ///< its process is building the machine (or waits for go)
    Running,    ///< the guest runs
    Paused,     ///< paused through its API
    Crashed,    ///< ended by a crash (or preserved after one, its process still there)
    Shutoff,    ///< powered off or rebooted, and not restarted
    Destroyed,  ///< killed by `vireo destroy` (or a broken launch protocol)
    Failed,     ///< could not be built (or rebuilt)
    Incoming,   ///< waits for its migration to arrive (vireo migrate --to-host)
    Migrated,   ///< moved to another vireo: no longer this host's (not listed)
};
const char* to_string(DomainState s) noexcept;

/// How a domain process's end is taken.
struct Ending {
    DomainState state = DomainState::Shutoff;
    Action action = Action::Destroy;  ///< Restart: start it again (unless the host goes down)
    std::string last;                 ///< why it stopped, for `vireo list`
};

/// `wait_status` as waitpid() gave it; `before` is the state it had; `destroying` says the
/// supervisor killed it on purpose.
Ending judge_end(const DomainConfig& cfg, int wait_status, DomainState before, bool destroying);

/// The state a running domain's message moves it to (Paused, Running, Crashed, Migrated), if
/// any.
std::optional<DomainState> state_after(const domain::Message& m);

/// A domain that stops within kQuickRun of each start, kMaxQuickRestarts times in a row, is
/// not restarted again: it would spin.
class RestartGuard {
  public:
    static constexpr auto kQuickRun = std::chrono::seconds(1);
    static constexpr unsigned kMaxQuickRestarts = 10;
    /// Called once per policy restart with how long the last run lasted: false to give up.
    bool allow(std::chrono::steady_clock::duration ran) noexcept;

  private:
    unsigned quick_ = 0;
};

}  // namespace vireo::host
