// User-mode networking's host sockets against the VMM pool: real libslirp, real host sockets on
// loopback, frames as a guest's driver sends them (without a guest: the back-end is driven
// directly). And the frame classification slirp's metering rests on.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <malloc.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/mem_pool.hpp"
#include "base/unique_fd.hpp"
#include "virtio/net/guest_flow.hpp"
#include "virtio/net/slirp.hpp"

namespace vireo::virtio {
namespace {

constexpr uint8_t kGuestMac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
constexpr uint8_t kSlirpMac[6] = {0x52, 0x55, 0x0a, 0x00, 0x02, 0x02};
constexpr uint32_t kGuestIp = 0x0a00020f;            // 10.0.2.15
constexpr uint32_t kHostIp = 0x0a000202;             // 10.0.2.2: the host's loopback
constexpr uint64_t kTcpCost = slirp_tcp_cost(1500);  // at NetOptions' default MTU

uint16_t checksum(const uint8_t* p, size_t n, uint32_t sum = 0) {
    for (size_t i = 0; i + 1 < n; i += 2)
        sum += static_cast<uint32_t>(p[i] << 8 | p[i + 1]);
    if (n % 2) sum += static_cast<uint32_t>(p[n - 1] << 8);
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return static_cast<uint16_t>(~sum);
}
void put16(uint8_t* p, uint32_t v) {
    p[0] = static_cast<uint8_t>(v >> 8);
    p[1] = static_cast<uint8_t>(v);
}
void put32(uint8_t* p, uint32_t v) {
    put16(p, v >> 16);
    put16(p + 2, v & 0xffff);
}
uint32_t get32(const uint8_t* p) {
    return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
}

// An IPv4 packet from the guest to 10.0.2.2 in an Ethernet frame, checksums filled in.
std::vector<uint8_t> ipv4_frame(uint8_t proto, const std::vector<uint8_t>& l4) {
    std::vector<uint8_t> f(14 + 20 + l4.size());
    std::memcpy(f.data(), kSlirpMac, 6);
    std::memcpy(f.data() + 6, kGuestMac, 6);
    put16(f.data() + 12, 0x0800);
    uint8_t* ip = f.data() + 14;
    ip[0] = 0x45;
    put16(ip + 2, static_cast<uint32_t>(20 + l4.size()));
    ip[8] = 64;
    ip[9] = proto;
    put32(ip + 12, kGuestIp);
    put32(ip + 16, kHostIp);
    put16(ip + 10, checksum(ip, 20));
    std::memcpy(ip + 20, l4.data(), l4.size());
    // TCP and UDP: the checksum over the pseudo-header and the segment.
    const size_t at = proto == IPPROTO_TCP ? 16 : 6;
    uint32_t pseudo = (kGuestIp >> 16) + (kGuestIp & 0xffff) + (kHostIp >> 16) +
                      (kHostIp & 0xffff) + proto + static_cast<uint32_t>(l4.size());
    put16(ip + 20 + at, checksum(ip + 20, l4.size(), pseudo));
    return f;
}

std::vector<uint8_t> tcp_frame(uint16_t sport, uint16_t dport, uint32_t seq, uint32_t ack,
                               uint8_t flags) {
    std::vector<uint8_t> t(20);
    put16(t.data(), sport);
    put16(t.data() + 2, dport);
    put32(t.data() + 4, seq);
    put32(t.data() + 8, ack);
    t[12] = 5 << 4;
    t[13] = flags;
    put16(t.data() + 14, 65535);
    return ipv4_frame(IPPROTO_TCP, t);
}

// A segment carrying `n` bytes of data ('x'), PSH and ACK set.
std::vector<uint8_t> tcp_data(uint16_t sport, uint16_t dport, uint32_t seq, uint32_t ack,
                              size_t n) {
    std::vector<uint8_t> t(20 + n, 'x');
    put16(t.data(), sport);
    put16(t.data() + 2, dport);
    put32(t.data() + 4, seq);
    put32(t.data() + 8, ack);
    t[12] = 5 << 4;
    t[13] = 0x18;
    put16(t.data() + 14, 65535);
    put16(t.data() + 16, 0);
    return ipv4_frame(IPPROTO_TCP, t);
}

std::vector<uint8_t> udp_frame(uint16_t sport, uint16_t dport) {
    std::vector<uint8_t> u = {0, 0, 0, 0, 0, 12, 0, 0, 'p', 'i', 'n', 'g'};
    put16(u.data(), sport);
    put16(u.data() + 2, dport);
    return ipv4_frame(IPPROTO_UDP, u);
}

// Who has 10.0.2.2, tell 10.0.2.15: slirp learns the guest's MAC from it.
std::vector<uint8_t> arp_request() {
    std::vector<uint8_t> f(42);
    std::memset(f.data(), 0xff, 6);
    std::memcpy(f.data() + 6, kGuestMac, 6);
    put16(f.data() + 12, 0x0806);
    uint8_t* a = f.data() + 14;
    put16(a, 1);
    put16(a + 2, 0x0800);
    a[4] = 6;
    a[5] = 4;
    put16(a + 6, 1);
    std::memcpy(a + 8, kGuestMac, 6);
    put32(a + 14, kGuestIp);
    put32(a + 24, kHostIp);
    return f;
}

int send_frame(NetBackend& b, const std::vector<uint8_t>& frame) {
    uint8_t hdr[kNetHdrSize] = {};
    iovec iov[2] = {{hdr, sizeof hdr}, {const_cast<uint8_t*>(frame.data()), frame.size()}};
    return b.send(iov, 2);
}

// The next frame slirp sends the guest (without the virtio-net header), within 5 s.
std::optional<std::vector<uint8_t>> next_frame(NetBackend& b) {
    std::vector<uint8_t> buf(kNetHdrSize + 2048);
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (std::chrono::steady_clock::now() < end) {
        iovec iov{buf.data(), buf.size()};
        const ssize_t n = b.receive(&iov, 1);
        if (n > static_cast<ssize_t>(kNetHdrSize))
            return std::vector<uint8_t>(buf.begin() + kNetHdrSize, buf.begin() + n);
        pollfd p{b.rx_fd(), POLLIN, 0};
        (void)::poll(&p, 1, 100);
    }
    return std::nullopt;
}

// TCP segments slirp sends the guest, taken in any order: slirp's thread answers connections
// as their host sockets connect, between the frames a send() makes at once.
struct TcpSegments {
    NetBackend& b;
    std::vector<std::vector<uint8_t>> held;  // read, not taken yet
    // The next segment from `sport` with exactly these flags.
    std::optional<std::vector<uint8_t>> take(uint16_t sport, uint8_t flags) {
        const auto match = [&](const std::vector<uint8_t>& f) {
            return f.size() >= 54 && f[12] == 0x08 && f[13] == 0x00 && f[23] == IPPROTO_TCP &&
                   (f[34] << 8 | f[35]) == sport && f[47] == flags;
        };
        for (auto it = held.begin(); it != held.end(); ++it) {
            if (!match(*it)) continue;
            auto f = std::move(*it);
            held.erase(it);
            return f;
        }
        for (int i = 0; i < 64; ++i) {
            auto f = next_frame(b);
            if (!f) return std::nullopt;
            if (match(*f)) return f;
            held.push_back(std::move(*f));
        }
        return std::nullopt;
    }
};

UniqueFd loopback_socket(int type, uint16_t& port) {
    UniqueFd s(::socket(AF_INET, type | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    if (type == SOCK_STREAM) {
        EXPECT_EQ(::listen(s.get(), 16), 0);
    }
    socklen_t len = sizeof a;
    EXPECT_EQ(::getsockname(s.get(), reinterpret_cast<sockaddr*>(&a), &len), 0);
    port = ntohs(a.sin_port);
    return s;
}

// Accepts `want` connections (each within 5 s), and then any more waiting already; they stay
// open while the test waits for slirp's answers (a peer that hung up would be one more event).
std::vector<UniqueFd> accept_connections(int listener, int want) {
    std::vector<UniqueFd> out;
    for (pollfd p{listener, POLLIN, 0};
         ::poll(&p, 1, static_cast<int>(out.size()) < want ? 5000 : 0) == 1; p.revents = 0) {
        UniqueFd c(::accept(listener, nullptr, nullptr));
        if (!c) break;
        out.push_back(std::move(c));
    }
    return out;
}

// The buffer sizes (SO_SNDBUF and SO_RCVBUF, as the kernel reports them) of this process's IPv4
// sockets of `type` that `is_slirps` picks, each size once.
template <typename Pick>
std::vector<int> buffer_caps(int type, Pick is_slirps) {
    std::vector<int> sizes;
    for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
        int fd = 0;
        const std::string name = entry.path().filename().string();
        if (std::from_chars(name.data(), name.data() + name.size(), fd).ec != std::errc{}) continue;
        int t = 0;
        sockaddr_in local{};
        socklen_t len = sizeof t, alen = sizeof local;
        if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &t, &len) != 0 || t != type ||
            ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &alen) != 0 ||
            local.sin_family != AF_INET || !is_slirps(fd))
            continue;
        for (const int opt : {SO_SNDBUF, SO_RCVBUF}) {
            int size = 0;
            len = sizeof size;
            if (::getsockopt(fd, SOL_SOCKET, opt, &size, &len) == 0 &&
                std::find(sizes.begin(), sizes.end(), size) == sizes.end())
                sizes.push_back(size);
        }
    }
    return sizes;
}
bool connected_to(int fd, uint16_t port) {
    sockaddr_in peer{};
    socklen_t len = sizeof peer;
    return ::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) == 0 &&
           ntohs(peer.sin_port) == port;
}

