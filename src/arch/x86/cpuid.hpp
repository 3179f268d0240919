// CPUID and boot MSRs for a guest vCPU, derived from what KVM supports.
#pragma once

#include <cstdint>
#include <vector>

#include "hv/vcpu_state.hpp"

namespace vireo::arch::x86 {

/// The CPUID leaves vCPU `vcpu_id` of an `num_vcpus`-vCPU guest sees: KVM's supported set
/// (including the KVM paravirt leaves, so kvm-clock works), with a consistent topology — one
/// socket of `num_vcpus` single-threaded cores, APIC id = vCPU id — and the hypervisor bit set.
std::vector<hv::CpuidEntry> guest_cpuid(const std::vector<hv::CpuidEntry>& supported,
                                        uint32_t vcpu_id, uint32_t num_vcpus);

/// MSRs every vCPU starts with: fast strings on, MTRRs on with write-back as the default type
/// (without them a guest maps all memory uncached).
std::vector<hv::MsrEntry> boot_msrs();

}  // namespace vireo::arch::x86
