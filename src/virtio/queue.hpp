// The device side of a split virtqueue (virtio 1.2, 2.7), hardened against hostile drivers.
//
// Everything the driver controls is treated as hostile: ring addresses are checked against
// guest RAM once at activation; each descriptor is copied out of guest memory exactly once and
// then validated (index, flags, address and length within RAM, readable-before-writable order,
// one level of indirection, a cap on chain length that also ends cyclic chains); the avail
// index may not run ahead by more than the queue size. A violation is an error the transport
// turns into NEEDS_RESET; nothing outside guest RAM is ever read or written. Used-ring entries
// are published with release ordering, and EVENT_IDX suppresses notifications and interrupts.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <span>
#include <vector>

#include "base/result.hpp"
#include "memory/guest_memory.hpp"

namespace vireo::virtio {

/// A guest buffer a descriptor points to: a checked slice of guest RAM (never empty, at most
/// 4 GiB - 1 bytes as a descriptor's length is 32 bits).
struct Segment {
    memory::GuestSlice buf;
    bool writable = false;  ///< device-writable (VIRTQ_DESC_F_WRITE)

    uint32_t len() const noexcept { return static_cast<uint32_t>(buf.size()); }
};

/// One descriptor chain popped from the avail ring: readable segments first, then writable
/// ones. Storage is reserved once (capacity = the device's chain limit); popping a chain into
/// it never allocates.
class Chain {
  public:
    explicit Chain(uint32_t max_segments = 0) { segments_.reserve(max_segments); }

    uint16_t head() const noexcept { return head_; }
    std::span<const Segment> segments() const noexcept { return segments_; }
    std::span<const Segment> readable() const noexcept {
        return std::span(segments_).first(num_readable_);
    }
    std::span<const Segment> writable() const noexcept {
        return std::span(segments_).subspan(num_readable_);
    }
    uint64_t readable_bytes() const noexcept { return readable_bytes_; }
    uint64_t writable_bytes() const noexcept { return writable_bytes_; }
    uint32_t capacity() const noexcept { return static_cast<uint32_t>(segments_.capacity()); }

  private:
    friend class Queue;
    void clear(uint16_t head) noexcept {
        head_ = head;
        segments_.clear();
        num_readable_ = 0;
        readable_bytes_ = writable_bytes_ = 0;
    }
    uint16_t head_ = 0;
    size_t num_readable_ = 0;
    uint64_t readable_bytes_ = 0, writable_bytes_ = 0;
    std::vector<Segment> segments_;
};

// Byte-wise access to a chain's buffers (its readable or writable segments), as devices need it
// for headers and payloads that a driver may split anywhere.

/// Copies up to `out.size()` bytes starting `skip` bytes into `segs`; returns bytes copied.
size_t gather(std::span<const Segment> segs, uint64_t skip, std::span<uint8_t> out);
/// Copies `in` to the start of `segs` (as much as fits); returns bytes copied.
size_t scatter(std::span<const Segment> segs, std::span<const uint8_t> in);
/// Fills `iov` with `len` bytes of `segs` starting `skip` bytes in (at most iov.size()
/// entries); returns the number of entries used.
size_t to_iovecs(std::span<const Segment> segs, uint64_t skip, uint64_t len, std::span<iovec> iov);

/// What the driver wrote into the transport's queue registers.
struct QueueConfig {
    uint16_t size = 0;  ///< QueueNum
    bool ready = false;
    uint64_t desc = 0, driver = 0, device = 0;  ///< descriptor table, avail ring, used ring
};

class Queue {
  public:
    /// Checks `config` against guest RAM and the spec (size a power of two up to `max_size`,
    /// ring alignment, every ring byte in RAM) and starts the queue at index 0.
    /// `max_chain` caps the descriptors of one chain, indirect ones included.
    Result<void> activate(const memory::GuestMemory& mem, const QueueConfig& config,
                          uint16_t max_size, uint32_t max_chain, bool event_idx, bool indirect);
    void reset() noexcept { active_ = false; }
    bool active() const noexcept { return active_; }
    uint16_t size() const noexcept { return size_; }

    /// Pops the next available chain into `out` (whose capacity must be >= max_chain).
    /// Returns false when the ring is empty (with EVENT_IDX, after asking the driver to notify
    /// at the next buffer and re-checking, so no notification is lost); an error if the driver
    /// broke a rule.
    Result<bool> pop(Chain& out);
    /// Returns a chain to the driver with `len` bytes written into its writable buffers.
    void push_used(uint16_t head, uint32_t len) noexcept;
    /// The same, and logs the chain's writable buffers as written by vireo (live migration
    /// resends them; GuestMemory::mark_dirty): what a device that wrote into them calls.
    void push_used(const Chain& chain, uint32_t len) noexcept;
    /// Logs buffers as written by vireo (a device that returns chains by head: it marks the
    /// host ranges it filled). No-op unless a migration logs.
    void mark_written(const Chain& chain) const noexcept;
    void mark_written(std::span<const iovec> iov) const noexcept;
    /// After a batch of push_used(): true if the driver wants an interrupt for it (EVENT_IDX's
    /// used_event, or VIRTQ_AVAIL_F_NO_INTERRUPT without it).
    bool needs_interrupt() noexcept;

    /// Chains popped and not yet returned.
    uint16_t in_flight() const noexcept { return static_cast<uint16_t>(last_avail_ - next_used_); }

    /// The device's place in the rings, for a snapshot: the next used index and the used index
    /// the driver was last interrupted for (next_avail is next_used: a queue is saved with
    /// nothing in flight).
    struct Position {
        uint16_t next_used = 0;
        uint16_t signalled_used = 0;
    };
    Position position() const noexcept { return {next_used_, signalled_used_}; }
    /// Puts a just-activated queue where a saved one stood (any 16-bit indices are valid: the
    /// rings' indices wrap; pop() checks the driver's avail index against them as always).
    void set_position(Position p) noexcept {
        last_avail_ = next_used_ = p.next_used;
        signalled_used_ = p.signalled_used;
    }
    /// Gives back the last `n` chains popped and not returned (receive buffers a device held):
    /// the next pop() returns them again. At most in_flight().
    void unpop(uint16_t n) noexcept {
        if (n <= in_flight()) last_avail_ = static_cast<uint16_t>(last_avail_ - n);
    }

  private:
    uint16_t avail_idx() const noexcept;

    const memory::GuestMemory* mem_ = nullptr;
    bool active_ = false;
    bool event_idx_ = false, indirect_ = false;
    uint16_t size_ = 0;
    uint32_t max_chain_ = 0;
    memory::GuestSlice desc_;   // size * 16 bytes
    memory::GuestSlice avail_;  // 6 + 2 * size bytes
    memory::GuestSlice used_;   // 6 + 8 * size bytes
    uint16_t last_avail_ = 0;
    uint16_t next_used_ = 0;
    uint16_t signalled_used_ = 0;
};

}  // namespace vireo::virtio
