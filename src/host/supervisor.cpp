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
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "api/server.hpp"
#include "base/log.hpp"
#include "base/unique_fd.hpp"

namespace vireo::host {

namespace {

using Clock = std::chrono::steady_clock;

struct Dom {
    const Domain* cfg = nullptr;
    pid_t pid = -1;
    UniqueFd ctl;  // the socketpair end: "ready"/"error: ..."/"crashed" in, 'g' out
    std::string state = "starting";  // starting, running, crashed, shutoff, destroyed
    std::string last;                // why it last stopped
    std::vector<int> pinned;         // host CPU per vCPU (pinned pools)
    std::string cgroup;              // cgroup v2 directory, if any
    Clock::time_point started{};
    unsigned boots = 0;
    unsigned quick_restarts = 0;
    bool destroying = false;
};

std::string cpu_list(const std::set<uint32_t>& cpus) {
    std::string s;
    for (uint32_t c : cpus)
        s += (s.empty() ? "" : ",") + std::to_string(c);
    return s;
}

bool write_file(const std::string& path, const std::string& text) {
    std::ofstream f(path);
    f << text;
    f.flush();
    return static_cast<bool>(f);
}

// The cgroup v2 mount with the cpu controller, or "".
std::string cgroup2_root() {
    std::ifstream m("/proc/mounts");
    std::string dev, dir, type, rest;
    while (m >> dev >> dir >> type && std::getline(m, rest)) {
        if (type != "cgroup2") continue;
        std::ifstream c(dir + "/cgroup.controllers");
        std::string ctl;
        while (c >> ctl)
            if (ctl == "cpu") return dir;
    }
    return "";
}

std::vector<std::string> domain_args(const Dom& d, const UpOptions& o, const std::string& run_dir,
                                     const HostConfig& cfg) {
    const Domain& c = *d.cfg;
    std::vector<std::string> a{o.vireo_exe,  "run",
                               "--name",     c.name,
                               "--memory",   std::to_string(c.memory >> 20) + "M",
                               "--cpus",     std::to_string(c.vcpus),
                               "--console",  "stdio",
                               "--ready-fd", "3"};
    if (!c.kernel.empty()) a.insert(a.end(), {"--kernel", c.kernel});
    if (!c.initrd.empty()) a.insert(a.end(), {"--initrd", c.initrd});
    if (!c.cmdline.empty()) a.insert(a.end(), {"--cmdline", c.cmdline});
    for (const auto& disk : c.disks)
        a.insert(a.end(), {"--disk", disk});
    for (const auto& net : c.nets)
        a.insert(a.end(), {"--net", net});
    if (!c.vsock.empty()) a.insert(a.end(), {"--vsock", c.vsock});
    if (c.rng) a.push_back("--rng");
    if (c.balloon) a.push_back("--balloon");
    if (c.allow_software_kvm) a.push_back("--allow-software-kvm");
    a.insert(a.end(), {"--api-socket", run_dir + "/" + c.name + ".api"});
    a.insert(a.end(), {"--memory-backing", to_string(c.memory_backing)});
    // A reboot restarts in place when that is the policy (resources stay reserved).
    a.insert(a.end(), {"--on-reboot", c.on_reboot == Action::Restart ? "restart" : "exit"});
    if (c.on_crash == Action::Preserve) a.insert(a.end(), {"--on-crash", "preserve"});
    const Pool& pool = cfg.pools.at(c.pool);
    if (!d.pinned.empty()) {
        std::string pins;
        for (int cpu : d.pinned)
            pins += (pins.empty() ? "" : ",") + std::to_string(cpu);
        a.insert(a.end(), {"--pin-vcpus", pins, "--cpu-affinity", cpu_list(pool.cpus)});
    } else {
        a.insert(a.end(), {"--cpu-affinity", cpu_list(pool.cpus)});
    }
    return a;
}

class Supervisor {
  public:
    Supervisor(const HostConfig& cfg, const UpOptions& o) : cfg_(cfg), o_(o) {}

