#include "devices/legacy/cmos.hpp"

#include <algorithm>
#include <ctime>

namespace vireo::devices {

namespace {
uint8_t bcd(int v) {
    return static_cast<uint8_t>(((v / 10) << 4) | (v % 10));
}
constexpr uint8_t kRegA = 0x0a, kRegB = 0x0b, kRegC = 0x0c, kRegD = 0x0d, kCentury = 0x32;
}  // namespace

Cmos::Cmos() {
    nvram_[kRegA] = 0x26;  // 32.768 kHz time base, 1024 Hz periodic rate, UIP clear
    nvram_[kRegB] = 0x02;  // 24-hour mode, BCD
    nvram_[kRegD] = 0x80;  // RAM and time valid
}

uint8_t Cmos::read_reg(uint8_t index) {
    std::time_t now = std::time(nullptr);
    std::tm t{};
    ::gmtime_r(&now, &t);
    switch (index) {
        case 0x00:
            return bcd(t.tm_sec);
        case 0x02:
            return bcd(t.tm_min);
        case 0x04:
            return bcd(t.tm_hour);
        case 0x06:
            return bcd(t.tm_wday + 1);
        case 0x07:
            return bcd(t.tm_mday);
        case 0x08:
            return bcd(t.tm_mon + 1);
        case 0x09:
            return bcd(t.tm_year % 100);
        case kCentury:
            return bcd(19 + t.tm_year / 100);
        case kRegC:
            return 0;  // no interrupt flags pending
        default:
            return nvram_[index & 0x7f];
    }
}

void Cmos::save(snapshot::Encoder& e) const {
    std::lock_guard lock(mu_);
    e.u8(index_);
    e.bytes(nvram_);
}

void Cmos::restore(snapshot::Decoder& d) {
    std::lock_guard lock(mu_);
    const uint8_t index = d.u8();
    const auto nvram = d.bytes(nvram_.size());
    if (index >= 0x80) d.invalid("the CMOS index");
    if (nvram.size() != nvram_.size()) d.invalid("the CMOS NVRAM");
    if (!d.ok()) return;
    index_ = index;
    std::copy(nvram.begin(), nvram.end(), nvram_.begin());
}

void Cmos::read(uint64_t offset, std::span<uint8_t> data) {
    std::lock_guard lock(mu_);
    for (auto& b : data)
        b = offset == 0 ? index_ : read_reg(index_);
}

void Cmos::write(uint64_t offset, std::span<const uint8_t> data) {
    std::lock_guard lock(mu_);
    if (data.empty()) return;
    if (offset == 0) {
        index_ = data[0] & 0x7f;  // bit 7 is the NMI mask
    } else if (index_ >= kRegB && index_ != kRegC && index_ != kRegD) {
        nvram_[index_] = data[0];  // register B and the NVRAM; the clock stays the host's
    }
}

}  // namespace vireo::devices
