// Minimal leveled logging to stderr over fmt, plus a rate limiter for guest-caused messages.
#pragma once

#include <fmt/core.h>

#include <atomic>
#include <cstdint>

namespace vireo::log {

enum class Level : int { Debug = 0, Info = 1, Warn = 2, Error = 3, Off = 4 };

/// Sets the minimum level printed (default Info; VIREO_LOG=debug|info|warn|error|off overrides).
void set_level(Level level) noexcept;
Level level() noexcept;
/// Writes one line "vireo: <level>: <text>" to stderr (a single write: lines never interleave).
void write(Level level, std::string_view text) noexcept;

/// Also hands every line written to `tap` (e.g. the supervisor's host log for `vireo dmesg`);
/// nullptr removes it. Any thread; the tap must not log.
using Tap = void (*)(Level level, std::string_view text) noexcept;
void set_tap(Tap tap) noexcept;
/// "debug", "info", "warning", "error".
const char* name(Level level) noexcept;

template <typename... Args>
void debug(fmt::format_string<Args...> f, Args&&... args) {
    if (level() <= Level::Debug) write(Level::Debug, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void info(fmt::format_string<Args...> f, Args&&... args) {
    if (level() <= Level::Info) write(Level::Info, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void warn(fmt::format_string<Args...> f, Args&&... args) {
    if (level() <= Level::Warn) write(Level::Warn, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void error(fmt::format_string<Args...> f, Args&&... args) {
    if (level() <= Level::Error) write(Level::Error, fmt::format(f, std::forward<Args>(args)...));
}

/// Token bucket for log lines a guest can trigger at will: allow() is lock-free and
/// returns false once `burst` lines were allowed within the current one-second window.
class RateLimiter {
  public:
    explicit RateLimiter(uint32_t burst = 10) noexcept : burst_(burst) {}
    bool allow() noexcept;
    /// Lines refused since the last allowed one (to report "N suppressed").
    uint64_t suppressed() const noexcept { return suppressed_.load(std::memory_order_relaxed); }

  private:
    uint32_t burst_;
    std::atomic<uint64_t> window_{0};
    std::atomic<uint32_t> count_{0};
    std::atomic<uint64_t> suppressed_{0};
};

}  // namespace vireo::log
