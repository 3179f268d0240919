#include "host/supervisor.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "base/checked.hpp"
#include "base/private_dir.hpp"
#include "base/unique_fd.hpp"
#include "base/unix_socket.hpp"
#include "domain/device_options.hpp"
#include "host/cpu_pools.hpp"
#include "host/supervisor_impl.hpp"

namespace vireo::host {

namespace {

// A log in the run directory (which ensure_private_dir made the caller's alone): owner-only,
// appended to, never through a symbolic link.
UniqueFd open_log(const std::string& path) {
    return UniqueFd(::open(
        path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600));
}

}  // namespace

int Supervisor::run() {
    run_dir_ = run_dir_for(cfg_);
    if (auto r = ensure_private_dir(run_dir_); !r) return error(r.error().message());
    auto server = api::Server::create(run_dir_ + "/vireo.sock");
    if (!server)
        return error(fmt::format("{} (is this host already up?)", server.error().message()));
    api_ = std::move(server).value();
    log::set_tap(host_log_tap);
    down_timeout_s_ = o_.down_timeout_s;
    // The shared regions, before any domain is built (admission counted them).
    auto shm = SharedRegions::allocate(cfg_.shm);
    if (!shm) return error(shm.error().message());
    shm_ = std::move(shm).value();
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
        else {
            metrics_ = std::move(m).value();
            metrics_->start();
        }
    }
    supervise();
    metrics_.reset();
    api_.reset();
    log::set_tap(nullptr);
    return 0;
}