    int run() {
        run_dir_ = run_dir_for(cfg_);
        std::error_code ec;
        std::filesystem::create_directories(run_dir_, ec);
        if (ec)
            return error(fmt::format("cannot create run directory {}: {}", run_dir_, ec.message()));
        auto server = api::Server::create(run_dir_ + "/vireo.sock");
        if (!server)
            return error(fmt::format("{} (is this host already up?)", server.error().message()));
        api_ = std::move(server).value();
        plan();
        // 1. Build every domain; 2. start all only when all are ready.
        for (auto& d : doms_)
            if (!spawn(d)) return abort_all(d);
        for (auto& d : doms_)
            if (!wait_ready(d)) return abort_all(d);
        for (auto& d : doms_)
            go(d);
        log::info("host {}: {} domain(s) running; consoles and API in {}", cfg_.path, doms_.size(),
                  run_dir_);
        add_methods();
        (void)api_->start();
        supervise();
        api_.reset();
        return 0;
    }

  private:
    int error(const std::string& msg) {
        log::error("{}", msg);
        return 1;
    }

    void plan() {
        const std::string cg = cgroup2_root();
        std::string cg_host;
        if (!cg.empty()) {
            cg_host = cg + "/vireo-" + std::filesystem::path(cfg_.path).stem().string();
            ::mkdir(cg_host.c_str(), 0755);
            (void)write_file(cg + "/cgroup.subtree_control", "+cpu");
            if (!write_file(cg_host + "/cgroup.subtree_control", "+cpu")) cg_host.clear();
        }
        if (cg_host.empty())
            log::warn("no cgroup v2 cpu controller: domain weights and caps are not enforced");
        std::map<std::string, std::vector<uint32_t>> free_cpus;
        for (const auto& [name, pool] : cfg_.pools)
            free_cpus[name] = std::vector<uint32_t>(pool.cpus.begin(), pool.cpus.end());
        doms_.reserve(cfg_.domains.size());
        for (const auto& c : cfg_.domains) {
            if (!c.autostart) continue;
            Dom d;
            d.cfg = &c;
            if (cfg_.pools.at(c.pool).policy == PoolPolicy::Pinned) {
                auto& left = free_cpus[c.pool];
                for (uint32_t v = 0; v < c.vcpus && !left.empty(); ++v) {
                    d.pinned.push_back(static_cast<int>(left.front()));
                    left.erase(left.begin());
                }
            }
            if (!cg_host.empty()) {
                d.cgroup = cg_host + "/" + c.name;
                ::mkdir(d.cgroup.c_str(), 0755);
                (void)write_file(d.cgroup + "/cpu.weight", std::to_string(c.weight));
                (void)write_file(
                    d.cgroup + "/cpu.max",
                    c.cap == 0 ? "max 100000" : std::to_string(c.cap * 1000) + " 100000");
            }
            doms_.push_back(std::move(d));
        }
    }

