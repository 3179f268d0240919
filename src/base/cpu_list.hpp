// CPU lists as xl's cpupool syntax writes them ("0-3,^1", "all") and as sysfs and cgroups take
// them ("0,2,3").
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <string_view>

#include "base/result.hpp"

namespace vireo {

/// Parses "0-3,^1", "all" and the like against CPUs 0..`num_cpus`-1.
Result<std::set<uint32_t>> parse_cpu_list(std::string_view text, uint32_t num_cpus);

/// "0,2,3": what cpuset.cpus, --cpu-affinity and the API take.
std::string cpu_list(const std::set<uint32_t>& cpus);

}  // namespace vireo
