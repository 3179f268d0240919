// CPU templates: the SPEC parser, the baselines (the same features on any host that has them,
// a named refusal where one lacks them) and overrides.
#include "arch/x86/cpu_template.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

#include "arch/x86/msr_policy.hpp"

namespace vireo::arch::x86 {
namespace {

constexpr uint32_t bit(int n) {
    return uint32_t{1} << n;
}

const hv::CpuidEntry* leaf(const std::vector<hv::CpuidEntry>& v, uint32_t fn, uint32_t index = 0) {
    for (const auto& e : v)
        if (e.function == fn && e.index == index) return &e;
    return nullptr;
}

// A recent AMD host as KVM describes it: AVX-512, AES, PCID, SVM, RDTSCP, speculation controls
// and a few things no baseline has (FSRM in 7.0 EDX, CLZERO in 0x80000008 EBX).
std::vector<hv::CpuidEntry> big_host() {
    hv::CpuidEntry v{.function = 0, .eax = 0xd};
    std::memcpy(&v.ebx, "Auth", 4);
    std::memcpy(&v.edx, "enti", 4);
    std::memcpy(&v.ecx, "cAMD", 4);
    const uint32_t ecx1 = bit(0) | bit(1) | bit(9) | bit(12) | bit(13) | bit(17) | bit(19) |
                          bit(20) | bit(21) | bit(22) | bit(23) | bit(24) | bit(25) | bit(26) |
                          bit(28) | bit(29) | bit(30);
    const uint32_t edx1 = 0x178bfbff;  // fpu .. sse2, htt
    return {
        v,
        {.function = 1, .ecx = ecx1, .edx = edx1},
        {.function = 7,
         .index = 0,
         .flags = 1,
         .ebx = bit(0) | bit(3) | bit(5) | bit(7) | bit(8) | bit(16) | bit(17) | bit(20),
         .ecx = bit(1) | bit(9),
         .edx = bit(4) | bit(26) | bit(27) | bit(29) | bit(31)},
        {.function = 7, .index = 1, .flags = 1, .eax = bit(4)},
        {.function = 0xd, .index = 0, .flags = 1, .eax = 0xe7, .ebx = 576, .ecx = 2696},
        {.function = 0xd, .index = 1, .flags = 1, .eax = 0xf, .ecx = bit(11)},
        {.function = 0xd, .index = 2, .flags = 1, .eax = 256, .ebx = 576},
        {.function = 0xd, .index = 5, .flags = 1, .eax = 64, .ebx = 832},
        {.function = 0x80000001,
         .ecx = bit(0) | bit(2) | bit(5) | bit(6),
         .edx = bit(11) | bit(20) | bit(26) | bit(27) | bit(29) | (edx1 & 0x0183f3ff)},
        {.function = 0x80000008, .eax = 0x3030, .ebx = bit(0) | bit(12) | bit(24)},
    };
}

// A host with exactly x86-64-v3 (no AVX-512, AES, PCID, SVM or RDTSCP).
std::vector<hv::CpuidEntry> v3_host() {
    auto h = big_host();
    for (auto& e : h) {
        if (e.function == 1) e.ecx &= ~(bit(1) | bit(17) | bit(25) | bit(30));
        if (e.function == 7 && e.index == 0) e.ebx &= ~(bit(16) | bit(17)), e.ecx = 0;
        if (e.function == 0x80000001) e.ecx &= ~(bit(2) | bit(6)), e.edx &= ~(bit(26) | bit(27));
    }
    return h;
}

std::string error_of(std::string_view spec) {
    auto t = parse_cpu_template(spec);
    return t ? "" : t.error().message();
}

TEST(CpuTemplate, ParsesATemplateAndItsOverrides) {
    auto t = parse_cpu_template("host");
    ASSERT_TRUE(t);
    EXPECT_EQ(t->name, "host");
    EXPECT_TRUE(t->overrides.empty());
    t = parse_cpu_template("x86-64-v3,-avx2,+pcid,0x80000001:ecx-=0x20,0x7.0:EBX+=0x8");
    ASSERT_TRUE(t) << t.error().message();
    EXPECT_EQ(t->name, "x86-64-v3");
    ASSERT_EQ(t->overrides.size(), 4u);
    EXPECT_EQ(t->overrides[0], (CpuidOverride{7, 0, false, 1, 0, bit(5)}));
    EXPECT_EQ(t->overrides[1], (CpuidOverride{1, 0, true, 2, bit(17), 0}));
    EXPECT_EQ(t->overrides[2], (CpuidOverride{0x80000001, 0, true, 2, 0, 0x20}));
    EXPECT_EQ(t->overrides[3], (CpuidOverride{7, 0, false, 1, 8, 0}));
    // As vireo info shows it, and back.
    EXPECT_EQ(to_string(*t),
              "x86-64-v3,0x7.0:EBX-=0x20,0x1:ECX+=0x20000,0x80000001:ECX-=0x20,0x7.0:EBX+=0x8");
    auto back = parse_cpu_template(to_string(*t));
    ASSERT_TRUE(back);
    EXPECT_EQ(*back, *t);
}

TEST(CpuTemplate, RefusesWhatItDoesNotKnowSayingWhatItTakes) {
    EXPECT_EQ(error_of("x86-64-v4"),
              "\"x86-64-v4\": not a CPU template (use host, x86-64-v2, x86-64-v3)");
    EXPECT_EQ(error_of(""), "\"\": not a CPU template (use host, x86-64-v2, x86-64-v3)");
    EXPECT_NE(error_of("host,-nosuch").find("\"-nosuch\": no CPU feature of that name"),
              std::string::npos);
    EXPECT_NE(error_of("host,0x1:ebx+=0x1").find("not a feature register (overrides apply to "),
              std::string::npos);
    EXPECT_NE(error_of("host,0x7:ebx-=0x20").find("not a feature register"), std::string::npos)
        << "leaf 7 needs its sub-leaf";
    EXPECT_NE(error_of("host,0x7.0:ebx").find("an override is"), std::string::npos);
    EXPECT_NE(error_of("host,0x7.0:exx-=1").find("the register is eax, ebx, ecx or edx"),
              std::string::npos);
    EXPECT_NE(error_of("host,0x7.0:ebx-=0").find("the mask is not a non-zero number"),
              std::string::npos);
    EXPECT_NE(error_of("host,0x7.0:ebx-=0x1g").find("the mask"), std::string::npos);
    EXPECT_NE(error_of("host,0xq.0:ebx-=1").find("the leaf is not a number"), std::string::npos);
    EXPECT_NE(error_of("host,").find("an empty override"), std::string::npos);
    std::string many = "host";
    for (int i = 0; i < 65; ++i)
        many += ",-avx2";
    EXPECT_EQ(error_of(many), "65 overrides; at most 64");
    EXPECT_EQ(error_of(std::string(1025, 'x')), "over 1024 bytes");
}

TEST(CpuTemplate, HostIsWhatKvmOffers) {
    const auto h = big_host();
    auto out = apply_cpu_template(CpuTemplate{}, h);
    ASSERT_TRUE(out);
    EXPECT_EQ(*out, h);
}

TEST(CpuTemplate, X8664V2HidesWhatCameLater) {
    auto t = parse_cpu_template("x86-64-v2");
    ASSERT_TRUE(t);
    auto out = apply_cpu_template(*t, big_host());
    ASSERT_TRUE(out) << out.error().message();
    const auto& one = *leaf(*out, 1);
    // SSE3, SSSE3, CX16, SSE4.1, SSE4.2, POPCNT, x2APIC, the TSC-deadline timer: kept.
    EXPECT_EQ(one.ecx, bit(0) | bit(9) | bit(13) | bit(19) | bit(20) | bit(21) | bit(23) | bit(24));
    EXPECT_EQ(one.edx, 0x178bfbffu & ~bit(28)) << "every architectural leaf-1 feature but HTT";
    const auto& seven = *leaf(*out, 7);
    EXPECT_EQ(seven.ebx, 0u) << "no AVX2, BMI, SMEP, AVX-512";
    EXPECT_EQ(seven.ecx, 0u);
    EXPECT_EQ(seven.edx, bit(26) | bit(27) | bit(29) | bit(31)) << "speculation controls stay";
    EXPECT_EQ(leaf(*out, 7, 1)->eax, 0u);
    EXPECT_EQ(leaf(*out, 0x80000001)->ecx, bit(0)) << "LAHF/SAHF; no SVM, LZCNT, SSE4a";
    EXPECT_EQ(leaf(*out, 0x80000001)->edx & (bit(26) | bit(27)), 0u) << "no 1 GiB pages, RDTSCP";
    EXPECT_EQ(leaf(*out, 0x80000008)->ebx, bit(12) | bit(24)) << "IBPB and SSBD, not CLZERO";
    // XSAVE is hidden; its leaf holds x87 and SSE state only.
    EXPECT_EQ(leaf(*out, 0xd)->eax, 3u);
    EXPECT_EQ(leaf(*out, 0xd)->ecx, 576u);
    EXPECT_EQ(leaf(*out, 0xd, 1)->eax, 0u);
    EXPECT_EQ(leaf(*out, 0xd, 1)->ecx, 0u);
    EXPECT_EQ(leaf(*out, 0xd, 2)->eax, 0u);
}

TEST(CpuTemplate, X8664V3IsTheSameOnEveryHostThatHasIt) {
    auto t = parse_cpu_template("x86-64-v3");
    ASSERT_TRUE(t);
    auto big = apply_cpu_template(*t, big_host());
    auto exact = apply_cpu_template(*t, v3_host());
    ASSERT_TRUE(big) << big.error().message();
    ASSERT_TRUE(exact) << exact.error().message();
    EXPECT_EQ(*big, *exact);
    EXPECT_EQ(leaf(*big, 7)->ebx, bit(3) | bit(5) | bit(8)) << "BMI1, AVX2, BMI2";
    EXPECT_EQ(leaf(*big, 1)->ecx & (bit(12) | bit(22) | bit(26) | bit(28) | bit(29)),
              bit(12) | bit(22) | bit(26) | bit(28) | bit(29))
        << "FMA, MOVBE, XSAVE, AVX, F16C";
    EXPECT_EQ(leaf(*big, 1)->ecx & (bit(1) | bit(25) | bit(30)), 0u) << "no PCLMULQDQ, AES, RDRAND";
    EXPECT_EQ(leaf(*big, 0x80000001)->ecx, bit(0) | bit(5)) << "LAHF/SAHF, LZCNT";
    EXPECT_EQ(leaf(*big, 0xd)->eax, 7u) << "x87, SSE, AVX state; no AVX-512's";
    EXPECT_EQ(leaf(*big, 0xd)->ecx, 832u);
    EXPECT_EQ(leaf(*big, 0xd, 2)->eax, 256u);
    EXPECT_EQ(leaf(*big, 0xd, 5)->eax, 0u);
}

TEST(CpuTemplate, AHostWithoutABaselinesFeatureRefusesItByName) {
    auto host = v3_host();
    for (auto& e : host)
        if (e.function == 7 && e.index == 0) e.ebx &= ~bit(5);
    auto out = apply_cpu_template(*parse_cpu_template("x86-64-v3"), host);
    ASSERT_FALSE(out);
    EXPECT_EQ(out.error().message(),
              "x86-64-v3 needs avx2 (CPUID 0x7.0 EBX bit 5), which this host's KVM does not offer");
    // x86-64-v2 is fine there.
    EXPECT_TRUE(apply_cpu_template(*parse_cpu_template("x86-64-v2"), host));
}

TEST(CpuTemplate, OverridesSetOnlyWhatKvmOffersAndClearAnything) {
    auto out = apply_cpu_template(*parse_cpu_template("host,-avx2,-svm"), big_host());
    ASSERT_TRUE(out);
    EXPECT_EQ(leaf(*out, 7)->ebx & bit(5), 0u);
    EXPECT_EQ(leaf(*out, 0x80000001)->ecx & bit(2), 0u);
    EXPECT_NE(leaf(*out, 7)->ebx & bit(3), 0u) << "only what was named";
    out = apply_cpu_template(*parse_cpu_template("x86-64-v2,+aes,+pcid"), big_host());
    ASSERT_TRUE(out);
    EXPECT_EQ(leaf(*out, 1)->ecx & (bit(25) | bit(17)), bit(25) | bit(17));
    out = apply_cpu_template(*parse_cpu_template("x86-64-v3,+avx512f"), v3_host());
    ASSERT_FALSE(out);
    EXPECT_EQ(out.error().message(),
              "cannot set avx512f (CPUID 0x7.0 EBX bit 16): this host's KVM does not offer it");
}

TEST(SpecCtrl, ParsesAPolicyAndPrintsItCanonically) {
    EXPECT_EQ(parse_spec_ctrl("on")->shown, SpecCtrl::kAll);
    EXPECT_EQ(parse_spec_ctrl("off")->shown, 0u);
    for (const char* p : {"on", "off", "on,-ssbd", "off,+ibpb", "on,-ssbd,-virt-ssbd,-psfd"})
        EXPECT_EQ(to_string(*parse_spec_ctrl(p)), p);
    // The shorter list wins; a control named twice counts once, the last word deciding.
    EXPECT_EQ(to_string(*parse_spec_ctrl("off,+ibrs,+ibpb,+stibp,+ssbd,+virt-ssbd,+psfd")),
              "on,-arch-caps,-md-clear,-flush-l1d");
    EXPECT_EQ(to_string(*parse_spec_ctrl("on,-ssbd,+ssbd")), "on");
    EXPECT_EQ(*parse_spec_ctrl("on,-ssbd,+ssbd"), *parse_spec_ctrl("on"));
}

TEST(SpecCtrl, RefusesWhatItDoesNotKnowSayingWhatItTakes) {
    EXPECT_EQ(parse_spec_ctrl("yes").error().message(),
              "\"yes\": a policy starts with on (show the host's speculation controls) or off "
              "(hide them)");
    EXPECT_EQ(parse_spec_ctrl("").error().message(),
              "\"\": a policy starts with on (show the host's speculation controls) or off "
              "(hide them)");
    EXPECT_EQ(parse_spec_ctrl("on,-retpoline").error().message(),
              "\"retpoline\": no such control (use ibrs, ibpb, stibp, ssbd, virt-ssbd, psfd, "
              "arch-caps, md-clear, flush-l1d)");
    EXPECT_FALSE(parse_spec_ctrl("on,ssbd"));
    EXPECT_FALSE(parse_spec_ctrl("on,"));
    EXPECT_FALSE(parse_spec_ctrl(std::string(300, 'o')));
}

TEST(SpecCtrl, OffHidesEveryControlAndNothingElse) {
    auto t = *parse_cpu_template("host");
    t.spec_ctrl = *parse_spec_ctrl("off");
    auto out = apply_cpu_template(t, big_host());
    ASSERT_TRUE(out);
    EXPECT_EQ(leaf(*out, 7)->edx, bit(4)) << "FSRM stays";
    EXPECT_EQ(leaf(*out, 0x80000008)->ebx, bit(0)) << "CLZERO stays";
    EXPECT_EQ(spec_controls_seen(*out), "none");
    EXPECT_EQ(spec_controls_seen(big_host()), "ibrs ibpb stibp ssbd arch-caps");
}

TEST(SpecCtrl, OneControlGoesFromBothVendorsWords) {
    auto t = *parse_cpu_template("x86-64-v3");
    t.spec_ctrl = *parse_spec_ctrl("on,-ssbd");
    auto out = apply_cpu_template(t, big_host());
    ASSERT_TRUE(out);
    EXPECT_EQ(leaf(*out, 7)->edx & bit(31), 0u);
    EXPECT_EQ(leaf(*out, 0x80000008)->ebx & bit(24), 0u);
    EXPECT_EQ(spec_controls_seen(*out), "ibrs ibpb stibp arch-caps");
    // Intel's one bit for IBRS and IBPB: hiding IBPB hides it; AMD's IBRS has no bit here.
    t.spec_ctrl = *parse_spec_ctrl("on,-ibpb");
    out = apply_cpu_template(t, big_host());
    ASSERT_TRUE(out);
    EXPECT_EQ(leaf(*out, 7)->edx & bit(26), 0u);
    EXPECT_EQ(leaf(*out, 0x80000008)->ebx & bit(12), 0u);
    EXPECT_EQ(spec_controls_seen(*out), "stibp ssbd arch-caps");
}

TEST(MsrPolicy, ParsesAPolicyAndPrintsItCanonically) {
    EXPECT_TRUE(parse_msr_policy("on")->on);
    EXPECT_FALSE(parse_msr_policy("off")->on);
    for (const char* p : {"on", "off", "on,+0x34", "on,+0x34,+0xc0010200-0xc001020b"})
        EXPECT_EQ(to_string(*parse_msr_policy(p)), p);
    EXPECT_EQ(to_string(*parse_msr_policy("on,+52,+0x10-0x10")), "on,+0x34,+0x10");
}

TEST(MsrPolicy, RefusesWhatItDoesNotKnowSayingWhatItTakes) {
    EXPECT_EQ(parse_msr_policy("yes").error().message(),
              "\"yes\": a policy starts with on (the MSRs the guest's CPU needs) or off (every "
              "MSR KVM knows)");
    EXPECT_EQ(parse_msr_policy("off,+0x34").error().message(),
              "\"+0x34\": off allows every MSR already; additions go with on");
    EXPECT_EQ(parse_msr_policy("on,0x34").error().message(),
              "\"0x34\": an addition is +MSR or +FIRST-LAST (e.g. +0x34, +0xc0010200-0xc001020b)");
    EXPECT_EQ(parse_msr_policy("on,+0x40-0x30").error().message(),
              "\"+0x40-0x30\": the range ends before it starts");
    EXPECT_EQ(parse_msr_policy("on,+0-0x1000").error().message(),
              "\"+0-0x1000\": more than 4096 MSRs in one addition");
    EXPECT_FALSE(parse_msr_policy("on,+0x1g"));
    EXPECT_FALSE(parse_msr_policy("on,+0x100000000"));
    std::string many = "on";
    for (int i = 0; i < 33; ++i)
        many += ",+" + std::to_string(i);
    EXPECT_FALSE(parse_msr_policy(many));
}

bool allows(const std::vector<uint32_t>& list, uint32_t msr) {
    return std::binary_search(list.begin(), list.end(), msr);
}

TEST(MsrPolicy, TheListFollowsWhatTheCpuShows) {
    auto host = apply_cpu_template(*parse_cpu_template("host"), big_host());
    ASSERT_TRUE(host);
    const auto on = msr_allow_list(*parse_msr_policy("on"), *host);
    EXPECT_TRUE(std::is_sorted(on.begin(), on.end()));
    EXPECT_EQ(std::adjacent_find(on.begin(), on.end()), on.end()) << "no repeats";
    for (uint32_t m : {0x10u, 0x1bu, 0x277u, 0x2ffu, 0x400u, 0xc0000080u, 0xc0000102u})
        EXPECT_TRUE(allows(on, m)) << std::hex << m;
    // The host shows SPEC_CTRL, ARCH_CAPABILITIES, AMD's IBPB and SSBD, SVM and the TSC-deadline
    // timer: their MSRs are in; SMI_COUNT, FLUSH_CMD (no flush_l1d) and Hyper-V's are not.
    for (uint32_t m : {0x48u, 0x49u, 0x10au, 0x6e0u, 0xc0010117u, 0xc0010015u, 0xc0010000u})
        EXPECT_TRUE(allows(on, m)) << std::hex << m;
    for (uint32_t m : {0x34u, 0x10bu, 0x40000000u, 0x3au, 0x12u})
        EXPECT_FALSE(allows(on, m)) << std::hex << m;
    // Hiding the speculation controls and SVM takes their MSRs out.
    auto t = *parse_cpu_template("host,-svm");
    t.spec_ctrl = *parse_spec_ctrl("off");
    auto hidden = apply_cpu_template(t, big_host());
    ASSERT_TRUE(hidden);
    const auto fewer = msr_allow_list(*parse_msr_policy("on,+0x34"), *hidden);
    for (uint32_t m : {0x48u, 0x49u, 0x10au, 0xc0010117u})
        EXPECT_FALSE(allows(fewer, m)) << std::hex << m;
    EXPECT_TRUE(allows(fewer, 0x34)) << "an addition";
    EXPECT_TRUE(msr_allow_list(*parse_msr_policy("off"), *host).empty());
    EXPECT_EQ(describe_msr(0x48), "IA32_SPEC_CTRL (0x48)");
    EXPECT_EQ(describe_msr(0x12345678), "0x12345678");
}

}  // namespace
}  // namespace vireo::arch::x86
