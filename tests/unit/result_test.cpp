#include "base/result.hpp"

#include <gtest/gtest.h>

#include <memory>

namespace vireo {
namespace {

Result<int> parse_positive(int v) {
    if (v <= 0) return fail(ErrorCode::InvalidArgument, "value {} is not positive", v);
    return v;
}

Result<int> doubled(int v) {
    VIREO_TRY_ASSIGN(int x, parse_positive(v));
    return 2 * x;
}

Result<void> check(int v) {
    VIREO_TRY(parse_positive(v));
    return ok();
}

TEST(Result, ValueAndError) {
    auto good = parse_positive(3);
    ASSERT_TRUE(good);
    EXPECT_EQ(*good, 3);
    auto bad = parse_positive(-1);
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().code(), ErrorCode::InvalidArgument);
    EXPECT_EQ(bad.error().message(), "value -1 is not positive");
    EXPECT_EQ(bad.value_or(7), 7);
}

TEST(Result, TryPropagates) {
    EXPECT_EQ(*doubled(4), 8);
    EXPECT_EQ(doubled(0).error().message(), "value 0 is not positive");
    EXPECT_TRUE(check(1));
    EXPECT_FALSE(check(-5));
}

TEST(Result, MoveOnlyValues) {
    Result<std::unique_ptr<int>> r = std::make_unique<int>(5);
    ASSERT_TRUE(r);
    auto p = std::move(r).value();
    EXPECT_EQ(*p, 5);
}

TEST(Result, ErrnoMapping) {
    auto r = Result<void>(fail_errno(ENOENT, "opening {}", "/nope"));
    EXPECT_EQ(r.error().code(), ErrorCode::NotFound);
    EXPECT_EQ(r.error().sys_errno(), ENOENT);
    EXPECT_NE(r.error().message().find("opening /nope: "), std::string::npos);
    EXPECT_EQ(Result<void>(fail_errno(EACCES, "x")).error().code(), ErrorCode::PermissionDenied);
}

TEST(Result, Context) {
    Error e(ErrorCode::System, "inner");
    e.context("outer");
    EXPECT_EQ(e.message(), "outer: inner");
}

}  // namespace
}  // namespace vireo
