// virtio-net (virtio 1.2, 5.1): one receive and one transmit queue in front of a back-end that
// carries Ethernet frames (a tap device, or user-mode networking through libslirp).
//
// Frames cross the device with the 12-byte virtio_net_hdr_v1 in front. The tap back-end takes
// and gives that header natively (IFF_VNET_HDR), so transmit is one writev() straight from the
// guest's buffers and receive one readv() straight into them: no copies, and checksum and TSO
// offloads pass through when the tap accepts them. Receive uses mergeable buffers: chains are
// popped ahead into a small iovec window that covers the largest frame, the frame is read into
// as many as it needs, and the rest stay for the next frame (nothing is popped twice). When the
// guest has no receive buffers, the device stops watching the back-end until it adds some
// (back-pressure; the tap's own queue then drops, as a full NIC would).
//
// Rate limits (bytes and packets per second, each direction): a frame's size is known only once
// it is read, so a direction goes on while its buckets are not in debt, each frame is charged
// after it moved (possibly into debt), and a direction in debt stops — transmit stops taking
// the guest's frames, receive stops watching the back-end — until a timer says the debt is
// paid. The long-run rate is exact; without a limit the cost is one branch per frame.
#pragma once

#include <sys/uio.h>

#include <array>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/event_fd.hpp"
#include "base/token_bucket.hpp"
#include "base/unique_fd.hpp"
#include "virtio/device.hpp"
#include "virtio/net/backend.hpp"

namespace vireo::virtio {

struct NetStats {
    uint64_t rx_frames = 0, rx_bytes = 0, rx_dropped = 0;
    uint64_t tx_frames = 0, tx_bytes = 0, tx_dropped = 0;
    // Times a direction's rate limit stopped it, and for how long in all.
    uint64_t rx_throttled = 0, rx_throttled_ns = 0, tx_throttled = 0, tx_throttled_ns = 0;
};

class NetDevice final : public Device {
  public:
    static constexpr uint32_t kMaxChain = 64;
    static constexpr size_t kRxQueue = 0, kTxQueue = 1;

    /// With a timer per direction for its rate limit (limits may be set later too).
    static Result<std::shared_ptr<NetDevice>> create(std::shared_ptr<NetBackend> backend,
                                                     MacAddress mac, uint16_t mtu,
                                                     uint16_t queue_size, IoLimits rx = {},
                                                     IoLimits tx = {});

    const char* name() const noexcept override { return "virtio-net"; }
    uint32_t device_id() const noexcept override;
    uint64_t device_features() const noexcept override;
    size_t num_queues() const noexcept override { return 2; }
    uint16_t max_queue_size() const noexcept override { return queue_size_; }
    uint32_t max_chain() const noexcept override { return kMaxChain; }
    std::span<const uint8_t> config_space() const noexcept override { return config_; }

    Result<void> attach_loop(EventLoop& loop) override;
    Result<void> activate(const memory::GuestMemory& mem, std::span<Queue> queues,
                          uint64_t features, Transport& transport) override;
    Result<void> process(size_t index) override;
    void reset() override;
    /// The receive buffers it holds go back to the receive queue.
    void release_held() override;

    NetStats stats() noexcept {
        std::lock_guard lock(mutex());
        return stats_;
    }
    std::vector<Counter> counters() override {
        const NetStats s = stats();
        std::vector<Counter> out = {
            {"rx_frames", s.rx_frames},       {"rx_bytes", s.rx_bytes},
            {"rx_dropped", s.rx_dropped},     {"tx_frames", s.tx_frames},
            {"tx_bytes", s.tx_bytes},         {"tx_dropped", s.tx_dropped},
            {"rx_throttled", s.rx_throttled}, {"rx_throttled_ms", s.rx_throttled_ns / 1000000},
            {"tx_throttled", s.tx_throttled}, {"tx_throttled_ms", s.tx_throttled_ns / 1000000}};
        if (const auto b = backend_->backend_stats()) {
            out.push_back({"host_sockets", b->host_sockets});
            out.push_back({"pool_refused", b->pool_refused});
        }
        return out;
    }
    /// Replaces the rate limits (from any thread): new buckets, starting empty; a direction
    /// waiting on the old limit looks again at once.
    void set_limits(const IoLimits& rx, const IoLimits& tx);
    std::pair<IoLimits, IoLimits> limits() noexcept {
        std::lock_guard lock(mutex());
        return {rx_limit_.limits, tx_limit_.limits};
    }

  private:
    NetDevice(std::shared_ptr<NetBackend> backend, MacAddress mac, uint16_t mtu,
              uint16_t queue_size);
    // One direction's rate limit: its buckets and the timer that resumes it (no polling).
    struct Limit {
        IoLimits limits;
        IoThrottle throttle;
        TimerFd timer;
        bool waiting = false;  // stopped until the timer fires
        int64_t since_ns = 0;  // when it stopped
    };
    /// Whether `l` lets the next frame through now; if not, stops and arms its timer.
    bool admit(Limit& l, uint64_t& throttled);
    /// The timer fired: the direction may go on (returns false if it had not stopped).
    bool resume(Limit& l, uint64_t& throttled_ns);
    static void arm(Limit& l, int64_t ns);
    struct RxChain {
        uint16_t head;
        uint16_t iov_count;
        uint32_t bytes;
    };
    Result<void> transmit();
    Result<void> receive();
    /// Pops chains until the window covers `need` bytes (or one chain, without mergeable
    /// buffers). Returns the bytes the next frame may fill (0: no buffer at all).
    Result<size_t> fill_rx_window(size_t need);
    void set_rx_watch(bool on);

    std::shared_ptr<NetBackend> backend_;
    std::array<uint8_t, 12> config_{};  // mac[6], status, max_virtqueue_pairs, mtu
    uint16_t queue_size_;
    uint16_t mtu_;
    EventLoop* loop_ = nullptr;
    bool rx_watched_ = true;

    Chain chain_;
    Queue* rx_ = nullptr;
    Queue* tx_ = nullptr;
    Transport* transport_ = nullptr;
    bool mergeable_ = false;
    size_t rx_need_ = 0;  // bytes of window that hold the largest frame the guest may get
    std::vector<RxChain> rx_chains_;  // popped, not yet used (reserved: queue size)
    std::vector<iovec> rx_iov_;       // their writable segments, in order (reserved)
    std::array<iovec, kMaxChain> tx_iov_;
    Limit rx_limit_, tx_limit_;
    NetStats stats_;
};

}  // namespace vireo::virtio
