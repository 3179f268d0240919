// MSI-X (PCI Local Bus 3.0, 6.8.2): a function's table of interrupt vectors (message address,
// data, a mask bit each) and the pending-bit array, both in a memory BAR the guest programs,
// and the capability's control word (enable, function mask). A vector the device signals while
// it is masked (or MSI-X is off) is held pending and sent when the guest unmasks it.
//
// The guest side is a parser of untrusted accesses: table and PBA accesses must be 4 or 8
// bytes, aligned (the specification's rule); anything else reads zeros and writes nothing.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "base/result.hpp"
#include "snapshot/state.hpp"

namespace vireo::devices::pci {

inline constexpr uint32_t kMsixEntrySize = 16;
inline constexpr uint16_t kMsixMaxVectors = 2048;
inline constexpr uint16_t kMsixEnable = 1u << 15;
inline constexpr uint16_t kMsixFunctionMask = 1u << 14;

struct MsiMessage {
    uint64_t address = 0;
    uint32_t data = 0;
};

class Msix {
  public:
    /// Sends a message (the VMM: KVM_SIGNAL_MSI, or a route for an irqfd).
    using Send = std::function<void(uint16_t vector, const MsiMessage&)>;
    /// A vector's message, mask or deliverability changed (the VMM: the route of that vector's
    /// irqfd). Called without the table's lock held, on the thread that made the change.
    using Changed = std::function<void(uint16_t vector)>;

    /// `vectors`: 1 to 2048.
    static Result<std::unique_ptr<Msix>> create(uint16_t vectors, Send send, Changed changed = {});

    uint16_t vectors() const noexcept { return static_cast<uint16_t>(entries_.size()); }
    /// Bytes of BAR space the table and the PBA take.
    uint32_t table_size() const noexcept { return uint32_t{vectors()} * kMsixEntrySize; }
    uint32_t pba_size() const noexcept { return (uint32_t{vectors()} + 63) / 64 * 8; }

    /// The capability's body (after id and next): control, table offset/BIR, PBA offset/BIR;
    /// and which bits of it the guest may write (enable and function mask).
    std::array<uint8_t, 10> capability(uint8_t table_bar, uint32_t table_offset, uint8_t pba_bar,
                                       uint32_t pba_offset) const;
    static std::array<uint8_t, 10> capability_writable();

    /// The control word as the guest left it in config space: enable and function mask.
    /// Unmasking sends what is pending.
    void set_control(uint16_t control);

    void table_read(uint64_t offset, std::span<uint8_t> data) const;
    void table_write(uint64_t offset, std::span<const uint8_t> data);
    void pba_read(uint64_t offset, std::span<uint8_t> data) const;

    /// The device's interrupt on `vector` (out of range: ignored).
    void signal(uint16_t vector);

    /// A vector's message, and whether it would be delivered now (enabled, not masked).
    MsiMessage message(uint16_t vector) const;
    bool deliverable(uint16_t vector) const;
    bool enabled() const;

    void save(snapshot::Encoder& e) const;
    void restore(snapshot::Decoder& d);
    /// Every vector masked with no message and nothing pending, MSI-X off (a reset); each
    /// vector's Changed is called.
    void reset();

  private:
    struct Entry {
        uint32_t address_lo = 0, address_hi = 0, data = 0;
        uint32_t control = 1;  ///< bit 0: masked (the reset value)
        bool pending = false;
        MsiMessage message() const noexcept {
            return {(uint64_t{address_hi} << 32) | address_lo, data};
        }
    };
    Msix(uint16_t vectors, Send send, Changed changed);
    bool deliverable_locked(const Entry& e) const noexcept;
    void flush_locked(std::vector<std::pair<uint16_t, MsiMessage>>& out);

    mutable std::mutex mu_;
    std::vector<Entry> entries_;
    bool enabled_ = false;
    bool function_masked_ = false;
    Send send_;
    Changed changed_;
};

}  // namespace vireo::devices::pci
