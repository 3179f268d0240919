#include "devices/legacy/pvpanic.hpp"

#include <algorithm>

namespace vireo::devices {

namespace {
constexpr uint8_t kPanicked = 1u << 0, kCrashLoaded = 1u << 1;
}

void PvPanic::read(uint64_t offset, std::span<uint8_t> data) {
    std::fill(data.begin(), data.end(), 0);
    if (offset == 0 && !data.empty()) data[0] = kPanicked | kCrashLoaded;  // supported events
}

void PvPanic::write(uint64_t offset, std::span<const uint8_t> data) {
    if (offset == 0 && !data.empty() && (data[0] & kPanicked) && sink_) sink_(PlatformEvent::Panic);
}

}  // namespace vireo::devices
