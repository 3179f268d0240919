// Runs one domain in this process: opens its back-ends, builds the machine, runs it, and boots
// it again after a guest reboot (on_reboot) or keeps it for inspection after a crash
// (on_crash), until it ends. `vireo run` is flag parsing plus run_domain(); under `vireo up`
// each domain process runs the same, with its spec and the launch protocol on
// its launch socket (run_launched).
#pragma once

#include "domain/protocol.hpp"
#include "domain/spec.hpp"

namespace vireo::domain {

/// Runs the domain to its end; returns the process exit status (ExitStatus).
int run_domain(const DomainSpec& spec);

/// A domain process started by the supervisor (`vireo run --launch-fd FD`): its spec comes on
/// the launch socket (domain/protocol.hpp), then it runs as run_domain does.
int run_launched(int fd, const std::string& default_guest_dir);

/// The exit status for how a machine ended.
ExitStatus exit_status_for(vmm::Fate fate) noexcept;

}  // namespace vireo::domain
