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

/// The value below which a fraction `q` (0 to 1) of the values lie (nearest rank); 0 for none.
inline double quantile(std::vector<double> v, double q) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    const auto i = static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
    return v[std::min(i, v.size() - 1)];
}

}  // namespace vireo::bench
