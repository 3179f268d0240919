// `vireo-bench exits`: cost of a guest exit handled through the vireo API, against the raw
// KVM floor, in the same run.
#pragma once

#include <cstdint>

namespace vireo::bench {

struct ExitsOptions {
    uint64_t iterations = 20000;  ///< exits per timed run
    int runs = 7;                 ///< timed runs per loop (median reported)
    bool user_mode = false;       ///< run the guest loops in ring 3 instead of ring 0
    bool json = false;            ///< end with one JSON line
};

int run_exits(const ExitsOptions& options);

}  // namespace vireo::bench
