// Unix stream sockets for vireo's control endpoints (API, console).
#pragma once

#include <string>

#include "base/result.hpp"
#include "base/unique_fd.hpp"

namespace vireo {

/// Creates a listening socket at `path` with mode 0600 (owner only, from the start: the umask
/// is narrowed around bind). A path that exists and is not a socket, or a socket something
/// answers on, is refused; a stale socket (its owner is gone) is replaced. Non-blocking.
/// `what` names the endpoint in errors ("--api-socket").
Result<UniqueFd> listen_unix(const std::string& path, const char* what);

/// Connects to the socket at `path` (blocking).
Result<UniqueFd> connect_unix(const std::string& path);

/// Sends all of `data`, waiting up to `timeout_ms` at a time for a peer that does not read.
/// MSG_NOSIGNAL: a closed peer is an error, never SIGPIPE.
bool send_all(int fd, std::string_view data, int timeout_ms = 1000);

}  // namespace vireo
