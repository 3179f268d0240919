// virtio-blk (virtio 1.2, 5.2) on raw images, with asynchronous I/O through io_uring on the
// domain's event loop. Guest buffers go to the kernel as iovecs pointing into guest RAM (no
// copies); several requests are in flight at once, up to a fixed pool of request slots
// preallocated at activation (back-pressure when all are busy). FLUSH is fdatasync, so data
// acknowledged after a flush is on stable storage. Read-only disks fail writes with IOERR and
// are opened O_RDONLY. Images are locked (flock) against a second writer.
#pragma once

#include <liburing.h>
#include <sys/uio.h>

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/event_fd.hpp"
#include "base/file_id.hpp"
#include "base/log.hpp"
#include "base/token_bucket.hpp"
#include "base/unique_fd.hpp"
#include "virtio/blk/disk_image.hpp"
#include "virtio/device.hpp"

namespace vireo::virtio {

// Request types and status values (5.2.6).
inline constexpr uint32_t kBlkIn = 0, kBlkOut = 1, kBlkFlush = 4, kBlkGetId = 8, kBlkDiscard = 11,
                          kBlkWriteZeroes = 13;
inline constexpr uint8_t kBlkOk = 0, kBlkIoErr = 1, kBlkUnsupp = 2;

/// A request as the chain frames it. The header is the first 16 device-readable bytes, the
/// status the last device-writable byte; data are iovecs into guest RAM: the writable bytes
/// before the status for IN/GET_ID, the readable bytes after the header for OUT/DISCARD/
/// WRITE_ZEROES (none for FLUSH and unknown types).
struct BlkRequest {
    uint32_t type = 0;
    uint64_t sector = 0;
    memory::GuestSlice status;  ///< the status byte
    uint64_t data_len = 0;
    size_t iov_count = 0;
};
/// Frames a chain as a virtio-blk request, filling `iov` (capacity >= chain segments). Errors
/// are driver rule violations (no room for header or status, data in the wrong direction).
Result<BlkRequest> parse_blk_request(const Chain& chain, std::span<iovec> iov);

/// Sets up `ring` (`depth` entries) as a disk uses it: created disabled, completions signalled
/// on `eventfd` (if >= 0), restricted to positioned vector reads and writes, fsync and fallocate
/// without SQE flags and no further registration, then enabled. On failure the ring may be set
/// up (check ring.ring_fd) and must be exited.
Result<void> init_disk_ring(io_uring& ring, unsigned depth, int eventfd);

class BlockDevice final : public Device {
  public:
    static constexpr uint16_t kQueueSize = 256;    ///< QueueNumMax
    static constexpr uint32_t kSegMax = 254;       ///< data segments per request (seg_max)
    static constexpr uint32_t kMaxInFlight = 128;  ///< request slots = io_uring depth

    static Result<std::shared_ptr<BlockDevice>> create(std::shared_ptr<DiskImage> disk);
    ~BlockDevice() override;

    const char* name() const noexcept override { return "virtio-blk"; }
    uint32_t device_id() const noexcept override;
    uint64_t device_features() const noexcept override;
    size_t num_queues() const noexcept override { return 1; }
    uint16_t max_queue_size() const noexcept override { return disk_->options().queue_size; }
    uint32_t max_chain() const noexcept override { return kSegMax + 2; }
    std::span<const uint8_t> config_space() const noexcept override { return config_; }

    Result<void> attach_loop(EventLoop& loop) override;
    Result<void> activate(const memory::GuestMemory& mem, std::span<Queue> queues,
                          uint64_t features, Transport& transport) override;
    Result<void> process(size_t index) override;
    void reset() override;
    void quiesce() override;
    /// Waits for every request in flight and completes it into the used ring (takes no new
    /// ones), then interrupts the guest if it asked to be.
    void drain() override;

    /// Handles finished I/O (what the completion eventfd triggers on the loop).
    void complete();

    /// Resumes a request the rate limit held back (what the limit's timer triggers).
    void on_timer();

    struct Stats {
        uint64_t reads = 0, writes = 0, flushes = 0, other = 0;
        uint64_t read_bytes = 0, write_bytes = 0, errors = 0;
        uint64_t throttled = 0, throttled_ns = 0;  // requests the limit held back, and how long
    };
    /// Replaces the rate limits (from any thread): new buckets, starting empty; a request held
    /// by the old limit is looked at again at once.
    void set_limits(const IoLimits& l);
    IoLimits limits() noexcept {
        std::lock_guard lock(mutex());
        return limits_;
    }
    Stats stats() noexcept {
        std::lock_guard lock(mutex());
        return stats_;
    }
    std::vector<Counter> counters() override {
        const Stats s = stats();
        return {{"reads", s.reads},
                {"writes", s.writes},
                {"flushes", s.flushes},
                {"other_requests", s.other},
                {"read_bytes", s.read_bytes},
                {"write_bytes", s.write_bytes},
                {"errors", s.errors},
                {"throttled", s.throttled},
                {"throttled_ms", s.throttled_ns / 1000000}};
    }

  private:
    struct Request {
        Chain chain;
        std::vector<iovec> iov;
        BlkRequest req;
        size_t iov_first = 0;  // first iovec not yet transferred (after a short transfer)
        uint64_t done = 0;     // bytes transferred so far
        uint32_t generation = 0;
        uint16_t slot = 0;
    };
    BlockDevice(std::shared_ptr<DiskImage> disk, EventFd completion);
    Result<void> run_queue();  // pull() and reap() until neither makes progress
    Result<void> pull();       // pops and starts requests while slots and ring space last
    unsigned reap();           // handles the completions in the CQ ring
    void submit_pending();     // io_uring_submit() of queued SQEs, if any
    // Parses and starts one request; `now` is the batch's clock under a rate limit.
    Result<void> start(Request& r, int64_t now);
    void submit(Request& r);
    void finish(Request& r, uint8_t status);
    void release(Request& r) { free_.push_back(r.slot); }
    void on_cqe(Request& r, int res);
    void arm(int64_t ns);  // the limit's timer: fire in `ns` (0: disarm)
    void hold(Request& r, int64_t wait_ns, int64_t now_ns);  // the limit's: resume on the timer
    void drop_held();                                        // at a reset: the slot back

    std::shared_ptr<DiskImage> disk_;
    EventFd completion_;
    io_uring ring_{};
    bool ring_ok_ = false;
    std::vector<uint8_t> config_;
    std::vector<Request> slots_;
    std::vector<uint16_t> free_;
    uint32_t in_flight_ = 0;  // requests submitted to io_uring
    uint32_t generation_ = 0;
    Queue* queue_ = nullptr;
    Transport* transport_ = nullptr;
    bool pending_sqes_ = false;
    // Rate limits (DiskOptions::limits, or set_limits): only with a limit is a request held.
    IoLimits limits_;
    IoThrottle throttle_;
    TimerFd timer_;  // when the held request may go
    int held_ = -1;  // slot of the request waiting for the limit, or -1
    int64_t held_since_ns_ = 0;
    Stats stats_;
    log::RateLimiter io_errors_{5};
};

}  // namespace vireo::virtio
