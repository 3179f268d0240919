// Small statistics the benchmarks share.
#pragma once

#include <algorithm>
#include <vector>

namespace vireo::bench {

/// The middle value (the upper one of an even count); 0 for no values.
inline double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

}  // namespace vireo::bench
