// Runs one fuzz input on a thread with the production stack size (kThreadStackSize, as vireo's
// threads have), not on libFuzzer's 8 MiB main stack: recursion that only the real stack cannot
// take shows up in the fuzzer too.
#pragma once

#include <pthread.h>

#include <cstdint>
#include <cstdlib>
#include <span>
#include <string_view>

#include "base/limits.hpp"

namespace vireo::fuzz {

inline void on_production_stack(void* (*body)(void*), void* arg) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, kThreadStackSize);
    pthread_t t;
    if (pthread_create(&t, &attr, body, arg) != 0) std::abort();
    pthread_join(t, nullptr);
    pthread_attr_destroy(&attr);
}

/// The usual parser target: `body` on one input (its bytes, or as_text() of them), on the
/// production stack.
template <typename In>
void on_production_stack(In input, void (*body)(In)) {
    struct Call {
        void (*body)(In);
        In input;
    } call{body, input};
    on_production_stack(
        [](void* c) -> void* {
            const auto* x = static_cast<const Call*>(c);
            x->body(x->input);
            return nullptr;
        },
        &call);
}

inline std::string_view as_text(const uint8_t* data, size_t size) {
    return {reinterpret_cast<const char*>(data), size};
}

}  // namespace vireo::fuzz
