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

namespace vireo::virtio {

// Feature bits (5.1.3).
inline constexpr uint64_t kNetFCsum = uint64_t{1} << 0;
inline constexpr uint64_t kNetFGuestCsum = uint64_t{1} << 1;
inline constexpr uint64_t kNetFMtu = uint64_t{1} << 3;
inline constexpr uint64_t kNetFMac = uint64_t{1} << 5;
inline constexpr uint64_t kNetFGuestTso4 = uint64_t{1} << 7;
inline constexpr uint64_t kNetFGuestTso6 = uint64_t{1} << 8;
inline constexpr uint64_t kNetFGuestEcn = uint64_t{1} << 9;
inline constexpr uint64_t kNetFHostTso4 = uint64_t{1} << 11;
inline constexpr uint64_t kNetFHostTso6 = uint64_t{1} << 12;
inline constexpr uint64_t kNetFHostEcn = uint64_t{1} << 13;
inline constexpr uint64_t kNetFMrgRxbuf = uint64_t{1} << 15;
inline constexpr uint64_t kNetFStatus = uint64_t{1} << 16;

/// virtio_net_hdr_v1: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset, num_buffers.
inline constexpr size_t kNetHdrSize = 12;
/// The largest frame after the header: a 64 KiB GSO packet plus Ethernet and VLAN headers.
inline constexpr size_t kMaxFrame = 65535 + 14 + 4;

using MacAddress = std::array<uint8_t, 6>;

/// Parses "52:54:00:12:34:56". Multicast addresses are refused.
Result<MacAddress> parse_mac(std::string_view text);
std::string format_mac(const MacAddress& mac);
/// A locally administered unicast MAC derived from `seed` (stable: same seed, same MAC).
MacAddress derived_mac(std::string_view seed);

struct HostForward {
    bool udp = false;
    uint32_t host_addr = 0x7f000001;  ///< host byte order; default 127.0.0.1
    uint16_t host_port = 0;
    uint32_t guest_addr = 0;  ///< 0: the guest's DHCP address
    uint16_t guest_port = 0;
};

/// `--net user[,hostfwd=tcp:127.0.0.1:8080-:80]...[,mac=..][,mtu=N][,queue-size=N]` or
/// `--net tap=NAME[,mac=..][,mtu=N][,queue-size=N]`.
struct NetOptions {
    enum class Kind { User, Tap } kind = Kind::User;
    std::string tap;
    std::vector<HostForward> forwards;
    std::optional<MacAddress> mac;  ///< default: derived from the domain and the device index
    uint16_t mtu = 1500;
    uint16_t queue_size = 256;
};
Result<NetOptions> parse_net_option(std::string_view spec);

/// Where frames go. Called on the domain's event loop with the device mutex held.
class NetBackend {
  public:
    virtual ~NetBackend() = default;
    virtual const char* kind() const noexcept = 0;
    /// Readable while received frames are waiting.
    virtual int rx_fd() const noexcept = 0;
    /// The offload features (kNetF*) the back-end can carry; the device offers these.
    virtual uint64_t offloads() const noexcept = 0;
    /// The driver negotiated `features`: enable what the guest accepts on receive.
    virtual void set_guest_features(uint64_t /*features*/) {}
    /// Receives one frame, header first, into `iov`. Returns its length, -EAGAIN when none is
    /// waiting, or another -errno (the frame is lost).
    virtual ssize_t receive(const iovec* iov, int count) = 0;
    /// Sends one frame, header first. Returns 0 or -errno (the frame is dropped).
    virtual int send(const iovec* iov, int count) = 0;
};

/// Opens (creating it if needed, which takes CAP_NET_ADMIN) the tap device `name` in
/// multi-frame vnet-header mode and probes its offloads.
Result<std::shared_ptr<NetBackend>> open_tap(const std::string& name, uint16_t mtu);

/// A back-end on one end of a datagram socketpair: each datagram is one frame with its
/// virtio_net_hdr_v1 in front; the other end (returned) is the "wire". For connecting a
/// domain to a program on the host (and for tests and fuzzers). Offers no offloads.
Result<std::pair<std::shared_ptr<NetBackend>, UniqueFd>> socketpair_backend();

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
