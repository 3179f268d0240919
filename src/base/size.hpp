// Human sizes: "256M", "1G", "512MiB", "65536K", "1073741824B". A bare number is MiB (like
// QEMU's -m). Binary units (K = 1024).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.hpp"

namespace vireo {

Result<uint64_t> parse_size(std::string_view text);

/// `bytes` in the largest binary unit that keeps it whole: "16 MiB", "4 KiB", "2 GiB", "100 B"
/// (so a 4 KiB region does not print as "0 MiB").
std::string size_text(uint64_t bytes);

}  // namespace vireo
