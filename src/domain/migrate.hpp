// Live migration of a domain (docs/migration.md): the sending half runs in the source domain's
// API worker over a socket `vireo migrate` connected and handed it; the receiving half runs in
// the destination domain (`vireo run --incoming`), jailed, over the socket its CLI accepted.
// The stream is snapshot/stream.hpp.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

#include "api/server.hpp"
#include "base/result.hpp"
#include "vmm/vm.hpp"

namespace vireo::domain {

struct MigrationOptions {
    uint32_t downtime_ms = 100;      ///< the longest the guest may stand still at the switch
    uint32_t timeout_s = 600;        ///< the whole migration's bound
    bool auto_converge = false;      ///< throttle the vCPUs when the dirty rate outruns the link
    uint32_t max_bandwidth_mib = 0;  ///< MiB/s while the guest runs (0: as fast as it goes)
    std::string token;               ///< the receiver's --token, if it has one
};

/// What a migration in progress has done (read by migrate.status; written by the migration).
struct MigrationProgress {
    std::atomic<bool> active{false};
    std::atomic<bool> cancel{false};
    std::atomic<uint32_t> pass{0};
    std::atomic<uint32_t> throttle_percent{0};
    std::atomic<uint64_t> bytes{0};         ///< sent so far
    std::atomic<uint64_t> dirty_pages{0};   ///< left after the last pass
    std::atomic<uint64_t> dirty_rate{0};    ///< bytes/s the guest dirtied in the last pass
    std::atomic<uint64_t> bandwidth{0};     ///< bytes/s of the last pass
    std::atomic<uint64_t> remaining_ms{0};  ///< estimated, at that bandwidth
    std::atomic<int64_t> started_ms{0};     ///< steady clock

    /// A new migration: every figure from zero (none left from the last one), not cancelled.
    void begin() noexcept {
        cancel.store(false);
        pass.store(0);
        throttle_percent.store(0);
        bytes.store(0);
        dirty_pages.store(0);
        dirty_rate.store(0);
        bandwidth.store(0);
        remaining_ms.store(0);
        started_ms.store(std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::steady_clock::now().time_since_epoch())
                             .count());
    }
};

/// Sends the domain's machine over the connected socket `fd`: memory while it runs (pre-copy
/// passes of the pages written since), then, paused, the rest and its state; the destination
/// confirms that it runs, and the machine here stops (Fate::Stopped). On any failure before that
/// confirmation the machine goes on running here (paused again if it was paused) and the error
/// says what failed. `machine` is the domain's configuration (a snapshot's DOMN).
Result<api::Json> migrate_out(vmm::Vm& vm, const std::string& machine, int fd,
                              const MigrationOptions& options, MigrationProgress& progress);

/// The receiving half in the destination domain: `vm` from Vm::prepare_incoming; says Accepted,
/// takes the memory and the state, restores it, says Ready and waits for Go. The caller then
/// says Running and starts the vCPUs. An error is also sent to the sender.
Result<void> receive_in(vmm::Vm& vm, int fd);

}  // namespace vireo::domain
