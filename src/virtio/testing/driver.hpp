// The driver side of virtio, for tests, fuzzers and benchmarks: a split virtqueue laid out in
// guest memory the way a guest driver does it, and the virtio-mmio register sequence of
// Linux's virtio_mmio driver. It writes guest memory directly (it *is* the guest), so tests
// can also break every rule on purpose. Not linked into vireo itself.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <vector>

#include "base/event_loop.hpp"
#include "memory/guest_memory.hpp"
#include "virtio/mmio.hpp"
#include "virtio/queue.hpp"

namespace vireo::virtio::testing {

struct Buf {
    uint64_t gpa;
    uint32_t len;
    bool writable = false;
};

struct Used {
    uint32_t id;
    uint32_t len;
};

struct RawDesc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

class DriverQueue {
  public:
    /// Rings at `base`: descriptors, then the avail ring, then the used ring (4-aligned).
    DriverQueue(const memory::GuestMemory& mem, uint64_t base, uint16_t size);

    QueueConfig config() const;
    uint16_t size() const noexcept { return size_; }

    /// Adds a chain and makes it available; returns its head. With `indirect_table` the
    /// buffers go into an indirect table at that address and the ring gets one descriptor.
    uint16_t add(std::span<const Buf> bufs, std::optional<uint64_t> indirect_table = {});
    /// The next used element, if the device returned one. When there is none, sets used_event
    /// to ask for an interrupt at the next one (EVENT_IDX).
    std::optional<Used> next_used();
    /// Sets used_event (EVENT_IDX): the device should interrupt after this used index.
    void set_used_event(uint16_t v);
    uint16_t avail_event() const;
    void set_avail_flags(uint16_t flags);

    // Raw access, to break the rules.
    void write_desc(uint16_t index, const RawDesc& d);
    void put_avail(uint16_t head);  // puts `head` in the next avail slot and bumps avail idx
    void set_avail_idx(uint16_t idx);
    uint16_t avail_idx() const noexcept { return avail_idx_; }

    uint64_t desc_gpa() const noexcept { return desc_; }
    uint64_t avail_gpa() const noexcept { return avail_; }
    uint64_t used_gpa() const noexcept { return used_; }
    /// Bytes the rings occupy from `base`.
    static uint64_t footprint(uint16_t size);

  private:
    const memory::GuestMemory* mem_;
    uint16_t size_;
    uint64_t desc_, avail_, used_;
    uint16_t next_desc_ = 0;  // descriptors are used round-robin
    uint16_t avail_idx_ = 0, last_used_ = 0;
};

/// Talks to an MmioTransport through its registers, like a guest driver.
class MmioDriver {
  public:
    explicit MmioDriver(MmioTransport& t) : t_(t) {}
    uint32_t read32(uint64_t offset);
    void write32(uint64_t offset, uint32_t value);
    uint64_t device_features();
    /// Reset, ACKNOWLEDGE, DRIVER, features (VERSION_1 | `features`), FEATURES_OK, the queues'
    /// addresses and sizes, DRIVER_OK. Returns the final status register.
    uint32_t start(uint64_t features, std::span<DriverQueue* const> queues);
    /// QueueNotify for queue `q` (as the ioeventfd would: processed on the event loop).
    void notify(uint32_t q);
    /// Reads and acknowledges InterruptStatus.
    uint32_t ack_interrupt();

  private:
    MmioTransport& t_;
};

/// Runs `loop` until `done()` or the timeout; returns done().
bool run_until(EventLoop& loop, const std::function<bool()>& done,
               std::chrono::milliseconds timeout = std::chrono::seconds(10));

}  // namespace vireo::virtio::testing
