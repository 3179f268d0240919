#include "virtio/net/guest_flow.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <functional>

namespace vireo::virtio {

namespace {

constexpr size_t kEthHeader = 14;
constexpr uint8_t kTcpSyn = 0x02, kTcpRst = 0x04, kTcpAck = 0x10;

uint16_t be16(const uint8_t* p) {
    return static_cast<uint16_t>(p[0] << 8 | p[1]);
}
uint32_t raw32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}
void put16(uint8_t* p, uint16_t v) {
    p[0] = static_cast<uint8_t>(v >> 8);
    p[1] = static_cast<uint8_t>(v);
}

// The length of the IPv4 header of an Ethernet frame, checked to lie within it (0: not IPv4,
// or malformed).
size_t ipv4_header(std::span<const uint8_t> f) {
    if (f.size() < kEthHeader + 20 || be16(f.data() + 12) != 0x0800) return 0;
    const uint8_t* ip = f.data() + kEthHeader;
    const size_t ihl = size_t{ip[0] & 0x0fu} * 4;
    if ((ip[0] >> 4) != 4 || ihl < 20 || kEthHeader + ihl > f.size()) return 0;
    return ihl;
}

// The Internet checksum's sum of `n` bytes (RFC 1071), added to `sum`.
uint32_t sum16(const uint8_t* p, size_t n, uint32_t sum = 0) {
    for (size_t i = 0; i + 1 < n; i += 2)
        sum += be16(p + i);
    if (n % 2 != 0) sum += uint32_t{p[n - 1]} << 8;
    return sum;
}

}  // namespace

uint16_t internet_checksum(std::span<const uint8_t> bytes, uint32_t partial) noexcept {
    uint32_t sum = sum16(bytes.data(), bytes.size(), partial);
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return static_cast<uint16_t>(~sum);
}

size_t GuestFlowHash::operator()(const GuestFlow& f) const noexcept {
    const uint64_t a = (uint64_t{f.src} << 32) | f.dst;
    const uint64_t b =
        (uint64_t{f.sport} << 24) | (uint64_t{f.dport} << 8) | static_cast<uint64_t>(f.opens);
    return std::hash<uint64_t>{}((a * 0x9e3779b97f4a7c15ull) ^ b);
}

GuestFlow guest_flow(std::span<const uint8_t> f) {
    GuestFlow flow;
    const size_t ihl = ipv4_header(f);
    if (ihl == 0) return flow;  // slirp runs with IPv6 off: only IPv4 opens sockets
    const uint8_t* ip = f.data() + kEthHeader;
    const uint8_t* l4 = ip + ihl;
    const size_t l4_len = f.size() - kEthHeader - ihl;
    if ((be16(ip + 6) & 0x3fff) != 0) {  // a fragment: slirp reassembles, then may open one
        flow.opens = Opens::Fragment;
        return flow;
    }
    flow.src = raw32(ip + 12);
    flow.dst = raw32(ip + 16);
    switch (ip[9]) {
        case IPPROTO_TCP:
            if (l4_len >= 20 && (l4[13] & (kTcpSyn | kTcpAck | kTcpRst)) == kTcpSyn) {
                flow.opens = Opens::TcpSyn;
                flow.sport = be16(l4);
                flow.dport = be16(l4 + 2);
            }
            break;
        case IPPROTO_UDP:  // DHCP to slirp (or broadcast) is answered by slirp itself
            if (l4_len >= 8 && !(be16(l4 + 2) == 67 &&
                                 (flow.dst == htonl(kSlirpHostAddr) || flow.dst == 0xffffffffu))) {
                flow.opens = Opens::UdpFlow;
                flow.sport = be16(l4);
                flow.dst = 0;
            }
            break;
        case IPPROTO_ICMP:  // an echo request
            if (l4_len >= 8 && l4[0] == 8) flow.opens = Opens::Other;
            break;
        default:
            break;
    }
    if (flow.opens != Opens::TcpSyn && flow.opens != Opens::UdpFlow) flow = {flow.opens};
    return flow;
}

