// The seccomp allow-lists, one per thread class (base/thread_class.hpp), built with
// libseccomp and exported as BPF programs. docs/security.md lists them in words.
#pragma once

#include <linux/filter.h>

#include <vector>

#include "base/result.hpp"
#include "base/thread_class.hpp"

namespace vireo::sandbox {

/// The class's allow-list as a BPF program (the default action raises SIGSYS). Main's list is
/// the union every thread starts under; the other classes' are narrower and stacked on it.
/// `host_network`: the domain keeps the host's network (user-mode networking), so Main may
/// make the TCP/UDP sockets the slirp thread makes.
Result<std::vector<sock_filter>> build_filter(ThreadClass c, bool host_network);

}  // namespace vireo::sandbox
