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
#pragma once

#include <sys/uio.h>

#include <array>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/unique_fd.hpp"
#include "virtio/device.hpp"
#include "virtio/net/backend.hpp"

namespace vireo::virtio {

struct NetStats {
    uint64_t rx_frames = 0, rx_bytes = 0, rx_dropped = 0;
    uint64_t tx_frames = 0, tx_bytes = 0, tx_dropped = 0;
};

class NetDevice final : public Device {
  public:
    static constexpr uint32_t kMaxChain = 64;
    static constexpr size_t kRxQueue = 0, kTxQueue = 1;

    NetDevice(std::shared_ptr<NetBackend> backend, MacAddress mac, uint16_t mtu,
              uint16_t queue_size);

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
        return {{"rx_frames", s.rx_frames}, {"rx_bytes", s.rx_bytes}, {"rx_dropped", s.rx_dropped},
                {"tx_frames", s.tx_frames}, {"tx_bytes", s.tx_bytes}, {"tx_dropped", s.tx_dropped}};
    }

  private:
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
    NetStats stats_;
};

}  // namespace vireo::virtio
