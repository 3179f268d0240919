#include "base/log.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>

namespace vireo::log {
namespace {

Level initial_level() noexcept {
    const char* env = std::getenv("VIREO_LOG");
    if (env == nullptr) return Level::Info;
    if (std::strcmp(env, "debug") == 0) return Level::Debug;
    if (std::strcmp(env, "warn") == 0) return Level::Warn;
    if (std::strcmp(env, "error") == 0) return Level::Error;
    if (std::strcmp(env, "off") == 0) return Level::Off;
    return Level::Info;
}

std::atomic<Level> g_level{initial_level()};

std::atomic<Tap> g_tap{nullptr};

}  // namespace

const char* name(Level l) noexcept {
    switch (l) {
        case Level::Debug:
            return "debug";
        case Level::Info:
            return "info";
        case Level::Warn:
            return "warning";
        case Level::Error:
            return "error";
        case Level::Off:
            break;
    }
    return "";
}

void set_level(Level l) noexcept {
    g_level.store(l, std::memory_order_relaxed);
}
Level level() noexcept {
    return g_level.load(std::memory_order_relaxed);
}

void set_tap(Tap tap) noexcept {
    g_tap.store(tap, std::memory_order_release);
}

void write(Level l, std::string_view text) noexcept {
    if (Tap tap = g_tap.load(std::memory_order_acquire)) tap(l, text);
    try {
        std::string line = fmt::format("vireo: {}: {}\n", name(l), text);
        [[maybe_unused]] auto n = ::write(STDERR_FILENO, line.data(), line.size());
    } catch (...) {
        // Logging must never throw into the caller.
    }
}

bool RateLimiter::allow() noexcept {
    using namespace std::chrono;
    auto now = static_cast<uint64_t>(
        duration_cast<seconds>(steady_clock::now().time_since_epoch()).count());
    uint64_t window = window_.load(std::memory_order_relaxed);
    if (window != now && window_.compare_exchange_strong(window, now)) {
        count_.store(0, std::memory_order_relaxed);
    }
    if (count_.fetch_add(1, std::memory_order_relaxed) < burst_) return true;
    suppressed_.fetch_add(1, std::memory_order_relaxed);
    return false;
}

}  // namespace vireo::log
