#include "arch/x86/long_mode.hpp"

#include <gtest/gtest.h>

namespace vireo::arch::x86 {
namespace {

using memory::Gpa;

TEST(LongMode, TablesIdentityMapFourGiB) {
    auto mem = memory::GuestMemory::create_flat(1 << 20);
    ASSERT_TRUE(mem);
    LongModeLayout layout;
    ASSERT_TRUE(write_long_mode_tables(*mem, layout));
    auto pml4e = *mem->read_obj<uint64_t>(Gpa(0x2000));
    EXPECT_EQ(pml4e & ~0xfffull, 0x3000u);
    EXPECT_EQ(pml4e & 0x7, 0x7u);  // present, writable, user
    for (uint64_t g = 0; g < 4; ++g) {
        auto pdpte = *mem->read_obj<uint64_t>(Gpa(0x3000 + 8 * g));
        EXPECT_EQ(pdpte & ~0xfffull, 0x4000 + g * 0x1000);
    }
    EXPECT_EQ(*mem->read_obj<uint64_t>(Gpa(0x3000 + 8 * 4)), 0u);
    // Last 2 MiB page of the 4th GiB maps 0xffe00000, huge.
    auto pde = *mem->read_obj<uint64_t>(Gpa(0x7000 + 511 * 8));
    EXPECT_EQ(pde & ~0xfffull, 0xffe00000u);
    EXPECT_TRUE(pde & (1u << 7));
}

TEST(LongMode, GdtMatchesSegments) {
    auto mem = memory::GuestMemory::create_flat(1 << 20);
    ASSERT_TRUE(mem);
    ASSERT_TRUE(write_long_mode_tables(*mem, {}));
    EXPECT_EQ(*mem->read_obj<uint64_t>(Gpa(0x1000)), 0u);
    EXPECT_EQ(*mem->read_obj<uint64_t>(Gpa(0x1008)), 0u);
    EXPECT_EQ(*mem->read_obj<uint64_t>(Gpa(0x1000 + kCodeSelector)), 0x00af9b000000ffffu);
    EXPECT_EQ(*mem->read_obj<uint64_t>(Gpa(0x1000 + kDataSelector)), 0x00cf93000000ffffu);
    EXPECT_EQ(*mem->read_obj<uint64_t>(Gpa(0x1000 + (kUserCodeSelector & ~3))),
              0x00affb000000ffffu);
}

TEST(LongMode, RejectsBadIdentityMap) {
    auto mem = memory::GuestMemory::create_flat(1 << 20);
    ASSERT_TRUE(mem);
    LongModeLayout layout;
    layout.identity_map_bytes = 5ull << 30;
    EXPECT_FALSE(write_long_mode_tables(*mem, layout));
    layout.identity_map_bytes = 1ull << 20;
    EXPECT_FALSE(write_long_mode_tables(*mem, layout));
}

TEST(LongMode, TablesOutsideRamFail) {
    auto mem = memory::GuestMemory::create_flat(0x4000);  // too small for the page directories
    ASSERT_TRUE(mem);
    EXPECT_FALSE(write_long_mode_tables(*mem, {}));
}

TEST(LongMode, EntryState) {
    auto st = long_mode_state({}, 0x100000, 0x8000);
    EXPECT_EQ(st.gprs.rip, 0x100000u);
    EXPECT_EQ(st.gprs.rsp, 0x8000u);
    EXPECT_EQ(st.crs.efer & 0x500, 0x500u);
    EXPECT_TRUE(st.crs.cr0 & 0x80000001);
    EXPECT_EQ(st.crs.cr3, 0x2000u);
    EXPECT_TRUE(st.segments.cs.l);
    EXPECT_EQ(st.segments.cs.selector, kCodeSelector);
    auto user = long_mode_state({}, 0x100000, 0x8000, Ring::User);
    EXPECT_EQ(user.segments.cs.dpl, 3);
    EXPECT_EQ(user.gprs.rflags & 0x3000, 0x3000u);
}

}  // namespace
}  // namespace vireo::arch::x86
