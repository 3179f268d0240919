// KVM's binary statistics (KVM_GET_STATS_FD, Linux 5.14+) of one vCPU or machine: the kernel's
// own counters (exits, halt wait time, injections, ...), read without an ioctl per value.
// The descriptors are read once; values() is one pread of the data block.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "base/unique_fd.hpp"

namespace vireo::hv {

class Stats {
  public:
    Stats() = default;
    /// Names of the single-valued counters ("exits", "halt_wait_ns", ...), in values() order.
    const std::vector<std::string>& names() const noexcept { return names_; }
    /// Reads the current value of every counter into `out` (size names().size()).
    Result<void> read(std::span<uint64_t> out) const;
    bool valid() const noexcept { return static_cast<bool>(fd_); }

  private:
    friend class Vcpu;
    friend class Machine;
    /// Reads the header and descriptors of the stats fd KVM returned for an object.
    static Result<Stats> from_fd(UniqueFd fd);

    UniqueFd fd_;
    std::vector<std::string> names_;
    std::vector<uint32_t> offsets_;  // byte offset of each value inside the data block
    uint64_t data_offset_ = 0;
    size_t data_size_ = 0;
};

}  // namespace vireo::hv
