#include "virtio/net/device.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

#include "base/log.hpp"
#include "base/split.hpp"
#include "base/unique_fd.hpp"
#include "virtio/virtio.hpp"

namespace vireo::virtio {

namespace {

constexpr size_t kMaxRxIov = IOV_MAX;  // what one readv() takes
constexpr size_t kNumBuffersOffset = 10;
/// Transmitted frames between two looks at the receive side (fairness under a transmit flood).
constexpr int kTxBatch = 128;

// Writes `len` bytes at byte `offset` of the buffer `iov` describes.
void scatter_write(const iovec* iov, size_t count, size_t offset, const void* data, size_t len) {
    const auto* src = static_cast<const uint8_t*>(data);
    for (size_t i = 0; i < count && len > 0; ++i) {
        if (offset >= iov[i].iov_len) {
            offset -= iov[i].iov_len;
            continue;
        }
        const size_t n = std::min(len, iov[i].iov_len - offset);
        // SAFETY: offset + n <= iov_len; the iovecs are guest slices' iov() (receive buffers).
        std::memcpy(static_cast<uint8_t*>(iov[i].iov_base) + offset, src, n);
        src += n;
        len -= n;
        offset = 0;
    }
}

}  // namespace

NetDevice::NetDevice(std::shared_ptr<NetBackend> backend, MacAddress mac, uint16_t mtu,
                     uint16_t queue_size)
    : backend_(std::move(backend)), queue_size_(queue_size), mtu_(mtu), chain_(kMaxChain) {
    std::memcpy(config_.data(), mac.data(), 6);
    const uint16_t status = 1, pairs = 1;  // VIRTIO_NET_S_LINK_UP
    std::memcpy(config_.data() + 6, &status, 2);
    std::memcpy(config_.data() + 8, &pairs, 2);
    std::memcpy(config_.data() + 10, &mtu, 2);
    rx_chains_.reserve(queue_size);
    rx_iov_.reserve(kMaxRxIov);
}

Result<std::shared_ptr<NetDevice>> NetDevice::create(std::shared_ptr<NetBackend> backend,
                                                     MacAddress mac, uint16_t mtu,
                                                     uint16_t queue_size, IoLimits rx,
                                                     IoLimits tx) {
    std::shared_ptr<NetDevice> d(new NetDevice(std::move(backend), mac, mtu, queue_size));
    for (Limit* l : {&d->rx_limit_, &d->tx_limit_}) {
        VIREO_TRY_ASSIGN(l->timer, TimerFd::create());
    }
    d->set_limits(rx, tx);
    return d;
}

void NetDevice::arm(Limit& l, int64_t ns) {
    if (auto r = l.timer.arm(ns); !r) log::error("virtio-net: {}", r.error().message());
}

void NetDevice::set_limits(const IoLimits& rx, const IoLimits& tx) {
    std::lock_guard lock(mutex());
    const int64_t now = steady_ns();
    for (auto [l, limits] : {std::pair{&rx_limit_, &rx}, std::pair{&tx_limit_, &tx}}) {
        l->limits = *limits;
        l->throttle = limits->any() ? IoThrottle(*limits, now) : IoThrottle();
        if (l->waiting) arm(*l, 1);  // the loop looks again, under the new limit
    }
}

bool NetDevice::admit(Limit& l, uint64_t& throttled) {
    if (!l.throttle.limited()) return true;
    const int64_t now = steady_ns();
    const int64_t wait = l.throttle.wait_any(now);
    if (wait == 0) return true;
    l.waiting = true;
    l.since_ns = now;
    ++throttled;
    arm(l, wait);
    return false;
}

bool NetDevice::resume(Limit& l, uint64_t& throttled_ns) {
    l.timer.consume();
    if (!l.waiting) return false;
    l.waiting = false;
    throttled_ns += static_cast<uint64_t>(steady_ns() - l.since_ns);
    return true;
}

uint32_t NetDevice::device_id() const noexcept {
    return kDeviceNet;
}

uint64_t NetDevice::device_features() const noexcept {
    // No VIRTIO_NET_F_STATUS: the link is always up, and without the feature the driver turns
    // the carrier on during probe instead of in deferred work (with it, the first second of
    // networking after `ip link set up` can see routes still marked link-down).
    return kFeatureIndirectDesc | kFeatureEventIdx | kNetFMac | kNetFMtu | kNetFMrgRxbuf |
           backend_->offloads();
}

Result<void> NetDevice::attach_loop(EventLoop& loop) {
    loop_ = &loop;
    VIREO_TRY(loop.add(backend_->rx_fd(), [this] {
        std::lock_guard lock(mutex());
        if (auto r = receive(); !r) transport_->device_error(r.error().message());
    }));
    set_rx_watch(false);  // until the driver is up
    VIREO_TRY(loop.add(tx_limit_.timer.fd(), [this] {
        std::lock_guard lock(mutex());
        if (!resume(tx_limit_, stats_.tx_throttled_ns) || tx_ == nullptr) return;
        if (auto r = transmit(); !r) transport_->device_error(r.error().message());
    }));
    return loop.add(rx_limit_.timer.fd(), [this] {
        std::lock_guard lock(mutex());
        if (!resume(rx_limit_, stats_.rx_throttled_ns) || rx_ == nullptr) return;
        set_rx_watch(true);
        if (auto r = receive(); !r) transport_->device_error(r.error().message());
    });
}

void NetDevice::set_rx_watch(bool on) {
    if (rx_watched_ == on || loop_ == nullptr) return;
    if (auto r = loop_->watch(backend_->rx_fd(), on); !r)
        log::error("virtio-net: {}", r.error().message());
    rx_watched_ = on;
}

Result<void> NetDevice::activate(const memory::GuestMemory&, std::span<Queue> queues,
                                 uint64_t features, Transport& transport) {
    if (queues.size() != 2 || !queues[kRxQueue].active() || !queues[kTxQueue].active())
        return fail(ErrorCode::InvalidArgument, "receive and transmit queues not set up");
    rx_ = &queues[kRxQueue];
    tx_ = &queues[kTxQueue];
    transport_ = &transport;
    mergeable_ = (features & kNetFMrgRxbuf) != 0;
    const bool gso = (features & (kNetFGuestTso4 | kNetFGuestTso6)) != 0;
    rx_need_ = kNetHdrSize + (gso ? kMaxFrame : size_t{mtu_} + 14 + 4);
    rx_chains_.clear();
    rx_iov_.clear();
    backend_->set_guest_features(features);
    set_rx_watch(true);
    return ok();
}

void NetDevice::reset() {
    rx_ = tx_ = nullptr;
    for (Limit* l : {&rx_limit_, &tx_limit_})
        if (l->waiting) {
            l->waiting = false;
            arm(*l, 0);
        }
    rx_chains_.clear();  // popped chains are simply forgotten: the driver reset the rings
    rx_iov_.clear();
    set_rx_watch(false);
}

void NetDevice::release_held() {
    if (rx_ != nullptr) rx_->unpop(static_cast<uint16_t>(rx_chains_.size()));
    rx_chains_.clear();
    rx_iov_.clear();
}

Result<void> NetDevice::process(size_t index) {
    if (rx_ == nullptr) return ok();
    if (index == kTxQueue) return transmit();
    // New receive buffers: listen to the back-end again and deliver what waits.
    set_rx_watch(true);
    return receive();
}

Result<void> NetDevice::transmit() {
    if (tx_limit_.waiting) return ok();  // its timer goes on
    int batch = 0;
    for (;;) {
        if (!admit(tx_limit_, stats_.tx_throttled)) break;
        VIREO_TRY_ASSIGN(bool got, tx_->pop(chain_));
        if (!got) break;
        if (chain_.writable_bytes() != 0)
            return fail(ErrorCode::InvalidArgument, "transmit chain with device-writable buffers");
        const uint64_t len = chain_.readable_bytes();
        if (len < kNetHdrSize + 14 || len > kNetHdrSize + kMaxFrame) {
            ++stats_.tx_dropped;  // not a frame; a NIC drops it too
        } else {
            const size_t n = to_iovecs(chain_.readable(), 0, len, tx_iov_);
            if (backend_->send(tx_iov_.data(), static_cast<int>(n)) == 0) {
                ++stats_.tx_frames;
                stats_.tx_bytes += len - kNetHdrSize;
                tx_limit_.throttle.charge(len - kNetHdrSize);
            } else {
                ++stats_.tx_dropped;
            }
        }
        tx_->push_used(chain_.head(), 0);
        if (++batch == kTxBatch) {
            batch = 0;
            if (tx_->needs_interrupt()) transport_->signal_used();
            if (rx_watched_) VIREO_TRY(receive());
        }
    }
    if (tx_->needs_interrupt()) transport_->signal_used();
    return ok();
}

Result<size_t> NetDevice::fill_rx_window(size_t need) {
    size_t have = 0;
    for (const auto& c : rx_chains_)
        have += c.bytes;
    if (!mergeable_) need = 1;  // one chain per frame
    while (have < need && rx_chains_.size() < queue_size_ &&
           rx_iov_.size() + kMaxChain <= kMaxRxIov) {
        VIREO_TRY_ASSIGN(bool got, rx_->pop(chain_));
        if (!got) break;
        if (chain_.readable_bytes() != 0 || chain_.writable_bytes() < kNetHdrSize)
            return fail(ErrorCode::InvalidArgument,
                        "receive buffer with {} readable and {} writable bytes",
                        chain_.readable_bytes(), chain_.writable_bytes());
        for (const auto& s : chain_.writable())
            rx_iov_.push_back(s.buf.iov());
        const auto bytes = static_cast<uint32_t>(chain_.writable_bytes());
        rx_chains_.push_back(
            {chain_.head(), static_cast<uint16_t>(chain_.writable().size()), bytes});
        have += bytes;
    }
    if (rx_chains_.empty()) return size_t{0};
    return mergeable_ ? have : size_t{rx_chains_[0].bytes};
}

Result<void> NetDevice::receive() {
    if (rx_ == nullptr) {
        set_rx_watch(false);
        return ok();
    }
    bool delivered = false;
    for (;;) {
        if (rx_limit_.waiting || !admit(rx_limit_, stats_.rx_throttled)) {
            set_rx_watch(false);  // until its timer fires
            break;
        }
        VIREO_TRY_ASSIGN(const size_t window, fill_rx_window(rx_need_));
        if (window == 0) {
            set_rx_watch(false);  // the guest notifies the receive queue when it adds buffers
            break;
        }
        const size_t iov_count = mergeable_ ? rx_iov_.size() : rx_chains_[0].iov_count;
        const ssize_t n = backend_->receive(rx_iov_.data(), static_cast<int>(iov_count));
        if (n == -EAGAIN || n == -EWOULDBLOCK) break;
        if (n < static_cast<ssize_t>(kNetHdrSize) || static_cast<size_t>(n) > window) {
            ++stats_.rx_dropped;  // lost, or larger than the buffers (truncated): not delivered
            continue;
        }
        // Which chains the frame filled; their count goes into num_buffers before the used
        // ring publishes them.
        size_t chains = 1, iovs = rx_chains_[0].iov_count;
        if (mergeable_) {
            size_t covered = rx_chains_[0].bytes;
            while (covered < static_cast<size_t>(n)) {
                covered += rx_chains_[chains].bytes;
                iovs += rx_chains_[chains].iov_count;
                ++chains;
            }
        }
        const uint16_t num_buffers = static_cast<uint16_t>(chains);
        scatter_write(rx_iov_.data(), iovs, kNumBuffersOffset, &num_buffers, 2);
        rx_->mark_written(std::span<const iovec>(rx_iov_.data(), iovs));
        size_t left = static_cast<size_t>(n);
        for (size_t i = 0; i < chains; ++i) {
            const uint32_t used =
                static_cast<uint32_t>(std::min<size_t>(left, rx_chains_[i].bytes));
            rx_->push_used(rx_chains_[i].head, used);
            left -= used;
        }
        rx_chains_.erase(rx_chains_.begin(), rx_chains_.begin() + static_cast<ptrdiff_t>(chains));
        rx_iov_.erase(rx_iov_.begin(), rx_iov_.begin() + static_cast<ptrdiff_t>(iovs));
        ++stats_.rx_frames;
        stats_.rx_bytes += static_cast<size_t>(n) - kNetHdrSize;
        rx_limit_.throttle.charge(static_cast<size_t>(n) - kNetHdrSize);
        delivered = true;
        // Interrupt per batch: let the guest start on what it has while more arrives.
        if ((stats_.rx_frames & 63) == 0 && rx_->needs_interrupt()) transport_->signal_used();
    }
    if (delivered && rx_->needs_interrupt()) transport_->signal_used();
    return ok();
}

}  // namespace vireo::virtio
