#include "host/policy.hpp"

#include <fmt/format.h>
#include <signal.h>
#include <sys/wait.h>

namespace vireo::host {

const char* to_string(DomainState s) noexcept {
    switch (s) {
        case DomainState::Starting:
            return "starting";
        case DomainState::Running:
            return "running";
        case DomainState::Paused:
            return "paused";
        case DomainState::Crashed:
            return "crashed";
        case DomainState::Shutoff:
            return "shutoff";
        case DomainState::Destroyed:
            return "destroyed";
        case DomainState::Failed:
            return "failed";
        case DomainState::Incoming:
            return "incoming";
        case DomainState::Migrated:
            return "migrated";
    }
    return "?";
}

Ending judge_end(const DomainConfig& cfg, int wait_status, DomainState before, bool destroying) {
    if (before == DomainState::Starting)  // died while being built (up / create report it)
        return {DomainState::Failed, Action::Destroy, ""};
    if (destroying) return {DomainState::Destroyed, Action::Destroy, "destroyed"};
    // Its migration never arrived (cancelled, failed, destroyed): it never ran here.
    if (before == DomainState::Incoming)
        return {DomainState::Failed, Action::Destroy,
                "the incoming migration did not complete (" +
                    (WIFEXITED(wait_status) ? domain::describe_exit(WEXITSTATUS(wait_status))
                                            : fmt::format("signal {}", WTERMSIG(wait_status))) +
                    ")"};
    // Gone to another vireo (it said so before it exited): nothing here to restart.
    if (before == DomainState::Migrated && WIFEXITED(wait_status) &&
        WEXITSTATUS(wait_status) == domain::kExitPowerOff)
        return {DomainState::Migrated, Action::Destroy, "migrated to another vireo"};
    if (WIFSIGNALED(wait_status)) {
        // A killed process preserved nothing: preserve means destroy here.
        return {DomainState::Crashed,
                cfg.on_crash == Action::Preserve ? Action::Destroy : cfg.on_crash,
                WTERMSIG(wait_status) == SIGSYS
                    ? std::string("crashed (sandbox violation: a system call outside its "
                                  "allow-list, made with signals blocked)")
                    : fmt::format("killed by signal {}", WTERMSIG(wait_status))};
    }
    const int code = WEXITSTATUS(wait_status);
    const std::string last = domain::describe_exit(code);
    switch (code) {
        case domain::kExitPowerOff:
            return {DomainState::Shutoff, cfg.on_poweroff, last};
        case domain::kExitReboot:
            return {DomainState::Shutoff, cfg.on_reboot, last};
        default:
            return {DomainState::Crashed, cfg.on_crash, last};
    }
}

std::optional<DomainState> state_after(const domain::Message& m) {
    switch (m.kind) {
        case domain::Message::Kind::Crashed:
            return DomainState::Crashed;
        case domain::Message::Kind::Paused:
            return DomainState::Paused;
        case domain::Message::Kind::Running:
            return DomainState::Running;
        case domain::Message::Kind::Migrated:
            return DomainState::Migrated;
        case domain::Message::Kind::Ready:
        case domain::Message::Kind::Error:
            break;  // only first messages
    }
    return std::nullopt;
}

bool RestartGuard::allow(std::chrono::steady_clock::duration ran) noexcept {
    quick_ = ran < kQuickRun ? quick_ + 1 : 0;
    return quick_ < kMaxQuickRestarts;
}

}  // namespace vireo::host
