#include "host/supervisor.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "api/metrics.hpp"
#include "api/params.hpp"
#include "api/server.hpp"
#include "base/log.hpp"
#include "base/private_dir.hpp"
#include "base/proc_stat.hpp"
#include "base/unique_fd.hpp"
#include "base/unix_socket.hpp"
#include "domain/protocol.hpp"
#include "host/cgroups.hpp"
#include "host/cpu_pools.hpp"
#include "host/domain_process.hpp"
#include "host/policy.hpp"

namespace vireo::host {

namespace {

using Clock = std::chrono::steady_clock;

// The host log (`vireo dmesg`): the supervisor's last kLogLines lines, with times.
constexpr size_t kLogLines = 1000;
constexpr int kReadyTimeoutMs = 120000;  // a domain's build, up to its "ready"
std::mutex g_log_mu;
std::deque<std::string> g_log;
void log_tap(log::Level level, std::string_view text) noexcept {
    try {
        const auto now = std::chrono::system_clock::now();
        const std::time_t t = std::chrono::system_clock::to_time_t(now);
        std::tm tm{};
        ::gmtime_r(&t, &tm);
        char stamp[32];
        std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
        std::lock_guard lock(g_log_mu);
        g_log.push_back(fmt::format("{} {}: {}", stamp, log::name(level), text));
        if (g_log.size() > kLogLines) g_log.pop_front();
    } catch (...) {
    }
}

struct SupervisedDomain {
    const DomainConfig* cfg = nullptr;
    std::string pool;    // can change (cpupool-migrate)
    DomainProcess proc;  // pid -1: no process
    DomainState state = DomainState::Starting;
    std::string last;         // why it last stopped
    std::vector<int> pinned;  // host CPU per vCPU (pinned pools)
    std::string cgroup;       // cgroup v2 directory, if any
    Clock::time_point started{};
    unsigned boots = 0;
    RestartGuard restarts;
    bool destroying = false;
    bool restarting = false;             // restarted by its policy; "ready" not yet seen
    Clock::time_point ready_deadline{};  // for a restarting domain
    pid_t pid() const noexcept { return proc.pid; }
};

// A log in the run directory (which ensure_private_dir made the caller's alone): owner-only,
// appended to, never through a symbolic link.
UniqueFd open_log(const std::string& path) {
    return UniqueFd(::open(
        path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600));
}

class Supervisor {
  public:
    Supervisor(const HostConfig& cfg, const UpOptions& o) : cfg_(cfg), o_(o) {}

    int run() {
        run_dir_ = run_dir_for(cfg_);
        if (auto r = ensure_private_dir(run_dir_); !r) return error(r.error().message());
        auto server = api::Server::create(run_dir_ + "/vireo.sock");
        if (!server)
            return error(fmt::format("{} (is this host already up?)", server.error().message()));
        api_ = std::move(server).value();
        log::set_tap(log_tap);
        down_timeout_s_ = o_.down_timeout_s;
        plan();
        // The API answers from the start (`list` shows the domains as starting while they
        // are built; a large domain takes a while).
        add_methods();
        if (auto r = api_->start(); !r) return error(r.error().message());
        // 1. Build every domain; 2. start all only when all are ready.
        {
            std::lock_guard lock(mu_);
            for (auto& d : doms_)
                if (auto r = spawn(d); !r) {
                    d.last = r.error().message();
                    return abort_all(d);
                }
        }
        for (auto& d : doms_) {  // unlocked: API requests leave "starting" domains' sockets alone
            if (auto r = wait_ready(d); !r) {
                std::lock_guard lock(mu_);
                d.last = r.error().message();
                return abort_all(d);
            }
        }
        {
            std::lock_guard lock(mu_);
            for (auto& d : doms_)
                go(d);
        }
        log::info("host {}: {} domain(s) running; consoles and API in {}", cfg_.path, doms_.size(),
                  run_dir_);
        if (detached_fd_ >= 0) detach_now();
        if (!o_.metrics.empty()) {
            auto m = api::MetricsEndpoint::create(o_.metrics, [this] { return prometheus(); });
            if (!m)
                log::error("{}", m.error().message());
            else
                metrics_ = std::move(m).value();
        }
        supervise();
        metrics_.reset();
        api_.reset();
        log::set_tap(nullptr);
        return 0;
    }

    // --detach: the parent waits on `fd` until the host is up (or this process dies).
    void set_detached_fd(int fd) { detached_fd_ = fd; }