// With room for three host sockets, the guest's fourth connection is reset at once and never
// reaches the host; a repeated SYN of a connection slirp has still goes through; a new UDP
// flow is dropped while the pool is full; closing one connection makes room for the next.
TEST(SlirpPool, HostSocketsAreTakenFromTheVmmPool) {
    auto backend = open_user_network(NetOptions{});
    ASSERT_TRUE(backend) << backend.error().message();
    NetBackend& b = **backend;
    auto pool = std::make_shared<MemoryPool>(3 * kTcpCost + 100);
    b.attach_pool(pool);
    b.start();
    uint16_t tcp_port = 0, udp_port = 0;
    UniqueFd listener = loopback_socket(SOCK_STREAM, tcp_port);
    UniqueFd udp = loopback_socket(SOCK_DGRAM, udp_port);

    ASSERT_EQ(send_frame(b, arp_request()), 0);
    for (uint16_t port = 1000; port < 1004; ++port)
        ASSERT_EQ(send_frame(b, tcp_frame(port, tcp_port, 5000, 0, 0x02)), 0);  // SYN
    EXPECT_EQ(b.backend_stats()->host_sockets, 3u);
    EXPECT_EQ(b.backend_stats()->pool_refused, 1u);
    EXPECT_EQ(pool->used(), 3 * kTcpCost);
    EXPECT_EQ(pool->refused(), 1u);
    // The fourth was answered by a reset from 10.0.2.2:tcp_port acknowledging its SYN.
    TcpSegments segments{b, {}};
    auto rst = segments.take(tcp_port, 0x14);
    ASSERT_TRUE(rst);
    EXPECT_EQ(((*rst)[36] << 8 | (*rst)[37]), 1003);
    EXPECT_EQ(get32(rst->data() + 42), 5001u);
    EXPECT_EQ(checksum(rst->data() + 14, 20), 0);
    const auto accepted = accept_connections(listener.get(), 3);
    EXPECT_EQ(accepted.size(), 3u);  // the reset one never reached the host

    // slirp answers them once their host sockets connected: SYN-ACKs.
    uint16_t answered[3] = {};
    for (auto& port : answered) {
        auto synack = segments.take(tcp_port, 0x12);
        ASSERT_TRUE(synack);
        port = static_cast<uint16_t>((*synack)[36] << 8 | (*synack)[37]);
    }
    // The kernel buffers no more for them than the pool counts.
    EXPECT_EQ(buffer_caps(SOCK_STREAM, [&](int fd) { return connected_to(fd, tcp_port); }),
              (std::vector<int>{kSlirpKernelBuffer * 2}));
    // A repeated SYN of a connection slirp has is no new socket: not refused.
    ASSERT_EQ(send_frame(b, tcp_frame(answered[0], tcp_port, 5000, 0, 0x02)), 0);
    EXPECT_EQ(b.backend_stats()->pool_refused, 1u);
    // A new UDP flow needs a socket the pool has no room for: dropped, counted.
    ASSERT_EQ(send_frame(b, udp_frame(2000, udp_port)), 0);
    EXPECT_EQ(b.backend_stats()->pool_refused, 2u);
    EXPECT_EQ(b.backend_stats()->host_sockets, 3u);

    // The guest resets one connection: room again.
    ASSERT_EQ(send_frame(b, tcp_frame(answered[1], tcp_port, 5001, 0, 0x04)), 0);  // RST
    EXPECT_EQ(b.backend_stats()->host_sockets, 2u);
    EXPECT_EQ(pool->used(), 2 * kTcpCost);
    ASSERT_EQ(send_frame(b, udp_frame(2000, udp_port)), 0);  // the UDP flow fits now
    EXPECT_EQ(b.backend_stats()->host_sockets, 3u);
    char got[16] = {};
    pollfd p{udp.get(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 5000), 1);
    EXPECT_EQ(::recv(udp.get(), got, sizeof got, 0), 4);
    EXPECT_STREQ(got, "ping");
    EXPECT_EQ(pool->used(), 2 * kTcpCost + kSlirpDatagramCost);
    EXPECT_EQ(buffer_caps(SOCK_DGRAM, [&](int fd) { return fd != udp.get(); }),
              (std::vector<int>{kSlirpKernelBuffer / 2}));
    // Its next datagram uses the same socket: no new charge.
    ASSERT_EQ(send_frame(b, udp_frame(2000, udp_port)), 0);
    EXPECT_EQ(b.backend_stats()->host_sockets, 3u);
    EXPECT_EQ(b.backend_stats()->pool_refused, 2u);
    EXPECT_EQ(pool->high_water(), 3 * kTcpCost);

    backend->reset();  // slirp closes its sockets: the pool gets all back
    EXPECT_EQ(pool->used(), 0u);
}

