// virtio-vsock (virtio 1.2, 5.10) with a host side on Unix sockets, compatible with
// Firecracker's scheme:
//   - host -> guest: connect to the domain's socket PATH and write "CONNECT <port>\n"; once the
//     guest accepts, vireo answers "OK <host_port>\n" and the stream is the connection.
//   - guest -> host: a guest connecting to CID 2, port P is connected to the Unix socket
//     "PATH_P" (which a host program listens on).
//
// Everything runs on the domain's event loop: the device keeps its own epoll set (listener and
// connection sockets) that the loop watches as one fd. Data moves without intermediate copies
// in the common case: guest payloads are written from guest memory to the socket, socket data is
// read straight into the guest's receive buffers. Flow control is virtio-vsock's credit scheme
// both ways, so memory per connection is bounded (kBufAlloc for bytes the host socket has not
// taken yet), and connections are capped (kMaxConnections); a guest that ignores credit gets
// its connection reset.
#pragma once

#include <sys/epoll.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/mem_pool.hpp"
#include "base/unique_fd.hpp"
#include "base/unix_socket.hpp"
#include "virtio/device.hpp"
#include "virtio/vsock/listener.hpp"

namespace vireo::virtio {

inline constexpr uint64_t kVsockHostCid = 2;

/// The 44-byte packet header (little endian on x86, as the spec requires).
struct [[gnu::packed]] VsockHeader {
    uint64_t src_cid;
    uint64_t dst_cid;
    uint32_t src_port;
    uint32_t dst_port;
    uint32_t len;
    uint16_t type;
    uint16_t op;
    uint32_t flags;
    uint32_t buf_alloc;
    uint32_t fwd_cnt;
};
static_assert(sizeof(VsockHeader) == 44);

struct VsockStats {
    uint64_t connections = 0, resets = 0, rx_bytes = 0, tx_bytes = 0, dropped = 0;
    uint64_t pool_refused = 0;  // connections refused or reset: the domain's VMM pool was spent
};

class VsockDevice final : public Device {
  public:
    static constexpr uint32_t kMaxChain = 16;
    static constexpr size_t kMaxConnections = 256;
    /// Bytes from the guest one connection may have in vireo before the socket takes them.
    static constexpr uint32_t kBufAlloc = 256 * 1024;
    static constexpr uint32_t kMaxPayload = 64 * 1024;

    /// What one connection costs the pool besides the guest payload it holds (its state, map
    /// entry, epoll item and handshake line; an estimate).
    static constexpr uint64_t kConnCost = 4096;

    /// With `pool`, connections and the payload they hold are taken from it (base/mem_pool.hpp).
    explicit VsockDevice(std::shared_ptr<VsockListener> listener,
                         std::shared_ptr<MemoryPool> pool = nullptr);
    ~VsockDevice() override;

    const char* name() const noexcept override { return "virtio-vsock"; }
    uint32_t device_id() const noexcept override;
    uint64_t device_features() const noexcept override;
    size_t num_queues() const noexcept override { return 3; }
    uint16_t max_queue_size() const noexcept override { return 256; }
    uint32_t max_chain() const noexcept override { return kMaxChain; }
    std::span<const uint8_t> config_space() const noexcept override { return config_; }

    Result<void> attach_loop(EventLoop& loop) override;
    Result<void> activate(const memory::GuestMemory& mem, std::span<Queue> queues,
                          uint64_t features, Transport& transport) override;
    Result<void> process(size_t index) override;
    void reset() override;
    /// Connections do not survive a snapshot: the driver gets a transport reset event.
    void restored() override;

    VsockStats stats() noexcept {
        std::lock_guard lock(mutex());
        return stats_;
    }
    std::vector<Counter> counters() override {
        const VsockStats s = stats();
        return {{"connections", s.connections}, {"resets", s.resets},
                {"rx_bytes", s.rx_bytes},       {"tx_bytes", s.tx_bytes},
                {"dropped", s.dropped},         {"pool_refused", s.pool_refused}};
    }

  private:
    struct Conn;
    enum class Op : uint16_t;

    void on_events();
    void accept_host();
    void on_conn_event(Conn& c, uint32_t events);
    Result<void> handle_tx();
    Result<void> handle_packet(const VsockHeader& h, std::span<const Segment> payload,
                               uint32_t payload_offset);
    void flush_rx();
    /// Sends one packet for `c` (control, or data read from its socket); false when the guest
    /// has no receive buffer.
    Result<bool> send_to_guest(Conn& c);
    bool send_reset(const VsockHeader& to);
    void update_interest(Conn& c);
    void close_conn(Conn& c);
    void drop_closed();
    Conn* find(uint32_t host_port, uint32_t guest_port);
    uint32_t alloc_host_port();

    std::shared_ptr<VsockListener> listener_;
    std::shared_ptr<MemoryPool> pool_;  // may be null: bounded by the caps alone
    /// A new connection with its base cost taken from the pool (null: refused, counted).
    std::unique_ptr<Conn> new_conn();
    /// Room for `more` bytes of pending payload on `c`, taken from the pool first.
    bool grow_pending(Conn& c, size_t more);
    std::array<uint8_t, 8> config_{};  // guest_cid
    UniqueFd epoll_;
    Chain chain_;
    Queue* rx_ = nullptr;
    Queue* tx_ = nullptr;
    Queue* event_ = nullptr;
    Transport* transport_ = nullptr;
    bool rx_starved_ = false;
    bool interrupt_pending_ = false;
    std::map<uint64_t, std::unique_ptr<Conn>> conns_;  // (host port << 32) | guest port
    std::vector<std::unique_ptr<Conn>> handshaking_;   // host connections before CONNECT
    std::vector<std::unique_ptr<Conn>> closed_;        // freed after the current event batch
    std::vector<VsockHeader> resets_;                  // RSTs for packets without a connection
    uint32_t next_host_port_ = 1u << 30;
    VsockStats stats_;
};

}  // namespace vireo::virtio
