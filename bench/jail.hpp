// `vireo-bench jail`: what a domain's jail costs at start-up, without KVM: the same steps a
// `vireo run` domain takes as root (a keeper, a new PID namespace, sandbox::prepare and enter,
// every thread confining itself), timed against a process that only starts the same threads,
// and against the keeper and PID namespace alone (what the jail's own steps do not include).
#pragma once

namespace vireo::bench {

struct JailOptions {
    int runs = 50;      ///< runs per case (alternating; medians reported)
    int threads = 6;    ///< threads the domain starts after its jail (vCPUs, I/O, API, ...)
    bool json = false;  ///< end with one JSON line
};

int run_jail(const JailOptions& options);

}  // namespace vireo::bench
