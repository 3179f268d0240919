// The supervisor of `vireo up` inside: one class over one table of domains, its parts in
// files along its seams. supervisor.cpp: start-up (build all, then go), the supervising loop
// and the on_* policy's effects; host_api.cpp: the host's JSON API (list, destroy, down,
// cpupool.*, create, dmesg) and metrics. What needs no process is in policy, cpu_pools,
// cgroups and domain_process. Not for use outside host/ (host/supervisor.hpp is the API).
#pragma once

#include <atomic>
#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "api/metrics.hpp"
#include "api/server.hpp"
#include "base/log.hpp"
#include "domain/protocol.hpp"
#include "host/cgroups.hpp"
#include "host/domain_process.hpp"
#include "host/policy.hpp"
#include "host/shm.hpp"
#include "host/supervisor.hpp"
#include "sandbox/sandbox.hpp"

namespace vireo::host {

using Clock = std::chrono::steady_clock;

inline constexpr int kReadyTimeoutMs = 120000;  // a domain's build, up to its "ready"
// A domain's cgroup: memory.max is its memory budget (host/config.hpp, domain_memory_budget);
// an AddressSanitizer build's runtime (shadow memory, quarantine) gets a share of its own on
// top. pids.max: its vCPUs and the VMM's own threads, with a reboot's overlap.
inline constexpr uint64_t kSanitizerMemoryShare =
    sandbox::kSanitizerBuild ? uint64_t{512} << 20 : 0;
inline constexpr uint64_t kVmmThreads = 64;

/// The host log (`vireo dmesg`): the supervisor's last lines, with times.
void host_log_tap(log::Level level, std::string_view text) noexcept;
std::vector<std::string> host_log_lines();

/// A domain as the supervisor keeps it.
struct SupervisedDomain {
    const DomainConfig* cfg = nullptr;
    std::string pool;    // can change (cpupool-migrate)
    DomainProcess proc;  // pid -1: no process
    DomainState state = DomainState::Starting;
    std::string last;         // why it last stopped
    std::vector<int> pinned;  // host CPU per vCPU (pinned pools)
    std::string cgroup;       // cgroup v2 directory, if any
    uint32_t uid = 0;         // what it runs as when sandboxed (uid = gid)
    Clock::time_point started{};
    unsigned boots = 0;
    RestartGuard restarts;
    bool destroying = false;
    bool gone = false;  ///< migrated away (or a failed reception replaced): not listed, no name
    bool restarting = false;             // restarted by its policy; "ready" not yet seen
    Clock::time_point ready_deadline{};  // for a restarting domain
    pid_t pid() const noexcept { return proc.pid; }
};

class Supervisor {
  public:
    Supervisor(const HostConfig& cfg, const UpOptions& o) : cfg_(cfg), o_(o) {}

    int run();

    // --detach: the parent waits on `fd` until the host is up (or this process dies).
    void set_detached_fd(int fd) { detached_fd_ = fd; }

  private:
    // Every domain runs: from now on the supervisor logs to RUN_DIR/vireo.log, and the
    // parent, which was waiting for this line, returns.
    void detach_now();

    int error(const std::string& msg);

    void plan();

    // A domain that is starting or has a process keeps its pinned CPUs.
    static bool holds_cpus(const SupervisedDomain& d);

    // The CPUs of `pool` pinned by domains other than `except`.
    std::set<uint32_t> taken_cpus(const std::string& pool,
                                  const SupervisedDomain* except = nullptr) const;

    std::vector<int> pins_for(const std::string& pool, uint32_t vcpus,
                              const SupervisedDomain* except) const;

    std::string make_cgroup(const SupervisedDomain& d) const;
    // The lowest id of uid_base .. uid_base + kMaxDomainIds - 1 no domain has.
    uint32_t free_id() const;

    SupervisedDomain& add_dom(const DomainConfig& c);

    // Starts the domain's process (its console log opened first, appended to).
    Result<void> spawn(SupervisedDomain& d);

    // Waits (up to 120 s) for a starting domain's Ready; the error says what happened instead.
    Result<void> wait_ready(SupervisedDomain& d);

    std::string not_ready_reason(const SupervisedDomain& d,
                                 const std::optional<domain::Message>& m) const;

    // A domain that broke the launch protocol is not trusted to run on.
    void protocol_error(SupervisedDomain& d);

    // A domain restarted by its policy: its first control line, without waiting (the
    // supervising thread holds mu_; API requests must not wait for a domain being built).
    void poll_restart(SupervisedDomain& d);

    void go(SupervisedDomain& d);

    int abort_all(const SupervisedDomain& failed);

    SupervisedDomain* find(const std::string& name);

    // Reads the state lines a domain wrote on its control socket ("paused", "running",
    // "crashed") without waiting. Called with mu_ held, so `list` always shows the latest.
    void drain_ctl(SupervisedDomain& d);

    static double cpu_seconds(pid_t pid);

    Result<SupervisedDomain*> named(const api::Json& p);

    api::Json pool_json(const std::string& name, const Pool& pool);

    // Every running domain's metrics, for the Prometheus page (each domain asked on its own
    // socket, without holding mu_ meanwhile).
    std::string prometheus();

    void add_methods();

    // `vireo create FILE.toml`: more domains on the running host, admitted against what the
    // host was admitted with (its memory, pinned CPUs), built, then started only if all are.
    Result<api::Json> create(const std::string& path);
    // `vireo migrate NAME --to-host RUN_DIR`: a domain that is to arrive from another vireo,
    // admitted like create's (its vCPUs and memory as the sender's `info` says; the stream
    // must match), started listening on RUN_DIR/NAME.incoming; its address is returned.
    Result<api::Json> receive(const api::Json& p);
    // create's and receive's second half: admits `more` beside the domains holding resources,
    // builds them, and starts them only if all are built. `from` names them in the log.
    Result<api::Json> add_domains(const std::vector<DomainConfig>& more, const std::string& from);

    // A domain process that is gone (killed, crashed) cannot remove its own sockets: whatever
    // is still at its paths and answers no one is removed, so nothing stale is left behind.
    void remove_stale_sockets(const SupervisedDomain& d) const;

    void apply_policy(SupervisedDomain& d, int status);

    // The domain's ACPI power button, through its API.
    Result<api::Json> press_power_button(const SupervisedDomain& d) const;

    // Graceful stop of one domain: the ACPI power button, or SIGTERM (a hard but clean stop
    // of vireo run) where the guest cannot take it (crashed, or no answer).
    void press_or_term(SupervisedDomain& d);

    void supervise();

    const HostConfig& cfg_;
    const UpOptions& o_;
    std::string run_dir_;
    std::unique_ptr<api::Server> api_;
    std::mutex mu_;  // doms_ between the supervising thread and API requests
    // Held across a whole create or migration (API workers), before mu_; never by the
    // supervising thread.
    std::mutex create_mu_, migrate_mu_;
    std::deque<SupervisedDomain> doms_;  // a deque: references stay valid as `create` adds domains
    std::deque<DomainConfig> created_;   // configurations of domains added by `vireo create`
    Cgroups cgroups_;                    // <cgroup2>/vireo-<stem>, or none
    SharedRegions shm_;                  // allocated before any domain is built
    std::unique_ptr<api::MetricsEndpoint> metrics_;
    std::atomic<int> down_timeout_s_{30};
    std::atomic<bool> down_requested_{false};
    int detached_fd_ = -1;  // --detach: where to say the host is up
};

}  // namespace vireo::host
