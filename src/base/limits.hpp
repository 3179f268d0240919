// Process resource limits vireo depends on.
#pragma once

#include <cstdint>

namespace vireo {

/// Raises the soft RLIMIT_NOFILE to the hard limit (every vCPU is a file descriptor, so a
/// 1024-vCPU machine needs more than the usual soft limit of 1024). Returns the new soft limit.
uint64_t raise_fd_limit() noexcept;

}  // namespace vireo
