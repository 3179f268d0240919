// Runs one fuzz input on a thread with the production stack size (kThreadStackSize, as vireo's
// threads have), not on libFuzzer's 8 MiB main stack: recursion that only the real stack cannot
// take shows up in the fuzzer too.
#pragma once

#include <pthread.h>

#include <cstdlib>

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

}  // namespace vireo::fuzz
