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
// taken from the domain's VMM pool, kSlirpSocketCost each, before the frame that opens one
// reaches slirp; given back when slirp closes it. With the pool spent, a new connection gets a
// TCP reset at once (the guest sees "connection refused"), a new UDP flow's datagrams and new
// pings are dropped; established connections and flows go on. Both are counted.
#pragma once

#include <cstdint>
#include <memory>

#include "virtio/net/device.hpp"

namespace vireo::virtio {

/// What one host socket of user-mode networking costs the VMM pool: the kernel's socket and
/// slirp's, with a little data in flight (slirp's 128 KiB socket buffers are touched only as far
/// as data fills them: a bulk transfer holds more for a while, which the domain's memory.max
/// bounds). A socket is charged until slirp closes it: after a connection the far side closed
/// first, that is slirp's TIME_WAIT (10 s), so 2048 sockets allow 200 such connections a second.
inline constexpr uint64_t kSlirpSocketCost = uint64_t{16} << 10;

/// Starts a user-mode network (and its thread) with `forwards` listening on the host.
/// Fails with a clear message if a forwarded port cannot be bound.
Result<std::shared_ptr<NetBackend>> open_user_network(const NetOptions& options);

}  // namespace vireo::virtio
