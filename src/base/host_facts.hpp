// What this host has: memory, lockable memory, huge pages, CPUs (read at the moment of asking).
#pragma once

#include <cstdint>

namespace vireo {

struct HostFacts {
    uint64_t mem_available = 0;   ///< MemAvailable
    uint64_t lockable = 0;        ///< RLIMIT_MEMLOCK (UINT64_MAX: unlimited)
    uint64_t hugepages_free = 0;  ///< bytes of free 2 MiB huge pages
    uint32_t num_cpus = 0;
    static HostFacts probe();
};

}  // namespace vireo
