#include "devices/pci/config.hpp"

#include <bit>

namespace vireo::devices::pci {

namespace {
// Command bits a guest may set: I/O, memory, bus master, parity and SERR# reporting, INTx
// disable. Status bits it may clear (write 1): the error bits.
constexpr uint16_t kCommandWritable =
    kCommandIo | kCommandMemory | kCommandMaster | (1u << 6) | (1u << 8) | kCommandIntxDisable;
constexpr uint16_t kStatusErrors = 0xf900;
}  // namespace

Config::Config(const Identity& id) {
    set16(kVendorId, id.vendor);
    set16(kDeviceId, id.device);
    bytes_[kRevision] = id.revision;
    bytes_[kClassCode] = static_cast<uint8_t>(id.class_code);
    bytes_[kClassCode + 1] = static_cast<uint8_t>(id.class_code >> 8);
    bytes_[kClassCode + 2] = static_cast<uint8_t>(id.class_code >> 16);
    bytes_[kHeaderType] = 0;  // type 0, one function
    set16(kSubsystemVendorId, id.subsystem_vendor);
    set16(kSubsystemId, id.subsystem);
    writable_[kCommand] = static_cast<uint8_t>(kCommandWritable);
    writable_[kCommand + 1] = static_cast<uint8_t>(kCommandWritable >> 8);
    write_one_clears_[kStatus] = static_cast<uint8_t>(kStatusErrors);
    write_one_clears_[kStatus + 1] = static_cast<uint8_t>(kStatusErrors >> 8);
    writable_[0x0c] = 0xff;  // cache line size
    writable_[0x0d] = 0xff;  // latency timer
    writable_[kInterruptLine] = 0xff;
}

uint16_t Config::u16(uint32_t offset) const noexcept {
    return static_cast<uint16_t>(u8(offset) | (u8(offset + 1) << 8));
}

uint32_t Config::u32(uint32_t offset) const noexcept {
    return u16(offset) | (static_cast<uint32_t>(u16(offset + 2)) << 16);
}

void Config::set16(uint32_t offset, uint16_t v) noexcept {
    bytes_[offset] = static_cast<uint8_t>(v);
    bytes_[offset + 1] = static_cast<uint8_t>(v >> 8);
}

void Config::set32(uint32_t offset, uint32_t v) noexcept {
    set16(offset, static_cast<uint16_t>(v));
    set16(offset + 2, static_cast<uint16_t>(v >> 16));
}

Result<void> Config::add_bar(uint32_t index, BarKind kind, uint64_t size, bool prefetchable) {
    const bool wide = kind == BarKind::Memory64;
    if (kind == BarKind::None || index >= kMaxBars || (wide && index + 1 >= kMaxBars))
        return fail(ErrorCode::InvalidArgument, "pci: no BAR {} of that kind", index);
    if (bars_[index].kind != BarKind::None || (wide && bars_[index + 1].kind != BarKind::None) ||
        bars_[index].upper)
        return fail(ErrorCode::InvalidArgument, "pci: BAR {} is taken", index);
    const uint64_t min = kind == BarKind::Io ? 4 : 16;
    const uint64_t max = kind == BarKind::Io         ? 256
                         : kind == BarKind::Memory32 ? uint64_t{1} << 31
                                                     : uint64_t{1} << 48;
    if (!std::has_single_bit(size) || size < min || size > max)
        return fail(ErrorCode::InvalidArgument,
                    "pci: BAR {} size {:#x} is not a power of two from {} to {:#x}", index, size,
                    min, max);
    bars_[index] = {kind, size, false};
    const uint32_t at = kBar0 + 4 * index;
    uint32_t flags = 0;
    uint64_t mask = ~(size - 1);
    if (kind == BarKind::Io) {
        flags = 1;
        mask &= 0xffff'fffcu;
    } else {
        flags = (wide ? 0b100u : 0u) | (prefetchable ? 0b1000u : 0u);
        mask &= wide ? ~uint64_t{0xf} : 0xffff'fff0u;
    }
    set32(at, flags);
    for (uint32_t i = 0; i < 4; ++i)
        writable_[at + i] = static_cast<uint8_t>(mask >> (8 * i));
    if (wide) {
        bars_[index + 1] = {BarKind::None, 0, true};
        for (uint32_t i = 0; i < 4; ++i)
            writable_[at + 4 + i] = static_cast<uint8_t>(mask >> (32 + 8 * i));
    }
    return ok();
}

Result<void> Config::place_bar(uint32_t index, uint64_t address) {
    const BarKind kind = bar_kind(index);
    if (kind == BarKind::None) return fail(ErrorCode::InvalidArgument, "pci: no BAR {}", index);
    const uint64_t size = bars_[index].size;
    if (address % size != 0 || (kind != BarKind::Memory64 && (address >> 32) != 0))
        return fail(ErrorCode::InvalidArgument, "pci: BAR {} cannot be at {:#x}", index, address);
    const uint32_t at = kBar0 + 4 * index;
    set32(at, (u32(at) & (kind == BarKind::Io ? 0x3u : 0xfu)) | static_cast<uint32_t>(address));
    if (kind == BarKind::Memory64) set32(at + 4, static_cast<uint32_t>(address >> 32));
    return ok();
}

Result<uint32_t> Config::add_capability(uint8_t id, std::span<const uint8_t> body,
                                        std::span<const uint8_t> writable) {
    const uint32_t at = next_capability_;
    if (writable.size() != body.size() || at + 2 + body.size() > kConfigSize)
        return fail(ErrorCode::InvalidArgument, "pci: no room for capability {:#x}", id);
    bytes_[at] = id;
    bytes_[at + 1] = 0;
    for (size_t i = 0; i < body.size(); ++i) {
        bytes_[at + 2 + i] = body[i];
        writable_[at + 2 + i] = writable[i];
    }
    bytes_[last_capability_ == 0 ? kCapabilities : last_capability_ + 1] = static_cast<uint8_t>(at);
    last_capability_ = at;
    set_status_bits(kStatusCapabilities, true);
    next_capability_ = (at + 2 + static_cast<uint32_t>(body.size()) + 3) & ~3u;  // dword aligned
    return at;
}

void Config::set_status_bits(uint16_t bits, bool on) noexcept {
    const uint16_t s = u16(kStatus);
    set16(kStatus, on ? (s | bits) : (s & ~bits));
}

void Config::read(uint32_t offset, std::span<uint8_t> data) const noexcept {
    for (size_t i = 0; i < data.size(); ++i)
        data[i] = offset + i < kConfigSize ? bytes_[offset + i] : 0xff;
}

Change Config::write(uint32_t offset, std::span<const uint8_t> data) noexcept {
    Change c;
    if (offset >= kConfigSize || data.size() > kConfigSize - offset) return c;
    c.first = offset;
    c.last = offset + static_cast<uint32_t>(data.size());
    for (size_t i = 0; i < data.size(); ++i) {
        const uint32_t at = offset + static_cast<uint32_t>(i);
        const uint8_t before = bytes_[at];
        uint8_t b = static_cast<uint8_t>((before & ~writable_[at]) | (data[i] & writable_[at]));
        b = static_cast<uint8_t>(b & ~(data[i] & write_one_clears_[at]));
        bytes_[at] = b;
        if (b == before) continue;
        if (at >= kCommand && at < kCommand + 2) c.command = true;
        if (at >= kBar0 && at < kBar0 + 4 * kMaxBars) c.bars = true;
    }
    return c;
}

uint64_t Config::bar_address(uint32_t index) const noexcept {
    const BarKind kind = bar_kind(index);
    if (kind == BarKind::None) return 0;
    const uint32_t at = kBar0 + 4 * index;
    const uint64_t low = u32(at) & (kind == BarKind::Io ? ~0x3u : ~0xfu);
    return kind == BarKind::Memory64 ? low | (static_cast<uint64_t>(u32(at + 4)) << 32) : low;
}

bool Config::bar_decodes(uint32_t index) const noexcept {
    switch (bar_kind(index)) {
        case BarKind::None:
            return false;
        case BarKind::Io:
            return (command() & kCommandIo) != 0;
        case BarKind::Memory32:
        case BarKind::Memory64:
            return (command() & kCommandMemory) != 0;
    }
    return false;
}

void Config::save(snapshot::Encoder& e) const {
    e.bytes(bytes_);
}

void Config::restore(snapshot::Decoder& d) {
    const auto saved = d.bytes(kConfigSize);
    if (saved.size() != kConfigSize) {
        d.invalid("pci config space");
        return;
    }
    // Only what the guest could have changed: the identity, BAR kinds and capability layout
    // are this build's, whatever the file says.
    for (uint32_t i = 0; i < kConfigSize; ++i) {
        const uint8_t guest = writable_[i] | write_one_clears_[i];
        bytes_[i] = static_cast<uint8_t>((bytes_[i] & ~guest) | (saved[i] & guest));
    }
}

}  // namespace vireo::devices::pci
