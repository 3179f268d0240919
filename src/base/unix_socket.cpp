#include "base/unix_socket.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace vireo {

namespace {

bool address_for(const std::string& path, sockaddr_un& a) {
    a = {};
    a.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof a.sun_path) return false;
    std::memcpy(a.sun_path, path.data(), path.size());
    return true;
}

}  // namespace

Result<UniqueFd> listen_unix(const std::string& path, const char* what) {
    sockaddr_un a{};
    if (!address_for(path, a))
        return fail(ErrorCode::InvalidArgument,
                    "{}: \"{}\" does not fit a Unix socket address (1 to {} bytes)", what, path,
                    sizeof a.sun_path - 1);
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return fail(ErrorCode::AlreadyExists, "{}: {} exists and is not a socket", what, path);
        UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (probe && ::connect(probe.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0)
            return fail(ErrorCode::AlreadyExists, "{}: {} is in use by a running vireo", what,
                        path);
        ::unlink(path.c_str());  // stale: its owner is gone
    }
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) return fail_errno(errno, "{}: socket", what);
    const mode_t old = ::umask(0177);  // 0600 from the start: no window with wider access
    const int rc = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a);
    const int bind_errno = errno;
    ::umask(old);
    if (rc != 0) return fail_errno(bind_errno, "{}: cannot create {}", what, path);
    if (::listen(fd.get(), 64) != 0) {
        const int e = errno;
        ::unlink(path.c_str());
        return fail_errno(e, "{}: listen", what);
    }
    return fd;
}

Result<UniqueFd> connect_unix(const std::string& path) {
    sockaddr_un a{};
    if (!address_for(path, a))
        return fail(ErrorCode::InvalidArgument, "socket path \"{}\" is too long", path);
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return fail_errno(errno, "socket");
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0)
        return fail_errno(errno, "no vireo answers on {}", path);
    return fd;
}

bool send_all(int fd, std::string_view s, int timeout_ms) {
    size_t off = 0;
    while (off < s.size()) {
        const ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) {
            pollfd p{fd, POLLOUT, 0};
            if (::poll(&p, 1, timeout_ms) <= 0) return false;  // a peer that does not read
            continue;
        }
        if (n <= 0) return false;
        off += static_cast<size_t>(n);
    }
    return true;
}

}  // namespace vireo
