// The host side of virtio-vsock: the domain's listening socket PATH (mode 0600, never over an
// existing path), made before the guest starts and kept across reboots, and its options
// (`--vsock`, a domain's `vsock`).
#pragma once

#include <sys/un.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/result.hpp"
#include "base/unix_socket.hpp"

namespace vireo::virtio {

/// `--vsock cid=N,socket=PATH` (parsed by domain/device_options.hpp).
struct VsockOptions {
    uint64_t cid = 0;
    std::string socket;
};

/// The host-side listener at PATH: created before the guest starts, kept across reboots,
/// removed when vireo exits (if it is still this listener's socket).
class VsockListener {
  public:
    static Result<std::shared_ptr<VsockListener>> create(const VsockOptions& options);
    int fd() const noexcept { return listener_.fd(); }
    uint64_t cid() const noexcept { return cid_; }
    const std::string& path() const noexcept { return listener_.path(); }

  private:
    VsockListener(UnixListener listener, uint64_t cid)
        : listener_(std::move(listener)), cid_(cid) {}
    UnixListener listener_;
    uint64_t cid_;
};

/// The Unix socket address of `path` (cut to fit; the options check that it does).
sockaddr_un unix_address(const std::string& path);

}  // namespace vireo::virtio
