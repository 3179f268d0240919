// The device options of a domain's configuration, as `vireo run`'s flags and a host
// configuration's `disks`, `nets` and `vsock` give them: `PATH[,readonly][,serial=ID]
// [,queue-size=N]`, `user[,hostfwd=...]...` or `tap=NAME` with `[,mac=..][,mtu=N]
// [,queue-size=N]`, `cid=N,socket=PATH`. The parsed options are the back-ends' own types
// (virtio/blk/disk_image.hpp, virtio/net/backend.hpp, virtio/vsock/listener.hpp); errors quote
// the value and leave the field's name to the caller (parse_spec, the host configuration).
#pragma once

#include <string_view>

#include "base/result.hpp"
#include "virtio/blk/disk_image.hpp"
#include "virtio/net/backend.hpp"
#include "virtio/vsock/listener.hpp"

namespace vireo::domain {

Result<virtio::DiskOptions> parse_disk_option(std::string_view spec);
Result<virtio::NetOptions> parse_net_option(std::string_view spec);
/// CID >= 3; PATH must fit a socket address with a `_PORT` suffix.
Result<virtio::VsockOptions> parse_vsock_option(std::string_view spec);

}  // namespace vireo::domain
