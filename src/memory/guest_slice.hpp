// A checked view of guest RAM: what devices hold instead of host pointers.
//
// GuestMemory::slice() is the one place that turns a guest address range into host memory; it
// hands out a GuestSlice, which lies inside one RAM region and remembers its guest address.
// Every access through a slice is checked against the slice's length (with overflow-safe
// arithmetic), so a device can only reach the bytes the guest's descriptor named.
//
// The guest may write its RAM at any time, concurrently with the device. Reads therefore copy
// (read_at, read_obj) and the copy is what gets validated; two reads of the same bytes can
// differ. Ring indices shared with the driver use the atomic accessors.
//
// A host address leaves a slice only through iov(), for a system call that moves data in or out
// of guest memory (readv/writev/io_uring, getrandom); the iovec covers the checked range only.
#pragma once

#include <sys/uio.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>

#include "base/result.hpp"
#include "memory/address.hpp"

namespace vireo::memory {

class GuestMemory;

class GuestSlice {
  public:
    /// An empty slice (no bytes, guest address 0).
    GuestSlice() = default;

    Gpa gpa() const noexcept { return gpa_; }
    uint64_t size() const noexcept { return size_; }
    bool empty() const noexcept { return size_ == 0; }

    /// True if [offset, offset + len) lies inside the slice.
    bool contains(uint64_t offset, uint64_t len) const noexcept {
        return offset <= size_ && len <= size_ - offset;
    }

    /// The part [offset, offset + len) of this slice; an error if it leaves the slice.
    Result<GuestSlice> subslice(uint64_t offset, uint64_t len) const {
        if (!contains(offset, len))
            return fail(ErrorCode::OutOfRange,
                        "guest range [{:#x}, +{:#x}) leaves the buffer [{:#x}, +{:#x})",
                        gpa_.value() + std::min(offset, size_), len, gpa_.value(), size_);
        return GuestSlice(Gpa(gpa_.value() + offset), host_ + offset, len);
    }
    /// The slice without its first `offset` bytes (empty if offset >= size).
    GuestSlice tail(uint64_t offset) const noexcept {
        if (offset >= size_) return GuestSlice(Gpa(gpa_.value() + size_), host_ + size_, 0);
        return GuestSlice(Gpa(gpa_.value() + offset), host_ + offset, size_ - offset);
    }

    /// Copies up to out.size() bytes from `offset` on; returns how many (0 past the end).
    size_t read_at(uint64_t offset, std::span<uint8_t> out) const noexcept {
        if (offset >= size_) return 0;
        const size_t n = static_cast<size_t>(std::min<uint64_t>(out.size(), size_ - offset));
        std::memcpy(out.data(), host_ + offset, n);  // SAFETY: n <= size_ - offset
        return n;
    }
    /// Copies up to in.size() bytes to `offset` on; returns how many (0 past the end).
    size_t write_at(uint64_t offset, std::span<const uint8_t> in) const noexcept {
        if (offset >= size_) return 0;
        const size_t n = static_cast<size_t>(std::min<uint64_t>(in.size(), size_ - offset));
        std::memcpy(host_ + offset, in.data(), n);  // SAFETY: n <= size_ - offset
        return n;
    }

    /// A copy of the T at `offset`; an error if it does not lie wholly inside the slice.
    template <typename T>
    Result<T> read_obj(uint64_t offset) const {
        static_assert(std::is_trivially_copyable_v<T>, "read_obj needs a trivially copyable T");
        VIREO_TRY(check(offset, sizeof(T)));
        T value;
        std::memcpy(&value, host_ + offset, sizeof(T));  // SAFETY: checked just above
        return value;
    }
    /// Writes `value` at `offset`; an error (nothing written) if it does not fit.
    template <typename T>
    Result<void> write_obj(uint64_t offset, const T& value) const {
        static_assert(std::is_trivially_copyable_v<T>, "write_obj needs a trivially copyable T");
        VIREO_TRY(check(offset, sizeof(T)));
        std::memcpy(host_ + offset, &value, sizeof(T));  // SAFETY: checked just above
        return ok();
    }

    /// Atomic 16-bit accesses for ring indices the driver reads and writes concurrently.
    /// `offset` must be 2-aligned (in guest memory, so in host memory too) and inside the slice;
    /// out of range, the load reads 0 and the store does nothing.
    uint16_t load_u16(uint64_t offset, std::memory_order order) const noexcept {
        if (!contains(offset, 2) || offset % 2 != 0) return 0;
        // SAFETY: inside the slice and 2-aligned (the mapping is page-aligned).
        return std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(host_ + offset)).load(order);
    }
    void store_u16(uint64_t offset, uint16_t value, std::memory_order order) const noexcept {
        if (!contains(offset, 2) || offset % 2 != 0) return;
        // SAFETY: inside the slice and 2-aligned (the mapping is page-aligned).
        std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(host_ + offset)).store(value, order);
    }

    /// The host memory of [offset, offset + len) clamped to the slice, for a system call that
    /// reads or writes guest memory. The only way a host address of guest memory leaves here.
    iovec iov(uint64_t offset, uint64_t len) const noexcept {
        if (offset >= size_) return iovec{host_ + size_, 0};
        return iovec{host_ + offset, static_cast<size_t>(std::min(len, size_ - offset))};
    }
    iovec iov() const noexcept { return iovec{host_, static_cast<size_t>(size_)}; }

  private:
    friend class GuestMemory;
    GuestSlice(Gpa gpa, uint8_t* host, uint64_t size) noexcept
        : gpa_(gpa), host_(host), size_(size) {}

    Result<void> check(uint64_t offset, uint64_t len) const {
        if (contains(offset, len)) return ok();
        return fail(ErrorCode::OutOfRange, "{} bytes at offset {} leave a {}-byte guest buffer",
                    len, offset, size_);
    }

    Gpa gpa_;
    uint8_t* host_ = nullptr;
    uint64_t size_ = 0;
};

}  // namespace vireo::memory
