// Directories vireo keeps its sockets and logs in (the run directory of `vireo up`).
#pragma once

#include <string>

#include "base/result.hpp"

namespace vireo {

/// Makes `path` (absolute) a directory that only the caller can change, creating what is
/// missing with mode 0700, and checks the whole way there, as ssh's StrictModes does: every
/// component is a directory owned by root or the caller (a symbolic link too must be owned by
/// one of them), a component others can write to must be sticky (as /tmp is), and the
/// directory itself is the caller's and writable by nobody else. Anything else is refused with
/// the component, its owner and mode: another user could otherwise read a domain's files or
/// plant a link that redirects them (issue 14: /tmp/vireo-UID made 0777 by someone else).
Result<void> ensure_private_dir(const std::string& path);

}  // namespace vireo
