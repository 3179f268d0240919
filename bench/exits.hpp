// `vireo-bench exits`: cost of a guest exit handled through the vireo API, against the raw
// KVM floor, in the same run.
#pragma once

#include <cstdint>

namespace vireo::bench {

struct ExitsOptions {
    uint64_t iterations = 20000;  ///< exits per timed run
    /// Drive vireo's loops from a thread under a domain vCPU thread's seccomp filter (the vcpu
    /// class's list alone, as sandboxed domains' vCPU threads run); raw KVM stays unfiltered.
    bool sandbox = false;
    int runs = 7;            ///< timed runs per loop (median reported)
    bool user_mode = false;  ///< run the guest loops in ring 3 instead of ring 0
    bool json = false;       ///< end with one JSON line
};

int run_exits(const ExitsOptions& options);

}  // namespace vireo::bench
