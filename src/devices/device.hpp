// Devices on a bus (port I/O or MMIO): register-level interface called from vCPU threads.
#pragma once

#include <cstdint>
#include <span>

#include "snapshot/state.hpp"

namespace vireo::devices {

/// A device occupying one range of a bus. `offset` is relative to the range's base. Called from
/// vCPU threads (possibly several at once): implementations guard their own state.
class Device {
  public:
    virtual ~Device() = default;
    /// Short name for logs and metrics ("serial", "i8042", ...).
    virtual const char* name() const noexcept = 0;
    /// Guest reads: fill `data` (1..8 bytes).
    virtual void read(uint64_t offset, std::span<uint8_t> data) = 0;
    /// Guest writes of `data` (1..8 bytes).
    virtual void write(uint64_t offset, std::span<const uint8_t> data) = 0;
    /// Its state for a snapshot (docs/snapshot.md): every field the guest can observe, in a
    /// fixed order; restore() reads them back (into a device built the same way) and marks the
    /// decoder invalid for a value it cannot hold. The default: a device without state.
    virtual void save(snapshot::Encoder&) const {}
    virtual void restore(snapshot::Decoder&) {}
};

/// One range of a device that decodes several (the PIC's and the PIT's port ranges) as a bus
/// sees it: offsets from `base` become the absolute addresses `Target` decodes.
template <class Target>
class RangeView final : public Device {
  public:
    RangeView(Target& target, uint64_t base) : target_(target), base_(base) {}
    const char* name() const noexcept override { return target_.name(); }
    void read(uint64_t offset, std::span<uint8_t> data) override {
        target_.read(base_ + offset, data);
    }
    void write(uint64_t offset, std::span<const uint8_t> data) override {
        target_.write(base_ + offset, data);
    }

  private:
    Target& target_;
    uint64_t base_;
};

/// An interrupt line the device can drive (level). Implemented by the VMM over KVM.
class IrqLine {
  public:
    virtual ~IrqLine() = default;
    virtual void set_level(bool asserted) = 0;
};

}  // namespace vireo::devices
