// Address-range dispatch for port I/O and MMIO exits. Built before the guest runs and immutable
// afterwards, so vCPU threads dispatch without locks.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "devices/device.hpp"

namespace vireo::devices {

class Bus {
  public:
    explicit Bus(std::string name) : name_(std::move(name)) {}

    /// Attaches `device` at [base, base + size). Overlapping ranges are refused.
    Result<void> attach(uint64_t base, uint64_t size, std::shared_ptr<Device> device);

    /// Dispatches a read; returns false (and fills 0xff) if no device claims the address.
    bool read(uint64_t addr, std::span<uint8_t> data) const;
    /// Dispatches a write; returns false if no device claims the address.
    bool write(uint64_t addr, std::span<const uint8_t> data) const;

    const std::string& name() const noexcept { return name_; }

  private:
    struct Range {
        uint64_t base;
        uint64_t size;
        std::shared_ptr<Device> device;
    };
    const Range* find(uint64_t addr, size_t len) const noexcept;

    std::string name_;
    std::vector<Range> ranges_;  // sorted by base, non-overlapping
};

}  // namespace vireo::devices
