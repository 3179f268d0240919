// CPU templates: which CPU features a guest sees, as one line of text ("--cpu SPEC", a host
// file's `cpu = "SPEC"`).
//
//   SPEC     = TEMPLATE ["," OVERRIDE]...
//   TEMPLATE = "host" | "x86-64-v2" | "x86-64-v3"
//   OVERRIDE = ("+" | "-") FEATURE                  e.g. -avx2, +pcid
//            | LEAF ["." SUBLEAF] ":" REG ("+=" | "-=") MASK   e.g. 0x7.0:ebx-=0x20
//
// "host" is what KVM can give (KVM_GET_SUPPORTED_CPUID). A baseline keeps exactly the features of
// its x86-64 psABI level and what a 64-bit kernel needs of every x86-64 CPU and of KVM (FPU, TSC,
// PAE, CX8, CMOV, SSE2, SYSCALL, NX, long mode, x2APIC, ...), so a guest sees the same features on
// every host that can give them — the point of a baseline: save/restore and migration between
// different hosts. A host that cannot give one of them refuses the template, naming the feature.
// Passed through as the host has them: leaf 1's legacy bits (VME, DE, PSE, MCE, MTRR, MCA,
// PSE36; KVM hides some on some hosts), the TSC-deadline timer (a capability of KVM's LAPIC), the
// speculation controls (CPUID 7.0 EDX, 0x80000008 EBX) and KVM's paravirtual leaves.
//
// Overrides apply after the template, in order, to feature registers only (the ones
// cpuid_cannot_continue checks); a set bit must be one KVM offers. A name two registers share
// (ssbd, stibp: Intel's and AMD's) means the first, Intel's; the mask form reaches the other.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "arch/x86/spec_ctrl.hpp"
#include "base/result.hpp"
#include "hv/vcpu_state.hpp"

namespace vireo::arch::x86 {

/// One override: in CPUID leaf `leaf` (sub-leaf `index`, or any when `any_index`), register
/// `reg` (0 EAX .. 3 EDX), set `set` and clear `clear`.
struct CpuidOverride {
    uint32_t leaf = 0;
    uint32_t index = 0;
    bool any_index = true;
    uint8_t reg = 0;
    uint32_t set = 0;
    uint32_t clear = 0;
    bool operator==(const CpuidOverride&) const = default;
};

/// A parsed SPEC.
struct CpuTemplate {
    std::string name = "host";  ///< host, x86-64-v2 or x86-64-v3
    std::vector<CpuidOverride> overrides;
    SpecCtrl spec_ctrl;  ///< applied last (a domain's spec_ctrl, its own text)
    bool operator==(const CpuTemplate&) const = default;
};

/// Parses SPEC (at most 64 overrides, 1 KiB of text). Errors name the part that is wrong and
/// list what is accepted.
Result<CpuTemplate> parse_cpu_template(std::string_view spec);

/// `supported` (KVM's CPUID) as the template lets a guest see it: a baseline's feature registers
/// reduced to its features (and its XSAVE state components), then the overrides, then the
/// speculation-control policy. Fails, naming
/// the feature, when the host lacks one the baseline needs or an override sets a bit KVM does not
/// offer.
Result<std::vector<hv::CpuidEntry>> apply_cpu_template(
    const CpuTemplate& t, const std::vector<hv::CpuidEntry>& supported);

/// `t` as SPEC text (without its spec_ctrl), each override in its LEAF[.SUB]:REG form:
/// "x86-64-v3,0x7.0:EBX-=0x20".
std::string to_string(const CpuTemplate& t);

/// The names the templates and overrides know, for help texts: "host, x86-64-v2, x86-64-v3".
std::string cpu_template_names();

}  // namespace vireo::arch::x86
