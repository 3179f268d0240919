// The device options of a domain's configuration, as `vireo run`'s flags and a host
// configuration's `disks`, `nets` and `vsock` give them: `PATH[,readonly][,serial=ID]
// [,queue-size=N][,bps=..,iops=..]`, `user[,hostfwd=...]...` or `tap=NAME` with `[,mac=..]
// [,mtu=N][,queue-size=N][,[rx-|tx-]bps=..,pps=..]`, `cid=N,socket=PATH`. The parsed options are
// the back-ends' own types (virtio/blk/disk_image.hpp, virtio/net/backend.hpp,
// virtio/vsock/listener.hpp); errors quote the value and leave the field's name to the caller
// (parse_spec, the host configuration).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.hpp"
#include "base/token_bucket.hpp"
#include "virtio/blk/disk_image.hpp"
#include "virtio/net/backend.hpp"
#include "virtio/vsock/listener.hpp"

namespace vireo::domain {

Result<virtio::DiskOptions> parse_disk_option(std::string_view spec);
Result<virtio::NetOptions> parse_net_option(std::string_view spec);
/// Whether a --net spec asks for user-mode networking ("user" or "user,..."): the one rule
/// parse_net_option and the default VMM pool both follow.
bool is_user_net(std::string_view spec) noexcept;
/// The VMM pool of a domain that names none: default_vmm_pool for its vsock device and its
/// user-mode networks — the same for `vireo run`, a domain's process and host admission.
uint64_t default_vmm_pool_for(const std::vector<std::string>& nets, bool vsock) noexcept;
/// A disk's rate limits alone, as on --disk: "bps=RATE,iops=N,bps-burst=SIZE,iops-burst=N" (any
/// of them), or "none".
Result<IoLimits> parse_disk_limits(std::string_view text);
/// A network device's, as on --net: [rx-|tx-]bps=, pps=, bps-burst=, pps-burst= (without a
/// prefix: both directions), or "none". Returns {receive, transmit} (the guest's view).
Result<std::pair<IoLimits, IoLimits>> parse_net_limits(std::string_view text);
/// What the parsers take: "none", or the limits set as plain numbers (bytes).
std::string format_disk_limits(const IoLimits& l);
std::string format_net_limits(const IoLimits& rx, const IoLimits& tx);
/// CID >= 3; PATH must fit a socket address with a `_PORT` suffix.
Result<virtio::VsockOptions> parse_vsock_option(std::string_view spec);

/// Shared memory regions per domain (vmm::kMaxShmRegions) and their sizes: a power of two
/// from 4 KiB to 64 GiB.
inline constexpr uint64_t kMinShmSize = 4096;
inline constexpr uint64_t kMaxShmSize = uint64_t{64} << 30;
/// Whether `size` is a region's size: a power of two within those bounds.
constexpr bool valid_shm_size(uint64_t size) noexcept {
    return size >= kMinShmSize && size <= kMaxShmSize && (size & (size - 1)) == 0;
}
/// Peers of one region with doorbells, and vectors per peer.
inline constexpr uint16_t kMaxShmPeers = 16;
inline constexpr uint16_t kMaxShmVectors = 16;

/// A shared memory region of a domain (docs/shm.md), shown to the guest as an ivshmem device:
///   `PATH,size=N[,readonly][,name=NAME]`: `vireo run` sharing a file with a host program (on
///     tmpfs, e.g. /dev/shm/NAME; created 0600 when missing, never truncated or grown), without
///     doorbells (QEMU's ivshmem-plain);
///   `fd=N,size=N,name=NAME[,readonly][,peers=P,peer=I,vectors=V,doorbell-fds=FIRST]
///     [,names=A:B:...]`: a
///     region `vireo up` allocated and handed down as descriptors (never a path), with
///     doorbells when `peers` is given: P * V eventfds from fd FIRST on, (peer p, vector v) at
///     FIRST + p * V + v.
struct ShmOptions {
    std::string name = "shm";
    std::string path;
    int fd = -1;
    uint64_t size = 0;
    bool readonly = false;
    bool doorbells = false;
    uint16_t peer = 0, peers = 1, vectors = 1;
    int doorbell_fds = -1;
    std::vector<std::string> names;  ///< the peers' domain names (names=A:B:..., optional)
    bool operator==(const ShmOptions&) const = default;
};
Result<ShmOptions> parse_shm_option(std::string_view spec);

}  // namespace vireo::domain
