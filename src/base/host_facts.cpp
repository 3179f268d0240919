#include "base/host_facts.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <string>

namespace vireo {

HostFacts HostFacts::probe() {
    HostFacts f;
    std::ifstream m("/proc/meminfo");
    std::string key;
    uint64_t kb = 0;
    std::string unit;
    while (m >> key >> kb) {
        std::getline(m, unit);
        if (key == "MemAvailable:") f.mem_available = kb << 10;
        if (key == "HugePages_Free:") f.hugepages_free = kb * (uint64_t{2} << 20);
    }
    rlimit rl{};
    f.lockable = ::getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY ? rl.rlim_cur
                                                                                       : UINT64_MAX;
    f.num_cpus = static_cast<uint32_t>(::sysconf(_SC_NPROCESSORS_ONLN));
    return f;
}

}  // namespace vireo
