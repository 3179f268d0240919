// `vireo up`: starts every domain of a host configuration, one `vireo run` process per domain
// (a crash in one cannot touch the others), all-or-nothing:
//
//   1. every domain process builds its machine (memory allocated, prefaulted or locked as
//      configured, vCPUs created) and reports "ready" on a socketpair, or an error;
//   2. only when all are ready does the supervisor tell them to start ('g'); if one fails, all
//      are killed and nothing ran a guest instruction;
//   3. it then supervises: a domain's exit is turned into its fate (poweroff, reboot, crash,
//      killed) and its on_poweroff / on_reboot / on_crash policy is applied.
//
// Pools: a shared pool's domains get the pool's CPUs as their process affinity (and a cgroup v2
// cpu.weight / cpu.max when the cpu controller is available); a pinned pool hands out one host
// CPU per vCPU. Each domain's console goes to RUN_DIR/NAME.log and is served on
// RUN_DIR/NAME.console (vireo console); its API is RUN_DIR/NAME.api. The supervisor serves the
// host's JSON API on RUN_DIR/vireo.sock: list, destroy, down, cpupool.list, cpupool.migrate,
// create, dmesg, metrics (docs/api.md).
#pragma once

#include <string>

#include "host/config.hpp"

namespace vireo::host {

struct UpOptions {
    std::string vireo_exe;  ///< the vireo binary to run domains with
    /// Return once every domain runs; the supervisor then logs to RUN_DIR/vireo.log.
    bool detach = false;
    int down_timeout_s = 30;  ///< `vireo down` / SIGTERM: ACPI shutdown, then destroy after this
    std::string metrics;      ///< ADDR:PORT for Prometheus metrics of every domain, or ""
    HostFacts facts;          ///< what admission was checked against (again for `vireo create`)
};

/// The run directory for `config` (config.run_dir, or /run/vireo/STEM, or
/// $XDG_RUNTIME_DIR/vireo/STEM, or /tmp/vireo-UID/STEM).
std::string run_dir_for(const HostConfig& config);

/// Runs the host in the foreground until every domain is gone or `vireo down`; returns the
/// process exit status.
int up(const HostConfig& config, const UpOptions& options);

}  // namespace vireo::host
