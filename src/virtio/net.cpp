#include "virtio/net.hpp"

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

Result<unsigned long> parse_number(std::string_view spec, std::string_view key,
                                   std::string_view text, unsigned long lo, unsigned long hi) {
    const std::string v(text);
    char* end = nullptr;
    errno = 0;
    const unsigned long n = std::strtoul(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || errno != 0 || n < lo || n > hi || v[0] == '-')
        return fail(ErrorCode::InvalidArgument, "\"{}\": {} must be a number from {} to {}", spec,
                    key, lo, hi);
    return n;
}

// "[ADDR]:PORT" with ADDR an IPv4 address (empty: `fallback`).
Result<void> parse_endpoint(std::string_view spec, std::string_view text, uint32_t fallback,
                            uint32_t& addr, uint16_t& port) {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos)
        return fail(ErrorCode::InvalidArgument,
                    "\"{}\": hostfwd endpoint \"{}\" is not [ADDRESS]:PORT", spec, text);
    const std::string a(text.substr(0, colon));
    addr = fallback;
    if (!a.empty()) {
        in_addr in{};
        if (::inet_pton(AF_INET, a.c_str(), &in) != 1)
            return fail(ErrorCode::InvalidArgument, "\"{}\": \"{}\" is not an IPv4 address", spec,
                        a);
        addr = ntohl(in.s_addr);
    }
    VIREO_TRY_ASSIGN(auto p,
                     parse_number(spec, "a hostfwd port", text.substr(colon + 1), 1, 65535));
    port = static_cast<uint16_t>(p);
    return ok();
}

// hostfwd=tcp:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT (QEMU's syntax).
Result<HostForward> parse_hostfwd(std::string_view spec, std::string_view text) {
    HostForward f;
    if (text.rfind("tcp:", 0) == 0) {
        text.remove_prefix(4);
    } else if (text.rfind("udp:", 0) == 0) {
        f.udp = true;
        text.remove_prefix(4);
    } else {
        return fail(ErrorCode::InvalidArgument,
                    "\"{}\": hostfwd must be tcp:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT "
                    "(or udp:...)",
                    spec);
    }
    const size_t dash = text.find('-');
    if (dash == std::string_view::npos)
        return fail(ErrorCode::InvalidArgument,
                    "\"{}\": hostfwd needs HOST-GUEST, e.g. tcp:127.0.0.1:8080-:80", spec);
    VIREO_TRY(parse_endpoint(spec, text.substr(0, dash), 0x7f000001, f.host_addr, f.host_port));
    VIREO_TRY(parse_endpoint(spec, text.substr(dash + 1), 0, f.guest_addr, f.guest_port));
    return f;
}

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

class TapBackend final : public NetBackend {
  public:
    TapBackend(UniqueFd fd, uint64_t offloads) : fd_(std::move(fd)), offloads_(offloads) {}
    const char* kind() const noexcept override { return "tap"; }
    int rx_fd() const noexcept override { return fd_.get(); }
    uint64_t offloads() const noexcept override { return offloads_; }

    void set_guest_features(uint64_t f) override {
        if (offloads_ == 0) return;
        unsigned flags = 0;
        if (f & kNetFGuestCsum) {
            flags |= TUN_F_CSUM;
            if (f & kNetFGuestTso4) flags |= TUN_F_TSO4;
            if (f & kNetFGuestTso6) flags |= TUN_F_TSO6;
            if ((f & kNetFGuestEcn) && (flags & (TUN_F_TSO4 | TUN_F_TSO6))) flags |= TUN_F_TSO_ECN;
        }
        if (::ioctl(fd_.get(), TUNSETOFFLOAD, flags) != 0)
            log::warn("tap: TUNSETOFFLOAD {:#x}: {}", flags, std::strerror(errno));
    }

    ssize_t receive(const iovec* iov, int count) override {
        const ssize_t n = ::readv(fd_.get(), iov, count);
        return n < 0 ? -errno : n;
    }

    int send(const iovec* iov, int count) override {
        for (;;) {
            if (::writev(fd_.get(), iov, count) >= 0) return 0;
            if (errno != EINTR) return -errno;
        }
    }

  private:
    UniqueFd fd_;
    uint64_t offloads_;
};

