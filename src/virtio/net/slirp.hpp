// User-mode networking for virtio-net through libslirp: no root, no host network set-up.
//
// The guest sees QEMU's familiar network: 10.0.2.0/24, gateway and host 10.0.2.2 (which
// reaches the host's loopback), DNS 10.0.2.3, its own address 10.0.2.15 by DHCP. Host ports
// can be forwarded into the guest.
//
// Threads: libslirp is single-threaded, so every call into it holds one mutex. A back-end
// thread ("vireo-slirp") polls slirp's host sockets and runs its timers; frames from the guest
// enter slirp_input() on the domain's event loop. Frames slirp sends to the guest go into a
// bounded ring (preallocated; when the guest is not draining it, further frames are dropped
// and TCP retransmits, as slirp's API allows) that the event loop drains into the guest's
// receive buffers.
//
// The host sockets a guest opens through slirp (a TCP connection, a UDP flow, a ping) are
// taken from the domain's VMM pool (kSlirpTcpCost, kSlirpDatagramCost) before the frame that opens
// one reaches slirp; given back when slirp closes it. With the pool spent, a new connection gets a
// TCP reset at once (the guest sees "connection refused"), a new UDP flow's datagrams and new
// pings are dropped; established connections and flows go on. Both are counted.
#pragma once

#include <cstdint>
#include <memory>

#include "virtio/net/device.hpp"

namespace vireo::virtio {

/// What the kernel may buffer for one of the guest's host sockets: SO_SNDBUF and SO_RCVBUF are
/// set to this for a TCP connection, to a quarter of it for a UDP flow or a ping. The kernel
/// doubles it for its bookkeeping and no longer grows it (without the cap a peer that never reads
/// makes a send buffer grow to 4 MiB: measured in tests/linux/net_tests.sh); it may go over by
/// one packet of up to 64 KiB. Enough for ~64 KiB in flight each way.
inline constexpr uint64_t kSlirpKernelBuffer = uint64_t{64} << 10;
/// What the kernel holds at most for one direction of a socket whose buffers are capped at
/// `requested`.
inline constexpr uint64_t kernel_direction_cost(uint64_t requested) noexcept {
    return 2 * requested + (uint64_t{64} << 10);
}
/// What one host socket of user-mode networking costs the VMM pool, at most, for as long as slirp
/// has it: the kernel's socket and slirp's (16 KiB), the kernel's two directions at their cap,
/// and for TCP slirp's own two stream buffers — 128 KiB each, rounded up to whole segments,
/// allocated when the connection is made, plus the segments it keeps for a guest that stops
/// reading (measured: 272 KiB at connect, 64 KiB more with a stalled guest; 336 KiB counted).
/// 736 KiB for TCP (plus its out-of-order allowance, below), 208 KiB for UDP. A socket is charged
/// until slirp closes it: after a connection the far side closed first, that is slirp's TIME_WAIT
/// (10 s).
inline constexpr uint64_t kSlirpSocketCost = uint64_t{16} << 10;
inline constexpr uint64_t kSlirpTcpBuffers = uint64_t{336} << 10;
inline constexpr uint64_t kSlirpTcpCost =
    kSlirpSocketCost + kSlirpTcpBuffers + 2 * kernel_direction_cost(kSlirpKernelBuffer);
inline constexpr uint64_t kSlirpDatagramCost =
    kSlirpSocketCost + 2 * kernel_direction_cost(kSlirpKernelBuffer / 4);
static_assert(kSlirpTcpCost == uint64_t{736} << 10 && kSlirpDatagramCost == uint64_t{208} << 10);

/// One of slirp's packet buffers (its mbuf: the MTU and its headers), rounded up to 1 KiB:
/// 2 KiB at MTU 1500.
inline constexpr uint64_t slirp_buffer(uint16_t mtu) noexcept {
    return (uint64_t{mtu} + 256 + 1023) / 1024 * 1024;
}
/// slirp keeps a guest's out-of-order TCP segments (one buffer each) until the gap before them
/// is filled, with no bound of its own. Every segment it keeps starts past what it has
/// acknowledged (its ACK never runs ahead of what it received in order), so vireo counts the
/// segments it passes that start past slirp's last ACK of the connection and drops those past
/// kSlirpMaxOutOfOrder (counted) until an ACK passes them. slirp acknowledges in-order data at
/// once, so a guest's own connections stay far below it.
inline constexpr uint32_t kSlirpMaxOutOfOrder = 32;
/// A TCP connection's whole cost: kSlirpTcpCost and its out-of-order allowance (800 KiB at MTU
/// 1500).
inline constexpr uint64_t slirp_tcp_cost(uint16_t mtu) noexcept {
    return kSlirpTcpCost + kSlirpMaxOutOfOrder * slirp_buffer(mtu);
}
static_assert(slirp_tcp_cost(1500) == uint64_t{800} << 10);

/// A fragment the guest sends stays in slirp until its packet is whole or slirp's reassembly
/// timer (30 s) drops it, with nothing that bounds how many: each is charged to the VMM pool for
/// kSlirpFragmentSeconds (two of slirp's buffers, the fragment's and its packet's queue entry),
/// and one the pool has no room for is dropped and counted.
inline constexpr int kSlirpFragmentSeconds = 32;
inline constexpr uint64_t slirp_fragment_cost(uint16_t mtu) noexcept {
    return 2 * slirp_buffer(mtu);
}

/// Starts a user-mode network (and its thread) with `forwards` listening on the host.
/// Fails with a clear message if a forwarded port cannot be bound.
Result<std::shared_ptr<NetBackend>> open_user_network(const NetOptions& options);

}  // namespace vireo::virtio