  private:
    // Every domain runs: from now on the supervisor logs to RUN_DIR/vireo.log, and the
    // parent, which was waiting for this line, returns.
    void detach_now() {
        const std::string log_path = run_dir_ + "/vireo.log";
        const int log_fd = open_log(log_path).release();
        const std::string line = "up " + run_dir_ + "\n";
        (void)!::write(detached_fd_, line.data(), line.size());
        ::close(detached_fd_);
        detached_fd_ = -1;
        const int devnull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
        if (devnull >= 0) ::dup2(devnull, 0);
        if (log_fd >= 0) {
            ::dup2(log_fd, 1);
            ::dup2(log_fd, 2);
            ::close(log_fd);
        }
        if (devnull >= 0) ::close(devnull);
    }

    int error(const std::string& msg) {
        log::error("{}", msg);
        return 1;
    }

    void plan() {
        cgroups_ = Cgroups::open(std::filesystem::path(cfg_.path).stem().string());
        if (!cgroups_.enabled())
            log::warn("no cgroup v2 cpu controller: domain weights and caps are not enforced");
        for (const auto& c : cfg_.domains) {
            if (!c.autostart) continue;
            add_dom(c);
        }
    }

    // A domain that is starting or has a process keeps its pinned CPUs.
    static bool holds_cpus(const SupervisedDomain& d) {
        return d.pid() > 0 || d.state == DomainState::Starting;
    }

    // The CPUs of `pool` pinned by domains other than `except`.
    std::set<uint32_t> taken_cpus(const std::string& pool,
                                  const SupervisedDomain* except = nullptr) const {
        std::set<uint32_t> taken;
        for (const auto& d : doms_)
            if (&d != except && d.pool == pool && holds_cpus(d))
                for (int c : d.pinned)
                    taken.insert(static_cast<uint32_t>(c));
        return taken;
    }

    std::vector<int> pins_for(const std::string& pool, uint32_t vcpus,
                              const SupervisedDomain* except) const {
        return pick_pins(cfg_.pools.at(pool), vcpus, taken_cpus(pool, except));
    }

    std::string make_cgroup(const SupervisedDomain& d) const {
        return cgroups_.domain_dir(d.pool, cfg_.pools.at(d.pool).cpus, d.cfg->name, d.cfg->weight,
                                   d.cfg->cap);
    }

    SupervisedDomain& add_dom(const DomainConfig& c) {
        SupervisedDomain d;
        d.cfg = &c;
        d.pool = c.pool;
        d.pinned = pins_for(c.pool, c.vcpus, nullptr);
        doms_.push_back(std::move(d));
        SupervisedDomain& added = doms_.back();
        added.cgroup = make_cgroup(added);
        return added;
    }

    // Starts the domain's process (its console log opened first, appended to).
    Result<void> spawn(SupervisedDomain& d) {
        const std::string log_path = run_dir_ + "/" + d.cfg->name + ".log";
        UniqueFd log_fd = open_log(log_path);
        if (!log_fd) return fail_errno(errno, "cannot open {}", log_path);
        const auto text = launch_text(*d.cfg, run_dir_, cfg_.pools.at(d.pool), d.pinned);
        VIREO_TRY_ASSIGN(d.proc, DomainProcess::spawn(o_.vireo_exe, text, log_fd.get(), d.cgroup));
        d.state = DomainState::Starting;
        d.started = Clock::now();
        ++d.boots;
        return {};
    }

    // Waits (up to 120 s) for a starting domain's Ready; the error says what happened instead.
    Result<void> wait_ready(SupervisedDomain& d) {
        const auto m = d.proc.first_message(kReadyTimeoutMs);
        if (m && m->kind == domain::Message::Kind::Ready) return {};
        return fail(ErrorCode::System, "{}", not_ready_reason(d, m));
    }

    std::string not_ready_reason(const SupervisedDomain& d,
                                 const std::optional<domain::Message>& m) const {
        if (m && m->kind == domain::Message::Kind::Error) return m->detail;
        // It exited (or hung) before building: its last log line says why.
        std::ifstream f(run_dir_ + "/" + d.cfg->name + ".log");
        std::string l, last_line;
        while (std::getline(f, l))
            if (!l.empty()) last_line = l;
        return (last_line.empty() ? std::string("exited or timed out") : last_line) +
               " (log: " + run_dir_ + "/" + d.cfg->name + ".log)";
    }

