#include "virtio/balloon/device.hpp"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>

#include "base/log.hpp"
#include "virtio/virtio.hpp"

namespace vireo::virtio {

namespace {

constexpr const char* kStatNames[] = {
    "swap-in",      "swap-out",         "major-faults", "minor-faults",        "free-memory",
    "total-memory", "available-memory", "disk-caches",  "hugetlb-allocations", "hugetlb-failures"};
constexpr size_t kStatSize = 10;  // le16 tag, le64 value (packed)

}  // namespace

uint32_t BalloonDevice::device_id() const noexcept {
    return kDeviceBalloon;
}

uint64_t BalloonDevice::device_features() const noexcept {
    // Not DEFLATE_ON_OOM: with it Linux keeps inflated pages in MemTotal, and `mem-set` is
    // meant to shrink the guest's memory as the guest itself sees it.
    return kFeatureIndirectDesc | kFeatureEventIdx | kBalloonFStatsVq | kBalloonFReporting;
}

void BalloonDevice::write_config(uint64_t offset, std::span<const uint8_t> data) {
    // Only `actual` (offset 4, 32 bits) is the driver's to write.
    if (offset != 4 || data.size() != 4) return;
    std::memcpy(config_.data() + 4, data.data(), 4);
    uint32_t actual;
    std::memcpy(&actual, data.data(), 4);
    info_.actual_pages = actual;
}

Result<void> BalloonDevice::activate(const memory::GuestMemory& mem, std::span<Queue> queues,
                                     uint64_t features, Transport& transport) {
    if (queues.size() < 2 || !queues[0].active() || !queues[1].active())
        return fail(ErrorCode::InvalidArgument, "inflate and deflate queues not set up");
    mem_ = &mem;
    transport_ = &transport;
    inflate_ = &queues[0];
    deflate_ = &queues[1];
    // The optional queues follow in order, only for negotiated features.
    size_t next = 2;
    stats_q_ = report_ = nullptr;
    if (features & kBalloonFStatsVq) {
        if (next < queues.size() && queues[next].active()) stats_q_ = &queues[next];
        ++next;
    }
    if (features & kBalloonFReporting) {
        if (next < queues.size() && queues[next].active()) report_ = &queues[next];
        ++next;
    }
    stats_held_ = false;
    info_.driver_ready = true;
    return ok();
}

void BalloonDevice::reset() {
    inflate_ = deflate_ = stats_q_ = report_ = nullptr;
    stats_held_ = false;
    info_.driver_ready = false;
    info_.actual_pages = 0;
    std::memset(config_.data() + 4, 0, 4);
}

Result<void> BalloonDevice::process(size_t index) {
    if (inflate_ == nullptr) return ok();
    if (index == 0) return inflate(*inflate_);
    if (index == 1) return deflate(*deflate_);
    Queue* q = inflate_ + index;  // the queues are one array
    if (q == stats_q_) return take_stats(*q);
    if (q == report_) return reported(*q);
    return ok();
}

void BalloonDevice::give_back(memory::Gpa gpa, uint64_t len) {
    if (auto r = mem_->discard(gpa, len); !r) log::warn("virtio-balloon: {}", r.error().message());
}

Result<void> BalloonDevice::inflate(Queue& q) {
    for (;;) {
        VIREO_TRY_ASSIGN(bool got, q.pop(chain_));
        if (!got) break;
        // PFNs (le32 each) in the readable buffers; contiguous runs are returned in one call.
        // A run is contiguous guest pages inside one RAM region.
        memory::Gpa run;
        uint64_t run_len = 0;
        for (const auto& s : chain_.readable()) {
            for (uint32_t off = 0; off + 4 <= s.len(); off += 4) {
                const uint32_t pfn = s.buf.read_obj<uint32_t>(off).value_or(0);
                const memory::Gpa gpa(uint64_t{pfn} * kPageSize);
                const auto* region = mem_->find(gpa);
                if (region == nullptr) continue;  // not RAM: nothing to give back
                ++info_.inflated_pages;
                if (run_len != 0 && run.value() + run_len == gpa.value() &&
                    mem_->find(run) == region) {
                    run_len += kPageSize;
                    continue;
                }
                if (run_len != 0) give_back(run, run_len);
                run = gpa;
                run_len = kPageSize;
            }
        }
        if (run_len != 0) give_back(run, run_len);
        q.push_used(chain_.head(), 0);
    }
    if (q.needs_interrupt()) transport_->signal_used();
    return ok();
}

Result<void> BalloonDevice::deflate(Queue& q) {
    for (;;) {
        VIREO_TRY_ASSIGN(bool got, q.pop(chain_));
        if (!got) break;
        info_.deflated_pages += chain_.readable_bytes() / 4;  // refaulted on touch
        q.push_used(chain_.head(), 0);
    }
    if (q.needs_interrupt()) transport_->signal_used();
    return ok();
}

Result<void> BalloonDevice::take_stats(Queue& q) {
    for (;;) {
        VIREO_TRY_ASSIGN(bool got, q.pop(chain_));
        if (!got) break;
        if (stats_held_) q.push_used(stats_head_, 0);  // a driver should not queue two
        for (const auto& s : chain_.readable()) {
            for (uint32_t off = 0; off + kStatSize <= s.len(); off += kStatSize) {
                const uint16_t tag = s.buf.read_obj<uint16_t>(off).value_or(UINT16_MAX);
                const uint64_t value = s.buf.read_obj<uint64_t>(off + 2).value_or(0);
                if (tag < std::size(kStatNames)) info_.stats[kStatNames[tag]] = value;
            }
        }
        ++info_.stats_updates;
        // Kept until the host wants fresh figures (request_stats returns it).
        stats_held_ = true;
        stats_head_ = chain_.head();
    }
    if (q.needs_interrupt()) transport_->signal_used();
    return ok();
}

Result<void> BalloonDevice::reported(Queue& q) {
    for (;;) {
        VIREO_TRY_ASSIGN(bool got, q.pop(chain_));
        if (!got) break;
        // Free ranges the guest reports; each buffer is a range of guest RAM.
        for (const auto& s : chain_.segments()) {
            give_back(s.buf.gpa(), s.len());
            info_.reported_bytes += s.len();
        }
        q.push_used(chain_.head(), 0);
    }
    if (q.needs_interrupt()) transport_->signal_used();
    return ok();
}

uint64_t BalloonDevice::set_target_bytes(uint64_t bytes) {
    std::lock_guard lock(mutex());
    const uint64_t pages = std::min<uint64_t>(bytes / kPageSize, 0xffffffffu);
    const auto p32 = static_cast<uint32_t>(pages);
    std::memcpy(config_.data(), &p32, 4);
    info_.target_pages = pages;
    return pages;
}

void BalloonDevice::release_held() {
    if (stats_held_ && stats_q_ != nullptr) stats_q_->unpop(1);
    stats_held_ = false;
}

void BalloonDevice::save(snapshot::Encoder& e) const {
    e.u64(info_.target_pages);
    e.u64(info_.actual_pages);
    e.u64(info_.inflated_pages);
    e.u64(info_.deflated_pages);
    e.u64(info_.reported_bytes);
}

void BalloonDevice::restore(snapshot::Decoder& d) {
    const uint64_t target = d.u64(), actual = d.u64();
    const uint64_t inflated = d.u64(), deflated = d.u64(), reported = d.u64();
    if (target > 0xffffffffu || actual > 0xffffffffu) d.invalid("balloon size");
    if (!d.ok()) return;
    const auto t32 = static_cast<uint32_t>(target), a32 = static_cast<uint32_t>(actual);
    std::memcpy(config_.data(), &t32, 4);
    std::memcpy(config_.data() + 4, &a32, 4);
    info_.target_pages = target;
    info_.actual_pages = actual;
    info_.inflated_pages = inflated;
    info_.deflated_pages = deflated;
    info_.reported_bytes = reported;
}

bool BalloonDevice::request_stats() {
    std::lock_guard lock(mutex());
    if (stats_q_ == nullptr || !stats_held_) return false;
    stats_held_ = false;
    stats_q_->push_used(stats_head_, 0);
    if (stats_q_->needs_interrupt()) transport_->signal_used();
    return true;
}

BalloonInfo BalloonDevice::info() {
    std::lock_guard lock(mutex());
    return info_;
}

}  // namespace vireo::virtio
