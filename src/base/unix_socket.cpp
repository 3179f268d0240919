#include "base/unix_socket.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
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

std::atomic<bool> g_leave_files{false};

}  // namespace

void leave_socket_files() noexcept {
    g_leave_files.store(true, std::memory_order_relaxed);
}

UnixListener& UnixListener::operator=(UnixListener&& o) noexcept {
    if (this != &o) {
        remove();
        fd_ = std::move(o.fd_);
        path_ = std::move(o.path_);
        id_ = o.id_;
    }
    return *this;
}

UnixListener::~UnixListener() {
    remove();
}

void UnixListener::remove() noexcept {
    if (!fd_ || path_.empty()) return;
    if (g_leave_files.load(std::memory_order_relaxed)) return fd_.reset();
    struct stat st {};
    if (::lstat(path_.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) && file_id(st) == id_)
        ::unlink(path_.c_str());
    fd_.reset();
}

bool remove_stale_socket(const std::string& path) {
    sockaddr_un a{};
    struct stat st {};
    if (!address_for(path, a) || ::lstat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode))
        return false;
    UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!probe || ::connect(probe.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0 ||
        errno != ECONNREFUSED)
        return false;
    return ::unlink(path.c_str()) == 0;
}

Result<UnixListener> listen_unix(const std::string& path, const char* what, bool replace_stale) {
    sockaddr_un a{};
    if (!address_for(path, a))
        return fail(ErrorCode::InvalidArgument,
                    "{}: \"{}\" does not fit a Unix socket address (1 to {} bytes)", what, path,
                    sizeof a.sun_path - 1);
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return fail(ErrorCode::AlreadyExists, "{}: {} already exists and is not a socket", what,
                        path);
        UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (probe && ::connect(probe.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0)
            return fail(ErrorCode::AlreadyExists,
                        "{}: {} already exists and is in use by a running vireo", what, path);
        if (!replace_stale)
            return fail(ErrorCode::AlreadyExists,
                        "{}: {} already exists (left over by a vireo that is gone: remove it)",
                        what, path);
        ::unlink(path.c_str());  // stale: its owner is gone
    }
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) return fail_errno(errno, "{}: socket", what);
    const mode_t old = ::umask(0177);  // 0600 from the start: no window with wider access
    const int rc = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a);
    const int bind_errno = errno;
    ::umask(old);
    if (rc != 0) return fail_errno(bind_errno, "{}: cannot create {}", what, path);
    struct stat bound {};
    if (::lstat(path.c_str(), &bound) != 0) return fail_errno(errno, "{}: stat {}", what, path);
    UnixListener listener(std::move(fd), path, file_id(bound));
    if (::listen(listener.fd(), 128) != 0) return fail_errno(errno, "{}: listen", what);
    return listener;
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
