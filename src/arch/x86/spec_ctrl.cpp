#include "arch/x86/spec_ctrl.hpp"

#include <fmt/format.h>

#include <bit>

#include "arch/x86/cpuid_words.hpp"
#include "base/split.hpp"

namespace vireo::arch::x86 {

namespace {

using namespace detail;

constexpr size_t kMaxPolicyBytes = 256;

constexpr uint32_t bit(int n) {
    return uint32_t{1} << n;
}

// Each control's CPUID bits: Intel's (7.0 EDX) and AMD's (0x80000008 EBX).
struct Control {
    const char* name;
    uint32_t edx7;
    uint32_t ebx88;
};

constexpr Control kControls[] = {
    // IBRS: Intel's SPEC_CTRL bit (IBRS and IBPB); AMD's IBRS, always-on, preferred and
    // same-mode forms.
    {"ibrs", bit(26), bit(14) | bit(16) | bit(18) | bit(19)},
    {"ibpb", bit(26), bit(12)},
    {"stibp", bit(27), bit(15) | bit(17)},
    {"ssbd", bit(31), bit(24)},
    {"virt-ssbd", 0, bit(25)},  // AMD's VIRT_SPEC_CTRL MSR: what KVM on AMD offers for SSBD
    {"psfd", 0, bit(28)},       // predictive store forwarding disable (AMD)
    {"arch-caps", bit(29), 0},  // the IA32_ARCH_CAPABILITIES MSR
    {"md-clear", bit(10), 0},   // VERW clears the CPU's buffers (MDS)
    {"flush-l1d", bit(28), 0},  // the IA32_FLUSH_CMD MSR (L1TF)
};
constexpr size_t kCount = std::size(kControls);
static_assert(SpecCtrl::kAll == (1u << kCount) - 1);

}  // namespace

std::string spec_control_names() {
    std::string names;
    for (const auto& c : kControls)
        names += fmt::format("{}{}", names.empty() ? "" : ", ", c.name);
    return names;
}

Result<SpecCtrl> parse_spec_ctrl(std::string_view policy) {
    if (policy.size() > kMaxPolicyBytes)
        return fail(ErrorCode::InvalidArgument, "over {} bytes", kMaxPolicyBytes);
    const auto items = split(policy, ',');
    SpecCtrl s;
    if (items[0] == "on")
        s.shown = SpecCtrl::kAll;
    else if (items[0] == "off")
        s.shown = 0;
    else
        return fail(ErrorCode::InvalidArgument,
                    "\"{}\": a policy starts with on (show the host's speculation controls) or "
                    "off (hide them)",
                    items[0]);
    for (size_t i = 1; i < items.size(); ++i) {
        const std::string_view item = items[i];
        if (item.size() < 2 || (item[0] != '+' && item[0] != '-'))
            return fail(ErrorCode::InvalidArgument, "\"{}\": use +CONTROL or -CONTROL ({})", item,
                        spec_control_names());
        size_t k = 0;
        while (k < kCount && item.substr(1) != kControls[k].name)
            ++k;
        if (k == kCount)
            return fail(ErrorCode::InvalidArgument, "\"{}\": no such control (use {})",
                        item.substr(1), spec_control_names());
        if (item[0] == '+')
            s.shown = static_cast<uint16_t>(s.shown | (1u << k));
        else
            s.shown = static_cast<uint16_t>(s.shown & ~(1u << k));
    }
    return s;
}

std::string to_string(const SpecCtrl& s) {
    const int shown = std::popcount(s.shown);
    const bool on = shown * 2 >= static_cast<int>(kCount);
    std::string text = on ? "on" : "off";
    for (size_t k = 0; k < kCount; ++k)
        if (bool(s.shown & (1u << k)) != on)
            text += fmt::format(",{}{}", on ? '-' : '+', kControls[k].name);
    return text;
}

void apply_spec_ctrl(const SpecCtrl& s, std::vector<hv::CpuidEntry>& cpuid) {
    uint32_t clear[2] = {0, 0};  // 7.0 EDX, 0x80000008 EBX
    for (size_t k = 0; k < kCount; ++k)
        if (!(s.shown & (1u << k))) {
            clear[0] |= kControls[k].edx7;
            clear[1] |= kControls[k].ebx88;
        }
    if (hv::CpuidEntry* e = find_leaf(cpuid, 0x7, 0)) e->edx &= ~clear[0];
    if (hv::CpuidEntry* e = find_leaf(cpuid, 0x80000008, -1)) e->ebx &= ~clear[1];
}

std::string spec_controls_seen(const std::vector<hv::CpuidEntry>& cpuid) {
    const hv::CpuidEntry* e7 = find_leaf(cpuid, 0x7, 0);
    const hv::CpuidEntry* e88 = find_leaf(cpuid, 0x80000008, -1);
    const uint32_t edx7 = e7 ? e7->edx : 0, ebx88 = e88 ? e88->ebx : 0;
    std::string seen;
    for (const auto& c : kControls)
        if ((edx7 & c.edx7) || (ebx88 & c.ebx88))
            seen += fmt::format("{}{}", seen.empty() ? "" : " ", c.name);
    return seen.empty() ? "none" : seen;
}

}  // namespace vireo::arch::x86