    // A domain that broke the launch protocol is not trusted to run on.
    void protocol_error(SupervisedDomain& d) {
        d.last = fmt::format("broke the launch protocol (a line over {} bytes)", domain::kMaxLine);
        log::error("domain {}: {}; stopping it", d.cfg->name, d.last);
        d.destroying = true;
        ::kill(d.pid(), SIGKILL);
    }

    // A domain restarted by its policy: its first control line, without waiting (the
    // supervising thread holds mu_; API requests must not wait for a domain being built).
    void poll_restart(SupervisedDomain& d) {
        if (!d.restarting || d.pid() <= 0) return;
        if (d.proc.read() == DomainProcess::Read::TooLong) return protocol_error(d);
        auto line = d.proc.lines.next();
        if (!line && Clock::now() < d.ready_deadline) return;
        const auto m = line ? domain::decode(*line) : std::nullopt;
        d.restarting = false;
        if (m && m->kind == domain::Message::Kind::Ready) {
            go(d);
            return;
        }
        d.last = "restart failed: " + not_ready_reason(d, m);
        log::error("domain {}: {}", d.cfg->name, d.last);
        d.destroying = true;
        ::kill(d.pid(), SIGKILL);
    }

    void go(SupervisedDomain& d) {
        d.proc.go();
        d.state = DomainState::Running;
    }

    int abort_all(const SupervisedDomain& failed) {
        for (auto& d : doms_)
            if (d.pid() > 0) ::kill(d.pid(), SIGKILL);
        for (auto& d : doms_)
            if (d.pid() > 0) {
                ::waitpid(d.pid(), nullptr, 0);
                remove_stale_sockets(d);
            }
        return error(fmt::format("domain {} could not be built: {}; no domain was started",
                                 failed.cfg->name, failed.last));
    }

    SupervisedDomain* find(const std::string& name) {
        for (auto& d : doms_)
            if (d.cfg->name == name) return &d;
        return nullptr;
    }

    // Reads the state lines a domain wrote on its control socket ("paused", "running",
    // "crashed") without waiting. Called with mu_ held, so `list` always shows the latest.
    void drain_ctl(SupervisedDomain& d) {
        if (d.pid() <= 0 || !d.proc.ctl || d.state == DomainState::Starting) return;
        if (d.proc.read() == DomainProcess::Read::TooLong) return protocol_error(d);
        while (auto line = d.proc.lines.next()) {
            const auto m = domain::decode(*line);
            if (!m) continue;  // not a message: ignored
            const auto next = state_after(*m);
            if (!next) continue;
            d.state = *next;
            if (*next == DomainState::Crashed) d.last = "crashed (preserved)";
        }
    }

    static double cpu_seconds(pid_t pid) {
        return pid <= 0 ? 0 : read_proc_stat("/proc/" + std::to_string(pid) + "/stat").cpu_s;
    }

    Result<SupervisedDomain*> named(const api::Json& p) {
        VIREO_TRY_ASSIGN(const std::string name, api::string_param(p, "name"));
        SupervisedDomain* d = find(name);
        if (d == nullptr) return fail(ErrorCode::NotFound, "no domain \"{}\" on this host", name);
        return d;
    }

    api::Json pool_json(const std::string& name, const Pool& pool) {
        api::Json doms = api::Json::array();
        for (const auto& d : doms_)
            if (d.pool == name && d.pid() > 0) doms.push_back(d.cfg->name);
        return {{"name", name},
                {"policy", pool.policy == PoolPolicy::Pinned ? "pinned" : "shared"},
                {"cpus", std::vector<uint32_t>(pool.cpus.begin(), pool.cpus.end())},
                {"cpu_list", cpu_list(pool.cpus)},
                {"free_cpus", pool.policy == PoolPolicy::Pinned
                                  ? free_cpus(pool, taken_cpus(name)).size()
                                  : pool.cpus.size()},
                {"domains", doms}};
    }

    // Every running domain's metrics, for the Prometheus page (each domain asked on its own
    // socket, without holding mu_ meanwhile).
    std::string prometheus() {
        std::vector<std::pair<std::string, std::string>> targets;
        {
            std::lock_guard lock(mu_);
            for (const auto& d : doms_)
                if (d.pid() > 0 &&
                    (d.state == DomainState::Running || d.state == DomainState::Paused))
                    targets.emplace_back(d.cfg->name, run_dir_ + "/" + d.cfg->name + ".api");
        }
        std::vector<std::pair<std::string, api::Json>> all;
        for (const auto& [name, sock] : targets)
            if (auto m = api::call(sock, "metrics", {}, 2000)) all.emplace_back(name, *m);
        return api::prometheus_text(all);
    }

