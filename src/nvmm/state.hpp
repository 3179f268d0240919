// libnvmm's state translation: NVMM's struct nvmm_x64_state (selected by NVMM_X64_STATE_*) to
// and from the hv layer's VcpuState. Pure functions, unit-tested both ways
// (tests/unit/nvmm_state_test.cpp).
#pragma once

#include <array>
#include <cstdint>

#include "hv/vcpu_state.hpp"
#include "nvmm/nvmm.h"

namespace vireo::nvmm {

/// The MSRs of NVMM_X64_STATE_MSRS other than EFER (which hv keeps with the control
/// registers), by their NVMM_X64_MSR_* index.
struct NvmmMsr {
    unsigned slot;  ///< NVMM_X64_MSR_*
    uint32_t index;
};
inline constexpr std::array<NvmmMsr, 10> kStateMsrs{{
    {NVMM_X64_MSR_STAR, 0xc0000081},
    {NVMM_X64_MSR_LSTAR, 0xc0000082},
    {NVMM_X64_MSR_CSTAR, 0xc0000083},
    {NVMM_X64_MSR_SFMASK, 0xc0000084},
    {NVMM_X64_MSR_KERNELGSBASE, 0xc0000102},
    {NVMM_X64_MSR_SYSENTER_CS, 0x174},
    {NVMM_X64_MSR_SYSENTER_ESP, 0x175},
    {NVMM_X64_MSR_SYSENTER_EIP, 0x176},
    {NVMM_X64_MSR_PAT, 0x277},
    {NVMM_X64_MSR_TSC, 0x10},
}};

/// The hv parts (hv::StateFlags) that hold NVMM's parts `flags`. CRS and MSRS share KVM's
/// special registers (EFER lives with the control registers there), SEGS too.
uint32_t hv_parts(uint64_t flags) noexcept;

/// Copies the parts `flags` of `from` into NVMM's layout. INTR: only the interrupt shadow and
/// whether an event is pending come from `from` (the window-exiting bits are the library's).
void to_nvmm(const hv::VcpuState& from, uint64_t flags, nvmm_x64_state& to) noexcept;

/// Copies the parts `flags` of NVMM's layout into `to`, leaving every other field of `to` as
/// it was (read `to` first: KVM sets EFER with CR0 and the segments in one call).
void from_nvmm(const nvmm_x64_state& from, uint64_t flags, hv::VcpuState& to) noexcept;

/// The hv::VcpuState::msrs list NVMM_X64_STATE_MSRS reads and writes (kStateMsrs' indices).
void list_state_msrs(hv::VcpuState& state);

}  // namespace vireo::nvmm