class SocketBackend final : public NetBackend {
  public:
    explicit SocketBackend(UniqueFd fd) : fd_(std::move(fd)) {}
    const char* kind() const noexcept override { return "socket"; }
    int rx_fd() const noexcept override { return fd_.get(); }
    uint64_t offloads() const noexcept override { return 0; }
    ssize_t receive(const iovec* iov, int count) override {
        msghdr msg{};
        msg.msg_iov = const_cast<iovec*>(iov);
        msg.msg_iovlen = static_cast<size_t>(count);
        const ssize_t n = ::recvmsg(fd_.get(), &msg, MSG_DONTWAIT | MSG_TRUNC);
        return n < 0 ? -errno : n;  // MSG_TRUNC: a frame larger than the buffers says so
    }
    int send(const iovec* iov, int count) override {
        msghdr msg{};
        msg.msg_iov = const_cast<iovec*>(iov);
        msg.msg_iovlen = static_cast<size_t>(count);
        return ::sendmsg(fd_.get(), &msg, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 ? -errno : 0;
    }

  private:
    UniqueFd fd_;
};

}  // namespace

Result<std::pair<std::shared_ptr<NetBackend>, UniqueFd>> socketpair_backend() {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0)
        return fail_errno(errno, "socketpair");
    UniqueFd ours(fds[0]), wire(fds[1]);
    for (int fd : fds) {
        int size = 4 << 20;  // room for a burst of 64 KiB frames
        (void)::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
        (void)::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    }
    return std::pair<std::shared_ptr<NetBackend>, UniqueFd>(
        std::make_shared<SocketBackend>(std::move(ours)), std::move(wire));
}

Result<MacAddress> parse_mac(std::string_view text) {
    MacAddress mac{};
    if (text.size() != 17)
        return fail(ErrorCode::InvalidArgument, "MAC address \"{}\" is not XX:XX:XX:XX:XX:XX",
                    text);
    for (size_t i = 0; i < 6; ++i) {
        auto hex = [&](char c) -> int {
            if (c >= '0' && c <= '9') return c - '0';
            if (c >= 'a' && c <= 'f') return c - 'a' + 10;
            if (c >= 'A' && c <= 'F') return c - 'A' + 10;
            return -1;
        };
        const int hi = hex(text[i * 3]), lo = hex(text[i * 3 + 1]);
        if (hi < 0 || lo < 0 || (i < 5 && text[i * 3 + 2] != ':'))
            return fail(ErrorCode::InvalidArgument, "MAC address \"{}\" is not XX:XX:XX:XX:XX:XX",
                        text);
        mac[i] = static_cast<uint8_t>(hi * 16 + lo);
    }
    if (mac[0] & 1)
        return fail(ErrorCode::InvalidArgument,
                    "MAC address \"{}\" is a multicast address (the first byte must be even)",
                    text);
    if (mac == MacAddress{})
        return fail(ErrorCode::InvalidArgument, "MAC address 00:00:00:00:00:00 is not usable");
    return mac;
}

std::string format_mac(const MacAddress& m) {
    return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4],
                       m[5]);
}

MacAddress derived_mac(std::string_view seed) {
    uint64_t h = 1469598103934665603ull;  // FNV-1a
    for (char c : seed) {
        h ^= static_cast<uint8_t>(c);
        h *= 1099511628211ull;
    }
    // 02:xx: locally administered unicast; "VR" keeps vireo's addresses recognisable.
    return {0x02,
            0x56,
            0x52,
            static_cast<uint8_t>(h >> 16),
            static_cast<uint8_t>(h >> 8),
            static_cast<uint8_t>(h)};
}

Result<NetOptions> parse_net_option(std::string_view spec) {
    NetOptions o;
    bool first = true;
    for (const std::string_view part : split(spec, ',')) {
        if (first) {
            first = false;
            if (part == "user") {
                o.kind = NetOptions::Kind::User;
            } else if (part.rfind("tap=", 0) == 0) {
                o.kind = NetOptions::Kind::Tap;
                o.tap = part.substr(4);
                if (o.tap.empty() || o.tap.size() >= IFNAMSIZ ||
                    o.tap.find('/') != std::string::npos)
                    return fail(ErrorCode::InvalidArgument,
                                "\"{}\": the tap name must be 1 to {} characters without '/'", spec,
                                IFNAMSIZ - 1);
            } else {
                return fail(ErrorCode::InvalidArgument,
                            "\"{}\": expected user[,hostfwd=...] or tap=NAME", spec);
            }
        } else if (part.rfind("hostfwd=", 0) == 0) {
            if (o.kind != NetOptions::Kind::User)
                return fail(ErrorCode::InvalidArgument,
                            "\"{}\": hostfwd is for user-mode networking only", spec);
            VIREO_TRY_ASSIGN(auto f, parse_hostfwd(spec, part.substr(8)));
            o.forwards.push_back(f);
        } else if (part.rfind("mac=", 0) == 0) {
            auto mac = parse_mac(part.substr(4));
            if (!mac)
                return fail(ErrorCode::InvalidArgument, "\"{}\": {}", spec, mac.error().message());
            o.mac = *mac;
        } else if (part.rfind("mtu=", 0) == 0) {
            VIREO_TRY_ASSIGN(auto n, parse_number(spec, "mtu", part.substr(4), 68, 65520));
            o.mtu = static_cast<uint16_t>(n);
        } else if (part.rfind("queue-size=", 0) == 0) {
            VIREO_TRY_ASSIGN(auto n,
                             parse_number(spec, "queue-size", part.substr(11), 64, kMaxQueueSize));
            if ((n & (n - 1)) != 0)
                return fail(ErrorCode::InvalidArgument,
                            "\"{}\": queue-size must be a power of two from 64 to {}", spec,
                            kMaxQueueSize);
            o.queue_size = static_cast<uint16_t>(n);
        } else {
            return fail(ErrorCode::InvalidArgument,
                        "\"{}\": unknown option \"{}\" (known: hostfwd=, mac=, mtu=, "
                        "queue-size=)",
                        spec, part);
        }
    }
    return o;
}

