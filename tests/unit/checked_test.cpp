#include "base/checked.hpp"

#include <gtest/gtest.h>

#include "memory/address.hpp"

namespace vireo {
namespace {

TEST(Checked, Add) {
    EXPECT_EQ(checked_add(1, 2), 3u);
    EXPECT_EQ(checked_add(UINT64_MAX, 1), std::nullopt);
    EXPECT_EQ(checked_add(UINT64_MAX, 0), UINT64_MAX);
}

TEST(Checked, Mul) {
    EXPECT_EQ(checked_mul(1u << 20, 1u << 20), uint64_t{1} << 40);
    EXPECT_EQ(checked_mul(uint64_t{1} << 33, uint64_t{1} << 33), std::nullopt);
}

TEST(Checked, RangeFits) {
    EXPECT_TRUE(range_fits(0, 0));
    EXPECT_TRUE(range_fits(UINT64_MAX, 1));
    EXPECT_FALSE(range_fits(UINT64_MAX, 2));
    EXPECT_TRUE(range_fits(0, UINT64_MAX));
}

TEST(Checked, Align) {
    EXPECT_TRUE(is_aligned(0x2000, 0x1000));
    EXPECT_FALSE(is_aligned(0x2001, 0x1000));
    EXPECT_EQ(align_up(0x1001, 0x1000), 0x2000u);
    EXPECT_EQ(align_up(UINT64_MAX - 5, 0x1000), std::nullopt);
}

TEST(Gpa, CheckedArithmetic) {
    memory::Gpa g(0x1000);
    EXPECT_EQ(g.checked_add(0x10)->value(), 0x1010u);
    EXPECT_EQ(memory::Gpa(UINT64_MAX).checked_add(1), std::nullopt);
    EXPECT_EQ(memory::Gpa(0x1800).offset_from(g), 0x800u);
    EXPECT_LT(memory::Gpa(1), memory::Gpa(2));
}

}  // namespace
}  // namespace vireo
