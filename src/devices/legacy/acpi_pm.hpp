// The hardware-reduced ACPI sleep control / reset register (one I/O port, see the FADT):
// writing SLP_EN with SLP_TYP 5 (S5) powers off, writing the reset value resets.
#pragma once

#include "devices/device.hpp"
#include "devices/platform_event.hpp"

namespace vireo::devices {

class AcpiPm final : public Device {
  public:
    static constexpr uint16_t kPort = 0x3c0;
    static constexpr uint8_t kResetValue = 0x01;
    static constexpr uint8_t kS5SleepType = 5;

    explicit AcpiPm(PlatformEventSink sink) : sink_(std::move(sink)) {}
    const char* name() const noexcept override { return "acpi-pm"; }
    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;

  private:
    PlatformEventSink sink_;
};

}  // namespace vireo::devices
