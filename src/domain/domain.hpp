// The state of one `vireo run` domain that its control API reaches: the running machine
// (swapped on every reboot), stop requests, the configuration the next boot uses, and the
// supervisor's control socket (state changes are reported there).
#pragma once

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>

#include "api/server.hpp"
#include "domain/migrate.hpp"
#include "domain/protocol.hpp"
#include "vmm/console_log.hpp"
#include "vmm/console_server.hpp"
#include "vmm/vm.hpp"

namespace vireo::domain {

// Stop requests (SIGINT/SIGTERM on a sigwait thread, the console escape) reach the running
// machine, and are remembered so that one arriving between two boots is not lost.
class StopControl {
  public:
    void request(const char* why) {
        std::lock_guard lock(mu_);
        if (!requested_) why_ = why;
        requested_ = true;
        if (vm_ != nullptr) vm_->stop(vmm::Fate::Stopped, why_);
    }
    /// Makes `vm` the one to stop; if a stop was already requested, stops it at once.
    void set(vmm::Vm* vm) {
        std::lock_guard lock(mu_);
        vm_ = vm;
        if (vm_ != nullptr && requested_) vm_->stop(vmm::Fate::Stopped, why_);
    }
    bool requested() {
        std::lock_guard lock(mu_);
        return requested_;
    }
    /// Calls fn(vm) with the running machine (nullptr between boots); it cannot go away
    /// meanwhile. For API requests.
    template <typename Fn>
    auto with_vm(Fn&& fn) {
        std::lock_guard lock(mu_);
        return fn(vm_);
    }

  private:
    std::mutex mu_;
    vmm::Vm* vm_ = nullptr;
    bool requested_ = false;
    std::string why_;
};

struct Domain {
    std::string name;
    /// The machine's configuration as a snapshot keeps it (spec_json of DomainSpec::machine).
    std::string snapshot_config;
    StopControl stop;
    /// What the next boot is built from. The API changes vCPU pins in it; the boot loop copies
    /// it under `config_mu` before each build.
    std::mutex config_mu;
    vmm::VmConfig config;
    /// What the host last asked the balloon for (guest bytes; 0: nothing): kept across reboots.
    std::atomic<uint64_t> guest_memory_request{0};
    std::atomic<unsigned> boots{0};
    /// Restarts delayed because the guest rebooted in a loop (run.cpp: kRebootBurst).
    std::atomic<uint64_t> reboots_throttled{0};
    std::atomic<bool> crashed{false};
    std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
    std::shared_ptr<vmm::ConsoleServer> console;
    std::shared_ptr<vmm::ConsoleLog> console_log;  ///< where console output goes, or nullptr
    int ctl_fd = -1;                               ///< the supervisor's socket (vireo up), or -1
    MigrationProgress migration;                   ///< the migration in progress, if any

    /// Tells the supervisor of a state change (Paused, Running, Crashed).
    void report(Message::Kind state);
};

/// Registers the domain's methods (info, pause, unpause, shutdown, reboot, vcpu.list,
/// vcpu.pin, affinity.set, metrics, balloon.set, balloon.info) on `server`.
void add_domain_methods(api::Server& server, Domain& domain);

/// The domain's metrics as JSON (the "metrics" method), for the API and the Prometheus page.
api::Json domain_metrics(Domain& domain);

}  // namespace vireo::domain
