// Strong address types: a guest-physical address can never be mixed up with a host pointer or
// a plain length, and arithmetic on it is checked.
#pragma once

#include <compare>
#include <cstdint>
#include <optional>

#include "base/checked.hpp"

namespace vireo::memory {

/// Guest-physical address.
class Gpa {
  public:
    constexpr Gpa() = default;
    constexpr explicit Gpa(uint64_t value) noexcept : value_(value) {}

    constexpr uint64_t value() const noexcept { return value_; }
    /// this + offset, or nullopt if it overflows 64 bits.
    constexpr std::optional<Gpa> checked_add(uint64_t offset) const noexcept {
        auto r = vireo::checked_add(value_, offset);
        if (!r) return std::nullopt;
        return Gpa(*r);
    }
    /// Distance from `base` (this must be >= base).
    constexpr uint64_t offset_from(Gpa base) const noexcept { return value_ - base.value_; }

    constexpr auto operator<=>(const Gpa&) const = default;

  private:
    uint64_t value_ = 0;
};

/// Host virtual address (a pointer into the VMM's own address space).
class Hva {
  public:
    constexpr Hva() = default;
    explicit Hva(void* ptr) noexcept : value_(reinterpret_cast<uintptr_t>(ptr)) {}
    constexpr explicit Hva(uintptr_t value) noexcept : value_(value) {}

    constexpr uintptr_t value() const noexcept { return value_; }
    void* ptr() const noexcept { return reinterpret_cast<void*>(value_); }

    constexpr auto operator<=>(const Hva&) const = default;

  private:
    uintptr_t value_ = 0;
};

constexpr uint64_t kPageSize = 4096;

constexpr uint64_t KiB(uint64_t n) {
    return n << 10;
}
constexpr uint64_t MiB(uint64_t n) {
    return n << 20;
}
constexpr uint64_t GiB(uint64_t n) {
    return n << 30;
}

}  // namespace vireo::memory
