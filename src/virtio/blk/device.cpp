#include "virtio/blk/device.hpp"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "base/split.hpp"
#include "virtio/virtio.hpp"

namespace vireo::virtio {

namespace {

// Feature bits (5.2.3).
constexpr uint64_t kBlkSegMax = uint64_t{1} << 2;
constexpr uint64_t kBlkRo = uint64_t{1} << 5;
constexpr uint64_t kBlkBlkSize = uint64_t{1} << 6;
constexpr uint64_t kBlkFlushF = uint64_t{1} << 9;
constexpr uint64_t kBlkDiscardF = uint64_t{1} << 13;
constexpr uint64_t kBlkWriteZeroesF = uint64_t{1} << 14;

constexpr uint32_t kMaxDiscardSectors = 1u << 22;  // 2 GiB per discard / write-zeroes

struct DiscardSegment {
    uint64_t sector;
    uint32_t num_sectors;
    uint32_t flags;
};
static_assert(sizeof(DiscardSegment) == 16);

template <typename T>
void put(std::vector<uint8_t>& cfg, size_t off, T v) {
    std::memcpy(cfg.data() + off, &v, sizeof v);
}

}  // namespace

Result<BlkRequest> parse_blk_request(const Chain& chain, std::span<iovec> iov) {
    BlkRequest r;
    struct {
        uint32_t type;
        uint32_t reserved;
        uint64_t sector;
    } header;
    static_assert(sizeof header == 16);
    if (chain.readable_bytes() < sizeof header)
        return fail(ErrorCode::InvalidArgument, "request of {} readable bytes has no header",
                    chain.readable_bytes());
    if (chain.writable_bytes() < 1)
        return fail(ErrorCode::InvalidArgument, "request has no status byte");
    gather(chain.readable(), 0, std::span(reinterpret_cast<uint8_t*>(&header), sizeof header));
    r.type = header.type;
    r.sector = header.sector;
    const auto& last = chain.writable().back();
    r.status = last.buf.tail(last.buf.size() - 1);
    const uint64_t in_len = chain.writable_bytes() - 1;  // writable bytes before status
    const uint64_t out_len = chain.readable_bytes() - sizeof header;  // readable after header
    if (iov.size() < chain.segments().size())
        return fail(ErrorCode::InvalidArgument, "iovec storage too small");
    switch (r.type) {
        case kBlkIn:
        case kBlkGetId:
            if (out_len != 0)
                return fail(ErrorCode::InvalidArgument,
                            "read request with {} device-readable data bytes", out_len);
            r.data_len = in_len;
            r.iov_count = to_iovecs(chain.writable(), 0, in_len, iov);
            break;
        case kBlkOut:
        case kBlkDiscard:
        case kBlkWriteZeroes:
            if (in_len != 0)
                return fail(ErrorCode::InvalidArgument,
                            "write request with {} device-writable data bytes", in_len);
            r.data_len = out_len;
            r.iov_count = to_iovecs(chain.readable(), sizeof header, out_len, iov);
            break;
        default:  // FLUSH carries no data; unknown types are answered UNSUPP
            break;
    }
    return r;
}

Result<void> init_disk_ring(io_uring& ring, unsigned depth, int eventfd) {
    // seccomp does not see the operations a ring carries out, so the ring itself takes only
    // what a disk submits, and no further registration (docs/security.md). Restrictions can be
    // set only while the ring is disabled.
    ring = io_uring{};
    if (int e = io_uring_queue_init(depth, &ring, IORING_SETUP_R_DISABLED); e < 0)
        return fail_errno(-e, "io_uring_queue_init (needs Linux 5.10 or later)");
    if (eventfd >= 0) {
        if (int e = io_uring_register_eventfd(&ring, eventfd); e < 0)
            return fail_errno(-e, "io_uring_register_eventfd");
    }
    io_uring_restriction allowed[5] = {};
    const uint8_t ops[] = {IORING_OP_READV, IORING_OP_WRITEV, IORING_OP_FSYNC, IORING_OP_FALLOCATE};
    for (size_t i = 0; i < std::size(ops); ++i) {
        allowed[i].opcode = IORING_RESTRICTION_SQE_OP;
        allowed[i].sqe_op = ops[i];
    }
    allowed[4].opcode = IORING_RESTRICTION_SQE_FLAGS_ALLOWED;
    allowed[4].sqe_flags = 0;
    if (int e = io_uring_register_restrictions(&ring, allowed, std::size(allowed)); e < 0)
        return fail_errno(-e, "io_uring_register_restrictions");
    if (int e = io_uring_enable_rings(&ring); e < 0) return fail_errno(-e, "io_uring_enable_rings");
    return ok();
}

Result<std::shared_ptr<BlockDevice>> BlockDevice::create(std::shared_ptr<DiskImage> disk) {
    VIREO_TRY_ASSIGN(auto completion, EventFd::create());
    std::shared_ptr<BlockDevice> dev(new BlockDevice(std::move(disk), std::move(completion)));
    VIREO_TRY_ASSIGN(dev->timer_, TimerFd::create());
    dev->set_limits(dev->disk_->options().limits);
    if (auto r = init_disk_ring(dev->ring_, kMaxInFlight, dev->completion_.fd()); !r) {
        dev->ring_ok_ = dev->ring_.ring_fd > 0;
        return fail(r.error().code(), "virtio-blk: {}", r.error().message());
    }
    dev->ring_ok_ = true;
    return dev;
}

BlockDevice::BlockDevice(std::shared_ptr<DiskImage> disk, EventFd completion)
    : disk_(std::move(disk)), completion_(std::move(completion)), config_(60, 0) {
    put<uint64_t>(config_, 0, disk_->size() / 512);  // capacity
    put<uint32_t>(config_, 12, kSegMax);             // seg_max
    put<uint32_t>(config_, 20, 512);                 // blk_size
    put<uint32_t>(config_, 36, kMaxDiscardSectors);  // max_discard_sectors
    put<uint32_t>(config_, 40, 1);                   // max_discard_seg
    put<uint32_t>(config_, 44, 1);                   // discard_sector_alignment
    put<uint32_t>(config_, 48, kMaxDiscardSectors);  // max_write_zeroes_sectors
    put<uint32_t>(config_, 52, 1);                   // max_write_zeroes_seg
    config_[56] = 1;                                 // write_zeroes_may_unmap
    // Request slots: storage reserved now, touched only when used.
    slots_.reserve(kMaxInFlight);
    for (uint32_t i = 0; i < kMaxInFlight; ++i) {
        slots_.push_back(Request{Chain(max_chain()),
                                 std::vector<iovec>(max_chain()),
                                 {},
                                 0,
                                 0,
                                 0,
                                 static_cast<uint16_t>(i)});
    }
    free_.reserve(kMaxInFlight);
    for (uint32_t i = kMaxInFlight; i > 0; --i)
        free_.push_back(static_cast<uint16_t>(i - 1));
}

BlockDevice::~BlockDevice() {
    if (!ring_ok_) return;
    // In-flight I/O targets guest RAM: wait for it before the memory can go away.
    submit_pending();
    while (in_flight_ > 0) {
        io_uring_cqe* cqe = nullptr;
        if (io_uring_wait_cqe(&ring_, &cqe) < 0) break;
        io_uring_cqe_seen(&ring_, cqe);
        --in_flight_;
    }
    io_uring_queue_exit(&ring_);
}

uint32_t BlockDevice::device_id() const noexcept {
    return kDeviceBlock;
}

uint64_t BlockDevice::device_features() const noexcept {
    uint64_t f = kFeatureIndirectDesc | kFeatureEventIdx | kBlkSegMax | kBlkBlkSize | kBlkFlushF |
                 kBlkDiscardF | kBlkWriteZeroesF;
    if (disk_->options().readonly) f |= kBlkRo;
    return f;
}

Result<void> BlockDevice::attach_loop(EventLoop& loop) {
    VIREO_TRY(loop.add(timer_.fd(), [this] { on_timer(); }));
    return loop.add(completion_.fd(), [this] { complete(); });
}

void BlockDevice::arm(int64_t ns) {
    if (auto r = timer_.arm(ns); !r && io_errors_.allow())
        log::error("virtio-blk {}: {}", disk_->options().path, r.error().message());
}

void BlockDevice::hold(Request& r, int64_t wait_ns, int64_t now_ns) {
    held_ = r.slot;
    held_since_ns_ = now_ns;
    ++stats_.throttled;
    arm(wait_ns);
}

void BlockDevice::set_limits(const IoLimits& l) {
    std::lock_guard lock(mutex());
    limits_ = l;
    throttle_ = l.any() ? IoThrottle(l, steady_ns()) : IoThrottle();
    if (held_ >= 0) arm(1);  // the held request is looked at again, under the new limit
}

void BlockDevice::drop_held() {
    if (held_ < 0) return;
    release(slots_[static_cast<size_t>(held_)]);
    held_ = -1;
    arm(0);
}

void BlockDevice::on_timer() {
    timer_.consume();
    std::lock_guard lock(mutex());
    if (held_ < 0 || queue_ == nullptr) return;
    Request& r = slots_[static_cast<size_t>(held_)];
    const int64_t now = steady_ns();
    if (const int64_t wait = throttle_.admit(r.req.data_len, now); wait > 0)
        return arm(wait);  // early by the timer's rounding: it waits on
    stats_.throttled_ns += static_cast<uint64_t>(now - held_since_ns_);
    held_ = -1;
    submit(r);
    if (auto q = run_queue(); !q) transport_->device_error(q.error().message());
}

Result<void> BlockDevice::activate(const memory::GuestMemory&, std::span<Queue> queues, uint64_t,
                                   Transport& transport) {
    VIREO_TRY_ASSIGN(queue_, only_queue(queues));
    transport_ = &transport;
    return ok();
}

void BlockDevice::reset() {
    queue_ = nullptr;  // completions of older generations are dropped
    ++generation_;
    drop_held();
}

void BlockDevice::quiesce() {
    if (!ring_ok_) return;
    reset();  // what completes from here on is dropped, its slot released
    submit_pending();
    while (in_flight_ > 0) {
        io_uring_cqe* cqe = nullptr;
        if (io_uring_wait_cqe(&ring_, &cqe) < 0) break;  // one is there; reap() takes it
        reap();
        submit_pending();
    }
}

void BlockDevice::drain() {
    if (!ring_ok_) return;
    if (held_ >= 0) {  // everything popped completes now: the limit waits for no snapshot
        Request& r = slots_[static_cast<size_t>(held_)];
        held_ = -1;
        arm(0);
        submit(r);
    }
    submit_pending();
    while (in_flight_ > 0) {
        io_uring_cqe* cqe = nullptr;
        if (io_uring_wait_cqe(&ring_, &cqe) < 0) break;
        reap();            // completes into the used ring (or drops an old generation's)
        submit_pending();  // the rest of a short transfer
    }
    if (queue_ != nullptr && queue_->needs_interrupt()) transport_->signal_used();
}

Result<void> BlockDevice::process(size_t) {
    return run_queue();
}

Result<void> BlockDevice::run_queue() {
    // Reads that hit the page cache complete inside io_uring_submit(): reap them at once and
    // take more requests, with the completion eventfd muted meanwhile (no wake-up for
    // completions this loop sees itself). Unmute, then look once more for a completion that
    // raced with the unmute.
    for (;;) {
        (void)io_uring_cq_eventfd_toggle(&ring_, false);
        for (;;) {
            VIREO_TRY(pull());
            if (reap() == 0 || queue_ == nullptr) break;
        }
        (void)io_uring_cq_eventfd_toggle(&ring_, true);
        // The flag's store must be visible before the tail is read: a completion posted from
        // io_uring's worker reads the flag after storing the tail (under a lock: a full
        // barrier on x86), and liburing's plain store and acquire load may be reordered
        // (store then load). Without the fence both sides can miss each other: the completion
        // sits in the ring, no eventfd wakes the loop, and the guest waits for ever.
        std::atomic_thread_fence(std::memory_order_seq_cst);
        if (queue_ == nullptr || io_uring_cq_ready(&ring_) == 0) break;
    }
    if (queue_ != nullptr && queue_->needs_interrupt()) transport_->signal_used();
    return ok();
}

unsigned BlockDevice::reap() {
    unsigned total = 0;
    for (;;) {
        io_uring_cqe* cqe = nullptr;
        unsigned seen = 0, head;
        io_uring_for_each_cqe(&ring_, head, cqe) {
            const uint64_t slot = io_uring_cqe_get_data64(cqe);
            const int res = cqe->res;
            ++seen;
            if (slot < slots_.size()) on_cqe(slots_[slot], res);
        }
        if (seen == 0) return total;
        io_uring_cq_advance(&ring_, seen);
        total += seen;
    }
}

Result<void> BlockDevice::pull() {
    // One clock read for the batch a rate limit admits (the buckets' long-run rate stays
    // exact: time the batch took counts at the next one).
    const int64_t now = throttle_.limited() ? steady_ns() : 0;
    while (queue_ != nullptr && !free_.empty() && held_ < 0) {
        if (io_uring_sq_space_left(&ring_) == 0) break;
        Request& r = slots_[free_.back()];
        VIREO_TRY_ASSIGN(bool got, queue_->pop(r.chain));
        if (!got) break;
        free_.pop_back();
        if (auto s = start(r, now); !s) {
            release(r);
            return s;
        }
    }
    submit_pending();
    return ok();
}

void BlockDevice::submit_pending() {
    if (!pending_sqes_) return;
    pending_sqes_ = false;
    if (int e = io_uring_submit(&ring_); e < 0 && io_errors_.allow())
        log::error("virtio-blk {}: io_uring_submit: {}", disk_->options().path, std::strerror(-e));
}

Result<void> BlockDevice::start(Request& r, int64_t now) {
    VIREO_TRY_ASSIGN(r.req, parse_blk_request(r.chain, r.iov));
    r.generation = generation_;
    r.done = 0;
    r.iov_first = 0;
    const bool ro = disk_->options().readonly;
    const uint64_t size = disk_->size();
    // [sector, sector + len) within the disk, without overflow.
    auto in_bounds = [size](uint64_t sector, uint64_t len) {
        return sector <= size / 512 && len <= size - sector * 512;
    };
    switch (r.req.type) {
        case kBlkIn:
        case kBlkOut:
            if (r.req.type == kBlkOut && ro) return finish(r, kBlkIoErr), ok();
            if (r.req.data_len % 512 != 0 || !in_bounds(r.req.sector, r.req.data_len))
                return finish(r, kBlkIoErr), ok();
            if (r.req.data_len == 0) return finish(r, kBlkOk), ok();
            if (throttle_.limited()) {
                if (const int64_t wait = throttle_.admit(r.req.data_len, now); wait > 0)
                    return hold(r, wait, now), ok();
            }
            submit(r);
            return ok();
        case kBlkFlush:
            if (ro) return finish(r, kBlkOk), ok();
            submit(r);
            return ok();
        case kBlkGetId: {
            uint8_t id[kBlkIdBytes] = {};
            const auto& serial = disk_->options().serial;
            std::memcpy(id, serial.data(), std::min(serial.size(), sizeof id));
            // At most data_len bytes: the writable buffers before the status byte.
            const auto n = static_cast<size_t>(std::min<uint64_t>(r.req.data_len, sizeof id));
            r.done = scatter(r.chain.writable(), std::span<const uint8_t>(id, n));
            return finish(r, kBlkOk), ok();
        }
        case kBlkDiscard:
        case kBlkWriteZeroes: {
            DiscardSegment seg{};
            if (ro || r.req.data_len != sizeof seg) return finish(r, kBlkIoErr), ok();
            gather(r.chain.readable(), 16, std::span(reinterpret_cast<uint8_t*>(&seg), sizeof seg));
            const uint32_t allowed_flags = r.req.type == kBlkWriteZeroes ? 1u : 0u;  // unmap
            if ((seg.flags & ~allowed_flags) != 0) return finish(r, kBlkUnsupp), ok();
            r.req.sector = seg.sector;
            r.req.data_len = uint64_t{seg.num_sectors} * 512;
            if (seg.num_sectors > kMaxDiscardSectors || !in_bounds(seg.sector, r.req.data_len))
                return finish(r, kBlkIoErr), ok();
            submit(r);
            return ok();
        }
        default:
            return finish(r, kBlkUnsupp), ok();
    }
}

void BlockDevice::submit(Request& r) {
    // The ring has a slot per request, so there is always room; submit and retry otherwise.
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) {
        io_uring_submit(&ring_);
        sqe = io_uring_get_sqe(&ring_);
        if (sqe == nullptr) return finish(r, kBlkIoErr);
    }
    const int fd = disk_->fd();
    const uint64_t offset = r.req.sector * 512 + r.done;
    switch (r.req.type) {
        case kBlkIn:
            io_uring_prep_readv(sqe, fd, r.iov.data() + r.iov_first,
                                static_cast<unsigned>(r.req.iov_count - r.iov_first), offset);
            break;
        case kBlkOut:
            io_uring_prep_writev(sqe, fd, r.iov.data() + r.iov_first,
                                 static_cast<unsigned>(r.req.iov_count - r.iov_first), offset);
            break;
        case kBlkFlush:
            io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
            break;
        default:  // discard and write-zeroes: a hole reads back as zeros
            io_uring_prep_fallocate(sqe, fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                    static_cast<off_t>(offset), static_cast<off_t>(r.req.data_len));
            break;
    }
    io_uring_sqe_set_data64(sqe, r.slot);
    ++in_flight_;
    pending_sqes_ = true;
}

