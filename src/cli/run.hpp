// `vireo run`: boot one guest in the foreground.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "domain/protocol.hpp"
#include "domain/spec.hpp"

namespace vireo::cli {

/// Process exit statuses of `vireo run` (also in `vireo run --help` and docs/cli.md): the
/// launch protocol's (domain/protocol.hpp), which the supervisor reads.
using enum domain::ExitStatus;

/// `vireo run`'s flags: a domain's fields as text (domain/spec.hpp).
using RunOptions = domain::DomainText;

/// Adds the `run` subcommand to `app`; the options land in `options`.
CLI::App* add_run_command(CLI::App& app, RunOptions& options);
/// Runs it; returns the process exit status.
int run_guest(const RunOptions& options);
/// Under `--launch-fd` (started by a supervisor) the whole configuration comes on the launch
/// socket, none from flags (two sources would be two truths): true when no other flag is
/// given, else logs which rule was broken.
bool launch_fd_alone(const RunOptions& options);

/// `vireo restore FILE`'s flags: how the saved domain runs here, and which of the machine's
/// saved fields the flags replace (an option given: `count() > 0`).
struct RestoreOptions {
    std::string file;
    RunOptions given;
    CLI::Option *name = nullptr, *disks = nullptr, *nets = nullptr, *vsock = nullptr,
                *on_reboot = nullptr, *on_crash = nullptr, *backing = nullptr;
};
/// Adds the `restore` subcommand.
CLI::App* add_restore_command(CLI::App& app, RestoreOptions& options);
/// Runs it: the machine from the snapshot's saved configuration, the rest from the flags.
int restore_guest(const RestoreOptions& options);

/// `vireo run --incoming`'s flags (cli/migrate.cpp).
struct IncomingOptions {
    std::string address;  ///< unix:PATH or tcp:HOST:PORT; empty: no migration
    std::string token;
};
void add_incoming_options(CLI::App* run, IncomingOptions& options);
/// Waits for one migrated domain on the address and runs it: the machine from the sender, how it
/// runs here from `given`'s host-side options.
int incoming_guest(const RunOptions& given, const IncomingOptions& incoming);
/// Connects to a migration's destination (unix:PATH or tcp:HOST:PORT).
Result<UniqueFd> connect_migration(const std::string& dest);
/// How a foreground domain's process ends (a jailed one: _exit, see run.cpp).
int finish_domain(int status);

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
