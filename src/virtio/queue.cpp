#include "virtio/queue.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>

#include "virtio/virtio.hpp"

namespace vireo::virtio {

namespace {

struct Desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};
static_assert(sizeof(Desc) == 16);

// The rings are shared with the guest, which may write them at any time. Indices are accessed
// atomically (the spec's alignment rules make that possible); everything else is copied out
// once and validated on the copy.
constexpr auto kAcquire = std::memory_order_acquire;
constexpr auto kRelease = std::memory_order_release;
constexpr auto kRelaxed = std::memory_order_relaxed;

}  // namespace

Result<void> Queue::activate(const memory::GuestMemory& mem, const QueueConfig& c,
                             uint16_t max_size, uint32_t max_chain, bool event_idx, bool indirect) {
    active_ = false;
    if (c.size == 0 || c.size > max_size || (c.size & (c.size - 1)) != 0)
        return fail(ErrorCode::InvalidArgument, "queue size {} is not a power of two up to {}",
                    c.size, max_size);
    if (c.desc % 16 != 0 || c.driver % 2 != 0 || c.device % 4 != 0)
        return fail(ErrorCode::InvalidArgument,
                    "misaligned ring (descriptors {:#x}, avail {:#x}, used {:#x})", c.desc,
                    c.driver, c.device);
    const uint64_t n = c.size;
    auto ring = [&](uint64_t gpa, uint64_t len, const char* what) -> Result<memory::GuestSlice> {
        auto s = mem.slice(memory::Gpa(gpa), len);
        if (!s)
            return fail(ErrorCode::OutOfRange, "{} ring [{:#x}, +{:#x}) is not in guest RAM", what,
                        gpa, len);
        return *s;
    };
    VIREO_TRY_ASSIGN(desc_, ring(c.desc, 16 * n, "descriptor"));
    VIREO_TRY_ASSIGN(avail_, ring(c.driver, 6 + 2 * n, "avail"));
    VIREO_TRY_ASSIGN(used_, ring(c.device, 6 + 8 * n, "used"));
    mem_ = &mem;
    size_ = c.size;
    max_chain_ = max_chain;
    event_idx_ = event_idx;
    indirect_ = indirect;
    last_avail_ = next_used_ = signalled_used_ = 0;
    active_ = true;
    return ok();
}

uint16_t Queue::avail_idx() const noexcept {
    return avail_.load_u16(2, kAcquire);
}

Result<bool> Queue::pop(Chain& out) {
    uint16_t avail = avail_idx();
    if (avail == last_avail_) {
        if (!event_idx_) return false;
        // Ask for a notification at the next buffer, then look again: the driver may have
        // added one before it could see the new avail_event.
        used_.store_u16(4 + 8 * uint64_t{size_}, last_avail_, kRelease);
        mem_->mark_dirty(used_.gpa(), used_.size());
        std::atomic_thread_fence(std::memory_order_seq_cst);
        avail = avail_idx();
        if (avail == last_avail_) return false;
    }
    if (static_cast<uint16_t>(avail - last_avail_) > size_)
        return fail(ErrorCode::OutOfRange, "avail index {} is more than {} ahead of {}", avail,
                    size_, last_avail_);
    const uint16_t head =
        avail_.load_u16(4 + 2 * uint64_t{uint16_t(last_avail_ % size_)}, kRelaxed);
    ++last_avail_;
    if (head >= size_)
        return fail(ErrorCode::OutOfRange, "avail ring entry {} >= queue size {}", head, size_);
    if (out.capacity() < max_chain_)
        return fail(ErrorCode::InvalidArgument, "chain storage for {} < {} segments",
                    out.capacity(), max_chain_);

    out.clear(head);
    memory::GuestSlice table = desc_;
    uint32_t table_len = size_;
    uint32_t idx = head;
    bool in_indirect = false;
    for (uint32_t count = 1;; ++count) {
        if (count > max_chain_)
            return fail(ErrorCode::OutOfRange,
                        "descriptor chain from {} is longer than {} (a cycle?)", head, max_chain_);
        Desc d{};
        // The one read of this descriptor (idx < table_len, and the table holds table_len).
        table.read_at(16 * uint64_t{idx}, std::span(reinterpret_cast<uint8_t*>(&d), sizeof d));
        if (d.flags & kDescIndirect) {
            if (!indirect_)
                return fail(ErrorCode::InvalidArgument, "indirect descriptor not negotiated");
            if (in_indirect)
                return fail(ErrorCode::InvalidArgument, "indirect descriptor in indirect table");
            if (d.flags & kDescNext)
                return fail(ErrorCode::InvalidArgument, "indirect descriptor with NEXT set");
            if (d.len == 0 || d.len % 16 != 0 || d.len / 16 > max_chain_)
                return fail(ErrorCode::InvalidArgument, "indirect table of {} bytes", d.len);
            auto t = mem_->slice(memory::Gpa(d.addr), d.len);
            if (!t)
                return fail(ErrorCode::OutOfRange, "indirect table [{:#x}, +{:#x}) not in RAM",
                            d.addr, d.len);
            table = *t;
            table_len = d.len / 16;
            idx = 0;
            in_indirect = true;
            count = 0;  // the cap counts buffers; the table pointer is not one
            continue;
        }
        const bool writable = (d.flags & kDescWrite) != 0;
        if (!writable && out.segments_.size() > out.num_readable_)
            return fail(ErrorCode::InvalidArgument,
                        "device-readable descriptor after a device-writable one");
        if (d.len != 0) {
            auto s = mem_->slice(memory::Gpa(d.addr), d.len);
            if (!s)
                return fail(ErrorCode::OutOfRange, "buffer [{:#x}, +{:#x}) is not in guest RAM",
                            d.addr, d.len);
            if (out.segments_.size() == out.segments_.capacity())
                return fail(ErrorCode::OutOfRange, "more than {} buffers in one chain",
                            out.segments_.capacity());
            out.segments_.push_back(Segment{*s, writable});
            if (writable) {
                out.writable_bytes_ += d.len;
            } else {
                out.readable_bytes_ += d.len;
                ++out.num_readable_;
            }
            if (out.writable_bytes_ > UINT32_MAX)
                return fail(ErrorCode::OutOfRange, "writable buffers exceed 4 GiB");
        }
        if (!(d.flags & kDescNext)) break;
        idx = d.next;
        if (idx >= table_len)
            return fail(ErrorCode::OutOfRange, "next descriptor {} >= table size {}", idx,
                        table_len);
    }
    return true;
}

