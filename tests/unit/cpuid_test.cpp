// Whether a saved guest's CPU can go on under this host's: the vendor and every feature flag it
// saw, named in the one-line refusal.
#include "arch/x86/cpuid.hpp"

#include <gtest/gtest.h>

#include <cstring>

namespace vireo::arch::x86 {
namespace {

hv::CpuidEntry vendor(const char* name) {
    hv::CpuidEntry e;
    e.eax = 0xd;
    std::memcpy(&e.ebx, name, 4);
    std::memcpy(&e.edx, name + 4, 4);
    std::memcpy(&e.ecx, name + 8, 4);
    return e;
}

std::vector<hv::CpuidEntry> cpu(const char* name, uint32_t leaf7_ebx, uint32_t leaf1_ecx) {
    hv::CpuidEntry one{.function = 1, .ecx = leaf1_ecx};
    hv::CpuidEntry seven{.function = 7, .index = 0, .flags = 1, .ebx = leaf7_ebx};
    return {vendor(name), one, seven};
}

TEST(Cpuid, ASavedGuestGoesOnWhereEveryFeatureItSawIsOffered) {
    const auto saved = cpu("AuthenticAMD", (1u << 5) | (1u << 3), 1u << 28);  // avx2, bmi1, avx
    // The same, or more: fine.
    EXPECT_EQ(cpuid_cannot_continue(saved, saved), std::nullopt);
    EXPECT_EQ(cpuid_cannot_continue(saved, cpu("AuthenticAMD", ~0u, ~0u)), std::nullopt);
    // Bits that are not features (OSXSAVE follows CR4, the hypervisor bit) do not count.
    EXPECT_EQ(cpuid_cannot_continue(cpu("AuthenticAMD", 0, (1u << 27) | (1u << 31)),
                                    cpu("AuthenticAMD", 0, 0)),
              std::nullopt);
    // One missing: named, with where it lives.
    auto why = cpuid_cannot_continue(saved, cpu("AuthenticAMD", 1u << 3, 1u << 28));
    ASSERT_TRUE(why);
    EXPECT_EQ(
        *why,
        "the saved guest uses CPU feature avx2 (CPUID 0x7.0 EBX bit 5), which this host's KVM "
        "does not offer");
    why = cpuid_cannot_continue(cpu("AuthenticAMD", 0, 1u << 11), cpu("AuthenticAMD", 0, 0));
    ASSERT_TRUE(why);
    EXPECT_EQ(*why,
              "the saved guest uses CPU feature CPUID 0x1 ECX bit 11, which this host's KVM does "
              "not offer");
    // A leaf this host lacks entirely: each of its features is missing.
    why = cpuid_cannot_continue(saved, {vendor("AuthenticAMD")});
    ASSERT_TRUE(why);
    EXPECT_NE(why->find("avx (CPUID 0x1 ECX bit 28)"), std::string::npos) << *why;
    // Another vendor.
    why = cpuid_cannot_continue(saved, cpu("GenuineIntel", ~0u, ~0u));
    ASSERT_TRUE(why);
    EXPECT_EQ(*why,
              "the saved guest ran on a CPU from AuthenticAMD; this host's is from GenuineIntel");
}

}  // namespace
}  // namespace vireo::arch::x86
