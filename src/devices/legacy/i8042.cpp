#include "devices/legacy/i8042.hpp"

#include <algorithm>

namespace vireo::devices {

namespace {
constexpr uint64_t kData = 0, kCommand = 4;
constexpr uint8_t kCmdPulseReset = 0xfe;
}  // namespace

void I8042::read(uint64_t offset, std::span<uint8_t> data) {
    // Data port: nothing to read; status: output buffer empty, input buffer empty.
    std::fill(data.begin(), data.end(), offset == kData || offset == kCommand ? 0 : 0xff);
}

void I8042::write(uint64_t offset, std::span<const uint8_t> data) {
    if (offset == kCommand && !data.empty() && data[0] == kCmdPulseReset && sink_)
        sink_(PlatformEvent::Reset);
}

}  // namespace vireo::devices
