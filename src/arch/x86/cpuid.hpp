// CPUID and boot MSRs for a guest vCPU, derived from what KVM supports.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "hv/vcpu_state.hpp"

namespace vireo::arch::x86 {

/// The CPUID leaves vCPU `vcpu_id` of an `num_vcpus`-vCPU guest sees: KVM's supported set
/// (including the KVM paravirt leaves, so kvm-clock works), with a consistent topology — one
/// socket of `num_vcpus` single-threaded cores, APIC id = vCPU id — and the hypervisor bit set.
std::vector<hv::CpuidEntry> guest_cpuid(const std::vector<hv::CpuidEntry>& supported,
                                        uint32_t vcpu_id, uint32_t num_vcpus);

/// Whether a guest that saw the CPUID `saved` (a snapshot's vCPU 0) can go on under `here`
/// (what this host would give the same vCPU): the same CPU vendor, and every feature flag the
/// guest saw (leaves 1, 6, 7.0, 7.1, 0xd.1, 0x80000001, 0x80000007, 0x80000008 and KVM's
/// paravirtual features) offered here too. A guest that detected a feature at boot uses it
/// without asking again, so a missing one would fault it later. nullopt: it can; else one line
/// naming the first missing feature ("avx512f (CPUID 0x7.0 EBX bit 16)").
std::optional<std::string> cpuid_cannot_continue(const std::vector<hv::CpuidEntry>& saved,
                                                 const std::vector<hv::CpuidEntry>& here);

/// MSRs every vCPU starts with: fast strings on, MTRRs on with write-back as the default type
/// (without them a guest maps all memory uncached).
std::vector<hv::MsrEntry> boot_msrs();

}  // namespace vireo::arch::x86
