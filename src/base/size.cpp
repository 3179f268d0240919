#include "base/size.hpp"

#include <fmt/format.h>

#include <cctype>
#include <charconv>
#include <iterator>
#include <string>

#include "base/checked.hpp"

namespace vireo {

Result<uint64_t> parse_size(std::string_view text) {
    const std::string shown(text);
    uint64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end == text.data())
        return fail(ErrorCode::InvalidArgument,
                    "size \"{}\" is not a number with an optional unit (e.g. 512M, 2G)", shown);
    std::string unit(end, text.data() + text.size());
    for (auto& c : unit)
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (unit.size() == 3 && unit[1] == 'I' && unit[2] == 'B') unit.resize(1);  // MiB -> M
    uint64_t mult = 0;
    if (unit.empty() || unit == "M") {
        mult = uint64_t{1} << 20;
    } else if (unit == "B") {
        mult = 1;
    } else if (unit == "K") {
        mult = uint64_t{1} << 10;
    } else if (unit == "G") {
        mult = uint64_t{1} << 30;
    } else if (unit == "T") {
        mult = uint64_t{1} << 40;
    } else {
        return fail(ErrorCode::InvalidArgument,
                    "size \"{}\": unknown unit \"{}\" (use K, M, G or T)", shown,
                    std::string(end, text.data() + text.size()));
    }
    auto bytes = checked_mul(value, mult);
    if (!bytes) return fail(ErrorCode::OutOfRange, "size \"{}\" is too large", shown);
    return *bytes;
}

std::string size_text(uint64_t bytes) {
    static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    size_t unit = 0;
    while (unit + 1 < std::size(kUnits) && bytes != 0 && bytes % 1024 == 0) {
        bytes /= 1024;
        ++unit;
    }
    return fmt::format("{} {}", bytes, kUnits[unit]);
}

}  // namespace vireo
