// MC146818 CMOS RTC at ports 0x70/0x71: the host's UTC time in BCD, never "update in
// progress", plus the 128-byte NVRAM. Without an RTC, Linux's boot-time RTC probing stalls.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>

#include "devices/device.hpp"

namespace vireo::devices {

class Cmos final : public Device {
  public:
    Cmos();
    const char* name() const noexcept override { return "cmos"; }
    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;
    /// The selected index and the NVRAM (the clock itself is the host's time again).
    void save(snapshot::Encoder& e) const override;
    void restore(snapshot::Decoder& d) override;

  private:
    uint8_t read_reg(uint8_t index);
    mutable std::mutex mu_;
    uint8_t index_ = 0;
    std::array<uint8_t, 128> nvram_{};
};

}  // namespace vireo::devices
