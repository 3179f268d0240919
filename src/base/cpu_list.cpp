#include "base/cpu_list.hpp"

#include <charconv>

#include "base/split.hpp"

namespace vireo {

Result<std::set<uint32_t>> parse_cpu_list(std::string_view text, uint32_t num_cpus) {
    std::set<uint32_t> cpus;
    if (text == "all") {
        for (uint32_t c = 0; c < num_cpus; ++c)
            cpus.insert(c);
        return cpus;
    }
    for (std::string_view item : split(text, ',')) {
        const bool exclude = !item.empty() && item[0] == '^';
        if (exclude) item.remove_prefix(1);
        uint32_t lo = 0, hi = 0;
        const size_t dash = item.find('-');
        auto num = [](std::string_view s, uint32_t& out) {
            auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
            return !s.empty() && ec == std::errc() && p == s.data() + s.size();
        };
        const bool ok = dash == std::string_view::npos
                            ? num(item, lo) && (hi = lo, true)
                            : num(item.substr(0, dash), lo) && num(item.substr(dash + 1), hi);
        if (!ok || lo > hi)
            return fail(ErrorCode::InvalidArgument,
                        "\"{}\" is not a CPU list (e.g. \"0-3,^1\" or \"all\")", text);
        if (hi >= num_cpus)
            return fail(ErrorCode::InvalidArgument, "CPU {} does not exist (this host has 0-{})",
                        hi, num_cpus - 1);
        for (uint32_t c = lo; c <= hi; ++c) {
            if (exclude)
                cpus.erase(c);
            else
                cpus.insert(c);
        }
    }
    if (cpus.empty()) return fail(ErrorCode::InvalidArgument, "\"{}\" names no CPU", text);
    return cpus;
}

std::string cpu_list(const std::set<uint32_t>& cpus) {
    std::string s;
    for (uint32_t c : cpus)
        s += (s.empty() ? "" : ",") + std::to_string(c);
    return s;
}

}  // namespace vireo
