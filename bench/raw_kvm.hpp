// The floor for the exit benchmark: the same guest loops driven by raw KVM ioctls, with no
// vireo code on the measured path. This file and raw_kvm.cpp are the one place outside hv/ that
// uses KVM's headers, on purpose: they exist to measure what hv/ adds.
#pragma once

#include <cstdint>
#include <span>

#include "base/result.hpp"
#include "memory/guest_memory.hpp"

namespace vireo::bench {

/// A one-vCPU machine built with raw ioctls, running `image` in long mode (set up like FlatVm).
class RawVm {
  public:
    static Result<RawVm> create(std::span<const uint8_t> image, uint64_t rdi, uint64_t rsi,
                                uint64_t rdx, bool user_mode);
    RawVm(RawVm&&) noexcept;
    RawVm& operator=(RawVm&&) = delete;
    ~RawVm();

    /// Runs `exits` KVM_RUN round trips that must each end in KVM_EXIT_IO (or MMIO when
    /// `mmio`); returns the elapsed nanoseconds.
    Result<uint64_t> loop(uint64_t exits, bool mmio);

  private:
    RawVm() = default;
    int kvm_ = -1, vm_ = -1, vcpu_ = -1;
    void* run_ = nullptr;
    size_t run_size_ = 0;
    memory::GuestMemory* mem_ = nullptr;
};

}  // namespace vireo::bench