    void add_methods() {
        api_->add("list", [this](const api::Json&) -> Result<api::Json> {
            std::lock_guard lock(mu_);
            api::Json out = api::Json::array();
            for (auto& d : doms_) {
                drain_ctl(d);
                const double up =
                    d.pid() > 0 ? std::chrono::duration<double>(Clock::now() - d.started).count()
                                : 0;
                out.push_back({{"name", d.cfg->name},
                               {"id", d.pid()},
                               {"state", to_string(d.state)},
                               {"pool", d.pool},
                               {"vcpus", d.cfg->vcpus},
                               {"memory_bytes", d.cfg->memory},
                               {"uptime_s", up},
                               {"cpu_s", cpu_seconds(d.pid())},
                               {"boots", d.boots},
                               {"last", d.last},
                               {"api", run_dir_ + "/" + d.cfg->name + ".api"},
                               {"console", run_dir_ + "/" + d.cfg->name + ".console"}});
            }
            return out;
        });
        api_->add("destroy", [this](const api::Json& p) -> Result<api::Json> {
            std::lock_guard lock(mu_);
            VIREO_TRY_ASSIGN(SupervisedDomain * dp, named(p));
            SupervisedDomain& d = *dp;
            if (d.pid() <= 0)
                return fail(ErrorCode::BadState, "{} is not running ({})", d.cfg->name,
                            to_string(d.state));
            d.destroying = true;
            ::kill(d.pid(), SIGKILL);
            log::info("domain {}: destroyed", d.cfg->name);
            return api::Json{{"name", d.cfg->name}, {"state", "destroyed"}};
        });
        api_->add("down", [this](const api::Json& p) -> Result<api::Json> {
            if (p.contains("timeout_s")) {
                VIREO_TRY_ASSIGN(const uint64_t t, api::uint_param(p, "timeout_s", 3600));
                down_timeout_s_ = static_cast<int>(t);
            }
            down_requested_ = true;
            return api::Json{{"state", "going down"}, {"timeout_s", down_timeout_s_.load()}};
        });
        api_->add("cpupool.list", [this](const api::Json&) -> Result<api::Json> {
            std::lock_guard lock(mu_);
            api::Json out = api::Json::array();
            for (const auto& [name, pool] : cfg_.pools)
                out.push_back(pool_json(name, pool));
            return out;
        });
        // Blocking: it waits for the domain to take its new CPUs (mu_ is not held meanwhile,
        // so `list` keeps answering).
        api_->add(
            "cpupool.migrate",
            [this](const api::Json& p) -> Result<api::Json> {
                std::lock_guard one(migrate_mu_);  // one migration at a time
                std::unique_lock lock(mu_);
                VIREO_TRY_ASSIGN(SupervisedDomain * dp, named(p));
                SupervisedDomain& d = *dp;
                VIREO_TRY_ASSIGN(const std::string pool, api::string_param(p, "pool"));
                const auto it = cfg_.pools.find(pool);
                if (it == cfg_.pools.end())
                    return fail(ErrorCode::NotFound, "no pool \"{}\"", pool);
                if (d.pid() <= 0)
                    return fail(ErrorCode::BadState, "{} is not running ({})", d.cfg->name,
                                to_string(d.state));
                if (d.pool == pool)
                    return fail(ErrorCode::BadState, "{} is in pool {} already", d.cfg->name, pool);
                if (it->second.cpus.empty())
                    return fail(ErrorCode::BadState, "pool {} has no CPUs", pool);
                const auto pins = pins_for(pool, d.cfg->vcpus, &d);
                if (it->second.policy == PoolPolicy::Pinned && pins.size() < d.cfg->vcpus)
                    return fail(ErrorCode::BadState,
                                "pool {} is pinned and has {} free CPUs; {} needs {}", pool,
                                pins.size(), d.cfg->name, d.cfg->vcpus);
                std::vector<uint32_t> cpus(it->second.cpus.begin(), it->second.cpus.end());
                api::Json req{{"cpus", cpus}};
                if (!pins.empty()) {
                    api::Json lists = api::Json::array();
                    for (int c : pins)
                        lists.push_back(api::Json::array({c}));
                    req["vcpus"] = lists;
                }
                // The cgroup first: a cpuset there resets the threads' affinity to the new
                // pool's CPUs, which the old pool's cpuset would not have allowed.
                const std::string old_pool = d.pool, old_cg = d.cgroup;
                d.pool = pool;
                d.pinned = pins;
                d.cgroup = make_cgroup(d);
                if (!d.cgroup.empty()) {
                    if (auto r = Cgroups::move(d.cgroup, std::to_string(d.pid())); !r)
                        log::warn("domain {}: {}", d.cfg->name, r.error().message());
                    // KVM's per-VM worker thread (NX huge page recovery) is a kernel thread
                    // that KVM put into the domain's cgroup, outside its thread group: move it
                    // too.
                    if (!old_cg.empty()) Cgroups::move_all(old_cg, d.cgroup);
                    Cgroups::remove(old_cg);
                }
                const std::string sock = run_dir_ + "/" + d.cfg->name + ".api";
                lock.unlock();
                auto r = api::call(sock, "affinity.set", req, 5000);
                lock.lock();
                if (!r) {  // back where it was
                    if (!old_cg.empty() && !d.cgroup.empty()) {
                        if (d.pid() > 0) (void)Cgroups::move(old_cg, std::to_string(d.pid()));
                        Cgroups::remove(d.cgroup);
                    }
                    d.pool = old_pool;
                    d.cgroup = old_cg;
                    d.pinned = pins_for(old_pool, d.cfg->vcpus, &d);
                    return fail(ErrorCode::System, "{}: {}", d.cfg->name, r.error().message());
                }
                log::info("domain {}: moved from pool {} to pool {}", d.cfg->name, old_pool, pool);
                return api::Json{
                    {"name", d.cfg->name}, {"pool", pool}, {"cpus", cpus}, {"pins", pins}};
            },
            api::Server::Kind::Blocking);
        api_->add("dmesg", [](const api::Json&) -> Result<api::Json> {
            std::lock_guard lock(g_log_mu);
            return api::Json(std::vector<std::string>(g_log.begin(), g_log.end()));
        });
        // Blocking: it waits for the new domains to be built (up to kReadyTimeoutMs).
        api_->add(
            "create",
            [this](const api::Json& p) -> Result<api::Json> {
                VIREO_TRY_ASSIGN(const std::string path, api::string_param(p, "path"));
                return create(path);
            },
            api::Server::Kind::Blocking);
    }

