// A minimal machine for flat 64-bit binaries: RAM from 0, long-mode tables, the image loaded at
// a fixed address and vCPUs that start at it in long mode. Runs the tiny test guests, the
// `vireo demo` guest and the exit benchmark.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "arch/x86/long_mode.hpp"
#include "base/result.hpp"
#include "hv/hypervisor.hpp"
#include "hv/machine.hpp"
#include "hv/vcpu.hpp"
#include "memory/guest_memory.hpp"

namespace vireo::vmm {

struct FlatVmConfig {
    uint64_t memory_bytes = uint64_t{8} << 20;
    uint64_t load_addr = 0x100000;  ///< where the image goes and vCPUs start
    hv::IrqchipMode irqchip = hv::IrqchipMode::None;
    arch::x86::Ring ring = arch::x86::Ring::Kernel;
    uint32_t map_flags = hv::kMapNone;  ///< flags of the RAM mapping (e.g. dirty logging)
};

class FlatVm {
  public:
    /// Builds the machine and loads `image`. Fails if the image does not fit in RAM.
    static Result<FlatVm> create(const hv::Hypervisor& hv, std::span<const uint8_t> image,
                                 const FlatVmConfig& config = {});

    /// Creates vCPU `id` in long mode at the image's start. Each vCPU gets its own 4 KiB stack
    /// below the image (ids up to the load address / 4 KiB; others share the top one). `init`
    /// supplies initial general-purpose registers (rip, rsp and rflags are overwritten).
    Result<std::unique_ptr<hv::Vcpu>> create_vcpu(uint32_t id, const hv::Gprs& init = {});

    hv::Machine& machine() noexcept { return *machine_; }
    const memory::GuestMemory& memory() const noexcept { return memory_; }
    hv::SlotId ram_slot() const noexcept { return ram_slot_; }
    const FlatVmConfig& config() const noexcept { return config_; }

  private:
    FlatVm(const hv::Hypervisor& hv, memory::GuestMemory mem, const FlatVmConfig& config)
        : hv_(&hv), memory_(std::move(mem)), config_(config) {}

    const hv::Hypervisor* hv_;
    memory::GuestMemory memory_;
    std::unique_ptr<hv::Machine> machine_;
    hv::SlotId ram_slot_;
    FlatVmConfig config_;
    arch::x86::LongModeLayout layout_;
};

}  // namespace vireo::vmm
