// The MSR allow-list: which model-specific registers a guest may read and write ("--msr-filter
// POLICY", a host file's `msr_filter = "POLICY"`).
//
//   POLICY = ("on" | "off") ["," "+" MSR ["-" MSR]]...      e.g. on,+0x34,+0xc0010200-0xc001020b
//
// "on" (the default) lets a guest touch only the MSRs its CPU needs: the architectural ones every
// x86-64 kernel uses (TSC, APIC base, SYSCALL/SYSENTER, FS/GS bases, EFER, PAT, MTRRs, machine
// check banks, ...), KVM's paravirtual ones, and those of the features its CPUID shows (the TSC
// deadline timer, XSAVES, RDTSCP/RDPID, the performance counters, the speculation controls,
// nested SVM or VMX, ...); "+MSR" and "+FIRST-LAST" allow more. Any other access, and any of an
// MSR KVM does not know, gets #GP in the guest and is counted. "off" leaves every MSR to KVM.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.hpp"
#include "hv/vcpu_state.hpp"

namespace vireo::arch::x86 {

struct MsrPolicy {
    bool on = true;
    std::vector<std::pair<uint32_t, uint32_t>> extra;  ///< more allowed: [first, last]
    bool operator==(const MsrPolicy&) const = default;
};

/// Parses POLICY (at most 32 additions of at most 4096 MSRs each, 512 bytes of text). Errors name
/// the part that is wrong and what is accepted.
Result<MsrPolicy> parse_msr_policy(std::string_view policy);

/// The canonical POLICY: "on", "off" or "on,+0x34,+0xc0010200-0xc001020b".
std::string to_string(const MsrPolicy& p);

/// The MSRs a guest whose vCPUs have this CPUID may access under `p` (sorted, no repeats;
/// empty when the policy is off).
std::vector<uint32_t> msr_allow_list(const MsrPolicy& p, const std::vector<hv::CpuidEntry>& cpuid);

/// "IA32_SPEC_CTRL (0x48)" for an MSR vireo knows by name, else "0x48": for the refusal log.
std::string describe_msr(uint32_t index);

}  // namespace vireo::arch::x86