    // `vireo create FILE.toml`: more domains on the running host, admitted against what the
    // host was admitted with (its memory, pinned CPUs), built, then started only if all are.
    Result<api::Json> create(const std::string& path) {
        // One at a time: admission looks at what the domains hold, which a concurrent create
        // would change between its check and its start.
        std::lock_guard one(create_mu_);
        HostConfig base;
        std::vector<const SupervisedDomain*> holding;
        {
            std::lock_guard lock(mu_);
            base = cfg_;
            base.domains.clear();
            for (const auto& d : doms_) {
                base.domains.push_back(*d.cfg);  // every name, for the duplicate check
                if (holds_cpus(d)) holding.push_back(&d);
            }
        }
        auto more = load_host_config(path, o_.facts.num_cpus, &base);
        if (!more) return fail(ErrorCode::InvalidArgument, "{}", more.error().message());
        // Admission: the domains that hold resources now, plus the new ones.
        HostConfig all = base;
        all.domains.clear();
        {
            std::lock_guard lock(mu_);
            for (const auto& d : doms_)
                if (holds_cpus(d)) {
                    all.domains.push_back(*d.cfg);
                    all.domains.back().pool = d.pool;
                }
        }
        for (const auto& d : more->domains)
            all.domains.push_back(d);
        if (auto r = admit(all, o_.facts); !r)
            return fail(ErrorCode::BadState, "admission refused: {}", r.error().message());
        std::vector<SupervisedDomain*> added;
        {
            std::lock_guard lock(mu_);
            for (const auto& c : more->domains) {
                created_.push_back(c);
                SupervisedDomain& d = add_dom(created_.back());
                if (auto r = spawn(d); !r) {
                    d.state = DomainState::Failed;
                    d.last = r.error().message();
                    return fail(ErrorCode::System, "{}: {}", c.name, d.last);
                }
                added.push_back(&d);
            }
        }
        // Build (unlocked: a large domain takes a while); the supervising thread leaves
        // "starting" domains' control sockets alone.
        std::string failed;
        for (SupervisedDomain* d : added) {
            if (auto r = wait_ready(*d); !r && failed.empty())
                failed = d->cfg->name + ": " + r.error().message();
        }
        std::lock_guard lock(mu_);
        if (!failed.empty()) {
            for (SupervisedDomain* d : added) {
                if (d->pid() > 0) {
                    d->destroying = true;
                    ::kill(d->pid(), SIGKILL);
                }
                d->state = DomainState::Failed;
            }
            return fail(ErrorCode::System, "not started: {}", failed);
        }
        api::Json names = api::Json::array();
        for (SupervisedDomain* d : added) {
            go(*d);
            names.push_back(d->cfg->name);
            log::info("domain {}: created from {} (pid {})", d->cfg->name, path, d->pid());
        }
        return api::Json{{"created", names}};
    }

