// A vCPU's state as a snapshot section ("CPU" + its index): every part of hv::VcpuState —
// registers, segments, control registers, MSRs, FPU, XSAVE, XCR0, LAPIC, events, MP state —
// in a fixed order (section version kVcpuVersion). Decoding checks what KVM would otherwise be
// handed unchecked: flags are 0 or 1, the MP state is one KVM knows, the MSR list is bounded.
#pragma once

#include <cstdint>
#include <vector>

#include "base/result.hpp"
#include "hv/vcpu_state.hpp"
#include "snapshot/format.hpp"
#include "snapshot/state.hpp"

namespace vireo::snapshot {

inline constexpr uint32_t kVcpuVersion = 1;
/// More MSRs than any KVM lists for a vCPU (KVM_GET_MSR_INDEX_LIST: a few hundred).
inline constexpr uint32_t kMaxVcpuMsrs = 2048;

/// The section's tag for vCPU `index` ("CPU" + a character; up to kMaxVcpus).
uint32_t vcpu_tag(uint32_t index);

void encode(Encoder& e, const hv::VcpuState& s);
/// Fills `s` from the section; the decoder's finish() says whether it was well-formed.
void decode(Decoder& d, hv::VcpuState& s);

/// The CPUID a machine's guest saw (section "CPUI", version 1): vCPU 0's entries, at most
/// kMaxCpuidEntries (KVM_GET_SUPPORTED_CPUID gives about 60).
inline constexpr uint32_t kCpuidTag = tag("CPUI");
inline constexpr uint32_t kCpuidVersion = 1;
inline constexpr uint32_t kMaxCpuidEntries = 256;
void encode(Encoder& e, const std::vector<hv::CpuidEntry>& cpuid);
void decode(Decoder& d, std::vector<hv::CpuidEntry>& cpuid);

}  // namespace vireo::snapshot
