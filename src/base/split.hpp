// Splitting option strings ("PATH,readonly,serial=x", "0-3,^1") into their fields.
#pragma once

#include <string_view>
#include <vector>

namespace vireo {

/// The fields of `text` between `sep`s, empty ones included: "a,,b" is {"a", "", "b"}, "a," is
/// {"a", ""} and "" is {""}. The views point into `text`.
inline std::vector<std::string_view> split(std::string_view text, char sep) {
    std::vector<std::string_view> fields;
    size_t pos = 0;
    for (;;) {
        const size_t end = text.find(sep, pos);
        if (end == std::string_view::npos) {
            fields.push_back(text.substr(pos));
            return fields;
        }
        fields.push_back(text.substr(pos, end - pos));
        pos = end + 1;
    }
}

}  // namespace vireo
