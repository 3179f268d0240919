// Unix stream sockets for vireo's control endpoints (API, console).
#pragma once

#include <string>

#include "base/file_id.hpp"
#include "base/result.hpp"
#include "base/unique_fd.hpp"

namespace vireo {

/// A listening Unix socket that owns its path: the destructor removes the socket file only if
/// it is still the one this listener bound (same device and inode), never a newer vireo's
/// socket that replaced it at the same path.
class UnixListener {
  public:
    UnixListener(UnixListener&& o) noexcept = default;
    UnixListener& operator=(UnixListener&& o) noexcept;
    UnixListener(const UnixListener&) = delete;
    UnixListener& operator=(const UnixListener&) = delete;
    ~UnixListener();

    int fd() const noexcept { return fd_.get(); }
    const std::string& path() const noexcept { return path_; }

  private:
    friend Result<UnixListener> listen_unix(const std::string& path, const char* what,
                                            bool replace_stale);
    UnixListener(UniqueFd fd, std::string path, FileId id)
        : fd_(std::move(fd)), path_(std::move(path)), id_(id) {}
    void remove() noexcept;
    UniqueFd fd_;
    std::string path_;
    FileId id_;
};

/// Creates a listening socket at `path` with mode 0600 (owner only, from the start: the umask
/// is narrowed around bind). A path that exists and is not a socket, or a socket something
/// answers on, is refused; a stale socket (its owner is gone) is replaced when
/// `replace_stale`, else refused too. Non-blocking. `what` names the endpoint in errors
/// ("--api-socket").
Result<UnixListener> listen_unix(const std::string& path, const char* what,
                                 bool replace_stale = true);

/// From now on, this process's listeners leave their socket files for whoever started it to
/// remove: a jailed domain (the sandbox calls it) cannot unlink — its root is read-only and
/// unlink is not on its allow-list — and its keeper or `vireo up`'s supervisor removes them.
void leave_socket_files() noexcept;

/// Removes the socket at `path` if it is one and nothing listens on it any more (a dead
/// domain's). Returns true if it removed it.
bool remove_stale_socket(const std::string& path);

/// Connects to the socket at `path` (blocking).
Result<UniqueFd> connect_unix(const std::string& path);

/// Sends all of `data`, waiting up to `timeout_ms` at a time for a peer that does not read.
/// MSG_NOSIGNAL: a closed peer is an error, never SIGPIPE.
bool send_all(int fd, std::string_view data, int timeout_ms = 1000);

}  // namespace vireo