std::optional<TcpSegment> tcp_segment(std::span<const uint8_t> f, bool from_guest) {
    const size_t ihl = ipv4_header(f);
    if (ihl == 0) return std::nullopt;
    const uint8_t* ip = f.data() + kEthHeader;
    if (ip[9] != IPPROTO_TCP || (be16(ip + 6) & 0x3fff) != 0) return std::nullopt;
    const size_t ip_len = be16(ip + 2);
    if (ip_len < ihl + 20 || kEthHeader + ip_len > f.size()) return std::nullopt;
    const uint8_t* tcp = ip + ihl;
    const size_t tcp_header = (size_t{tcp[12]} >> 4) * 4;
    if (tcp_header < 20 || ihl + tcp_header > ip_len) return std::nullopt;
    TcpSegment s;
    s.flow.opens = Opens::TcpSyn;
    const uint32_t src = raw32(ip + 12), dst = raw32(ip + 16);
    const uint16_t sport = be16(tcp), dport = be16(tcp + 2);
    s.flow.src = from_guest ? src : dst;
    s.flow.dst = from_guest ? dst : src;
    s.flow.sport = from_guest ? sport : dport;
    s.flow.dport = from_guest ? dport : sport;
    s.seq = uint32_t{be16(tcp + 4)} << 16 | be16(tcp + 6);
    s.ack = uint32_t{be16(tcp + 8)} << 16 | be16(tcp + 10);
    s.flags = tcp[13];
    s.length = static_cast<uint32_t>(ip_len - ihl - tcp_header) + ((s.flags & kTcpFin) ? 1 : 0);
    return s;
}

TcpResetFrame tcp_reset_for(std::span<const uint8_t> f) {
    TcpResetFrame r{};
    const size_t ihl = ipv4_header(f);
    if (ihl == 0 || f.size() < kEthHeader + ihl + 20) return r;  // not a SYN: nothing to answer
    const uint8_t* ip = f.data() + kEthHeader;
    const uint8_t* tcp = ip + ihl;
    // What the SYN carries past its header is acknowledged too (rare, but allowed).
    const size_t ip_len = std::min<size_t>(be16(ip + 2), f.size() - kEthHeader);
    const size_t tcp_header = (size_t{tcp[12]} >> 4) * 4;
    const size_t data = ip_len > ihl + tcp_header ? ip_len - ihl - tcp_header : 0;
    const uint32_t seq = uint32_t{be16(tcp + 4)} << 16 | be16(tcp + 6);
    const uint32_t ack = seq + 1 + static_cast<uint32_t>(data);

    std::memcpy(r.data(), f.data() + 6, 6);
    std::memcpy(r.data() + 6, f.data(), 6);
    put16(r.data() + 12, 0x0800);
    uint8_t* rip = r.data() + kEthHeader;
    rip[0] = 0x45;
    put16(rip + 2, 40);
    put16(rip + 6, 0x4000);  // don't fragment
    rip[8] = 64;
    rip[9] = IPPROTO_TCP;
    std::memcpy(rip + 12, ip + 16, 4);
    std::memcpy(rip + 16, ip + 12, 4);
    put16(rip + 10, internet_checksum(std::span(rip, 20)));
    uint8_t* rt = rip + 20;
    std::memcpy(rt, tcp + 2, 2);
    std::memcpy(rt + 2, tcp, 2);
    put16(rt + 8, static_cast<uint16_t>(ack >> 16));
    put16(rt + 10, static_cast<uint16_t>(ack));
    rt[12] = 5 << 4;
    rt[13] = kTcpRst | kTcpAck;
    // The pseudo-header: the addresses, the protocol, the TCP length.
    put16(rt + 16, internet_checksum(std::span(rt, 20), sum16(rip + 12, 8) + IPPROTO_TCP + 20));
    return r;
}

}  // namespace vireo::virtio
