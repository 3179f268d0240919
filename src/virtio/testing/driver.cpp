#include "virtio/testing/driver.hpp"

#include <atomic>
#include <cstring>

#include "virtio/virtio.hpp"

namespace vireo::virtio::testing {

using memory::Gpa;

namespace {
uint64_t align_up(uint64_t v, uint64_t a) {
    return (v + a - 1) & ~(a - 1);
}
}  // namespace

uint64_t DriverQueue::footprint(uint16_t size) {
    const uint64_t avail = 16 * uint64_t{size};
    const uint64_t used = align_up(avail + 6 + 2 * uint64_t{size}, 4);
    return used + 6 + 8 * uint64_t{size};
}

DriverQueue::DriverQueue(const memory::GuestMemory& mem, uint64_t base, uint16_t size)
    : mem_(&mem), size_(size) {
    desc_ = base;
    avail_ = base + 16 * uint64_t{size};
    used_ = align_up(avail_ + 6 + 2 * uint64_t{size}, 4);
    std::vector<std::byte> zero(footprint(size));
    (void)mem_->write(Gpa(base), zero);
}

QueueConfig DriverQueue::config() const {
    return QueueConfig{size_, true, desc_, avail_, used_};
}

void DriverQueue::write_desc(uint16_t index, const RawDesc& d) {
    (void)mem_->write_obj(Gpa(desc_ + 16 * uint64_t{index}), d);
}

void DriverQueue::put_avail(uint16_t head) {
    (void)mem_->write_obj(Gpa(avail_ + 4 + 2 * uint64_t{uint16_t(avail_idx_ % size_)}), head);
    set_avail_idx(static_cast<uint16_t>(avail_idx_ + 1));
}

void DriverQueue::set_avail_idx(uint16_t idx) {
    avail_idx_ = idx;
    std::atomic_thread_fence(std::memory_order_release);
    (void)mem_->write_obj(Gpa(avail_ + 2), idx);
}

void DriverQueue::set_used_event(uint16_t v) {
    (void)mem_->write_obj(Gpa(avail_ + 4 + 2 * uint64_t{size_}), v);
}

void DriverQueue::set_avail_flags(uint16_t flags) {
    (void)mem_->write_obj(Gpa(avail_), flags);
}

uint16_t DriverQueue::avail_event() const {
    return mem_->read_obj<uint16_t>(Gpa(used_ + 4 + 8 * uint64_t{size_})).value_or(0);
}

uint16_t DriverQueue::add(std::span<const Buf> bufs, std::optional<uint64_t> indirect_table) {
    auto flags_of = [&](size_t i) {
        uint16_t f = bufs[i].writable ? kDescWrite : 0;
        if (i + 1 < bufs.size()) f |= kDescNext;
        return f;
    };
    const uint16_t head = next_desc_;
    if (indirect_table) {
        for (size_t i = 0; i < bufs.size(); ++i) {
            RawDesc d{bufs[i].gpa, bufs[i].len, flags_of(i), static_cast<uint16_t>(i + 1)};
            (void)mem_->write_obj(Gpa(*indirect_table + 16 * i), d);
        }
        write_desc(head, RawDesc{*indirect_table, static_cast<uint32_t>(16 * bufs.size()),
                                 kDescIndirect, 0});
        next_desc_ = static_cast<uint16_t>((next_desc_ + 1) % size_);
    } else {
        for (size_t i = 0; i < bufs.size(); ++i) {
            const uint16_t idx = next_desc_;
            next_desc_ = static_cast<uint16_t>((next_desc_ + 1) % size_);
            write_desc(idx, RawDesc{bufs[i].gpa, bufs[i].len, flags_of(i), next_desc_});
        }
    }
    put_avail(head);
    return head;
}

std::optional<Used> DriverQueue::next_used() {
    std::atomic_thread_fence(std::memory_order_acquire);
    auto idx = mem_->read_obj<uint16_t>(Gpa(used_ + 2));
    if (!idx || *idx == last_used_) {
        // Drained: with EVENT_IDX, ask for an interrupt at the next used buffer (as Linux's
        // virtqueue_enable_cb does), then look again for one that raced with the request.
        set_used_event(last_used_);
        std::atomic_thread_fence(std::memory_order_seq_cst);
        idx = mem_->read_obj<uint16_t>(Gpa(used_ + 2));
        if (!idx || *idx == last_used_) return std::nullopt;
    }
    std::atomic_thread_fence(std::memory_order_acquire);
    auto e = mem_->read_obj<Used>(Gpa(used_ + 4 + 8 * uint64_t{uint16_t(last_used_ % size_)}));
    ++last_used_;
    return e ? std::optional<Used>(*e) : std::nullopt;
}

uint32_t MmioDriver::read32(uint64_t offset) {
    uint32_t v = 0;
    t_.read(offset, std::span(reinterpret_cast<uint8_t*>(&v), 4));
    return v;
}

void MmioDriver::write32(uint64_t offset, uint32_t value) {
    t_.write(offset, std::span(reinterpret_cast<const uint8_t*>(&value), 4));
}

uint64_t MmioDriver::device_features() {
    write32(0x14, 0);
    uint64_t f = read32(0x10);
    write32(0x14, 1);
    return f | (uint64_t{read32(0x10)} << 32);
}

uint32_t MmioDriver::start(uint64_t features, std::span<DriverQueue* const> queues) {
    write32(0x70, 0);
    write32(0x70, kStatusAcknowledge);
    write32(0x70, kStatusAcknowledge | kStatusDriver);
    features |= kFeatureVersion1;
    write32(0x24, 0);
    write32(0x20, static_cast<uint32_t>(features));
    write32(0x24, 1);
    write32(0x20, static_cast<uint32_t>(features >> 32));
    write32(0x70, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
    if ((read32(0x70) & kStatusFeaturesOk) == 0) return read32(0x70);
    for (uint32_t q = 0; q < queues.size(); ++q) {
        const auto c = queues[q]->config();
        write32(0x30, q);
        write32(0x38, c.size);
        write32(0x80, static_cast<uint32_t>(c.desc));
        write32(0x84, static_cast<uint32_t>(c.desc >> 32));
        write32(0x90, static_cast<uint32_t>(c.driver));
        write32(0x94, static_cast<uint32_t>(c.driver >> 32));
        write32(0xa0, static_cast<uint32_t>(c.device));
        write32(0xa4, static_cast<uint32_t>(c.device >> 32));
        write32(0x44, 1);
    }
    write32(0x70, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
    return read32(0x70);
}

void MmioDriver::notify(uint32_t q) {
    write32(0x50, q);
}

uint32_t MmioDriver::ack_interrupt() {
    const uint32_t v = read32(0x60);
    write32(0x64, v);
    return v;
}

bool run_until(EventLoop& loop, const std::function<bool()>& done,
               std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        loop.poll_once(10);
    }
    return true;
}

}  // namespace vireo::virtio::testing