// Splits an IPv4 frame's payload at `at` (a multiple of 8) into two fragments of one packet.
std::pair<std::vector<uint8_t>, std::vector<uint8_t>> fragments(const std::vector<uint8_t>& f,
                                                                size_t at, uint16_t id) {
    const size_t payload = f.size() - 34;
    std::vector<uint8_t> a(f.begin(), f.begin() + 34 + static_cast<ptrdiff_t>(at));
    std::vector<uint8_t> b(f.begin(), f.begin() + 34);
    b.insert(b.end(), f.begin() + 34 + static_cast<ptrdiff_t>(at), f.end());
    for (auto* frag : {&a, &b}) {
        uint8_t* ip = frag->data() + 14;
        const bool first = frag == &a;
        put16(ip + 2, static_cast<uint32_t>(20 + (first ? at : payload - at)));
        put16(ip + 4, id);
        put16(ip + 6, first ? 0x2000u : static_cast<uint32_t>(at / 8));  // MF; the offset
        put16(ip + 10, 0);
        put16(ip + 10, checksum(ip, 20));
    }
    return {a, b};
}

// Fragments stay in slirp until their packet is whole or 30 s passed: each is charged, and
// one the pool has no room for is dropped and counted; a whole packet still gets through.
TEST(SlirpPool, FragmentsAreCharged) {
    auto backend = open_user_network(NetOptions{});
    ASSERT_TRUE(backend) << backend.error().message();
    NetBackend& b = **backend;
    const uint64_t cost = slirp_fragment_cost(NetOptions{}.mtu);
    // Room for one socket's reservation and five fragments.
    auto pool = std::make_shared<MemoryPool>(kSlirpDatagramCost + 5 * cost + 100);
    b.attach_pool(pool);
    b.start();
    uint16_t udp_port = 0;
    UniqueFd udp = loopback_socket(SOCK_DGRAM, udp_port);
    ASSERT_EQ(send_frame(b, arp_request()), 0);

    for (uint16_t id = 1; id <= 4; ++id)  // first halves of packets that never complete
        ASSERT_EQ(send_frame(b, fragments(udp_frame(3000, udp_port), 8, id).first), 0);
    EXPECT_EQ(pool->used(), 4 * cost);
    EXPECT_EQ(b.backend_stats()->pool_refused, 0u);
    // A whole packet in two fragments: the first fits, the second does not: dropped.
    auto [head, tail] = fragments(udp_frame(3001, udp_port), 8, 77);
    ASSERT_EQ(send_frame(b, head), 0);
    ASSERT_EQ(send_frame(b, tail), 0);
    EXPECT_EQ(pool->used(), 5 * cost);
    EXPECT_EQ(b.backend_stats()->pool_refused, 1u);
    EXPECT_EQ(b.backend_stats()->host_sockets, 0u);

    // With room, the two fragments make the datagram, which reaches the host.
    backend->reset();
    EXPECT_EQ(pool->used(), 0u);  // the charges go back with the back-end
    backend = open_user_network(NetOptions{});
    ASSERT_TRUE(backend);
    NetBackend& b2 = **backend;
    auto big = std::make_shared<MemoryPool>(kSlirpDatagramCost + 4 * cost);
    b2.attach_pool(big);
    b2.start();
    ASSERT_EQ(send_frame(b2, arp_request()), 0);
    ASSERT_EQ(send_frame(b2, head), 0);
    ASSERT_EQ(send_frame(b2, tail), 0);
    char got[16] = {};
    pollfd p{udp.get(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 5000), 1);
    EXPECT_EQ(::recv(udp.get(), got, sizeof got, 0), 4);
    EXPECT_STREQ(got, "ping");
    EXPECT_EQ(big->used(), kSlirpDatagramCost + 2 * cost);  // its socket, and the fragments
    EXPECT_EQ(b2.backend_stats()->host_sockets, 1u);
}

