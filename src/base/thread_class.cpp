#include "base/thread_class.hpp"

#include <atomic>

namespace vireo {

namespace {
std::atomic<ConfineHook> g_hook{nullptr};
}

std::string_view to_string(ThreadClass c) noexcept {
    switch (c) {
        case ThreadClass::Main:
            return "main";
        case ThreadClass::Vcpu:
            return "vcpu";
        case ThreadClass::IoLoop:
            return "io";
        case ThreadClass::Api:
            return "api";
        case ThreadClass::Console:
            return "console";
        case ThreadClass::ConsoleInput:
            return "console-input";
        case ThreadClass::Metrics:
            return "metrics";
        case ThreadClass::Slirp:
            return "slirp";
        case ThreadClass::Control:
            return "control";
        case ThreadClass::Signals:
            return "signals";
    }
    return "?";
}

void confine_thread(ThreadClass c) noexcept {
    if (ConfineHook h = g_hook.load(std::memory_order_acquire)) h(c);
}

void set_confine_hook(ConfineHook hook) noexcept {
    g_hook.store(hook, std::memory_order_release);
}

}  // namespace vireo