void Supervisor::detach_now() {
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

int Supervisor::error(const std::string& msg) {
    log::error("{}", msg);
    return 1;
}

void Supervisor::plan() {
    cgroups_ = Cgroups::open(std::filesystem::path(cfg_.path).stem().string());
    if (!cgroups_.enabled())
        log::warn("no cgroup v2 cpu controller: domain weights and caps are not enforced");
    for (const auto& c : cfg_.domains) {
        if (!c.autostart) continue;
        add_dom(c);
    }
}

bool Supervisor::holds_cpus(const SupervisedDomain& d) {
    return d.pid() > 0 || d.state == DomainState::Starting;
}

std::set<uint32_t> Supervisor::taken_cpus(const std::string& pool,
                                          const SupervisedDomain* except) const {
    std::set<uint32_t> taken;
    for (const auto& d : doms_)
        if (&d != except && d.pool == pool && holds_cpus(d))
            for (int c : d.pinned)
                taken.insert(static_cast<uint32_t>(c));
    return taken;
}

std::vector<int> Supervisor::pins_for(const std::string& pool, uint32_t vcpus,
                                      const SupervisedDomain* except) const {
    return pick_pins(cfg_.pools.at(pool), vcpus, taken_cpus(pool, except));
}

std::string Supervisor::make_cgroup(const SupervisedDomain& d) const {
    // The domain's memory budget, as admission counted it; every thread: one per vCPU and the
    // VMM's.
    const uint64_t memory_max = saturating_add(domain_memory_budget(*d.cfg), kSanitizerMemoryShare);
    const uint64_t pids_max = uint64_t{d.cfg->vcpus} + kVmmThreads;
    return cgroups_.domain_dir(d.pool, cfg_.pools.at(d.pool).cpus, d.cfg->name, d.cfg->weight,
                               d.cfg->cap, memory_max, pids_max);
}

uint32_t Supervisor::free_id() const {
    for (uint32_t slot = 0; slot < kMaxDomainIds; ++slot) {
        const uint32_t id = cfg_.uid_base + slot;
        if (std::none_of(doms_.begin(), doms_.end(),
                         [id](const SupervisedDomain& d) { return !d.gone && d.uid == id; }))
            return id;
    }
    return 0;  // more domains than ids: admission keeps it from happening
}

SupervisedDomain& Supervisor::add_dom(const DomainConfig& c) {
    SupervisedDomain d;
    d.uid = free_id();
    d.cfg = &c;
    d.pool = c.pool;
    d.pinned = pins_for(c.pool, c.vcpus, nullptr);
    doms_.push_back(std::move(d));
    SupervisedDomain& added = doms_.back();
    added.cgroup = make_cgroup(added);
    return added;
}

Result<void> Supervisor::spawn(SupervisedDomain& d) {
    const std::string log_path = run_dir_ + "/" + d.cfg->name + ".log";
    UniqueFd log_fd = open_log(log_path);
    if (!log_fd) return fail_errno(errno, "cannot open {}", log_path);
    auto text = launch_text(*d.cfg, run_dir_, cfg_.pools.at(d.pool), d.pinned, d.uid);
    std::vector<int> fds;
    shm_.hand_to(d.cfg->name, text, fds, kFirstInheritedFd);
    // The owner of a region starting as a new process finds it cleared (docs/shm.md).
    if (d.boots > 0) shm_.clear_owned(d.cfg->name);
    VIREO_TRY_ASSIGN(d.proc, DomainProcess::spawn(o_.vireo_exe, text, log_fd.get(), d.cgroup,
                                                  d.cfg->incoming, fds));
    d.state = DomainState::Starting;
    d.started = Clock::now();
    ++d.boots;
    return {};
}

Result<void> Supervisor::wait_ready(SupervisedDomain& d) {
    const auto m = d.proc.first_message(kReadyTimeoutMs);
    if (m && m->kind == domain::Message::Kind::Ready) return {};
    return fail(ErrorCode::System, "{}", not_ready_reason(d, m));
}

std::string Supervisor::not_ready_reason(const SupervisedDomain& d,
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

void Supervisor::protocol_error(SupervisedDomain& d) {
    d.last = fmt::format("broke the launch protocol (a line over {} bytes)", domain::kMaxLine);
    log::error("domain {}: {}; stopping it", d.cfg->name, d.last);
    d.destroying = true;
    ::kill(d.pid(), SIGKILL);
}

void Supervisor::poll_restart(SupervisedDomain& d) {
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

void Supervisor::go(SupervisedDomain& d) {
    d.proc.go();
    // An incoming domain says "running" once its migration has arrived.
    d.state = d.cfg->incoming.empty() ? DomainState::Running : DomainState::Incoming;
}

int Supervisor::abort_all(const SupervisedDomain& failed) {
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

SupervisedDomain* Supervisor::find(const std::string& name) {
    for (auto& d : doms_)
        if (!d.gone && d.cfg->name == name) return &d;
    return nullptr;
}

void Supervisor::drain_ctl(SupervisedDomain& d) {
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

// A sandboxed domain cannot remove its sockets (its root no longer holds them): the
// supervisor does, once nothing answers on them.
void Supervisor::remove_stale_sockets(const SupervisedDomain& d) const {
    for (const char* ext : {".api", ".console", ".incoming"})
        (void)remove_stale_socket(run_dir_ + "/" + d.cfg->name + ext);
    if (!d.cfg->vsock.empty())
        if (auto v = domain::parse_vsock_option(d.cfg->vsock); v)
            (void)remove_stale_socket(v->socket);
}

void Supervisor::apply_policy(SupervisedDomain& d, int status) {
    drain_ctl(d);  // its last lines ("migrated") before its end is judged
    remove_stale_sockets(d);
    d.restarting = false;
    const Ending end = judge_end(*d.cfg, status, d.state, d.destroying);
    const pid_t pid = d.pid();
    d.proc.pid = -1;
    d.state = end.state;
    if (!end.last.empty()) d.last = end.last;
    if (end.state == DomainState::Failed || end.state == DomainState::Destroyed) return;
    if (end.state == DomainState::Migrated) {
        d.gone = true;  // its CPUs, id and name are free: it is another host's now
        Cgroups::remove(d.cgroup);
        log::info("domain {}: migrated to another vireo; no longer on this host", d.cfg->name);
        return;
    }
    if (WIFSIGNALED(status))
        log::warn("domain {} (pid {}): {}", d.cfg->name, pid, d.last);
    else
        log::debug("domain {}: {}; on_* policy: {}", d.cfg->name, d.last, to_string(end.action));
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

Result<api::Json> Supervisor::press_power_button(const SupervisedDomain& d) const {
    return api::call(run_dir_ + "/" + d.cfg->name + ".api", "shutdown", {}, 1000);
}

void Supervisor::press_or_term(SupervisedDomain& d) {
    if (d.state == DomainState::Running || d.state == DomainState::Paused) {
        auto r = press_power_button(d);
        if (r) return;
        log::warn("domain {}: ACPI shutdown: {}; stopping it", d.cfg->name, r.error().message());
    }
    ::kill(d.pid(), SIGTERM);
}

void Supervisor::supervise() {
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
            log::info("going down: ACPI shutdown of every domain, destroyed after {} s", timeout);
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
                    log::warn("domain {}: still running after the shutdown timeout; stopping it",
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