Result<std::shared_ptr<NetBackend>> open_tap(const std::string& name, uint16_t mtu) {
    UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
    if (!fd) return fail_errno(errno, "tap {}: cannot open /dev/net/tun", name);
    unsigned features = 0;
    if (::ioctl(fd.get(), TUNGETFEATURES, &features) != 0 || (features & IFF_VNET_HDR) == 0)
        return fail(ErrorCode::Unsupported, "tap {}: the kernel's tun driver lacks IFF_VNET_HDR",
                    name);
    ifreq ifr{};
    std::memcpy(ifr.ifr_name, name.data(), std::min<size_t>(name.size(), IFNAMSIZ - 1));
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    if (::ioctl(fd.get(), TUNSETIFF, &ifr) != 0) {
        const int e = errno;
        if (e == EPERM)
            return fail_errno(e,
                              "tap {}: cannot attach (it does not exist and creating one needs "
                              "CAP_NET_ADMIN, or it belongs to another user)",
                              name);
        if (e == EBUSY) return fail_errno(e, "tap {}: in use by another process", name);
        return fail_errno(e, "tap {}: cannot attach", name);
    }
    int hdr = static_cast<int>(kNetHdrSize);
    if (::ioctl(fd.get(), TUNSETVNETHDRSZ, &hdr) != 0)
        return fail_errno(errno, "tap {}: TUNSETVNETHDRSZ", name);
    // Offloads: offered to the guest only if the tap takes them.
    uint64_t offloads = 0;
    if (::ioctl(fd.get(), TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN) ==
        0) {
        offloads = kNetFCsum | kNetFGuestCsum | kNetFGuestTso4 | kNetFGuestTso6 | kNetFGuestEcn |
                   kNetFHostTso4 | kNetFHostTso6 | kNetFHostEcn;
        (void)::ioctl(fd.get(), TUNSETOFFLOAD, 0);
    }
    // Bring the link up and set its MTU when allowed (a tap made for us by an administrator
    // may already be configured; then this is not needed).
    UniqueFd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (sock) {
        ifreq q{};
        std::memcpy(q.ifr_name, ifr.ifr_name, IFNAMSIZ);
        if (mtu != 1500) {
            q.ifr_mtu = mtu;
            if (::ioctl(sock.get(), SIOCSIFMTU, &q) != 0)
                log::warn("tap {}: cannot set MTU {}: {}", name, mtu, std::strerror(errno));
        }
        if (::ioctl(sock.get(), SIOCGIFFLAGS, &q) == 0 && (q.ifr_flags & IFF_UP) == 0) {
            q.ifr_flags |= IFF_UP;
            if (::ioctl(sock.get(), SIOCSIFFLAGS, &q) != 0)
                log::debug("tap {}: cannot bring the link up: {}", name, std::strerror(errno));
        }
    }
    return std::shared_ptr<NetBackend>(std::make_shared<TapBackend>(std::move(fd), offloads));
}

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
    return ok();
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
    rx_chains_.clear();  // popped chains are simply forgotten: the driver reset the rings
    rx_iov_.clear();
    set_rx_watch(false);
}

Result<void> NetDevice::process(size_t index) {
    if (rx_ == nullptr) return ok();
    if (index == kTxQueue) return transmit();
    // New receive buffers: listen to the back-end again and deliver what waits.
    set_rx_watch(true);
    return receive();
}

Result<void> NetDevice::transmit() {
    int batch = 0;
    for (;;) {
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
        delivered = true;
        // Interrupt per batch: let the guest start on what it has while more arrives.
        if ((stats_.rx_frames & 63) == 0 && rx_->needs_interrupt()) transport_->signal_used();
    }
    if (delivered && rx_->needs_interrupt()) transport_->signal_used();
    return ok();
}

}  // namespace vireo::virtio
