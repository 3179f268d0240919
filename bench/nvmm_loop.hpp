// The exit benchmark's libnvmm side: the same PIO loop guest driven through NVMM's C API
// (nvmm_vcpu_run + nvmm_assist_io), as an NVMM client would.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "base/result.hpp"

namespace vireo::bench {

class NvmmLoop {
  public:
    /// A machine with 2 MiB of RAM running `image` at 1 MiB in long mode (ring 0), RDX = `port`.
    static Result<std::unique_ptr<NvmmLoop>> create(std::span<const uint8_t> image, uint16_t port);
    ~NvmmLoop();
    /// Runs until `exits` I/O exits were assisted; returns the nanoseconds taken.
    Result<uint64_t> loop(uint64_t exits);

  private:
    NvmmLoop() = default;
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace vireo::bench