// slirp keeps a guest's out-of-order segments with no bound of its own: the ones past slirp's
// acknowledgement take one of the connection's kSlirpMaxOutOfOrder places until an ACK passes
// them; beyond, they are dropped and counted, and slirp's heap does not grow with them.
TEST(SlirpPool, OutOfOrderSegmentsAreBounded) {
    auto backend = open_user_network(NetOptions{});
    ASSERT_TRUE(backend) << backend.error().message();
    NetBackend& b = **backend;
    b.attach_pool(std::make_shared<MemoryPool>(uint64_t{16} << 20));
    b.start();
    uint16_t tcp_port = 0;
    UniqueFd listener = loopback_socket(SOCK_STREAM, tcp_port);
    ASSERT_EQ(send_frame(b, arp_request()), 0);
    ASSERT_EQ(send_frame(b, tcp_frame(4000, tcp_port, 1000, 0, 0x02)), 0);  // SYN
    auto accepted = accept_connections(listener.get(), 1);
    ASSERT_EQ(accepted.size(), 1u);
    TcpSegments segments{b, {}};
    auto synack = segments.take(tcp_port, 0x12);
    ASSERT_TRUE(synack);
    const uint32_t ack = get32(synack->data() + 38) + 1;
    ASSERT_EQ(send_frame(b, tcp_frame(4000, tcp_port, 1001, ack, 0x10)), 0);
    ASSERT_EQ(send_frame(b, tcp_data(4000, tcp_port, 1001, ack, 1)), 0);  // in order

    // 2000 one-byte segments, each after a gap: the first kSlirpMaxOutOfOrder pass.
    const uint64_t refused = b.backend_stats()->pool_refused;
    const size_t heap = mallinfo2().uordblks + mallinfo2().hblkhd;
    for (uint32_t i = 0; i < 2000; ++i)
        ASSERT_EQ(send_frame(b, tcp_data(4000, tcp_port, 1003 + 2 * i, ack, 1)), 0);
    EXPECT_EQ(b.backend_stats()->pool_refused, refused + 2000 - kSlirpMaxOutOfOrder);
    const size_t grown = mallinfo2().uordblks + mallinfo2().hblkhd - heap;
    EXPECT_LT(grown, size_t{512} << 10)
        << "unbounded, slirp holds 3.3 MB of them (1.6 KiB a segment)";

    // The gaps filled, slirp has all 65 bytes in order, acknowledges them, and sends them on.
    for (uint32_t i = 0; i < kSlirpMaxOutOfOrder; ++i)
        ASSERT_EQ(send_frame(b, tcp_data(4000, tcp_port, 1002 + 2 * i, ack, 1)), 0);
    std::string got;
    for (pollfd p{accepted[0].get(), POLLIN, 0}; got.size() < 65 && ::poll(&p, 1, 5000) == 1;) {
        char buf[256];
        const ssize_t n = ::recv(accepted[0].get(), buf, sizeof buf, 0);
        if (n <= 0) break;
        got.append(buf, static_cast<size_t>(n));
    }
    EXPECT_EQ(got, std::string(65, 'x'));
    // Its places are free again: the next out-of-order segments pass.
    const uint64_t before = b.backend_stats()->pool_refused;
    for (uint32_t i = 0; i < kSlirpMaxOutOfOrder; ++i)
        ASSERT_EQ(send_frame(b, tcp_data(4000, tcp_port, 1068 + 2 * i, ack, 1)), 0);
    EXPECT_EQ(b.backend_stats()->pool_refused, before);
}

