// A PCI function's configuration space (the 256-byte type 0 header and its capability list) as
// the guest sees it. Every byte has a mask of the bits the guest may write and a mask of the
// bits a write of 1 clears (status bits), so BAR sizing (write all ones, read the size back),
// the command register and capabilities all follow from the masks: a guest write can only
// change what the device declared writable. Not thread-safe: its owner (PciFunction) locks.
#pragma once

#include <array>
#include <cstdint>
#include <span>

#include "base/result.hpp"
#include "snapshot/state.hpp"

namespace vireo::devices::pci {

inline constexpr uint32_t kConfigSize = 256;
inline constexpr uint32_t kMaxBars = 6;

// Header offsets (PCI Local Bus 3.0, 6.1).
inline constexpr uint32_t kVendorId = 0x00;
inline constexpr uint32_t kDeviceId = 0x02;
inline constexpr uint32_t kCommand = 0x04;
inline constexpr uint32_t kStatus = 0x06;
inline constexpr uint32_t kRevision = 0x08;
inline constexpr uint32_t kClassCode = 0x09;  // 3 bytes: programming interface, sub, base class
inline constexpr uint32_t kHeaderType = 0x0e;
inline constexpr uint32_t kBar0 = 0x10;
inline constexpr uint32_t kSubsystemVendorId = 0x2c;
inline constexpr uint32_t kSubsystemId = 0x2e;
inline constexpr uint32_t kCapabilities = 0x34;
inline constexpr uint32_t kInterruptLine = 0x3c;
inline constexpr uint32_t kInterruptPin = 0x3d;
inline constexpr uint32_t kFirstCapability = 0x40;

inline constexpr uint16_t kCommandIo = 1u << 0;
inline constexpr uint16_t kCommandMemory = 1u << 1;
inline constexpr uint16_t kCommandMaster = 1u << 2;
inline constexpr uint16_t kCommandIntxDisable = 1u << 10;
inline constexpr uint16_t kStatusInterrupt = 1u << 3;
inline constexpr uint16_t kStatusCapabilities = 1u << 4;

inline constexpr uint8_t kCapabilityMsix = 0x11;
inline constexpr uint8_t kCapabilityVendor = 0x09;

enum class BarKind : uint8_t { None, Io, Memory32, Memory64 };

struct Identity {
    uint16_t vendor = 0;
    uint16_t device = 0;
    uint32_t class_code = 0;  ///< base class << 16 | subclass << 8 | programming interface
    uint8_t revision = 0;
    uint16_t subsystem_vendor = 0;
    uint16_t subsystem = 0;
};

/// What a guest write changed (for the owner to act on: decode BARs anew, re-read a capability).
struct Change {
    bool command = false;  ///< the command register (I/O or memory decoding, INTx disable)
    bool bars = false;     ///< a BAR's address
    uint32_t first = 0;    ///< the bytes written: [first, last)
    uint32_t last = 0;
    bool touches(uint32_t offset, uint32_t size) const noexcept {
        return first < offset + size && offset < last;
    }
};

class Config {
  public:
    explicit Config(const Identity& id);

    /// Declares BAR `index` of `size` bytes: a power of two, at least 16 (memory) or 4 (I/O),
    /// I/O at most 256 and a 32-bit memory BAR at most 2 GiB. A 64-bit BAR also takes
    /// `index + 1` for its upper half. Before the guest runs.
    Result<void> add_bar(uint32_t index, BarKind kind, uint64_t size, bool prefetchable = false);
    /// Puts BAR `index` at `address` (aligned to its size), as firmware would.
    Result<void> place_bar(uint32_t index, uint64_t address);
    /// Appends a capability: `id`, then `body` (the bytes after its id and next pointer), of which
    /// the guest may write the bits in `writable` (as long as `body`). Returns its offset.
    Result<uint32_t> add_capability(uint8_t id, std::span<const uint8_t> body,
                                    std::span<const uint8_t> writable);
    /// The interrupt pin the function uses (1 = INTA#; 0 = none).
    void set_interrupt_pin(uint8_t pin) noexcept { bytes_[kInterruptPin] = pin; }
    /// The device's own status bits (the interrupt status): not the guest's to write.
    void set_status_bits(uint16_t bits, bool on) noexcept;

    /// Guest reads and writes of 1, 2 or 4 bytes within the 256; an access past the end reads
    /// ones and writes nothing.
    void read(uint32_t offset, std::span<uint8_t> data) const noexcept;
    Change write(uint32_t offset, std::span<const uint8_t> data) noexcept;

    uint8_t u8(uint32_t offset) const noexcept { return offset < kConfigSize ? bytes_[offset] : 0; }
    uint16_t u16(uint32_t offset) const noexcept;
    uint32_t u32(uint32_t offset) const noexcept;
    uint16_t command() const noexcept { return u16(kCommand); }

    BarKind bar_kind(uint32_t index) const noexcept {
        return index < kMaxBars ? bars_[index].kind : BarKind::None;
    }
    uint64_t bar_size(uint32_t index) const noexcept {
        return index < kMaxBars ? bars_[index].size : 0;
    }
    /// The address the guest (or place_bar) put BAR `index` at, whether or not it decodes.
    uint64_t bar_address(uint32_t index) const noexcept;
    /// Whether BAR `index` decodes now: declared, and its kind's command bit set.
    bool bar_decodes(uint32_t index) const noexcept;

    /// The bytes (for a snapshot) and putting them back into a function built the same way.
    void save(snapshot::Encoder& e) const;
    void restore(snapshot::Decoder& d);

  private:
    void set16(uint32_t offset, uint16_t v) noexcept;
    void set32(uint32_t offset, uint32_t v) noexcept;

    struct Bar {
        BarKind kind = BarKind::None;
        uint64_t size = 0;
        bool upper = false;  ///< the upper half of the 64-bit BAR before it
    };
    std::array<uint8_t, kConfigSize> bytes_{};
    std::array<uint8_t, kConfigSize> writable_{};
    std::array<uint8_t, kConfigSize> write_one_clears_{};
    std::array<Bar, kMaxBars> bars_{};
    uint32_t next_capability_ = kFirstCapability;
    uint32_t last_capability_ = 0;  ///< offset of the last one's next pointer's owner (0: none)
};

}  // namespace vireo::devices::pci
