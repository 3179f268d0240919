// The control verbs: xl's habits over vireo's JSON API. Domain verbs take a domain NAME on
// the running host (`vireo up`), or --api-socket PATH for a single `vireo run --api-socket`.
// Human output by default, --json for scripts.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <thread>

#include "api/server.hpp"
#include "base/log.hpp"
#include "base/size.hpp"
#include "base/unix_socket.hpp"
#include "cli/run.hpp"

namespace vireo::cli {

namespace {

// One shared region of `info`: "shm ring: 16 MiB at 0x100000000 (00:01.0), peer 0 of a, b,
// doorbells (1 vector): 3 rung, 0 dropped".
std::string describe_shm(const api::Json& m) {
    std::string peers;
    for (const auto& n : m.value("peers", api::Json::array()))
        peers += (peers.empty() ? "" : ", ") + n.get<std::string>();
    const uint64_t size = m.value("size", uint64_t{0});
    std::string s =
        fmt::format("{:<14} {}: {} at {:#x} ({}){}{}", "shm", m.value("name", ""), size_text(size),
                    m.value("address", uint64_t{0}), m.value("pci", ""),
                    peers.empty() ? "" : fmt::format(", peer {} of {}", m.value("peer", 0), peers),
                    m.value("readonly", false) ? ", read-only" : "");
    if (m.value("doorbells", false))
        s += fmt::format(", doorbells ({} vector(s)): {} in, {} dropped", m.value("vectors", 0),
                         m.value("doorbells_in", uint64_t{0}),
                         m.value("doorbells_dropped", uint64_t{0}));
    return s;
}

using api::Json;
using Clock = std::chrono::steady_clock;

struct Opts {
    std::vector<std::string> args;  // NAME and the verb's own arguments
    std::string run_dir, api_socket, console_socket, device = "/dev/kvm";
    bool json = false, wait = false, keep_running = false;
    // migrate
    bool cancel = false, auto_converge = false, allow_software_kvm = false;
    int downtime_ms = 100, migrate_timeout = 600, max_bandwidth = 0;
    std::string token, to_host, pool;
    int force_after = -1, timeout = 120;
    double delay = 1.0;
    int iterations = 0;
};

// A domain to talk to: its API socket (and console socket), found through the host.
struct Target {
    std::string name, api, console;
    int pid = 0;  ///< the domain process's pid on this host, when the host's list gave one
};

// The pid of the process serving the Unix socket `path`, as this process sees it; 0 if none.
int peer_pid(const std::string& path) {
    auto fd = connect_unix(path);
    if (!fd) return 0;
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(fd->get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return 0;
    return cred.pid;
}

// A sandboxed domain is PID 1 of its own PID namespace and reports its threads' ids there.
// The host's id of each (what ps, taskset and /proc here use), from NSpid in
// /proc/PID/task/*/status: "NSpid: HOST_TID NS_TID". 0 where it cannot be read.
int host_tid(int pid, int ns_tid) {
    if (pid <= 0) return ns_tid;
    std::error_code ec;
    for (const auto& t :
         std::filesystem::directory_iterator(fmt::format("/proc/{}/task", pid), ec)) {
        std::ifstream f(t.path() / "status");
        std::string line;
        while (std::getline(f, line)) {
            if (line.rfind("NSpid:", 0) != 0) continue;
            std::istringstream in(line.substr(6));
            std::vector<int> ids;
            int id = 0;
            while (in >> id)
                ids.push_back(id);
            if (ids.size() >= 2 && ids.back() == ns_tid) return ids.front();
            if (ids.size() == 1 && ids.front() == ns_tid) return ns_tid;  // no namespace
            break;
        }
    }
    return 0;
}

// `vireo info`'s sandbox lines: ids and namespaces, then each thread's class and seccomp mode.
std::string describe_sandbox(const Json& sb) {
    if (!sb.value("active", false)) return fmt::format("{:<14} off", "sandbox");
    std::string ns;
    for (const auto& n : sb.value("namespaces", Json::array()))
        ns += (ns.empty() ? "" : " ") + n.get<std::string>();
    std::string text = fmt::format("{:<14} uid {} gid {}, namespaces: {}", "sandbox",
                                   sb.value("uid", 0), sb.value("gid", 0), ns);
    for (const auto& t : sb.value("threads", Json::array()))
        text += fmt::format("\n{:<14} {:>6} {:<16} {:<14} seccomp {}", "", t.value("tid", 0),
                            t.value("name", std::string()), t.value("class", std::string()),
                            t.value("seccomp", std::string()));
    return text;
}

int error(const std::string& msg) {
    log::error("{}", msg);
    return kExitError;
}

Result<Json> host_call(const Opts& o, const std::string& method, const Json& params = {}) {
    VIREO_TRY_ASSIGN(auto sock, find_host_socket(o.run_dir));
    return api::call(sock, method, params);
}

// Resolves the verb's first argument (NAME) unless --api-socket names the domain directly.
// Returns the verb's remaining arguments in `rest`.
Result<Target> resolve(const Opts& o, size_t want_rest, std::vector<std::string>& rest) {
    Target t;
    std::vector<std::string> args = o.args;
    if (!o.api_socket.empty()) {
        t.api = o.api_socket;
        t.console = o.console_socket;
        t.name = o.api_socket;
    } else {
        if (args.empty())
            return fail(ErrorCode::InvalidArgument,
                        "name a domain (vireo list shows them), or give --api-socket PATH");
        t.name = args.front();
        args.erase(args.begin());
        VIREO_TRY_ASSIGN(auto list, host_call(o, "list"));
        const Json* found = nullptr;
        for (const auto& d : list)
            if (d.value("name", std::string()) == t.name) found = &d;
        if (found == nullptr)
            return fail(ErrorCode::NotFound, "no domain \"{}\" on this host (vireo list)", t.name);
        const std::string state = found->value("state", std::string());
        if (found->value("id", 0) <= 0 || state == "starting")
            return fail(ErrorCode::BadState, "domain {} is {} ({})", t.name, state,
                        found->value("last", std::string()));
        t.api = found->value("api", std::string());
        t.console = found->value("console", std::string());
        t.pid = found->value("id", 0);
    }
    if (args.size() != want_rest)
        return fail(ErrorCode::InvalidArgument, "expected {} argument(s) after the domain, got {}",
                    want_rest, args.size());
    rest = std::move(args);
    return t;
}

Result<Json> domain_call(const Target& t, const std::string& method, const Json& params = {}) {
    return api::call(t.api, method, params, 10000);
}

void print(const Opts& o, const Json& j, const std::string& human) {
    if (o.json)
        std::printf("%s\n", j.dump(2).c_str());
    else if (!human.empty())
        std::printf("%s\n", human.c_str());
}

std::string cpus_text(const Json& arr) {
    std::string s;
    for (const auto& c : arr)
        s += (s.empty() ? "" : ",") + std::to_string(c.get<int>());
    return s;
}

// --- console ---------------------------------------------------------------------------------

int console(const Target& t) {
    if (t.console.empty()) return error("this domain has no console socket (--console-socket)");
    auto fd = connect_unix(t.console);
    if (!fd) return error(fd.error().message());
    const bool tty = ::isatty(STDIN_FILENO) == 1;
    termios saved{};
    if (tty) {
        ::tcgetattr(STDIN_FILENO, &saved);
        termios raw = saved;
        ::cfmakeraw(&raw);
        ::tcsetattr(STDIN_FILENO, TCSANOW, &raw);
        std::fprintf(stderr, "vireo: attached to %s; Ctrl-] detaches\r\n", t.name.c_str());
    }
    constexpr uint8_t kDetach = 0x1d;  // Ctrl-]
    bool stdin_open = true;
    int rc = 0;
    Clock::time_point linger_until{};
    for (;;) {
        // Without a terminal, once the input has ended: output for 2 s more at most.
        if (!stdin_open && Clock::now() > linger_until) break;
        // A closed stdin is left out (-1): poll would keep reporting its POLLHUP.
        pollfd fds[2] = {{fd->get(), POLLIN, 0}, {stdin_open ? STDIN_FILENO : -1, POLLIN, 0}};
        // ... and leave sooner once the console is quiet for 0.5 s.
        const int n = ::poll(fds, 2, stdin_open ? -1 : 500);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        if (fds[0].revents & (POLLIN | POLLHUP)) {
            char buf[4096];
            const ssize_t r = ::read(fd->get(), buf, sizeof buf);
            if (r <= 0) {
                if (tty) std::fprintf(stderr, "\r\nvireo: the domain's console closed\r\n");
                break;
            }
            if (::write(STDOUT_FILENO, buf, static_cast<size_t>(r)) < 0) break;
        }
        if (stdin_open && (fds[1].revents & (POLLIN | POLLHUP))) {
            uint8_t buf[256];
            const ssize_t r = ::read(STDIN_FILENO, buf, sizeof buf);
            if (r <= 0) {
                stdin_open = false;
                linger_until = Clock::now() + std::chrono::seconds(2);
                continue;
            }
            size_t len = static_cast<size_t>(r);
            bool detach = false;
            if (tty)
                for (size_t i = 0; i < len; ++i)
                    if (buf[i] == kDetach) {
                        len = i;
                        detach = true;
                        break;
                    }
            if (len > 0 &&
                !send_all(fd->get(), std::string_view(reinterpret_cast<char*>(buf), len), 5000)) {
                rc = kExitError;
                break;
            }
            if (detach) break;
        }
    }
    if (tty) {
        ::tcsetattr(STDIN_FILENO, TCSANOW, &saved);
        std::fprintf(stderr, "\nvireo: detached from %s\n", t.name.c_str());
    }
    return rc;
}

// --- shutdown --------------------------------------------------------------------------------

// On a terminal (and without --json), one line on stderr that `text` rewrites every `every`
// until stop() (then it is erased); a tick where `text` gives "" shows nothing new.
class ProgressLine {
  public:
    ProgressLine(const Opts& o, std::chrono::milliseconds every,
                 std::function<std::string()> text) {
        if (::isatty(STDERR_FILENO) != 1 || o.json) return;
        thread_ = std::thread([this, every, text = std::move(text)] {
            bool shown = false;
            while (!done_.load()) {
                std::this_thread::sleep_for(every);
                if (done_.load()) break;
                const std::string line = text();
                if (line.empty() || done_.load()) continue;
                std::fprintf(stderr, "\r%s \033[K", line.c_str());
                shown = true;
            }
            if (shown) std::fprintf(stderr, "\r\033[K");
        });
    }
    ProgressLine(const ProgressLine&) = delete;
    ProgressLine& operator=(const ProgressLine&) = delete;
    ~ProgressLine() { stop(); }
    void stop() {
        done_.store(true);
        if (thread_.joinable()) thread_.join();
    }

  private:
    std::atomic<bool> done_{false};
    std::thread thread_;
};

// `vireo save`: a new file (created here, 0600, never one that exists) handed to the domain,
// which writes its state into it; removed again if the save fails.
int save(const Opts& o, const Target& t, const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd) {
        std::fprintf(
            stderr, "vireo: %s: %s%s\n", path.c_str(), std::strerror(errno),
            errno == EEXIST ? " (a snapshot goes into a new file; vireo never replaces one)" : "");
        return 1;
    }
    auto client = api::Client::connect(t.api, 600000);  // a large guest takes a while
    // On a terminal, a save that takes over a second shows what it has written so far (the
    // domain writes into the file this process created: its allocated size is the progress).
    const auto t0 = Clock::now();
    ProgressLine progress(o, std::chrono::milliseconds(200), [&fd, &t, t0]() -> std::string {
        const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
        struct stat st {};
        if (secs < 1 || ::fstat(fd.get(), &st) != 0) return {};
        return fmt::format("vireo: saving {}: {} MiB written, {:.0f} s", t.name,
                           static_cast<long long>(st.st_blocks) * 512 >> 20, secs);
    });
    auto r = client ? client->call_with_fd("save", Json{{"keep_running", o.keep_running}}, fd.get())
                    : Result<Json>(Unexpected{client.error()});
    progress.stop();
    if (!r) {
        // Created above by this process: removed again, but only if the name still leads to
        // it (in a shared directory another user could have put something else there since).
        struct stat ours {};
        struct stat now {};
        if (::fstat(fd.get(), &ours) == 0 && ::lstat(path.c_str(), &now) == 0 &&
            ours.st_dev == now.st_dev && ours.st_ino == now.st_ino)
            ::unlink(path.c_str());
        std::fprintf(stderr, "vireo: %s: %s\n", t.name.c_str(), r.error().message().c_str());
        return 1;
    }
    print(o, *r,
          fmt::format("{}: saved to {} in {:.0f} ms ({} MiB of {} MiB guest memory written){}",
                      t.name, path, r->value("ms", 0.0), r->value("written_bytes", 0ull) >> 20,
                      r->value("guest_bytes", 0ull) >> 20,
                      o.keep_running ? "" : "; the domain stopped"));
    return 0;
}

// `vireo migrate`: connects to the destination here (the jailed domain connects nowhere) and
// hands the connection to the domain, which sends itself; on a terminal a progress line.
int migrate(const Opts& o, const Target& t, const std::string& dest) {
    auto conn = connect_migration(dest);
    if (!conn) return error(conn.error().message());
    auto client = api::Client::connect(t.api, (o.migrate_timeout + 300) * 1000);
    if (!client) return error(client.error().message());
    ProgressLine progress(o, std::chrono::milliseconds(250), [&t]() -> std::string {
        auto s = domain_call(t, "migrate.status");
        if (!s || !s->value("active", false)) return {};
        const unsigned throttle = s->value("throttle_percent", 0u);
        return fmt::format(
            "vireo: migrating {}: pass {}, {} MiB sent, dirty {:.0f} MiB/s, link {:.0f} MiB/s, "
            "~{} ms left{}",
            t.name, s->value("pass", 0u), s->value("bytes", 0ull) >> 20,
            s->value("dirty_rate", 0.0) / 1048576, s->value("bandwidth", 0.0) / 1048576,
            s->value("remaining_ms", 0ull),
            throttle > 0 ? fmt::format(", throttled {}%", throttle) : std::string());
    });
    Json params{{"downtime_ms", o.downtime_ms},
                {"timeout_s", o.migrate_timeout},
                {"auto_converge", o.auto_converge},
                {"max_bandwidth_mib", o.max_bandwidth}};
    if (!o.token.empty()) params["token"] = o.token;
    auto r = client->call_with_fd("migrate", params, conn->get());
    progress.stop();
    if (!r) return error(t.name + ": " + r.error().message());
    print(
        o, *r,
        fmt::format("{}: migrated to {} in {:.0f} ms (downtime {:.1f} ms, {} passes, {} MiB sent)",
                    t.name, dest, r->value("total_ms", 0.0), r->value("downtime_ms", 0.0),
                    r->value("passes", 0), r->value("bytes", 0ull) >> 20));
    return 0;
}

// `vireo migrate NAME --to-host RUN_DIR`: the host up in RUN_DIR admits the domain (its vCPUs
// and memory as its `info` says) and starts it listening in its run directory; the domain goes
// there as to any destination, and its own host drops it when it has left.
int migrate_to_host(const Opts& o, const Target& t) {
    if (!o.token.empty()) return error("--token: not with --to-host (its address is private)");
    auto info = domain_call(t, "info");
    if (!info) return error(t.name + ": " + info.error().message());
    Json params{{"name", t.name},
                {"vcpus", info->value("vcpus", 0u)},
                {"memory_bytes", info->value("memory_bytes", uint64_t{0})}};
    if (!o.pool.empty()) params["pool"] = o.pool;
    if (o.allow_software_kvm) params["allow_software_kvm"] = true;
    auto host = find_host_socket(o.to_host);
    if (!host) return error("--to-host: " + host.error().message());
    auto r = api::call(*host, "receive", params, 150000);
    if (!r)
        return error(fmt::format("{}: the host in {} does not take it: {}", t.name, o.to_host,
                                 r.error().message()));
    const int rc = migrate(o, t, r->value("address", std::string()));
    if (rc != 0) {
        // The waiting domain goes, unless it may run (the source then stays paused: the
        // operator decides which copy lives).
        auto list = api::call(*host, "list", {}, 5000);
        if (list)
            for (const auto& d : *list)
                if (d.value("name", std::string()) == t.name &&
                    d.value("state", std::string()) == "incoming")
                    (void)api::call(*host, "destroy", Json{{"name", t.name}}, 5000);
    }
    return rc;
}

// True once the domain no longer runs: its API is gone (a single vireo run), or the host
// lists it as stopped.
bool gone(const Opts& o, const Target& t) {
    if (!o.api_socket.empty()) return !api::call(t.api, "version", {}, 1000);
    auto list = host_call(o, "list");
    if (!list) return true;
    for (const auto& d : *list)
        if (d.value("name", std::string()) == t.name)
            return d.value("id", 0) <= 0 || d.value("state", std::string()) == "crashed";
    return true;
}

int shutdown(const Opts& o, const Target& t) {
    auto r = domain_call(t, "shutdown");
    if (!r) return error(r.error().message());
    if (!o.wait && o.force_after < 0) {
        print(o, *r, t.name + ": ACPI power button pressed");
        return 0;
    }
    const int limit = o.force_after >= 0 ? o.force_after : o.timeout;
    const auto deadline = Clock::now() + std::chrono::seconds(limit);
    const auto repeat = std::chrono::seconds(api::kPowerButtonRepeatSeconds);
    auto next_press = Clock::now() + repeat;
    while (Clock::now() < deadline) {
        if (gone(o, t)) {
            print(o, Json{{"name", t.name}, {"state", "shutoff"}}, t.name + ": powered off");
            return 0;
        }
        if (Clock::now() > next_press) {  // the guest may not have been listening yet
            (void)domain_call(t, "shutdown");
            next_press = Clock::now() + repeat;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (o.force_after < 0)
        return error(fmt::format("{} did not power off within {} s", t.name, limit));
    // --force-after: destroy it.
    if (o.api_socket.empty()) {
        if (auto d = host_call(o, "destroy", Json{{"name", t.name}}); !d)
            return error(d.error().message());
    } else if (auto info = domain_call(t, "info"); info) {
        ::kill(info->value("pid", 0), SIGKILL);
    }
    print(o, Json{{"name", t.name}, {"state", "destroyed"}},
          fmt::format("{}: did not power off within {} s; destroyed", t.name, limit));
    return 0;
}

// --- top -------------------------------------------------------------------------------------

struct Sample {
    double cpu_s = 0, exits = 0, disk = 0, net = 0;
};

Sample sample_of(const Json& m, double cpu_s) {
    Sample s;
    s.cpu_s = cpu_s;
    for (const auto& v : api::member(m, "vcpus", true)) {
        const Json& kvm = api::member(v, "kvm", false);
        if (kvm.contains("exits")) {
            s.exits += kvm["exits"].get<double>();  // every exit, in the kernel or to vireo
        } else {
            for (const auto& [reason, n] : api::member(v, "exits", false).items())
                s.exits += n.get<double>();
        }
    }
    for (const auto& d : api::member(m, "devices", true)) {
        const Json& c = api::member(d, "counters", false);
        s.disk += c.value("read_bytes", 0.0) + c.value("write_bytes", 0.0);
        s.net += c.value("rx_bytes", 0.0) + c.value("tx_bytes", 0.0);
    }
    return s;
}

int top(const Opts& o) {
    std::map<std::string, Sample> last;
    auto last_t = Clock::now();
    const bool tty = ::isatty(STDOUT_FILENO) == 1;
    for (int i = 0; o.iterations == 0 || i <= o.iterations; ++i) {
        auto list = host_call(o, "list");
        if (!list) return error(list.error().message());
        const auto now = Clock::now();
        const double dt = std::chrono::duration<double>(now - last_t).count();
        last_t = now;
        Json rows = Json::array();
        std::map<std::string, Sample> cur;
        for (const auto& d : *list) {
            const std::string name = d.value("name", std::string());
            Json row{{"name", name},
                     {"state", d.value("state", std::string())},
                     {"vcpus", d.value("vcpus", 0)},
                     {"memory_bytes", d.value("memory_bytes", 0)}};
            if (d.value("id", 0) > 0) {
                if (auto m = api::call(d.value("api", std::string()), "metrics", {}, 2000)) {
                    cur[name] = sample_of(*m, d.value("cpu_s", 0.0));
                    if (auto it = last.find(name); it != last.end() && dt > 0) {
                        const Sample& a = it->second;
                        const Sample& b = cur[name];
                        row["cpu_percent"] = 100.0 * (b.cpu_s - a.cpu_s) / dt;
                        row["exits_per_s"] = (b.exits - a.exits) / dt;
                        row["disk_bytes_per_s"] = (b.disk - a.disk) / dt;
                        row["net_bytes_per_s"] = (b.net - a.net) / dt;
                    }
                }
            }
            rows.push_back(row);
        }
        last = std::move(cur);
        if (i > 0 || o.iterations == 0) {  // the first round only primes the rates
            if (o.json) {
                std::printf("%s\n", rows.dump().c_str());
            } else {
                if (tty) std::printf("\033[H\033[2J");
                std::printf("%-16s %-9s %5s %8s %7s %10s %11s %11s\n", "NAME", "STATE", "VCPUS",
                            "MEMORY", "CPU%", "EXITS/s", "DISK KiB/s", "NET KiB/s");
                for (const auto& r : rows) {
                    auto num = [&](const char* k, double scale) {
                        return r.contains(k) ? fmt::format("{:.1f}", r[k].get<double>() / scale)
                                             : std::string("-");
                    };
                    std::printf(
                        "%-16s %-9s %5d %7lluM %7s %10s %11s %11s\n",
                        r["name"].get<std::string>().c_str(), r["state"].get<std::string>().c_str(),
                        r["vcpus"].get<int>(),
                        static_cast<unsigned long long>(r["memory_bytes"].get<uint64_t>() >> 20),
                        num("cpu_percent", 1).c_str(), num("exits_per_s", 1).c_str(),
                        num("disk_bytes_per_s", 1024).c_str(),
                        num("net_bytes_per_s", 1024).c_str());
                }
            }
            std::fflush(stdout);
        }
        if (o.iterations != 0 && i == o.iterations) break;
        std::this_thread::sleep_for(std::chrono::duration<double>(o.delay));
    }
    return 0;
}

}  // namespace

std::function<int()> add_control_commands(CLI::App& app) {
    auto o = std::make_shared<Opts>();
    std::map<std::string, CLI::App*> v;
    auto verb = [&](const char* name, const char* help, const char* args_help) {
        auto* c = app.add_subcommand(name, help);
        c->add_option("ARGS", o->args, args_help);
        c->add_option("--run-dir", o->run_dir,
                      "The host's run directory (default: the only one up)");
        c->add_option("--api-socket", o->api_socket,
                      "Talk to this domain API socket (vireo run --api-socket) instead of a "
                      "NAME on the host");
        c->add_flag("--json", o->json, "JSON output for scripts");
        v[name] = c;
        return c;
    };
    verb("info",
         "Show a domain: state, memory, vCPUs, devices, uptime; without NAME, what this host's "
         "KVM offers (implementation, limits, features)",
         "[NAME]")
        ->add_option("--device", o->device, "Without NAME: the KVM device")
        ->capture_default_str();
    verb("pause", "Stop all of a domain's vCPUs (guest time stands still; I/O in flight completes)",
         "NAME");
    verb("unpause", "Resume a paused domain", "NAME");
    auto* sv = verb("save",
                    "Save a domain's whole state to a new snapshot FILE (mode 0600; never an "
                    "existing file) and stop it, as xl save; vireo restore FILE continues it",
                    "NAME FILE");
    sv->add_flag("--keep-running", o->keep_running,
                 "Leave the domain running after the save (paused while it is written)");
    auto* mg = verb("migrate",
                    "Move a running domain to another vireo (vireo run --incoming ADDR, on this "
                    "host or another) while it runs: memory is copied while the guest runs, "
                    "then the guest stops for at most about --downtime-ms and goes on there; "
                    "this one exits once the destination runs it. Disks are not copied: both "
                    "must reach the same images (shared storage, or the same path here)",
                    "NAME DEST");
    mg->footer(
        "DEST: unix:PATH or tcp:HOST:PORT (the destination's --incoming); or, instead of DEST, "
        "--to-host RUN_DIR: a vireo up host on this machine takes it into its table.");
    mg->add_option("--to-host", o->to_host,
                   "The run directory of a vireo up host on this machine (its vireo.sock): it "
                   "admits the domain and receives it; this host drops it once it has left");
    mg->add_option("--pool", o->pool, "With --to-host: the CPU pool there (default: default)");
    mg->add_flag("--allow-software-kvm", o->allow_software_kvm,
                 "With --to-host: the domain may run on a software KVM there (tiny test guests)");
    mg->add_option("--downtime-ms", o->downtime_ms,
                   "The longest the guest may stand still at the switch (estimated from the "
                   "measured bandwidth)")
        ->check(CLI::Range(1, 60000))
        ->capture_default_str();
    mg->add_option("--timeout", o->migrate_timeout,
                   "Give up (the domain runs on here) if it has not converged after this many "
                   "seconds")
        ->check(CLI::Range(1, 86400))
        ->capture_default_str();
    mg->add_flag("--auto-converge", o->auto_converge,
                 "Slow the vCPUs down (20%, then 10% more every pass) while the guest dirties "
                 "memory faster than the link can move it");
    mg->add_option("--max-bandwidth", o->max_bandwidth,
                   "MiB/s the copy may use while the guest runs (0: all the link gives); the "
                   "last pass, with the guest stopped, is never limited")
        ->check(CLI::Range(0, 1 << 20))
        ->capture_default_str();
    mg->add_option("--token", o->token, "The destination's --token");
    mg->add_flag("--cancel", o->cancel,
                 "Cancel NAME's migration in progress (the domain runs on here); no DEST");
    auto* sd =
        verb("shutdown", "Press the domain's ACPI power button (the guest powers off)", "NAME");
    sd->add_flag("--wait", o->wait, "Wait until the domain has powered off");
    sd->add_option("--force-after", o->force_after,
                   "Destroy the domain if it has not powered off after this many seconds");
    sd->add_option("--timeout", o->timeout, "With --wait: give up after this many seconds")
        ->capture_default_str();
    verb("reboot", "Reset a domain (it restarts as after a guest reboot)", "NAME");
    auto* con = verb("console", "Attach to a domain's serial console (Ctrl-] detaches)", "NAME");
    con->add_option("--socket", o->console_socket,
                    "With --api-socket: the domain's console socket (vireo run --console-socket)");
    verb("vcpu-list", "List a domain's vCPUs: host thread, host CPU, affinity, CPU time", "NAME");
    verb("vcpu-pin", "Pin a vCPU to host CPUs (\"all\" unpins); kept across guest reboots",
         "NAME VCPU CPUS");
    verb("mem-set", "Set a domain's memory through its balloon (the domain needs a balloon)",
         "NAME SIZE");
    verb("io-limit",
         "Show or change a disk's or network device's rate limits while the domain runs (until "
         "changed again; a guest reboot keeps them)",
         "NAME DEVICE [LIMITS]")
        ->footer(
            "DEVICE: diskN or netN (from 0, in the order of the domain's --disk and --net). "
            "LIMITS: as on --disk (bps=RATE,iops=N,bps-burst=SIZE,iops-burst=N) or --net "
            "([rx-|tx-]bps=RATE,[rx-|tx-]pps=N,...; without rx-/tx- both directions), or none. "
            "New limits replace all of the old ones and start with empty buckets.");
    auto* tp =
        verb("top", "Refreshing view of every domain: CPU%, exits/s, disk and network rates", "");
    tp->add_option("-d,--delay", o->delay, "Seconds between refreshes")->capture_default_str();
    tp->add_option("-n,--iterations", o->iterations, "Stop after this many refreshes (0: never)")
        ->capture_default_str();
    verb("dmesg", "Show the host's log (domain starts, stops, crashes, policy actions)", "");
    verb("cpupool-list", "List the host's CPU pools with their CPUs and domains", "");
    verb("cpupool-migrate", "Move a domain to another CPU pool (affinity and cgroup)", "NAME POOL");
    verb("create", "Start more domains on the running host from a file of [domains.NAME] tables",
         "FILE.toml");

    return [o, v]() -> int {
        auto is = [&](const char* n) { return static_cast<bool>(*v.at(n)); };
        std::vector<std::string> rest;
        auto target = [&](size_t n) { return resolve(*o, n, rest); };
        // Host verbs.
        if (is("dmesg") || is("cpupool-list") || is("top") || is("create") ||
            is("cpupool-migrate")) {
            if (is("top")) return top(*o);
            if (is("dmesg")) {
                auto r = host_call(*o, "dmesg");
                if (!r) return error(r.error().message());
                std::string text;
                for (const auto& l : *r)
                    text += l.get<std::string>() + "\n";
                if (o->json)
                    print(*o, *r, "");
                else
                    std::fputs(text.c_str(), stdout);
                return 0;
            }
            if (is("cpupool-list")) {
                auto r = host_call(*o, "cpupool.list");
                if (!r) return error(r.error().message());
                std::string text = fmt::format("{:<12} {:<7} {:<16} {:>5} {}", "NAME", "POLICY",
                                               "CPUS", "FREE", "DOMAINS");
                for (const auto& p : *r) {
                    std::string doms;
                    for (const auto& d : p["domains"])
                        doms += (doms.empty() ? "" : ",") + d.get<std::string>();
                    text += fmt::format(
                        "\n{:<12} {:<7} {:<16} {:>5} {}", p["name"].get<std::string>(),
                        p["policy"].get<std::string>(), p["cpu_list"].get<std::string>(),
                        p["free_cpus"].get<size_t>(), doms);
                }
                print(*o, *r, text);
                return 0;
            }
            if (o->args.size() != (is("create") ? 1u : 2u))
                return error(is("create") ? "usage: vireo create FILE.toml"
                                          : "usage: vireo cpupool-migrate NAME POOL");
            if (is("create")) {
                const std::string path = std::filesystem::absolute(o->args[0]).string();
                auto r = host_call(*o, "create", Json{{"path", path}});
                if (!r) return error(r.error().message());
                std::string names;
                for (const auto& n : (*r)["created"])
                    names += (names.empty() ? "" : ", ") + n.get<std::string>();
                print(*o, *r, "created: " + names);
                return 0;
            }
            auto r =
                host_call(*o, "cpupool.migrate", Json{{"name", o->args[0]}, {"pool", o->args[1]}});
            if (!r) return error(r.error().message());
            print(*o, *r,
                  fmt::format("{}: now in pool {} (CPUs {})", o->args[0], o->args[1],
                              cpus_text((*r)["cpus"])));
            return 0;
        }
        // Domain verbs.
        const char* verbs[] = {"info",    "pause",   "unpause",   "shutdown",
                               "reboot",  "console", "vcpu-list", "vcpu-pin",
                               "mem-set", "save",    "migrate",   "io-limit"};
        const char* which = nullptr;
        for (const char* n : verbs)
            if (is(n)) which = n;
        if (which == nullptr) return -1;
        const std::string w = which;
        if (w == "info" && o->args.empty() && o->api_socket.empty())
            return print_kvm_info(o->device);
        const bool one_more =
            w == "mem-set" || w == "save" || (w == "migrate" && !o->cancel && o->to_host.empty());
        // io-limit: DEVICE, and LIMITS when changing them.
        const size_t given = o->args.size() - (o->api_socket.empty() && !o->args.empty() ? 1 : 0);
        const size_t io_rest = given >= 2 ? 2 : 1;
        auto t = target(w == "vcpu-pin" ? 2 : w == "io-limit" ? io_rest : one_more ? 1 : 0);
        if (!t) return error(t.error().message());
        if (w == "console") return console(*t);
        if (w == "shutdown") return shutdown(*o, *t);
        if (w == "info") {
            auto r = domain_call(*t, "info");
            if (!r) return error(r.error().message());
            std::string text;
            for (const auto& [k, val] : r->items()) {
                if (k == "sandbox" || k == "shm") continue;
                text += fmt::format("{}{:<14} {}", text.empty() ? "" : "\n", k,
                                    val.is_string() ? val.get<std::string>() : val.dump());
            }
            for (const auto& m : r->value("shm", api::Json::array()))
                text += "\n" + describe_shm(m);
            text += "\n" + describe_sandbox(r->value("sandbox", api::Json::object()));
            print(*o, *r, text);
            return 0;
        }
        if (w == "pause" || w == "unpause" || w == "reboot") {
            auto r = domain_call(*t, w);
            if (!r) return error(t->name + ": " + r.error().message());
            print(*o, *r, t->name + ": " + (*r)["state"].get<std::string>());
            return 0;
        }
        if (w == "save") return save(*o, *t, rest[0]);
        if (w == "migrate" && o->cancel) {
            auto r = domain_call(*t, "migrate.cancel");
            if (!r) return error(r.error().message());
            print(*o, *r, t->name + ": cancelling the migration (the domain runs on here)");
            return 0;
        }
        if (w == "migrate" && !o->to_host.empty()) return migrate_to_host(*o, *t);
        if (w == "migrate") return migrate(*o, *t, rest[0]);
        if (w == "vcpu-list") {
            auto r = domain_call(*t, "vcpu.list");
            if (!r) return error(r.error().message());
            // The host's thread ids (the domain's own, in its PID namespace, kept beside). The
            // domain's pid: the host's list, else the API socket's peer (SO_PEERCRED gives it
            // in this process's PID namespace).
            const int pid = t->pid > 0 ? t->pid : peer_pid(t->api);
            for (auto& c : *r) {
                c["tid_in_domain"] = c.value("tid", 0);
                c["tid"] = host_tid(pid, c.value("tid", 0));
            }
            std::string text = fmt::format("{:<5} {:>8} {:>4} {:<16} {:>9} {}", "VCPU", "TID",
                                           "CPU", "AFFINITY", "TIME(s)", "STATE");
            for (const auto& c : *r)
                text +=
                    fmt::format("\n{:<5} {:>8} {:>4} {:<16} {:>9.1f} {}", c["vcpu"].get<int>(),
                                c["tid"].get<int>(), c["cpu"].get<int>(), cpus_text(c["affinity"]),
                                c["cpu_s"].get<double>(), c["state"].get<std::string>());
            print(*o, *r, text);
            return 0;
        }
        if (w == "vcpu-pin") {
            char* end = nullptr;
            const unsigned long vcpu = std::strtoul(rest[0].c_str(), &end, 10);
            if (rest[0].empty() || *end != '\0') return error("VCPU must be a vCPU number");
            auto r = domain_call(*t, "vcpu.pin", Json{{"vcpu", vcpu}, {"cpus", rest[1]}});
            if (!r) return error(r.error().message());
            print(*o, *r,
                  fmt::format("{}: vCPU {} on CPUs {}", t->name, vcpu,
                              rest[1] == "all" ? "all" : cpus_text((*r)["cpus"])));
            return 0;
        }
        if (w == "io-limit") {
            Json params{{"device", rest[0]}};
            if (rest.size() == 2) params["limits"] = rest[1];
            auto r = domain_call(*t, "io.limit", params);
            if (!r) return error(t->name + ": " + r.error().message());
            print(*o, *r,
                  fmt::format("{}: {}: {}", t->name, rest[0], (*r)["limits"].get<std::string>()));
            return 0;
        }
        // mem-set
        auto bytes = parse_size(rest[0]);
        if (!bytes) return error("SIZE: " + bytes.error().message());
        auto r = domain_call(*t, "balloon.set", Json{{"memory", *bytes}});
        if (!r) return error(r.error().message());
        print(*o, *r,
              fmt::format("{}: guest memory {} MiB (balloon target {} MiB)", t->name, *bytes >> 20,
                          (*r)["balloon_target_bytes"].get<uint64_t>() >> 20));
        return 0;
    };
}

}  // namespace vireo::cli