    // A domain process that is gone (killed, crashed) cannot remove its own sockets: whatever
    // is still at its paths and answers no one is removed, so nothing stale is left behind.
    void remove_stale_sockets(const SupervisedDomain& d) const {
        for (const char* ext : {".api", ".console"})
            (void)remove_stale_socket(run_dir_ + "/" + d.cfg->name + ext);
    }

    void apply_policy(SupervisedDomain& d, int status) {
        remove_stale_sockets(d);
        d.restarting = false;
        const Ending end = judge_end(*d.cfg, status, d.state, d.destroying);
        const pid_t pid = d.pid();
        d.proc.pid = -1;
        d.state = end.state;
        if (!end.last.empty()) d.last = end.last;
        if (end.state == DomainState::Failed || end.state == DomainState::Destroyed) return;
        if (WIFSIGNALED(status))
            log::warn("domain {} (pid {}): {}", d.cfg->name, pid, d.last);
        else
            log::debug("domain {}: {}; on_* policy: {}", d.cfg->name, d.last,
                       to_string(end.action));
        if (end.action != Action::Restart || down_requested_) return;
        if (!d.restarts.allow(Clock::now() - d.started)) {
            d.state = DomainState::Crashed;
            d.last += fmt::format("; restarted {} times within a second each: given up",
                                  RestartGuard::kMaxQuickRestarts);
            log::error("domain {}: {}", d.cfg->name, d.last);
            return;
        }
        if (auto r = spawn(d); !r) {
            d.last = r.error().message();
            log::error("domain {}: restart failed: {}", d.cfg->name, d.last);
            return;
        }
        d.restarting = true;  // supervise() starts it once it reports ready
        d.ready_deadline = Clock::now() + std::chrono::milliseconds(kReadyTimeoutMs);
    }

    // The domain's ACPI power button, through its API.
    Result<api::Json> press_power_button(const SupervisedDomain& d) const {
        return api::call(run_dir_ + "/" + d.cfg->name + ".api", "shutdown", {}, 1000);
    }

    // Graceful stop of one domain: the ACPI power button, or SIGTERM (a hard but clean stop
    // of vireo run) where the guest cannot take it (crashed, or no answer).
    void press_or_term(SupervisedDomain& d) {
        if (d.state == DomainState::Running || d.state == DomainState::Paused) {
            auto r = press_power_button(d);
            if (r) return;
            log::warn("domain {}: ACPI shutdown: {}; stopping it", d.cfg->name,
                      r.error().message());
        }
        ::kill(d.pid(), SIGTERM);
    }