void BlockDevice::finish(Request& r, uint8_t status) {
    if (status != kBlkOk) ++stats_.errors;
    switch (r.req.type) {
        case kBlkIn:
            ++stats_.reads;
            if (status == kBlkOk) stats_.read_bytes += r.req.data_len;
            break;
        case kBlkOut:
            ++stats_.writes;
            if (status == kBlkOk) stats_.write_bytes += r.req.data_len;
            break;
        case kBlkFlush:
            ++stats_.flushes;
            break;
        default:
            ++stats_.other;
            break;
    }
    const uint64_t written = r.req.type == kBlkIn && status == kBlkOk ? r.req.data_len
                             : r.req.type == kBlkGetId                ? r.done
                                                                      : 0;
    (void)r.req.status.write_obj(0, status);  // one byte, always inside
    queue_->push_used(r.chain, static_cast<uint32_t>(written + 1));
    release(r);
}

void BlockDevice::on_cqe(Request& r, int res) {
    --in_flight_;
    if (r.generation != generation_ || queue_ == nullptr) {  // the device was reset meanwhile
        release(r);
        return;
    }
    const bool transfer = r.req.type == kBlkIn || r.req.type == kBlkOut;
    if (res < 0) {
        if (r.req.type == kBlkDiscard && (res == -EOPNOTSUPP || res == -EINVAL))
            return finish(r, kBlkOk);  // discard is a hint
        if (io_errors_.allow())
            log::warn("virtio-blk {}: request type {} at sector {}: {}", disk_->options().path,
                      r.req.type, r.req.sector, std::strerror(-res));
        return finish(r, kBlkIoErr);
    }
    if (transfer) {
        r.done += static_cast<uint64_t>(res);
        if (r.done < r.req.data_len) {
            if (res == 0) return finish(r, kBlkIoErr);  // the image shrank under us
            // Short transfer: skip what was done and submit the rest.
            uint64_t skip = static_cast<uint64_t>(res);
            while (skip > 0 && r.iov_first < r.req.iov_count) {
                iovec& v = r.iov[r.iov_first];
                if (skip >= v.iov_len) {
                    skip -= v.iov_len;
                    ++r.iov_first;
                } else {
                    // SAFETY: skip < iov_len, so the rest stays inside the slice it came from.
                    v.iov_base = static_cast<uint8_t*>(v.iov_base) + skip;
                    v.iov_len -= skip;
                    skip = 0;
                }
            }
            submit(r);
            return;
        }
    }
    finish(r, kBlkOk);
}

void BlockDevice::complete() {
    (void)completion_.consume();
    std::lock_guard lock(mutex());
    if (queue_ == nullptr) {  // reset: drain what the old generation left
        reap();
        submit_pending();  // resubmitted short transfers of the old generation
        return;
    }
    // Slots came free: take what the driver queued meanwhile (it will not notify again).
    if (auto r = run_queue(); !r) transport_->device_error(r.error().message());
}

}  // namespace vireo::virtio
