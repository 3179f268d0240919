#include "arch/x86/cpu_template.hpp"

#include <fmt/format.h>

#include <bit>
#include <charconv>
#include <optional>

#include "arch/x86/cpuid_words.hpp"
#include "base/split.hpp"

namespace vireo::arch::x86 {

namespace {

using namespace detail;

constexpr size_t kMaxSpecBytes = 1024;
constexpr size_t kMaxOverrides = 64;

constexpr uint32_t bit(int n) {
    return uint32_t{1} << n;
}

// A register a baseline governs: it keeps `need` (all of which the host must have) and `pass`
// (kept as the host has them: speculation controls, AMD's mirror of leaf 1's EDX), nothing else.
struct Governed {
    uint32_t leaf;
    int64_t index;
    Reg reg;
    uint32_t need;
    uint32_t pass;
};

// x86-64 (psABI baseline): FPU, TSC, MSR, PAE, CX8, SYSENTER, PGE, CMOV, PAT, CLFLUSH, MMX,
// FXSR, SSE, SSE2 — what a 64-bit kernel needs and every x86-64 CPU has.
constexpr uint32_t k1EdxBase = bit(0) | bit(4) | bit(5) | bit(6) | bit(8) | bit(11) | bit(13) |
                               bit(15) | bit(16) | bit(19) | bit(23) | bit(24) | bit(25) | bit(26);
// Legacy architectural bits kept as the host has them (VME, DE, PSE, MCE, the APIC, which
// follows the APIC base MSR, MTRR, MCA, PSE36): KVM hides some on some hosts (the emulated
// test host's CPU has no VME), and no 64-bit guest decides anything on them.
constexpr uint32_t k1EdxLegacy =
    bit(1) | bit(2) | bit(3) | bit(7) | bit(9) | bit(12) | bit(14) | bit(17);
// x86-64-v2: SSE3, SSSE3, CMPXCHG16B, SSE4.1, SSE4.2, POPCNT (and LAHF/SAHF in 0x80000001);
// x2APIC is KVM's own LAPIC. The TSC-deadline timer passes as KVM offers it (a capability of
// its LAPIC, KVM_CAP_TSC_DEADLINE_TIMER).
constexpr uint32_t k1EcxV2 = bit(0) | bit(9) | bit(13) | bit(19) | bit(20) | bit(21) | bit(23);
constexpr uint32_t k1EcxPass = bit(24);
// x86-64-v3 adds FMA, MOVBE, XSAVE, AVX, F16C (and AVX2, BMI1, BMI2, LZCNT).
constexpr uint32_t k1EcxV3 = k1EcxV2 | bit(12) | bit(22) | bit(26) | bit(28) | bit(29);
constexpr uint32_t k7EbxV3 = bit(3) | bit(5) | bit(8);
// Speculation controls pass through: md_clear, spec_ctrl, stibp, flush_l1d, arch_capabilities,
// ssbd (7.0 EDX); AMD's ibpb, ibrs, stibp, their always-on and preferred forms, ssbd,
// virt_ssbd, ssb_no, psfd (0x80000008 EBX).
constexpr uint32_t k7EdxSpec = bit(10) | bit(26) | bit(27) | bit(28) | bit(29) | bit(31);
constexpr uint32_t k88EbxSpec = bit(12) | bit(14) | bit(15) | bit(16) | bit(17) | bit(18) |
                                bit(19) | bit(24) | bit(25) | bit(26) | bit(28);
// AMD repeats leaf 1's EDX features in 0x80000001 EDX (Intel leaves them 0).
constexpr uint32_t k81EdxMirror =
    (k1EdxBase | k1EdxLegacy) & ~(bit(11) | bit(19) | bit(25) | bit(26));
constexpr uint32_t k81EdxBase = bit(11) | bit(20) | bit(29);  // syscall, nx, lm

// XSAVE state components: x87 and SSE (v2 has no XSAVE, but the leaf stays consistent), AVX.
constexpr uint32_t kXcr0V2 = bit(0) | bit(1);
constexpr uint32_t kXcr0V3 = kXcr0V2 | bit(2);
constexpr uint32_t kXsaveLegacyBytes = 512 + 64, kAvxBytes = 256;

struct Baseline {
    const char* name;
    std::vector<Governed> regs;
    uint32_t xcr0;
};

const std::vector<Baseline>& baselines() {
    static const std::vector<Baseline> b = {
        {"x86-64-v2",
         {{0x1, -1, Ecx, k1EcxV2, k1EcxPass},
          {0x1, -1, Edx, k1EdxBase, k1EdxLegacy},
          {0x7, 0, Ebx, 0, 0},
          {0x7, 0, Ecx, 0, 0},
          {0x7, 0, Edx, 0, k7EdxSpec},
          {0x7, 1, Eax, 0, 0},
          {0xd, 1, Eax, 0, 0},
          {0x80000001, -1, Ecx, bit(0), 0},
          {0x80000001, -1, Edx, k81EdxBase, k81EdxMirror},
          {0x80000008, -1, Ebx, 0, k88EbxSpec}},
         kXcr0V2},
        {"x86-64-v3",
         {{0x1, -1, Ecx, k1EcxV3, k1EcxPass},
          {0x1, -1, Edx, k1EdxBase, k1EdxLegacy},
          {0x7, 0, Ebx, k7EbxV3, 0},
          {0x7, 0, Ecx, 0, 0},
          {0x7, 0, Edx, 0, k7EdxSpec},
          {0x7, 1, Eax, 0, 0},
          {0xd, 1, Eax, 0, 0},
          {0x80000001, -1, Ecx, bit(0) | bit(5), 0},
          {0x80000001, -1, Edx, k81EdxBase, k81EdxMirror},
          {0x80000008, -1, Ebx, 0, k88EbxSpec}},
         kXcr0V3},
    };
    return b;
}

// The first word of a table name: "abm (lzcnt)" is "abm".
std::string_view short_name(const char* name) {
    std::string_view n(name);
    return n.substr(0, n.find(' '));
}

Unexpected bad(std::string_view item, std::string_view why) {
    return fail(ErrorCode::InvalidArgument, "\"{}\": {}", item, why);
}

Result<CpuidOverride> parse_named(std::string_view item) {
    const bool set = item[0] == '+';
    const std::string_view name = item.substr(1);
    for (const auto& w : feature_words())
        for (const auto& [b, n] : w.names)
            if (short_name(n) == name) {
                CpuidOverride o;
                o.leaf = w.leaf;
                o.any_index = w.index < 0;
                o.index = w.index < 0 ? 0 : static_cast<uint32_t>(w.index);
                o.reg = static_cast<uint8_t>(w.reg);
                (set ? o.set : o.clear) = bit(b);
                return o;
            }
    return bad(item,
               "no CPU feature of that name (e.g. -avx2, +pcid, -x2apic; or give the bit as "
               "LEAF[.SUB]:REG-=MASK)");
}

// LEAF[.SUB]:REG(+=|-=)MASK
Result<CpuidOverride> parse_raw(std::string_view item) {
    const size_t colon = item.find(':');
    const size_t op = item.find_first_of("+-", colon == std::string_view::npos ? 0 : colon);
    if (colon == std::string_view::npos || op == std::string_view::npos || op + 1 >= item.size() ||
        item[op + 1] != '=')
        return bad(item, "an override is +FEATURE, -FEATURE or LEAF[.SUB]:REG+=MASK / -=MASK");
    const std::string_view where = item.substr(0, colon);
    const std::string_view reg = item.substr(colon + 1, op - colon - 1);
    const auto mask = parse_number(item.substr(op + 2));
    CpuidOverride o;
    const size_t dot = where.find('.');
    const auto leaf = parse_number(where.substr(0, dot));
    if (!leaf) return bad(item, "the leaf is not a number");
    o.leaf = *leaf;
    if (dot != std::string_view::npos) {
        const auto sub = parse_number(where.substr(dot + 1));
        if (!sub) return bad(item, "the sub-leaf is not a number");
        o.index = *sub;
        o.any_index = false;
    }
    int r = -1;
    for (int i = 0; i < 4; ++i) {
        std::string lower = kRegNames[i];
        for (auto& c : lower)
            c = static_cast<char>(c - 'A' + 'a');
        if (reg == lower || reg == kRegNames[i]) r = i;
    }
    if (r < 0) return bad(item, "the register is eax, ebx, ecx or edx");
    o.reg = static_cast<uint8_t>(r);
    if (!mask || *mask == 0) return bad(item, "the mask is not a non-zero number");
    (item[op] == '+' ? o.set : o.clear) = *mask;
    // Only feature registers: the rest (topology, cache and XSAVE sizes, the vendor) is vireo's
    // to keep consistent.
    const int64_t index = o.any_index ? -1 : static_cast<int64_t>(o.index);
    if (find_word(o.leaf, index, static_cast<Reg>(o.reg)) == nullptr) {
        std::string regs;
        for (const auto& w : feature_words()) {
            if (!regs.empty()) regs += ", ";
            regs += w.index < 0 ? fmt::format("{:#x}:{}", w.leaf, kRegNames[w.reg])
                                : fmt::format("{:#x}.{}:{}", w.leaf, w.index, kRegNames[w.reg]);
        }
        return bad(item, fmt::format("not a feature register (overrides apply to {})", regs));
    }
    return o;
}

}  // namespace

std::string cpu_template_names() {
    std::string names = "host";
    for (const auto& b : baselines())
        names += fmt::format(", {}", b.name);
    return names;
}

std::string to_string(const CpuTemplate& t) {
    std::string s = t.name;
    for (const auto& o : t.overrides) {
        const std::string where =
            o.any_index ? fmt::format("{:#x}", o.leaf) : fmt::format("{:#x}.{}", o.leaf, o.index);
        if (o.set) s += fmt::format(",{}:{}+={:#x}", where, kRegNames[o.reg & 3], o.set);
        if (o.clear) s += fmt::format(",{}:{}-={:#x}", where, kRegNames[o.reg & 3], o.clear);
    }
    return s;
}

Result<CpuTemplate> parse_cpu_template(std::string_view spec) {
    if (spec.size() > kMaxSpecBytes)
        return fail(ErrorCode::InvalidArgument, "over {} bytes", kMaxSpecBytes);
    const auto items = split(spec, ',');
    CpuTemplate t;
    t.name = std::string(items[0]);
    bool known = t.name == "host";
    for (const auto& b : baselines())
        known = known || t.name == b.name;
    if (!known)
        return fail(ErrorCode::InvalidArgument, "\"{}\": not a CPU template (use {})", t.name,
                    cpu_template_names());
    if (items.size() - 1 > kMaxOverrides)
        return fail(ErrorCode::InvalidArgument, "{} overrides; at most {}", items.size() - 1,
                    kMaxOverrides);
    for (size_t i = 1; i < items.size(); ++i) {
        const std::string_view item = items[i];
        if (item.size() < 2) return bad(item, "an empty override");
        if ((item[0] == '+' || item[0] == '-') && item.find(':') == std::string_view::npos) {
            VIREO_TRY_ASSIGN(auto o, parse_named(item));
            t.overrides.push_back(o);
        } else {
            VIREO_TRY_ASSIGN(auto o, parse_raw(item));
            t.overrides.push_back(o);
        }
    }
    return t;
}

Result<std::vector<hv::CpuidEntry>> apply_cpu_template(
    const CpuTemplate& t, const std::vector<hv::CpuidEntry>& supported) {
    std::vector<hv::CpuidEntry> out = supported;
    for (const auto& b : baselines()) {
        if (t.name != b.name) continue;
        for (const auto& g : b.regs) {
            hv::CpuidEntry* e = find_leaf(out, g.leaf, g.index);
            const uint32_t have = e ? reg_of(*e, g.reg) : 0;
            if (const uint32_t missing = g.need & ~have)
                return fail(ErrorCode::Unsupported,
                            "{} needs {}, which this host's KVM does not offer", b.name,
                            describe_bit(g.leaf, g.index, g.reg, std::countr_zero(missing)));
            if (e) reg_of(*e, g.reg) = have & (g.need | g.pass);
        }
        // XSAVE: only the baseline's state components, and their size.
        for (auto& e : out) {
            if (e.function != 0xd) continue;
            if (e.index == 0) {
                if (const uint32_t missing = b.xcr0 & ~e.eax; missing && (b.xcr0 & bit(2)))
                    return fail(ErrorCode::Unsupported,
                                "{} needs XSAVE state component {}, which this host's KVM does not "
                                "offer",
                                b.name, std::countr_zero(missing));
                e.eax &= b.xcr0;
                e.edx = 0;
                e.ecx = kXsaveLegacyBytes + ((b.xcr0 & bit(2)) ? kAvxBytes : 0);
            } else if (e.index == 1) {
                e.ecx = 0;  // no supervisor state (XSS) components
                e.edx = 0;
            } else if (e.index >= 32 || !(b.xcr0 & bit(static_cast<int>(e.index)))) {
                e.eax = e.ebx = e.ecx = e.edx = 0;
            }
        }
    }
    for (const auto& o : t.overrides) {
        const int64_t index = o.any_index ? -1 : static_cast<int64_t>(o.index);
        const Reg reg = static_cast<Reg>(o.reg);
        hv::CpuidEntry* e = find_leaf(out, o.leaf, index);
        const hv::CpuidEntry* s = find_leaf(supported, o.leaf, index);
        const uint32_t offered = s ? reg_of(*s, reg) : 0;
        if (const uint32_t missing = o.set & ~offered)
            return fail(ErrorCode::Unsupported, "cannot set {}: this host's KVM does not offer it",
                        describe_bit(o.leaf, index, reg, std::countr_zero(missing)));
        if (e) reg_of(*e, reg) = (reg_of(*e, reg) | o.set) & ~o.clear;
    }
    apply_spec_ctrl(t.spec_ctrl, out);
    return out;
}

}  // namespace vireo::arch::x86