    void supervise() {
        sigset_t sigs;
        sigemptyset(&sigs);
        sigaddset(&sigs, SIGINT);
        sigaddset(&sigs, SIGTERM);
        sigaddset(&sigs, SIGCHLD);
        Clock::time_point down_deadline{}, next_press{};
        const auto repeat = std::chrono::seconds(api::kPowerButtonRepeatSeconds);
        bool going_down = false, termed = false;
        for (;;) {
            timespec ts{0, 100 * 1000 * 1000};
            const int sig = ::sigtimedwait(&sigs, nullptr, &ts);
            if (sig == SIGINT || sig == SIGTERM) down_requested_ = true;
            std::lock_guard lock(mu_);
            for (auto& d : doms_) {
                poll_restart(d);
                drain_ctl(d);  // preserved crashes, pauses
            }
            int status = 0;
            pid_t pid;
            while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0)
                for (auto& d : doms_)
                    if (d.pid() == pid) apply_policy(d, status);
            if (down_requested_ && !going_down) {
                going_down = true;
                const int timeout = down_timeout_s_.load();
                log::info("going down: ACPI shutdown of every domain, destroyed after {} s",
                          timeout);
                down_deadline = Clock::now() + std::chrono::seconds(timeout);
                next_press = Clock::now() + repeat;
                for (auto& d : doms_)
                    if (d.pid() > 0) {
                        if (timeout == 0)
                            ::kill(d.pid(), SIGTERM);
                        else
                            press_or_term(d);
                    }
            }
            // Press again for guests that were not listening yet (still booting).
            if (going_down && !termed && Clock::now() > next_press) {
                next_press = Clock::now() + repeat;
                for (auto& d : doms_)
                    if (d.pid() > 0 && d.state == DomainState::Running) (void)press_power_button(d);
            }
            if (going_down && !termed && Clock::now() > down_deadline) {
                termed = true;
                for (auto& d : doms_)
                    if (d.pid() > 0) {
                        log::warn(
                            "domain {}: still running after the shutdown timeout; stopping it",
                            d.cfg->name);
                        ::kill(d.pid(), SIGTERM);
                    }
            }
            if (termed && Clock::now() > down_deadline + std::chrono::seconds(5))
                for (auto& d : doms_)
                    if (d.pid() > 0) ::kill(d.pid(), SIGKILL);
            // Stays up (listing stopped and crashed domains) until `vireo down` or a signal.
            bool any = false;
            for (const auto& d : doms_)
                any = any || d.pid() > 0;
            if (!any && down_requested_) return;
        }
    }

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
    std::unique_ptr<api::MetricsEndpoint> metrics_;
    std::atomic<int> down_timeout_s_{30};
    std::atomic<bool> down_requested_{false};
    int detached_fd_ = -1;  // --detach: where to say the host is up
};

}  // namespace

std::string run_dir_for(const HostConfig& config) {
    if (!config.run_dir.empty()) return config.run_dir;
    const std::string stem = std::filesystem::path(config.path).stem().string();
    if (::geteuid() == 0) return "/run/vireo/" + stem;
    if (const char* x = std::getenv("XDG_RUNTIME_DIR"); x != nullptr && *x)
        return std::string(x) + "/vireo/" + stem;
    return fmt::format("/tmp/vireo-{}/{}", ::geteuid(), stem);
}

int up(const HostConfig& config, const UpOptions& options) {
    // SIGINT/SIGTERM/SIGCHLD are taken with sigtimedwait; blocked before any thread starts.
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGCHLD);
    ::sigprocmask(SIG_BLOCK, &sigs, nullptr);
    ::signal(SIGPIPE, SIG_IGN);
    int up_fd = -1;
    if (options.detach) {
        // The parent returns once every domain runs (0), or with the child's failure (its
        // error is already on stderr), so `vireo up --detach && ...` can rely on the host.
        int p[2];
        if (::pipe2(p, O_CLOEXEC) != 0) {
            log::error("--detach: pipe: {}", std::strerror(errno));
            return 1;
        }
        const pid_t child = ::fork();
        if (child < 0) {
            log::error("--detach: fork: {}", std::strerror(errno));
            return 1;
        }
        if (child != 0) {
            ::close(p[1]);
            char buf[512];
            ssize_t n, got = 0;
            while (got < static_cast<ssize_t>(sizeof buf) - 1 &&
                   (n = ::read(p[0], buf + got, sizeof buf - 1 - static_cast<size_t>(got))) > 0)
                got += n;
            ::close(p[0]);
            if (got > 3 && std::string_view(buf, 3) == "up ") {
                const std::string dir(buf + 3, static_cast<size_t>(got - 4));
                std::printf("vireo: host %s is up in the background (log: %s/vireo.log)\n",
                            config.path.c_str(), dir.c_str());
                return 0;
            }
            int status = 0;
            ::waitpid(child, &status, 0);
            return WIFEXITED(status) && WEXITSTATUS(status) != 0 ? WEXITSTATUS(status) : 1;
        }
        ::close(p[0]);
        ::setsid();
        up_fd = p[1];
    }
    Supervisor s(config, options);
    s.set_detached_fd(up_fd);
    return s.run();
}

}  // namespace vireo::host