// A forwarded port's connection (the host's side opens it; slirp connects to the guest) has
// the same bound on what slirp's reassembly may keep.
TEST(SlirpPool, ForwardedConnectionsAreBoundedToo) {
    NetOptions o;
    Result<std::shared_ptr<NetBackend>> backend = fail(ErrorCode::NotFound, "no port");
    uint16_t port = 0;
    for (int tries = 0; tries < 100 && !backend; ++tries) {  // a free port
        port = static_cast<uint16_t>(20000 + (::getpid() + tries) % 20000);
        o.forwards = {HostForward{false, 0x7f000001, port, 0, 80}};
        backend = open_user_network(o);
    }
    ASSERT_TRUE(backend) << backend.error().message();
    NetBackend& b = **backend;
    b.attach_pool(std::make_shared<MemoryPool>(uint64_t{16} << 20));
    b.start();
    ASSERT_EQ(send_frame(b, arp_request()), 0);
    UniqueFd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    ASSERT_EQ(::connect(client.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);

    // slirp's SYN to the guest's port 80; the guest answers.
    std::optional<std::vector<uint8_t>> syn;
    for (int i = 0; i < 16 && !syn; ++i) {
        auto f = next_frame(b);
        ASSERT_TRUE(f);
        if (f->size() >= 54 && (*f)[23] == IPPROTO_TCP && (*f)[47] == 0x02) syn = std::move(f);
    }
    ASSERT_TRUE(syn);
    const uint16_t slirp_port = static_cast<uint16_t>((*syn)[34] << 8 | (*syn)[35]);
    ASSERT_EQ(get32(syn->data() + 26), kHostIp) << "from 10.0.2.2, as the frames here are";
    const uint32_t ack = get32(syn->data() + 38) + 1;
    ASSERT_EQ(send_frame(b, tcp_frame(80, slirp_port, 5000, ack, 0x12)), 0);  // SYN-ACK
    TcpSegments segments{b, {}};
    ASSERT_TRUE(segments.take(slirp_port, 0x10));  // slirp's ACK: established

    const uint64_t refused = b.backend_stats()->pool_refused;
    for (uint32_t i = 0; i < 100; ++i)  // each after a gap
        ASSERT_EQ(send_frame(b, tcp_data(80, slirp_port, 5002 + 2 * i, ack, 1)), 0);
    EXPECT_EQ(b.backend_stats()->pool_refused, refused + 100 - kSlirpMaxOutOfOrder);
    EXPECT_EQ(b.backend_stats()->host_sockets, 0u) << "the host's side opened it: not counted";
}

TEST(GuestFlow, ClassifiesWhatOpensAHostSocket) {
    EXPECT_EQ(guest_flow(tcp_frame(1000, 80, 1, 0, 0x02)).opens, Opens::TcpSyn);
    EXPECT_EQ(guest_flow(tcp_frame(1000, 80, 1, 1, 0x12)).opens, Opens::Nothing);  // SYN-ACK
    EXPECT_EQ(guest_flow(tcp_frame(1000, 80, 1, 1, 0x10)).opens, Opens::Nothing);  // data
    EXPECT_EQ(guest_flow(udp_frame(3000, 53)).opens, Opens::UdpFlow);
    EXPECT_EQ(guest_flow(udp_frame(68, 67)).opens, Opens::Nothing);  // DHCP to slirp
    EXPECT_EQ(guest_flow(arp_request()).opens, Opens::Nothing);
    // Two SYNs of one connection are one flow; another port is another.
    EXPECT_EQ(guest_flow(tcp_frame(1000, 80, 1, 0, 0x02)),
              guest_flow(tcp_frame(1000, 80, 9, 0, 0x02)));
    EXPECT_NE(guest_flow(tcp_frame(1000, 80, 1, 0, 0x02)),
              guest_flow(tcp_frame(1001, 80, 1, 0, 0x02)));
    // A fragment may be anything once reassembled; a truncated header is nothing.
    auto frag = udp_frame(3000, 53);
    frag[14 + 6] = 0x20;  // more fragments
    EXPECT_EQ(guest_flow(frag).opens, Opens::Fragment);
    auto cut = tcp_frame(1000, 80, 1, 0, 0x02);
    cut.resize(14 + 20 + 12);
    EXPECT_EQ(guest_flow(cut).opens, Opens::Nothing);
    EXPECT_EQ(guest_flow({}).opens, Opens::Nothing);
}

// A TCP segment's sequence space and its connection, keyed from the guest's side both ways.
TEST(GuestFlow, TcpSegments) {
    const auto data = tcp_segment(tcp_data(1000, 80, 7, 9, 100), true);
    ASSERT_TRUE(data);
    EXPECT_EQ(data->flow, guest_flow(tcp_frame(1000, 80, 1, 0, 0x02)));
    EXPECT_EQ(data->seq, 7u);
    EXPECT_EQ(data->ack, 9u);
    EXPECT_EQ(data->length, 100u);
    EXPECT_EQ(tcp_segment(tcp_frame(1000, 80, 7, 9, 0x11), true)->length, 1u);  // a FIN
    // slirp's answer, to the guest: the same connection.
    auto answer = tcp_frame(80, 1000, 9, 8, 0x10);
    std::swap_ranges(answer.begin() + 26, answer.begin() + 30, answer.begin() + 30);
    EXPECT_EQ(tcp_segment(answer, false)->flow, data->flow);
    auto cut = tcp_data(1000, 80, 7, 9, 100);
    cut.resize(cut.size() - 1);  // shorter than its IPv4 length says
    EXPECT_FALSE(tcp_segment(cut, true));
    EXPECT_FALSE(tcp_segment(udp_frame(1000, 80), true));
    EXPECT_TRUE(seq_after(1, 0xffffffffu));  // serial-number order wraps
    EXPECT_FALSE(seq_after(0xffffffffu, 1));
}

}  // namespace
}  // namespace vireo::virtio
