#include "devices/legacy/acpi_pm.hpp"

#include <algorithm>

namespace vireo::devices {

void AcpiPm::read(uint64_t, std::span<uint8_t> data) {
    std::fill(data.begin(), data.end(), 0);  // sleep status: never "woken"
}

void AcpiPm::write(uint64_t, std::span<const uint8_t> data) {
    if (data.empty() || !sink_) return;
    const uint8_t v = data[0];
    constexpr uint8_t kSlpEn = 1u << 5;
    if ((v & kSlpEn) && ((v >> 2) & 7) == kS5SleepType) {
        sink_(PlatformEvent::PowerOff);
    } else if (v == kResetValue) {
        sink_(PlatformEvent::Reset);
    }
}

}  // namespace vireo::devices
