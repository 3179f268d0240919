// The allow-lists as the kernel loads them: BPF programs generated at build time from
// filters.cpp's libseccomp rules (gen_programs.cpp), so that a domain's start does no
// libseccomp work and the vireo binary carries no libseccomp.
#pragma once

#include <linux/filter.h>

#include <span>

#include "base/thread_class.hpp"

namespace vireo::sandbox {

/// Thread class `c`'s program; `host_network`: the domain keeps the host's network (user-mode
/// networking). Static storage.
std::span<const sock_filter> program(ThreadClass c, bool host_network) noexcept;

/// The name of x86-64 system call `nr`, or nullptr (for a violation's report; no allocation).
const char* syscall_name(long nr) noexcept;

}  // namespace vireo::sandbox
