#include <signal.h>

#include <ctime>
#include <fstream>

#include "api/params.hpp"
#include "base/proc_stat.hpp"
#include "host/cpu_pools.hpp"
#include "host/supervisor_impl.hpp"

namespace vireo::host {

namespace {

// The host log (`vireo dmesg`): the supervisor's last kLogLines lines, with times.
constexpr size_t kLogLines = 1000;
std::mutex g_log_mu;
std::deque<std::string> g_log;

}  // namespace

void host_log_tap(log::Level level, std::string_view text) noexcept {
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

std::vector<std::string> host_log_lines() {
    std::lock_guard lock(g_log_mu);
    return {g_log.begin(), g_log.end()};
}

double Supervisor::cpu_seconds(pid_t pid) {
    return pid <= 0 ? 0 : read_proc_stat("/proc/" + std::to_string(pid) + "/stat").cpu_s;
}

Result<SupervisedDomain*> Supervisor::named(const api::Json& p) {
    VIREO_TRY_ASSIGN(const std::string name, api::string_param(p, "name"));
    SupervisedDomain* d = find(name);
    if (d == nullptr) return fail(ErrorCode::NotFound, "no domain \"{}\" on this host", name);
    return d;
}

api::Json Supervisor::pool_json(const std::string& name, const Pool& pool) {
    api::Json doms = api::Json::array();
    for (const auto& d : doms_)
        if (d.pool == name && d.pid() > 0) doms.push_back(d.cfg->name);
    return {
        {"name", name},
        {"policy", pool.policy == PoolPolicy::Pinned ? "pinned" : "shared"},
        {"cpus", std::vector<uint32_t>(pool.cpus.begin(), pool.cpus.end())},
        {"cpu_list", cpu_list(pool.cpus)},
        {"free_cpus", pool.policy == PoolPolicy::Pinned ? free_cpus(pool, taken_cpus(name)).size()
                                                        : pool.cpus.size()},
        {"domains", doms}};
}

std::string Supervisor::prometheus() {
    std::vector<std::pair<std::string, std::string>> targets;
    {
        std::lock_guard lock(mu_);
        for (const auto& d : doms_)
            if (d.pid() > 0 && (d.state == DomainState::Running || d.state == DomainState::Paused))
                targets.emplace_back(d.cfg->name, run_dir_ + "/" + d.cfg->name + ".api");
    }
    std::vector<std::pair<std::string, api::Json>> all;
    for (const auto& [name, sock] : targets)
        if (auto m = api::call(sock, "metrics", {}, 2000)) all.emplace_back(name, *m);
    return api::prometheus_text(all);
}

void Supervisor::add_methods() {
    api_->add("list", [this](const api::Json&) -> Result<api::Json> {
        std::lock_guard lock(mu_);
        api::Json out = api::Json::array();
        for (auto& d : doms_) {
            if (d.gone) continue;
            drain_ctl(d);
            const double up =
                d.pid() > 0 ? std::chrono::duration<double>(Clock::now() - d.started).count() : 0;
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
            if (it == cfg_.pools.end()) return fail(ErrorCode::NotFound, "no pool \"{}\"", pool);
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
            return api::Json{{"name", d.cfg->name}, {"pool", pool}, {"cpus", cpus}, {"pins", pins}};
        },
        api::Server::Kind::Blocking);
    api_->add("dmesg",
              [](const api::Json&) -> Result<api::Json> { return api::Json(host_log_lines()); });
    // Blocking: it waits for the new domains to be built (up to kReadyTimeoutMs).
    api_->add(
        "create",
        [this](const api::Json& p) -> Result<api::Json> {
            VIREO_TRY_ASSIGN(const std::string path, api::string_param(p, "path"));
            return create(path);
        },
        api::Server::Kind::Blocking);
    // Blocking: it waits for the incoming domain to listen (its machine allocated).
    api_->add(
        "receive", [this](const api::Json& p) -> Result<api::Json> { return receive(p); },
        api::Server::Kind::Blocking);
}

Result<api::Json> Supervisor::create(const std::string& path) {
    // One at a time: admission looks at what the domains hold, which a concurrent create
    // would change between its check and its start.
    std::lock_guard one(create_mu_);
    HostConfig base;
    {
        std::lock_guard lock(mu_);
        base = cfg_;
        base.domains.clear();
        for (const auto& d : doms_)
            if (!d.gone) base.domains.push_back(*d.cfg);  // every name, for the duplicate check
    }
    auto more = load_host_config(path, o_.facts.num_cpus, &base);
    if (!more) return fail(ErrorCode::InvalidArgument, "{}", more.error().message());
    return add_domains(more->domains, path);
}

Result<api::Json> Supervisor::receive(const api::Json& p) {
    std::lock_guard one(create_mu_);  // admission as create's, one at a time with it
    VIREO_TRY_ASSIGN(const std::string name, api::string_param(p, "name"));
    VIREO_TRY_ASSIGN(const uint64_t vcpus, api::uint_param(p, "vcpus", kMaxDomainVcpus));
    VIREO_TRY_ASSIGN(const uint64_t memory, api::uint_param(p, "memory_bytes", kMaxDomainMemory));
    DomainConfig c;
    c.name = name;
    c.vcpus = static_cast<uint32_t>(vcpus);
    c.memory = memory;
    if (p.contains("pool")) {
        VIREO_TRY_ASSIGN(c.pool, api::string_param(p, "pool"));
    }
    VIREO_TRY_ASSIGN(c.allow_software_kvm, api::bool_param(p, "allow_software_kvm", false));
    // Its machine comes with it; here it only runs: it reboots in place, and when it powers off
    // or crashes it is not started again (there is no kernel here to boot).
    c.on_poweroff = c.on_crash = Action::Destroy;
    c.on_reboot = Action::Restart;
    c.incoming = "unix:" + run_dir_ + "/" + name + ".incoming";
    if (vcpus == 0 || memory < kMinDomainMemory)
        return fail(ErrorCode::InvalidArgument, "receive: {} vCPUs and {} bytes of memory?", vcpus,
                    memory);
    if (!valid_name(name))
        return fail(ErrorCode::InvalidArgument, "receive: \"{}\" is not a domain name", name);
    if (cfg_.pools.find(c.pool) == cfg_.pools.end())
        return fail(ErrorCode::NotFound, "receive: no pool \"{}\" on this host", c.pool);
    {
        std::lock_guard lock(mu_);
        if (SupervisedDomain* d = find(name); d != nullptr) {
            // A reception that failed before may be tried again; any other domain keeps its name.
            if (d->cfg->incoming.empty() || d->pid() > 0)
                return fail(ErrorCode::BadState, "a domain \"{}\" is on this host already ({})",
                            name, to_string(d->state));
            d->gone = true;
        }
    }
    VIREO_TRY(add_domains({c}, "a migration"));
    return api::Json{{"name", name}, {"address", c.incoming}, {"state", "incoming"}};
}

Result<api::Json> Supervisor::add_domains(const std::vector<DomainConfig>& more,
                                          const std::string& from) {
    // Admission: the domains that hold resources now, plus the new ones.
    HostConfig all;
    {
        std::lock_guard lock(mu_);
        all = cfg_;
        all.domains.clear();
        for (const auto& d : doms_)
            if (holds_cpus(d)) {
                all.domains.push_back(*d.cfg);
                all.domains.back().pool = d.pool;
            }
    }
    for (const auto& d : more)
        all.domains.push_back(d);
    if (auto r = admit(all, o_.facts); !r)
        return fail(ErrorCode::BadState, "admission refused: {}", r.error().message());
    std::vector<SupervisedDomain*> added;
    {
        std::lock_guard lock(mu_);
        for (const auto& c : more) {
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
        log::info("domain {}: created from {} (pid {})", d->cfg->name, from, d->pid());
    }
    return api::Json{{"created", names}};
}

}  // namespace vireo::host
