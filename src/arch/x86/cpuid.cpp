#include "arch/x86/cpuid.hpp"

#include <fmt/format.h>

#include <bit>
#include <charconv>
#include <cstring>

#include "arch/x86/cpuid_words.hpp"

namespace vireo::arch::x86 {

namespace {
uint32_t bits_for(uint32_t n) {
    return n <= 1 ? 0 : static_cast<uint32_t>(std::bit_width(n - 1));
}
}  // namespace

namespace detail {

const std::vector<FeatureWord>& feature_words() {
    static const std::vector<FeatureWord> words = {
        {0x1,
         -1,
         Ecx,
         (1u << 27) | (1u << 31),  // OSXSAVE follows CR4; the hypervisor bit
         {{0, "sse3"},
          {1, "pclmulqdq"},
          {9, "ssse3"},
          {12, "fma"},
          {13, "cx16"},
          {17, "pcid"},
          {19, "sse4_1"},
          {20, "sse4_2"},
          {21, "x2apic"},
          {22, "movbe"},
          {23, "popcnt"},
          {24, "tsc_deadline_timer"},
          {25, "aes"},
          {26, "xsave"},
          {28, "avx"},
          {29, "f16c"},
          {30, "rdrand"}}},
        {0x1,
         -1,
         Edx,
         (1u << 9) | (1u << 28),  // APIC follows the APIC base MSR; HTT is topology
         {{0, "fpu"},  {1, "vme"},   {2, "de"},    {3, "pse"},  {4, "tsc"},    {5, "msr"},
          {6, "pae"},  {7, "mce"},   {8, "cx8"},   {9, "apic"}, {11, "sep"},   {12, "mtrr"},
          {13, "pge"}, {14, "mca"},  {15, "cmov"}, {16, "pat"}, {17, "pse36"}, {19, "clflush"},
          {23, "mmx"}, {24, "fxsr"}, {25, "sse"},  {26, "sse2"}}},
        {0x6, -1, Eax, 0, {{2, "arat"}}},
        {0x7,
         0,
         Ebx,
         0,
         {{0, "fsgsbase"},
          {3, "bmi1"},
          {5, "avx2"},
          {7, "smep"},
          {8, "bmi2"},
          {9, "erms"},
          {10, "invpcid"},
          {16, "avx512f"},
          {17, "avx512dq"},
          {18, "rdseed"},
          {19, "adx"},
          {20, "smap"},
          {23, "clflushopt"},
          {24, "clwb"},
          {28, "avx512cd"},
          {29, "sha_ni"},
          {30, "avx512bw"},
          {31, "avx512vl"}}},
        {0x7,
         0,
         Ecx,
         0,
         {{1, "avx512vbmi"},
          {2, "umip"},
          {3, "pku"},
          {8, "gfni"},
          {9, "vaes"},
          {10, "vpclmulqdq"},
          {22, "rdpid"}}},
        {0x7,
         0,
         Edx,
         0,
         {{10, "md_clear"},
          {26, "spec_ctrl (IBRS/IBPB)"},
          {27, "stibp"},
          {29, "arch_capabilities"},
          {31, "ssbd"}}},
        {0x7, 1, Eax, 0, {{4, "avx_vnni"}, {5, "avx512_bf16"}}},
        {0xd, 1, Eax, 0, {{0, "xsaveopt"}, {1, "xsavec"}, {2, "xgetbv1"}, {3, "xsaves"}}},
        {0x80000001,
         -1,
         Ecx,
         0,
         {{0, "lahf_lm"}, {2, "svm"}, {5, "abm (lzcnt)"}, {6, "sse4a"}, {8, "3dnowprefetch"}}},
        {0x80000001,
         -1,
         Edx,
         0,
         {{11, "syscall"}, {20, "nx"}, {26, "pdpe1gb"}, {27, "rdtscp"}, {29, "lm"}}},
        {0x80000007, -1, Edx, 0, {{8, "invariant tsc"}}},
        {0x80000008,
         -1,
         Ebx,
         0,
         {{12, "ibpb (AMD)"},
          {14, "ibrs (AMD)"},
          {15, "stibp (AMD)"},
          {24, "ssbd (AMD)"},
          {25, "virt_ssbd"}}},
        {0x40000001,
         -1,
         Eax,
         0,
         {{0, "kvmclock"},
          {3, "kvmclock (new MSRs)"},
          {4, "async_pf"},
          {5, "steal_time"},
          {6, "pv_eoi"},
          {24, "kvmclock stable"}}},
    };
    return words;
}

std::optional<uint32_t> parse_number(std::string_view s) {
    int base = 10;
    if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s.remove_prefix(2);
    }
    uint32_t v = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
    if (s.empty() || ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
    return v;
}

const hv::CpuidEntry* find_leaf(const std::vector<hv::CpuidEntry>& v, uint32_t leaf,
                                int64_t index) {
    for (const auto& e : v)
        if (e.function == leaf && (index < 0 || e.index == static_cast<uint32_t>(index))) return &e;
    return nullptr;
}

hv::CpuidEntry* find_leaf(std::vector<hv::CpuidEntry>& v, uint32_t leaf, int64_t index) {
    for (auto& e : v)
        if (e.function == leaf && (index < 0 || e.index == static_cast<uint32_t>(index))) return &e;
    return nullptr;
}

uint32_t& reg_of(hv::CpuidEntry& e, Reg r) {
    switch (r) {
        case Eax:
            return e.eax;
        case Ebx:
            return e.ebx;
        case Ecx:
            return e.ecx;
        case Edx:
            break;
    }
    return e.edx;
}

const FeatureWord* find_word(uint32_t leaf, int64_t index, Reg reg) {
    for (const auto& w : feature_words())
        if (w.leaf == leaf && w.index == index && w.reg == reg) return &w;
    return nullptr;
}

std::string describe_bit(uint32_t leaf, int64_t index, Reg reg, int bit) {
    const char* name = nullptr;
    if (const FeatureWord* w = find_word(leaf, index, reg))
        for (const auto& [b, n] : w->names)
            if (b == bit) name = n;
    const std::string where =
        index < 0 ? fmt::format("CPUID {:#x} {} bit {}", leaf, kRegNames[reg], bit)
                  : fmt::format("CPUID {:#x}.{} {} bit {}", leaf, index, kRegNames[reg], bit);
    return name ? fmt::format("{} ({})", name, where) : where;
}

uint32_t reg_of(const hv::CpuidEntry& e, Reg r) {
    return reg_of(const_cast<hv::CpuidEntry&>(e), r);  // only read
}

}  // namespace detail

namespace {

using namespace detail;

std::string vendor_of(const std::vector<hv::CpuidEntry>& v) {
    const hv::CpuidEntry* e = find_leaf(v, 0, -1);
    if (e == nullptr) return "an unknown vendor";
    char s[13] = {};
    std::memcpy(s, &e->ebx, 4);
    std::memcpy(s + 4, &e->edx, 4);
    std::memcpy(s + 8, &e->ecx, 4);
    return s;
}

}  // namespace

std::optional<std::string> cpuid_cannot_continue(const std::vector<hv::CpuidEntry>& saved,
                                                 const std::vector<hv::CpuidEntry>& here) {
    if (vendor_of(saved) != vendor_of(here))
        return fmt::format("the saved guest ran on a CPU from {}; this host's is from {}",
                           vendor_of(saved), vendor_of(here));
    for (const auto& w : feature_words()) {
        const hv::CpuidEntry* s = find_leaf(saved, w.leaf, w.index);
        if (s == nullptr) continue;  // the guest did not see this leaf
        const hv::CpuidEntry* h = find_leaf(here, w.leaf, w.index);
        const uint32_t missing = reg_of(*s, w.reg) & ~(h ? reg_of(*h, w.reg) : 0) & ~w.ignore;
        if (missing == 0) continue;
        return fmt::format(
            "the saved guest uses CPU feature {}, which this host's KVM does not offer",
            describe_bit(w.leaf, w.index, w.reg, std::countr_zero(missing)));
    }
    return std::nullopt;
}

std::vector<hv::CpuidEntry> guest_cpuid(const std::vector<hv::CpuidEntry>& supported,
                                        uint32_t vcpu_id, uint32_t num_vcpus) {
    std::vector<hv::CpuidEntry> out = supported;
    const uint32_t core_bits = bits_for(num_vcpus);
    for (auto& e : out) {
        switch (e.function) {
            case 0x1:
                // EBX: initial APIC id, logical processors per package, CLFLUSH line size (8*8).
                e.ebx = (vcpu_id << 24) | (std::min<uint32_t>(num_vcpus, 255) << 16) | (8u << 8);
                e.ecx |= 1u << 31;                     // running under a hypervisor
                if (num_vcpus > 1) e.edx |= 1u << 28;  // HTT: more than one logical processor
                break;
            case 0x4:
                // Deterministic cache parameters: cores per package - 1 in EAX[31:26].
                if (e.eax & 0x1f)
                    e.eax = (e.eax & 0x03ffffff) | (std::min<uint32_t>(num_vcpus - 1, 63) << 26);
                break;
            case 0xb:
            case 0x1f:
                // Extended topology: level 0 = SMT (1 thread), level 1 = core (num_vcpus).
                e.edx = vcpu_id;
                if (e.index == 0) {
                    e.eax = 0;
                    e.ebx = 1;
                    e.ecx = (1u << 8) | 0;
                } else if (e.index == 1) {
                    e.eax = core_bits;
                    e.ebx = num_vcpus;
                    e.ecx = (2u << 8) | 1;
                } else {
                    e.eax = 0;
                    e.ebx = 0;
                    e.ecx = e.index;
                }
                break;
            case 0x80000008:
                // AMD: number of cores - 1 and the APIC id bits they use.
                e.ecx =
                    (e.ecx & ~0xf0ffu) | (core_bits << 12) | std::min<uint32_t>(num_vcpus - 1, 255);
                break;
            case 0x8000001e:
                e.eax = vcpu_id;                              // extended APIC id
                e.ebx = (e.ebx & ~0xffu) | (vcpu_id & 0xff);  // core id, 1 thread per core
                e.ecx = 0;                                    // node 0
                break;
            default:
                break;
        }
    }
    return out;
}

std::vector<hv::MsrEntry> boot_msrs() {
    constexpr uint32_t kMiscEnable = 0x1a0, kMtrrDefType = 0x2ff;
    constexpr uint64_t kFastStrings = 1, kMtrrEnable = 1u << 11, kWriteBack = 6;
    return {{kMiscEnable, kFastStrings}, {kMtrrDefType, kMtrrEnable | kWriteBack}};
}

}  // namespace vireo::arch::x86
