// Checked integer arithmetic: every guest-controlled sum goes through these.
#pragma once

#include <cstdint>
#include <optional>

namespace vireo {

/// a + b, or nullopt on overflow.
constexpr std::optional<uint64_t> checked_add(uint64_t a, uint64_t b) noexcept {
    uint64_t r = 0;
    if (__builtin_add_overflow(a, b, &r)) return std::nullopt;
    return r;
}

/// a * b, or nullopt on overflow.
constexpr std::optional<uint64_t> checked_mul(uint64_t a, uint64_t b) noexcept {
    uint64_t r = 0;
    if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
    return r;
}

/// a + b, or UINT64_MAX on overflow: for totals compared against a limit, where "more than
/// 64 bits" and "more than any host has" mean the same.
constexpr uint64_t saturating_add(uint64_t a, uint64_t b) noexcept {
    return checked_add(a, b).value_or(UINT64_MAX);
}

/// True if [start, start+len) fits in 64 bits (len 0 always fits).
constexpr bool range_fits(uint64_t start, uint64_t len) noexcept {
    return len == 0 || checked_add(start, len - 1).has_value();
}

/// True if `value` is a multiple of `align` (a power of two).
constexpr bool is_aligned(uint64_t value, uint64_t align) noexcept {
    return (value & (align - 1)) == 0;
}

/// Rounds `value` up to a multiple of `align` (a power of two); nullopt on overflow.
constexpr std::optional<uint64_t> align_up(uint64_t value, uint64_t align) noexcept {
    auto r = checked_add(value, align - 1);
    if (!r) return std::nullopt;
    return *r & ~(align - 1);
}

}  // namespace vireo
