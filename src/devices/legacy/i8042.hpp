// Minimal i8042 keyboard controller: enough for the reset line (command 0xfe on port 0x64),
// which Linux uses for reboot=k. Offsets from port 0x60: attach views (RangeView) of ports 0x60
// and 0x64 (0x61 between them is the PIT's).
#pragma once

#include "devices/device.hpp"
#include "devices/platform_event.hpp"

namespace vireo::devices {

class I8042 final : public Device {
  public:
    explicit I8042(PlatformEventSink sink) : sink_(std::move(sink)) {}
    const char* name() const noexcept override { return "i8042"; }
    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;

  private:
    PlatformEventSink sink_;
};

}  // namespace vireo::devices
