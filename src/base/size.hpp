// Human sizes: "256M", "1G", "512MiB", "65536K", "1073741824B". A bare number is MiB (like
// QEMU's -m). Binary units (K = 1024).
#pragma once

#include <cstdint>
#include <string_view>

#include "base/result.hpp"

namespace vireo {

Result<uint64_t> parse_size(std::string_view text);

}  // namespace vireo
