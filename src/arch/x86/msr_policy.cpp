#include "arch/x86/msr_policy.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <optional>

#include "arch/x86/cpuid_words.hpp"
#include "base/split.hpp"

namespace vireo::arch::x86 {

namespace {

using namespace detail;

constexpr size_t kMaxPolicyBytes = 512;
constexpr size_t kMaxExtra = 32;
constexpr uint32_t kMaxExtraSpan = 4096;

constexpr bool has(uint32_t word, int bit) {
    return (word >> bit) & 1;
}

struct Named {
    uint32_t index;
    const char* name;
};

// The MSRs the refusal log names (the rest appear as numbers).
constexpr Named kNames[] = {
    {0x10, "IA32_TSC"},
    {0x1b, "IA32_APIC_BASE"},
    {0x33, "TEST_CTRL"},
    {0x34, "SMI_COUNT"},
    {0x3a, "IA32_FEATURE_CONTROL"},
    {0x3b, "IA32_TSC_ADJUST"},
    {0x48, "IA32_SPEC_CTRL"},
    {0x49, "IA32_PRED_CMD"},
    {0x8b, "IA32_BIOS_SIGN_ID"},
    {0xce, "PLATFORM_INFO"},
    {0xcf, "IA32_CORE_CAPABILITIES"},
    {0xe7, "IA32_MPERF"},
    {0xe8, "IA32_APERF"},
    {0xfe, "IA32_MTRRCAP"},
    {0x10a, "IA32_ARCH_CAPABILITIES"},
    {0x10b, "IA32_FLUSH_CMD"},
    {0x122, "IA32_TSX_CTRL"},
    {0x140, "MISC_FEATURE_ENABLES"},
    {0x179, "IA32_MCG_CAP"},
    {0x17a, "IA32_MCG_STATUS"},
    {0x199, "IA32_PERF_CTL"},
    {0x1a0, "IA32_MISC_ENABLE"},
    {0x1b0, "IA32_ENERGY_PERF_BIAS"},
    {0x1d9, "IA32_DEBUGCTL"},
    {0x1fc, "POWER_CTL"},
    {0x277, "IA32_PAT"},
    {0x2ff, "IA32_MTRR_DEF_TYPE"},
    {0x345, "IA32_PERF_CAPABILITIES"},
    {0x6e0, "IA32_TSC_DEADLINE"},
    {0xda0, "IA32_XSS"},
    {0xc0000080, "EFER"},
    {0xc0000103, "TSC_AUX"},
    {0xc0010010, "SYSCFG"},
    {0xc0010015, "HWCR"},
    {0xc0010114, "VM_CR"},
    {0xc0010117, "VM_HSAVE_PA"},
    {0xc001011f, "VIRT_SPEC_CTRL"},
    {0xc0011020, "LS_CFG"},
    {0xc0011029, "DE_CFG"},
};

struct Words {
    bool intel = false, amd = false, kvm = false;
    uint32_t ecx1 = 0, ebx7 = 0, ecx7 = 0, edx7 = 0, eax_d1 = 0, eax_a = 0, edx_a = 0;
    uint32_t ecx81 = 0, edx81 = 0, ebx88 = 0, eax8022 = 0;
};

Words words_of(const std::vector<hv::CpuidEntry>& cpuid) {
    Words w;
    auto get = [&](uint32_t leaf, int64_t index, Reg r) {
        const hv::CpuidEntry* e = find_leaf(cpuid, leaf, index);
        return e ? reg_of(*e, r) : 0u;
    };
    // Vendor: "GenuineIntel" / "AuthenticAMD" (and Hygon's AMD-alike) by leaf 0's EBX.
    const uint32_t vendor = get(0, -1, Ebx);
    w.intel = vendor == 0x756e6547;                        // "Genu"
    w.amd = vendor == 0x68747541 || vendor == 0x6f677948;  // "Auth", "Hygo"
    w.kvm = get(0x40000000, -1, Ebx) == 0x4b4d564b;        // "KVMK"
    w.ecx1 = get(1, -1, Ecx);
    w.ebx7 = get(7, 0, Ebx);
    w.ecx7 = get(7, 0, Ecx);
    w.edx7 = get(7, 0, Edx);
    w.eax_d1 = get(0xd, 1, Eax);
    w.eax_a = get(0xa, -1, Eax);
    w.edx_a = get(0xa, -1, Edx);
    w.ecx81 = get(0x80000001, -1, Ecx);
    w.edx81 = get(0x80000001, -1, Edx);
    w.ebx88 = get(0x80000008, -1, Ebx);
    w.eax8022 = get(0x80000022, -1, Eax);
    return w;
}

}  // namespace

Result<MsrPolicy> parse_msr_policy(std::string_view policy) {
    if (policy.size() > kMaxPolicyBytes)
        return fail(ErrorCode::InvalidArgument, "over {} bytes", kMaxPolicyBytes);
    const auto items = split(policy, ',');
    MsrPolicy p;
    if (items[0] == "on")
        p.on = true;
    else if (items[0] == "off")
        p.on = false;
    else
        return fail(ErrorCode::InvalidArgument,
                    "\"{}\": a policy starts with on (the MSRs the guest's CPU needs) or off "
                    "(every MSR KVM knows)",
                    items[0]);
    if (items.size() - 1 > kMaxExtra)
        return fail(ErrorCode::InvalidArgument, "{} additions; at most {}", items.size() - 1,
                    kMaxExtra);
    if (!p.on && items.size() > 1)
        return fail(ErrorCode::InvalidArgument,
                    "\"{}\": off allows every MSR already; additions go with on", items[1]);
    for (size_t i = 1; i < items.size(); ++i) {
        const std::string_view item = items[i];
        const auto bad = [&](const char* why) {
            return fail(ErrorCode::InvalidArgument, "\"{}\": {}", item, why);
        };
        if (item.size() < 2 || item[0] != '+')
            return bad("an addition is +MSR or +FIRST-LAST (e.g. +0x34, +0xc0010200-0xc001020b)");
        const std::string_view body = item.substr(1);
        const size_t dash = body.find('-');
        const auto first = parse_number(body.substr(0, dash));
        const auto last =
            dash == std::string_view::npos ? first : parse_number(body.substr(dash + 1));
        if (!first || !last) return bad("not an MSR number");
        if (*last < *first) return bad("the range ends before it starts");
        if (*last - *first >= kMaxExtraSpan)
            return fail(ErrorCode::InvalidArgument, "\"{}\": more than {} MSRs in one addition",
                        item, kMaxExtraSpan);
        p.extra.emplace_back(*first, *last);
    }
    return p;
}

std::string to_string(const MsrPolicy& p) {
    std::string s = p.on ? "on" : "off";
    for (const auto& [first, last] : p.extra)
        s += first == last ? fmt::format(",+{:#x}", first)
                           : fmt::format(",+{:#x}-{:#x}", first, last);
    return s;
}

std::vector<uint32_t> msr_allow_list(const MsrPolicy& p, const std::vector<hv::CpuidEntry>& cpuid) {
    std::vector<uint32_t> out;
    if (!p.on) return out;
    const auto add = [&](uint32_t first, uint32_t last) {
        for (uint64_t m = first; m <= last; ++m)
            out.push_back(static_cast<uint32_t>(m));
    };
    const auto one = [&](uint32_t m) { out.push_back(m); };
    const Words w = words_of(cpuid);

    // Every x86-64 kernel's: TSC, APIC base, TSC adjust, microcode revision, MTRRs (capability,
    // variable and fixed ranges, default type), SYSENTER, machine check (global and 32 banks),
    // misc enable, debug control, PAT, EFER, the SYSCALL MSRs, FS/GS bases. KVM's platform info
    // and misc feature enables (CPUID faulting) it emulates on every vendor.
    one(0x10);
    one(0x1b);
    one(0x3b);
    one(0x8b);
    one(0xce);
    one(0xfe);
    one(0x140);
    add(0x174, 0x176);
    add(0x179, 0x17b);
    one(0x1a0);
    one(0x1d9);
    add(0x200, 0x21f);
    one(0x250);
    one(0x258);
    one(0x259);
    add(0x268, 0x26f);
    one(0x277);
    one(0x2ff);
    add(0x400, 0x47f);
    add(0xc0000080, 0xc0000084);
    add(0xc0000100, 0xc0000102);

    // Features the CPUID shows.
    if (has(w.ecx1, 24)) one(0x6e0);                           // TSC-deadline timer
    if (has(w.eax_d1, 3)) one(0xda0);                          // XSAVES: IA32_XSS
    if (has(w.eax_d1, 4)) add(0x1c4, 0x1c5);                   // XFD
    if (has(w.edx81, 27) || has(w.ecx7, 22)) one(0xc0000103);  // RDTSCP, RDPID: TSC_AUX
    if (has(w.ecx7, 5)) one(0xe1);                             // WAITPKG: UMWAIT_CONTROL
    if (has(w.ecx7, 31)) one(0x6e1);                           // PKS: IA32_PKRS
    if (has(w.ebx7, 14)) one(0xd90);                           // MPX: BNDCFGS
    if (has(w.ecx1, 15)) one(0x345);                           // PDCM: PERF_CAPABILITIES
    if (has(w.ecx1, 5)) add(0x480, 0x491);                     // VMX (nested)
    if (has(w.edx7, 30)) one(0xcf);                            // CORE_CAPABILITIES
    if (has(w.edx7, 9)) one(0x123);                            // SRBDS_CTRL: MCU_OPT_CTRL
    // Speculation controls (arch/x86/spec_ctrl): SPEC_CTRL, PRED_CMD, ARCH_CAPABILITIES,
    // FLUSH_CMD, AMD's VIRT_SPEC_CTRL.
    if ((w.edx7 & (1u << 26 | 1u << 27 | 1u << 31)) ||
        (w.ebx88 & (1u << 14 | 1u << 15 | 1u << 24 | 1u << 28)))
        one(0x48);
    if (has(w.edx7, 26) || has(w.ebx88, 12)) one(0x49);
    if (has(w.edx7, 29)) one(0x10a);
    if (has(w.edx7, 28)) one(0x10b);
    if (has(w.ebx88, 25)) one(0xc001011f);
    // KVM's paravirtual MSRs: the old and new clocks, async page faults, steal time, PV EOI,
    // poll control, migration control.
    if (w.kvm) {
        add(0x11, 0x12);
        add(0x4b564d00, 0x4b564d08);
    }
    // Performance counters: Intel's architectural PMU (leaf 0xa: its general and fixed
    // counters, and the global controls from version 2); AMD's legacy four, the core extension's
    // six, PerfMonV2's global controls.
    if (const uint32_t version = w.eax_a & 0xff; w.intel && version > 0) {
        const uint32_t gp = (w.eax_a >> 8) & 0xff, fixed = w.edx_a & 0x1f;
        if (gp > 0) {
            add(0xc1, 0xc1 + std::min(gp, 8u) - 1);
            add(0x186, 0x186 + std::min(gp, 8u) - 1);
            add(0x4c1, 0x4c1 + std::min(gp, 8u) - 1);
        }
        if (fixed > 0) add(0x309, 0x309 + std::min(fixed, 4u) - 1);
        one(0x38d);
        if (version > 1) add(0x38e, 0x390);
    }
    if (w.amd) {
        add(0xc0010000, 0xc0010007);
        if (has(w.ecx81, 23)) add(0xc0010200, 0xc001020b);
        if (has(w.eax8022, 0)) add(0xc0000300, 0xc0000303);
    }
    // Vendor MSRs KVM emulates and a kernel reads at boot. Intel: feature control, split-lock
    // TEST_CTRL, CMCI's bank controls, the local machine check's. AMD: SYSCFG, HWCR, NB_CFG,
    // the MMIO config base, TSEG, DE_CFG, DC_CFG, BU_CFG2, VM_CR, OS visible workarounds, and
    // nested SVM's host save area.
    if (w.intel) {
        one(0x3a);
        one(0x33);
        add(0x280, 0x29f);
        one(0x4d0);
    }
    if (w.amd) {
        one(0xc0010010);
        one(0xc0010015);
        one(0xc001001f);
        one(0xc0010058);
        add(0xc0010112, 0xc0010113);
        one(0xc0010114);
        one(0xc0011022);
        one(0xc0011029);
        one(0xc001102a);
        if (has(w.ecx81, 9)) add(0xc0010140, 0xc0010141);
        if (has(w.ecx81, 2)) one(0xc0010117);
    }
    for (const auto& [first, last] : p.extra)
        add(first, last);
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
}

std::string describe_msr(uint32_t index) {
    for (const auto& n : kNames)
        if (n.index == index) return fmt::format("{} ({:#x})", n.name, index);
    return fmt::format("{:#x}", index);
}

}  // namespace vireo::arch::x86
