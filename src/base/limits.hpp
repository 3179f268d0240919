// Process resource limits vireo depends on, and bounds it sets itself.
#pragma once

#include <cstdint>

namespace vireo {

/// Raises the soft RLIMIT_NOFILE to the hard limit (every vCPU is a file descriptor, so a
/// 1024-vCPU machine needs more than the usual soft limit of 1024). Returns the new soft limit.
uint64_t raise_fd_limit() noexcept;

/// Stack size for every thread created after this call (vCPUs, event loop, API, slirp).
inline constexpr uint64_t kThreadStackSize = uint64_t{1} << 20;

/// Makes threads start with kThreadStackSize stacks instead of glibc's 8 MiB. Beyond saving
/// address space this keeps each stack smaller than a 2 MiB huge page: on a host with
/// transparent huge pages "always" (Debian's default), an 8 MiB stack whose top lies on a 2 MiB
/// boundary (as one mapped just under the 2 MiB-aligned guest RAM does) takes a whole huge page
/// for the few KiB a thread uses. Returns false if glibc refused (the default stays).
bool set_thread_stack_size() noexcept;

/// A console log file (`vireo run --console-log-max`, a domain's `console_log_max`): its
/// default bound and the range allowed (vmm/console_log.hpp rotates at it).
inline constexpr uint64_t kDefaultConsoleLogMax = uint64_t{16} << 20;
inline constexpr uint64_t kMinConsoleLogMax = uint64_t{64} << 10;
inline constexpr uint64_t kMaxConsoleLogMax = uint64_t{1} << 40;
/// The one check of a console log bound (flags and host configuration alike), and its range as
/// error messages say it.
constexpr bool console_log_max_ok(uint64_t bytes) noexcept {
    return bytes >= kMinConsoleLogMax && bytes <= kMaxConsoleLogMax;
}
inline constexpr const char* kConsoleLogMaxRange = "64K to 1T";

}  // namespace vireo
