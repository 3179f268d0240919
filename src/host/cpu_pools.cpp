#include "host/cpu_pools.hpp"

namespace vireo::host {

std::vector<uint32_t> free_cpus(const Pool& pool, const std::set<uint32_t>& taken) {
    std::vector<uint32_t> left;
    for (uint32_t c : pool.cpus)
        if (!taken.contains(c)) left.push_back(c);
    return left;
}

std::vector<int> pick_pins(const Pool& pool, uint32_t vcpus, const std::set<uint32_t>& taken) {
    std::vector<int> pins;
    if (pool.policy != PoolPolicy::Pinned) return pins;
    for (uint32_t c : free_cpus(pool, taken)) {
        if (pins.size() == vcpus) break;
        pins.push_back(static_cast<int>(c));
    }
    return pins;
}

}  // namespace vireo::host
