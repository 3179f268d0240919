// What a frame from the guest may make user-mode networking (libslirp) open on the host: a
// socket for a new TCP connection, a new UDP flow or a ping. virtio/net/slirp.cpp charges each
// such socket to the domain's VMM pool before the frame reaches slirp, and with the pool spent
// refuses the frame (a new connection with the TCP reset made here). Reads only within the
// frame: any bytes a guest sends are classified (fuzzed by fuzz_net).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

namespace vireo::virtio {

enum class Opens : uint8_t {
    Nothing,   ///< no socket: ARP, DHCP, a segment of a TCP connection, not IPv4, malformed
    TcpSyn,    ///< a new TCP connection (unless it repeats the SYN of one slirp has)
    UdpFlow,   ///< a datagram: a new flow unless slirp has a socket for its guest side
    Other,     ///< an echo request (a ping socket)
    Fragment,  ///< an IPv4 fragment: slirp keeps it until its packet is whole (which may then
               ///< open a socket) or 30 s have passed
};

/// A frame's flow: the guest's side and the far side, as in the frame (network byte order).
/// A UDP flow is its guest side alone (slirp keys its UDP sockets so); Other and Fragment have
/// no flow.
struct GuestFlow {
    Opens opens = Opens::Nothing;
    uint32_t src = 0, dst = 0;
    uint16_t sport = 0, dport = 0;
    bool operator==(const GuestFlow&) const = default;
};

struct GuestFlowHash {
    size_t operator()(const GuestFlow& f) const noexcept;
};

/// The user network's own address (10.0.2.2), which answers DHCP itself.
inline constexpr uint32_t kSlirpHostAddr = 0x0a000202;

/// Classifies an Ethernet frame (without the virtio-net header).
GuestFlow guest_flow(std::span<const uint8_t> frame);

/// A TCP segment over IPv4 (not a fragment), as slirp's reassembly sees it.
struct TcpSegment {
    /// The connection, keyed from the guest's side as guest_flow() keys its SYN (opens TcpSyn):
    /// the same for the guest's segments and slirp's answers.
    GuestFlow flow;
    uint32_t seq = 0, ack = 0;  ///< host order
    uint32_t length = 0;        ///< sequence space it takes: its data, and one for a FIN
    uint8_t flags = 0;
};
inline constexpr uint8_t kTcpFin = 0x01, kTcpSynFlag = 0x02, kTcpAckFlag = 0x10;
/// The TCP segment in `frame`, sent by the guest (`from_guest`) or to it; nothing for any other
/// frame (a truncated or inconsistent header included). Reads only within the frame.
std::optional<TcpSegment> tcp_segment(std::span<const uint8_t> frame, bool from_guest);
/// Serial-number order (RFC 1982): whether `a` comes after `b`.
inline constexpr bool seq_after(uint32_t a, uint32_t b) noexcept {
    return static_cast<int32_t>(a - b) > 0;
}

/// The Internet checksum (RFC 1071) of `bytes` with `partial` (a pseudo-header's sum of 16-bit
/// words) added: the value a header carries. A header with its checksum in place gives 0.
uint16_t internet_checksum(std::span<const uint8_t> bytes, uint32_t partial = 0) noexcept;

/// An Ethernet frame carrying a TCP reset, as a host with nothing listening answers a SYN.
using TcpResetFrame = std::array<uint8_t, 14 + 20 + 20>;
/// The reset that refuses the SYN in `frame` (one guest_flow() calls TcpSyn): from the address
/// and port it was sent to, to the guest's MAC from the one it sent to, acknowledging the SYN
/// (RFC 9293 3.10.7.1); checksums filled in.
TcpResetFrame tcp_reset_for(std::span<const uint8_t> frame);

}  // namespace vireo::virtio
