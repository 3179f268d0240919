// pvpanic over MMIO (ACPI _HID "QEMU0001", Linux's pvpanic-mmio): the guest writes bit 0 when
// its kernel panics.
#pragma once

#include "devices/device.hpp"
#include "devices/platform_event.hpp"

namespace vireo::devices {

class PvPanic final : public Device {
  public:
    static constexpr uint64_t kSize = 2;
    explicit PvPanic(PlatformEventSink sink) : sink_(std::move(sink)) {}
    const char* name() const noexcept override { return "pvpanic"; }
    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;

  private:
    PlatformEventSink sink_;
};

}  // namespace vireo::devices
