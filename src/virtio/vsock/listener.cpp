#include "virtio/vsock/listener.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cstring>

namespace vireo::virtio {

sockaddr_un unix_address(const std::string& path) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, path.data(), std::min(path.size(), sizeof(a.sun_path) - 1));
    return a;
}

Result<std::shared_ptr<VsockListener>> VsockListener::create(const VsockOptions& o) {
    // Mode 0600 whatever the umask, and never over an existing path (not even a stale socket:
    // it may be another domain's that is being restarted).
    VIREO_TRY_ASSIGN(auto listener, listen_unix(o.socket, "--vsock", /*replace_stale=*/false));
    return std::shared_ptr<VsockListener>(new VsockListener(std::move(listener), o.cid));
}

}  // namespace vireo::virtio
