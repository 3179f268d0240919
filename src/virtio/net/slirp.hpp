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
#pragma once

#include <memory>

#include "virtio/net/device.hpp"

namespace vireo::virtio {

/// Starts a user-mode network (and its thread) with `forwards` listening on the host.
/// Fails with a clear message if a forwarded port cannot be bound.
Result<std::shared_ptr<NetBackend>> open_user_network(const NetOptions& options);

}  // namespace vireo::virtio
