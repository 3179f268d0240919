// CPU pools at run time: which of a pool's CPUs are free, and which a domain of a pinned pool
// gets (one host CPU per vCPU). Pure functions of the pool and of what other domains hold, so
// `vireo up`, `vireo create` and `cpupool.migrate` hand out CPUs by the same rule.
#pragma once

#include <cstdint>
#include <set>
#include <vector>

#include "host/config.hpp"

namespace vireo::host {

/// The pool's CPUs that are not in `taken` (pinned by other domains), in order.
std::vector<uint32_t> free_cpus(const Pool& pool, const std::set<uint32_t>& taken);

/// For a pinned pool: the lowest free CPU for each vCPU, in order (fewer than `vcpus` if the
/// pool has not that many free; admission and migration check). Empty for a shared pool.
std::vector<int> pick_pins(const Pool& pool, uint32_t vcpus, const std::set<uint32_t>& taken);

}  // namespace vireo::host
