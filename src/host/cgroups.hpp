// cgroup v2 for `vireo up`: <cgroup2>/vireo-<host>/<pool>/<domain>, with the cpu controller
// (cpu.weight, cpu.max) and, where the kernel has it, cpuset (the pool's CPUs) enabled on the
// way down. Without a cgroup v2 mount that has the cpu controller, every call is a no-op and
// the supervisor says once that weights and caps are not enforced.
#pragma once

#include <cstdint>
#include <set>
#include <string>

#include "base/result.hpp"

namespace vireo::host {

/// Writes `text` to an existing cgroup (or proc) file, as the kernel wants it: one write.
Result<void> write_control_file(const std::string& path, const std::string& text);

class Cgroups {
  public:
    /// The host's cgroup, created under the cgroup2 mount with the cpu controller (none if
    /// there is no such mount or it cannot be set up: enabled() is then false).
    static Cgroups open(const std::string& host_stem);

    bool enabled() const noexcept { return !host_.empty(); }
    const std::string& host_dir() const noexcept { return host_; }

    /// The domain's cgroup under its pool's (the pool's made with its CPUs the first time),
    /// with the domain's weight (1-10000) and cap (percent of one CPU; 0: none). "" when
    /// cgroups are not enabled.
    /// `memory_max` (bytes) and `pids_max` bound its memory and tasks (0: not bounded; each
    /// only where the host delegates the memory or pids controller).
    std::string domain_dir(const std::string& pool, const std::set<uint32_t>& pool_cpus,
                           const std::string& domain, uint32_t weight, uint32_t cap,
                           uint64_t memory_max = 0, uint64_t pids_max = 0) const;

    /// Moves a task (a process or thread id; 0: the caller) into `dir`.
    static Result<void> move(const std::string& dir, const std::string& task);
    /// Moves every task left in `from` into `to` (KVM's per-VM kernel worker stays in the
    /// cgroup it was created in, outside the domain's thread group).
    static void move_all(const std::string& from, const std::string& to);
    /// Removes an emptied cgroup, giving the kernel a moment to let go of it.
    static void remove(const std::string& dir);

  private:
    std::string host_;
};

}  // namespace vireo::host