void Queue::push_used(uint16_t head, uint32_t len) noexcept {
    const uint64_t elem = 4 + 8 * uint64_t{static_cast<uint16_t>(next_used_ % size_)};
    const uint32_t entry[2] = {head, len};
    used_.write_at(elem, std::span(reinterpret_cast<const uint8_t*>(entry), sizeof entry));
    ++next_used_;
    used_.store_u16(2, next_used_, kRelease);  // the element is visible before the index
    mem_->mark_dirty(used_.gpa(), used_.size());
}

void Queue::push_used(const Chain& chain, uint32_t len) noexcept {
    mark_written(chain);
    push_used(chain.head(), len);
}

void Queue::mark_written(const Chain& chain) const noexcept {
    if (!mem_->dirty_logging()) return;
    for (const auto& s : chain.writable())
        mem_->mark_dirty(s.buf.gpa(), s.buf.size());
}

void Queue::mark_written(std::span<const iovec> iov) const noexcept {
    if (!mem_->dirty_logging()) return;
    for (const auto& v : iov)
        mem_->mark_dirty_host(v.iov_base, v.iov_len);
}

bool Queue::needs_interrupt() noexcept {
    if (next_used_ == signalled_used_) return false;
    // The used index store must be visible before reading what the driver asked for.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    const uint16_t old = signalled_used_, now = next_used_;
    signalled_used_ = now;
    if (!event_idx_) return (avail_.load_u16(0, kRelaxed) & kAvailNoInterrupt) == 0;
    const uint16_t used_event = avail_.load_u16(4 + 2 * uint64_t{size_}, kRelaxed);
    return static_cast<uint16_t>(now - used_event - 1) < static_cast<uint16_t>(now - old);
}

size_t gather(std::span<const Segment> segs, uint64_t skip, std::span<uint8_t> out) {
    size_t copied = 0;
    for (const auto& s : segs) {
        if (copied == out.size()) break;
        if (skip >= s.buf.size()) {
            skip -= s.buf.size();
            continue;
        }
        copied += s.buf.read_at(skip, out.subspan(copied));
        skip = 0;
    }
    return copied;
}

size_t scatter(std::span<const Segment> segs, std::span<const uint8_t> in) {
    size_t copied = 0;
    for (const auto& s : segs) {
        if (copied == in.size()) break;
        copied += s.buf.write_at(0, in.subspan(copied));
    }
    return copied;
}

size_t to_iovecs(std::span<const Segment> segs, uint64_t skip, uint64_t len, std::span<iovec> iov) {
    size_t n = 0;
    for (const auto& s : segs) {
        if (len == 0 || n == iov.size()) break;
        if (skip >= s.buf.size()) {
            skip -= s.buf.size();
            continue;
        }
        iov[n] = s.buf.iov(skip, len);
        len -= iov[n++].iov_len;
        skip = 0;
    }
    return n;
}

}  // namespace vireo::virtio
