// Speculation controls a guest may see: a domain's spec_ctrl policy ("--spec-ctrl POLICY", a
// host file's `spec_ctrl = "POLICY"`).
//
//   POLICY  = ("on" | "off") ["," ("+" | "-") CONTROL]...
//   CONTROL = ibrs | ibpb | stibp | ssbd | virt-ssbd | psfd | arch-caps | md-clear | flush-l1d
//
// "on" (the default) shows the guest every control the host's KVM offers, so the guest's kernel
// can protect its own processes (Spectre v2, speculative store bypass, MDS, L1TF); "off" hides
// them all. A hidden control is gone from CPUID (7.0 EDX, 0x80000008 EBX) and KVM then refuses
// the guest its MSR (SPEC_CTRL, PRED_CMD, VIRT_SPEC_CTRL, ARCH_CAPABILITIES, FLUSH_CMD) with #GP.
// Intel has one CPUID bit for IBRS and IBPB together: hiding either hides both there. Statements
// that a CPU is not affected (AMD's SSB_NO, ARCH_CAPABILITIES' contents) are facts about the host,
// not controls, and stay as they are. The policy applies after the CPU template and its
// overrides.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.hpp"
#include "hv/vcpu_state.hpp"

namespace vireo::arch::x86 {

/// The controls a policy shows, one bit per CONTROL in the order above.
struct SpecCtrl {
    static constexpr uint16_t kAll = (1u << 9) - 1;
    uint16_t shown = kAll;
    bool operator==(const SpecCtrl&) const = default;
};

/// Parses POLICY (at most 256 bytes). Errors name the part that is wrong and what is accepted.
Result<SpecCtrl> parse_spec_ctrl(std::string_view policy);

/// The canonical POLICY: "on", "off", "on,-ssbd" or "off,+ibpb" (the shorter list).
std::string to_string(const SpecCtrl& s);

/// Clears the CPUID bits of the controls `s` hides.
void apply_spec_ctrl(const SpecCtrl& s, std::vector<hv::CpuidEntry>& cpuid);

/// The controls a guest with this CPUID can use, space-separated ("ibrs ibpb ssbd ..."), or
/// "none".
std::string spec_controls_seen(const std::vector<hv::CpuidEntry>& cpuid);

/// The CONTROL names, for help texts: "ibrs, ibpb, ...".
std::string spec_control_names();

}  // namespace vireo::arch::x86
