// `vireo run`: boot one guest in the foreground.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "domain/protocol.hpp"

namespace vireo::cli {

/// Process exit statuses of `vireo run` (also in `vireo run --help` and docs/cli.md): the
/// launch protocol's (domain/protocol.hpp), which the supervisor reads.
using enum domain::ExitStatus;

struct RunOptions {
    std::string kernel;
    std::string initrd;
    std::string cmdline;
    std::string append;
    std::string memory = "256M";
    uint32_t cpus = 1;
    std::string console = "stdio";
    std::string console_log_max = "16M";  ///< bound of a console file before it rotates
    std::string on_reboot = "restart";
    std::vector<std::string> disks;
    std::vector<std::string> nets;
    std::string vsock;
    bool balloon = false;
    std::string api_socket;
    std::string console_socket;
    std::string metrics;  ///< ADDR:PORT of the Prometheus endpoint
    std::string memory_backing = "anonymous";
    std::string cpu_affinity;  ///< host CPUs for every thread (a shared pool)
    std::string pin_vcpus;     ///< one host CPU per vCPU (a pinned pool)
    std::string on_crash = "exit";
    int ready_fd = -1;  ///< supervisor hand-shake: "ready" once built, then wait for 'g'
    std::string name = "vireo";
    bool rng = false;
    bool stats = false;
    bool allow_software_kvm = false;
};

/// Adds the `run` subcommand to `app`; the options land in `options`.
CLI::App* add_run_command(CLI::App& app, RunOptions& options);
/// Runs it; returns the process exit status.
int run_guest(const RunOptions& options);

/// Adds the API client commands (`mem-set`, `api`); returns a function that runs whichever
/// was given (or returns -1 if none was).
std::function<int()> add_client_commands(CLI::App& app);
/// Adds `up`, `list`, `destroy`, `down` (cli/up.cpp); same convention.
std::function<int()> add_host_commands(CLI::App& app);
/// Adds the control verbs (cli/control.cpp): info, pause, unpause, shutdown, reboot, console,
/// vcpu-list, vcpu-pin, mem-set, top, dmesg, cpupool-list, cpupool-migrate, create.
std::function<int()> add_control_commands(CLI::App& app);

/// `vireo info` without a domain: what this host's KVM offers.
int print_kvm_info(const std::string& device);

/// The running host's API socket: RUN_DIR/vireo.sock, or the only host up under the default
/// run directories.
Result<std::string> find_host_socket(const std::string& run_dir);

}  // namespace vireo::cli