    bool spawn(Dom& d) {
        int sv[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return false;
        UniqueFd ours(sv[0]), theirs(sv[1]);
        const std::string log_path = run_dir_ + "/" + d.cfg->name + ".log";
        UniqueFd log_fd(::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
        if (!log_fd) {
            d.last = fmt::format("cannot open {}: {}", log_path, std::strerror(errno));
            return false;
        }
        const auto args = domain_args(d, o_, run_dir_, cfg_);
        std::vector<char*> argv;
        for (const auto& s : args)
            argv.push_back(const_cast<char*>(s.c_str()));
        argv.push_back(nullptr);
        const pid_t pid = ::fork();
        if (pid < 0) {
            d.last = fmt::format("fork: {}", std::strerror(errno));
            return false;
        }
        if (pid == 0) {
            ::setpgid(0, 0);  // its own process group: a ^C on the supervisor is not its
            if (!d.cgroup.empty()) (void)write_file(d.cgroup + "/cgroup.procs", "0");
            ::dup2(theirs.get(), 3);
            const int devnull = ::open("/dev/null", O_RDONLY);
            ::dup2(devnull, 0);
            ::dup2(log_fd.get(), 1);
            ::dup2(log_fd.get(), 2);
            sigset_t none;
            sigemptyset(&none);
            ::sigprocmask(SIG_SETMASK, &none, nullptr);
            ::execv(argv[0], argv.data());
            _exit(127);
        }
        d.pid = pid;
        d.ctl = std::move(ours);
        d.state = "starting";
        d.started = Clock::now();
        ++d.boots;
        return true;
    }

    // Reads one line from the domain's control socket (up to `timeout`).
    std::string read_line(Dom& d, int timeout_ms) {
        std::string line;
        const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
        while (line.empty() || line.back() != '\n') {
            const auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
            if (left.count() <= 0) return "";
            pollfd p{d.ctl.get(), POLLIN, 0};
            if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return "";
            char c;
            if (::read(d.ctl.get(), &c, 1) != 1) return line;
            line += c;
        }
        line.pop_back();
        return line;
    }

    bool wait_ready(Dom& d) {
        const std::string line = read_line(d, 120000);
        if (line == "ready") return true;
        if (line.rfind("error: ", 0) == 0) {
            d.last = line.substr(7);
        } else {
            // It exited (or hung) before building: its last log line says why.
            std::ifstream f(run_dir_ + "/" + d.cfg->name + ".log");
            std::string l, last_line;
            while (std::getline(f, l))
                if (!l.empty()) last_line = l;
            d.last = (last_line.empty() ? std::string("exited or timed out") : last_line) +
                     " (log: " + run_dir_ + "/" + d.cfg->name + ".log)";
        }
        return false;
    }

    void go(Dom& d) {
        (void)!::write(d.ctl.get(), "g", 1);
        d.state = "running";
    }

    int abort_all(const Dom& failed) {
        for (auto& d : doms_)
            if (d.pid > 0) ::kill(d.pid, SIGKILL);
        for (auto& d : doms_)
            if (d.pid > 0) ::waitpid(d.pid, nullptr, 0);
        return error(fmt::format("domain {} could not be built: {}; no domain was started",
                                 failed.cfg->name, failed.last));
    }

    Dom* find(const std::string& name) {
        for (auto& d : doms_)
            if (d.cfg->name == name) return &d;
        return nullptr;
    }

    void add_methods() {
        api_->add("list", [this](const api::Json&) {
            std::lock_guard lock(mu_);
            api::Json out = api::Json::array();
            for (const auto& d : doms_) {
                double cpu_s = 0;
                if (d.pid > 0) {
                    std::ifstream st("/proc/" + std::to_string(d.pid) + "/stat");
                    std::string s((std::istreambuf_iterator<char>(st)), {});
                    const size_t rp = s.rfind(')');
                    if (rp != std::string::npos) {
                        std::istringstream in(s.substr(rp + 2));
                        std::string f;
                        unsigned long long ut = 0, stt = 0;
                        for (int i = 3; i <= 15 && in >> f; ++i) {
                            if (i == 14) ut = std::stoull(f);
                            if (i == 15) stt = std::stoull(f);
                        }
                        cpu_s = static_cast<double>(ut + stt) /
                                static_cast<double>(::sysconf(_SC_CLK_TCK));
                    }
                }
                const double up =
                    d.pid > 0 ? std::chrono::duration<double>(Clock::now() - d.started).count() : 0;
                out.push_back({{"name", d.cfg->name},
                               {"id", d.pid},
                               {"state", d.state},
                               {"pool", d.cfg->pool},
                               {"vcpus", d.cfg->vcpus},
                               {"memory_bytes", d.cfg->memory},
                               {"uptime_s", up},
                               {"cpu_s", cpu_s},
                               {"boots", d.boots},
                               {"last", d.last}});
            }
            return out;
        });
        api_->add("destroy", [this](const api::Json& p) {
            std::lock_guard lock(mu_);
            const std::string name = p.at("name").get<std::string>();
            Dom* d = find(name);
            if (d == nullptr) throw api::ApiError("not-found", "no domain \"" + name + "\"");
            if (d->pid <= 0) throw api::ApiError("bad-state", name + " is not running");
            d->destroying = true;
            ::kill(d->pid, SIGKILL);
            return api::Json{{"name", name}, {"state", "destroyed"}};
        });
        api_->add("down", [this](const api::Json&) {
            down_requested_ = true;
            return api::Json{{"state", "going down"}};
        });
    }

    void apply_policy(Dom& d, int status) {
        Action action = Action::Destroy;
        if (d.destroying) {
            d.last = "destroyed";
            d.state = "destroyed";
            d.pid = -1;
            return;
        }
        if (WIFSIGNALED(status)) {
            d.last = fmt::format("killed by signal {}", WTERMSIG(status));
            log::warn("domain {} (pid {}): {}", d.cfg->name, d.pid, d.last);
            action = d.cfg->on_crash == Action::Preserve ? Action::Destroy : d.cfg->on_crash;
            d.state = "crashed";
        } else {
            const int code = WEXITSTATUS(status);
            switch (code) {
                case 0:
                    d.last = "powered off";
                    action = d.cfg->on_poweroff;
                    d.state = "shutoff";
                    break;
                case 6:
                    d.last = "rebooted";
                    action = d.cfg->on_reboot;
                    d.state = "shutoff";
                    break;
                default:
                    d.last = fmt::format("crashed (vireo run exit status {})", code);
                    action = d.cfg->on_crash;
                    d.state = "crashed";
                    break;
            }
            log::debug("domain {}: {}; on_* policy: {}", d.cfg->name, d.last, to_string(action));
        }
        d.pid = -1;
        if (action == Action::Restart && !down_requested_) {
            // A domain that stops again within a second of every start, ten times in a row,
            // is not restarted again (it would spin).
            const bool quick = Clock::now() - d.started < std::chrono::seconds(1);
            d.quick_restarts = quick ? d.quick_restarts + 1 : 0;
            if (d.quick_restarts >= 10) {
                d.state = "crashed";
                d.last += "; restarted 10 times within a second each: given up";
                log::error("domain {}: {}", d.cfg->name, d.last);
                return;
            }
            if (spawn(d) && wait_ready(d))
                go(d);
            else
                log::error("domain {}: restart failed: {}", d.cfg->name, d.last);
        }
    }

    void supervise() {
        sigset_t sigs;
        sigemptyset(&sigs);
        sigaddset(&sigs, SIGINT);
        sigaddset(&sigs, SIGTERM);
        sigaddset(&sigs, SIGCHLD);
        Clock::time_point down_deadline{};
        bool going_down = false;
        for (;;) {
            timespec ts{0, 200 * 1000 * 1000};
            const int sig = ::sigtimedwait(&sigs, nullptr, &ts);
            if (sig == SIGINT || sig == SIGTERM) down_requested_ = true;
            // Preserved crashes report on the control socket and keep running.
            {
                std::lock_guard lock(mu_);
                for (auto& d : doms_) {
                    if (d.pid <= 0 || d.state != "running") continue;
                    pollfd p{d.ctl.get(), POLLIN, 0};
                    if (::poll(&p, 1, 0) == 1 && (p.revents & POLLIN)) {
                        const std::string line = read_line(d, 100);
                        if (line == "crashed") {
                            d.state = "crashed";
                            d.last = "crashed (preserved)";
                        }
                    }
                }
                int status = 0;
                pid_t pid;
                while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0)
                    for (auto& d : doms_)
                        if (d.pid == pid) apply_policy(d, status);
                if (down_requested_ && !going_down) {
                    going_down = true;
                    down_deadline = Clock::now() + std::chrono::seconds(o_.down_timeout_s);
                    for (auto& d : doms_)
                        if (d.pid > 0) ::kill(d.pid, SIGTERM);
                }
                if (going_down && Clock::now() > down_deadline)
                    for (auto& d : doms_)
                        if (d.pid > 0) ::kill(d.pid, SIGKILL);
                // Stays up (listing stopped and crashed domains) until `vireo down` or a signal.
                bool any = false;
                for (const auto& d : doms_)
                    any = any || d.pid > 0;
                if (!any && down_requested_) return;
            }
        }
    }

    const HostConfig& cfg_;
    const UpOptions& o_;
    std::string run_dir_;
    std::unique_ptr<api::Server> api_;
    std::mutex mu_;  // doms_ between the supervising thread and API requests
    std::vector<Dom> doms_;
    std::atomic<bool> down_requested_{false};
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
    if (options.detach) {
        if (::fork() != 0) return 0;
        ::setsid();
    }
    Supervisor s(config, options);
    return s.run();
}

}  // namespace vireo::host
