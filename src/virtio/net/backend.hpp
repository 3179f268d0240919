// What a virtio-net device sends frames through: the back-end interface, the options that
// choose one (`--net`, a domain's `nets`), and the back-ends that need no library: a tap device
// (multi-frame vnet-header mode, offloads probed) and a datagram socketpair. User-mode
// networking (libslirp) is net/slirp.hpp.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/mem_pool.hpp"
#include "base/result.hpp"
#include "base/token_bucket.hpp"
#include "base/unique_fd.hpp"

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
/// `--net tap=NAME[,mac=..][,mtu=N][,queue-size=N]`; either with rate limits per direction.
struct NetOptions {
    enum class Kind { User, Tap } kind = Kind::User;
    std::string tap;
    std::vector<HostForward> forwards;
    std::optional<MacAddress> mac;  ///< default: derived from the domain and the device index
    uint16_t mtu = 1500;
    uint16_t queue_size = 256;
    IoLimits rx_limits;  ///< frames to the guest: bytes and packets per second
    IoLimits tx_limits;  ///< frames from the guest
};

/// What a back-end holds on the host for its guest (user-mode networking's host sockets) and
/// how often the VMM pool refused it more.
struct NetBackendStats {
    uint64_t host_sockets = 0, pool_refused = 0;
};

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
    /// Starts the back-end's own thread, if it has one (user networking's poll loop). Called
    /// once, by the thread that built the domain, after the domain entered its sandbox: a
    /// thread started before would not be confined.
    virtual void start() {}
    /// The domain's VMM pool, which what the guest makes the back-end allocate on the host is
    /// taken from (set before the guest runs; kept across reboots, as the back-end is).
    virtual void attach_pool(std::shared_ptr<MemoryPool> /*pool*/) {}
    /// Host-side state to show, for a back-end that has some (user networking); the device's
    /// counters() adds it.
    virtual std::optional<NetBackendStats> backend_stats() const noexcept { return std::nullopt; }
};

/// Opens (creating it if needed, which takes CAP_NET_ADMIN) the tap device `name` in
/// multi-frame vnet-header mode and probes its offloads.
Result<std::shared_ptr<NetBackend>> open_tap(const std::string& name, uint16_t mtu);

/// A back-end on one end of a datagram socketpair: each datagram is one frame with its
/// virtio_net_hdr_v1 in front; the other end (returned) is the "wire". For connecting a
/// domain to a program on the host (and for tests and fuzzers). Offers no offloads.
Result<std::pair<std::shared_ptr<NetBackend>, UniqueFd>> socketpair_backend();

}  // namespace vireo::virtio
