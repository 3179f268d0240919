// Live migration's command-line halves (docs/migration.md): `vireo run --incoming ADDR` waits
// for one domain and runs it; the migration's addresses (unix:PATH, tcp:HOST:PORT), listened on
// and connected to here, outside any jail: a domain only ever gets the connected socket.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <functional>

#include "base/log.hpp"
#include "base/size.hpp"
#include "base/unix_socket.hpp"
#include "cli/run.hpp"
#include "domain/protocol.hpp"
#include "domain/runner.hpp"
#include "snapshot/stream.hpp"

namespace vireo::cli {

namespace {

struct Address {
    bool unix_socket = false;
    std::string path;        // unix:
    std::string host, port;  // tcp:
};

Result<Address> parse_address(const std::string& a, const char* what) {
    Address out;
    if (a.rfind("unix:", 0) == 0) {
        out.unix_socket = true;
        out.path = a.substr(5);
        if (out.path.empty())
            return fail(ErrorCode::InvalidArgument, "{}: unix: needs a path", what);
        return out;
    }
    if (a.rfind("tcp:", 0) == 0) {
        const std::string rest = a.substr(4);
        const auto colon = rest.rfind(':');
        if (colon == std::string::npos || colon == 0 || colon + 1 == rest.size())
            return fail(ErrorCode::InvalidArgument, "{}: {}: give tcp:HOST:PORT", what, a);
        out.host = rest.substr(0, colon);
        out.port = rest.substr(colon + 1);
        if (out.host.size() > 2 && out.host.front() == '[' && out.host.back() == ']')
            out.host = out.host.substr(1, out.host.size() - 2);  // [IPv6]
        return out;
    }
    return fail(ErrorCode::InvalidArgument, "{}: {}: give unix:PATH or tcp:HOST:PORT", what, a);
}

Result<addrinfo*> resolve(const Address& a, bool passive) {
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = passive ? AI_PASSIVE | AI_NUMERICSERV : AI_NUMERICSERV;
    addrinfo* res = nullptr;
    if (int e = ::getaddrinfo(a.host.c_str(), a.port.c_str(), &hints, &res); e != 0)
        return fail(ErrorCode::InvalidArgument, "{}:{}: {}", a.host, a.port, ::gai_strerror(e));
    return res;
}

// Constant time in the token's length: a stranger learns nothing from how long a refusal takes.
bool same_token(const std::string& a, const std::string& b) {
    unsigned diff = a.size() == b.size() ? 0 : 1;
    for (size_t i = 0; i < a.size(); ++i)
        diff |= static_cast<unsigned>(a[i]) ^ static_cast<unsigned>(i < b.size() ? b[i] : 0);
    return diff == 0;
}

auto supervisor_gone() {
    return fail(ErrorCode::BadState, "--incoming: the supervisor went away");
}

// Waits until `listener` has a connection. `supervisor` (the launch socket, or -1): anything
// on it while waiting means the supervisor is gone (it sends nothing after go).
Result<void> wait_for_connection(int listener, int supervisor) {
    pollfd p[2] = {{listener, POLLIN, 0}, {supervisor, POLLIN, 0}};
    for (;;) {
        const int n = ::poll(p, supervisor >= 0 ? 2 : 1, -1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail_errno(errno, "--incoming: poll");
        if (supervisor >= 0 && p[1].revents != 0) return supervisor_gone();
        if (p[0].revents != 0) return {};
    }
}

// The one connection on a bound, listening `listener`.
Result<UniqueFd> accept_on(int listener, const std::string& shown,
                           const std::function<bool()>& listening, int supervisor) {
    log::info("waiting for an incoming domain on {}", shown);
    if (!listening()) return supervisor_gone();
    VIREO_TRY(wait_for_connection(listener, supervisor));
    for (;;) {
        UniqueFd c(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
        if (c) return c;
        if (errno != EINTR) return fail_errno(errno, "--incoming: accept");
    }
}

// Accepts exactly one connection on `a`; the listener is gone when this returns. `listening`
// runs once the address is bound (false: give up); `supervisor` as wait_for_connection's.
Result<UniqueFd> accept_one(const Address& a, const std::string& shown,
                            const std::function<bool()>& listening, int supervisor) {
    if (a.unix_socket) {
        VIREO_TRY_ASSIGN(auto l, listen_unix(a.path, "--incoming", /*replace_stale=*/false));
        return accept_on(l.fd(), shown, listening, supervisor);
    }
    VIREO_TRY_ASSIGN(addrinfo * res, resolve(a, true));
    std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> free_res(res, ::freeaddrinfo);
    UniqueFd l(::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!l) return fail_errno(errno, "--incoming: socket");
    const int one = 1;
    (void)::setsockopt(l.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(l.get(), res->ai_addr, res->ai_addrlen) != 0)
        return fail_errno(errno, "--incoming: bind {}", shown);
    if (::listen(l.get(), 1) != 0) return fail_errno(errno, "--incoming: listen");
    VIREO_TRY_ASSIGN(UniqueFd c, accept_on(l.get(), shown, listening, supervisor));
    (void)::setsockopt(c.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    char host[NI_MAXHOST] = "?";
    if (::getpeername(c.get(), reinterpret_cast<sockaddr*>(&peer), &len) == 0)
        (void)::getnameinfo(reinterpret_cast<sockaddr*>(&peer), len, host, sizeof host, nullptr, 0,
                            NI_NUMERICHOST);
    log::info("incoming connection from {}", host);
    return c;
}

}  // namespace

void add_incoming_options(CLI::App* run, IncomingOptions& o) {
    run->add_option("--incoming", o.address,
                    "Wait for one domain migrated here (vireo migrate NAME DEST) on unix:PATH "
                    "(a new socket, mode 0600) or tcp:HOST:PORT, then run it like vireo run. "
                    "The machine comes with it: give only how it runs here (console, sockets, "
                    "placement, sandbox, --name, --memory-backing)");
    run->add_option("--token", o.token,
                    "With --incoming: accept only a sender that gives this token (vireo "
                    "migrate --token); at most 256 bytes");
}

int incoming_guest(const RunOptions& flags, const IncomingOptions& in) {
    auto addr = parse_address(in.address, "--incoming");
    if (!addr) {
        log::error("{}", addr.error().message());
        return kExitError;
    }
    if (in.token.size() > snapshot::stream::kMaxToken) {
        log::error("--token: at most {} bytes", snapshot::stream::kMaxToken);
        return kExitError;
    }
    // Under vireo up (vireo migrate --to-host): how it runs here comes on the launch socket, as
    // for any of the host's domains, with the vCPUs and memory the host admitted; the machine
    // comes on the stream and must match them.
    const int ctl_fd = flags.process.ctl_fd;
    RunOptions given = flags;
    if (ctl_fd >= 0) {
        if (!launch_fd_alone(flags)) return kExitError;
        auto text = domain::receive_spec(ctl_fd);
        if (!text) {
            log::error("{}", text.error().message());
            return kExitError;
        }
        given = std::move(text).value();
        given.process.ctl_fd = ctl_fd;
    }
    // The machine comes from the sender: a machine flag here would be a second truth.
    const RunOptions defaults;
    const std::pair<const char*, bool> machine_flags[] = {
        {"--kernel", given.kernel != defaults.kernel},
        {"--initrd", given.initrd != defaults.initrd},
        {"--cmdline", given.cmdline != defaults.cmdline},
        {"--append", given.append != defaults.append},
        {"--memory", given.memory != defaults.memory},
        {"--cpus", given.cpus != defaults.cpus},
        {"--disk", given.disks != defaults.disks},
        {"--net", given.nets != defaults.nets},
        {"--vsock", given.vsock != defaults.vsock},
        {"--balloon", given.balloon != defaults.balloon},
        {"--rng", given.rng != defaults.rng},
        {"--on-reboot", given.on_reboot != defaults.on_reboot},
        {"--on-crash", given.on_crash != defaults.on_crash},
        {"--restore", !given.process.restore.empty()},
    };
    for (const auto& [flag, set] : machine_flags)
        if (set && ctl_fd < 0) {
            log::error("{}: the incoming domain brings its machine; give only how it runs here",
                       flag);
            return kExitError;
        }
    // The host's domain is ready once it listens; the supervisor's go lets it take the
    // migration (it runs as soon as that has arrived).
    auto conn = accept_one(
        *addr, in.address, [ctl_fd] { return ctl_fd < 0 || domain::ready_and_wait_for_go(ctl_fd); },
        ctl_fd);
    if (!conn) {
        log::error("{}", conn.error().message());
        return kExitError;
    }
    snapshot::stream::Channel ch(conn->get(), 30000);
    auto refuse = [&](const std::string& msg) {
        (void)snapshot::stream::send_reply(ch, snapshot::stream::Reply::Error, msg);
        log::error("incoming migration: {}", msg);
        return kExitError;
    };
    auto hello = snapshot::stream::read_hello(ch);
    if (!hello) return refuse(hello.error().message());
    if (!same_token(hello->token, in.token))
        return refuse(in.token.empty() ? "this receiver takes no token"
                                       : "wrong or missing token (vireo migrate --token)");
    auto machine = domain::parse_spec_json(hello->spec, "the incoming domain's configuration");
    if (!machine) return refuse(machine.error().message());
    RunOptions t = std::move(machine).value();
    if (ctl_fd >= 0) {
        const auto want = parse_size(given.memory), got = parse_size(t.memory);
        if (t.cpus != given.cpus || !want || !got || *want != *got)
            return refuse(fmt::format(
                "this host admitted {} with {} vCPUs and {} of memory; it has {} and {}",
                given.name, given.cpus, given.memory, t.cpus, t.memory));
    }
    if (given.name != defaults.name) t.name = given.name;
    if (given.memory_backing != defaults.memory_backing) t.memory_backing = given.memory_backing;
    t.console = given.console;
    t.console_log_max = given.console_log_max;
    t.cpu_affinity = given.cpu_affinity;
    t.pin_vcpus = given.pin_vcpus;
    t.process = given.process;
    t.process.incoming_fd = conn->get();
    t.process.go_given = ctl_fd >= 0;
    auto spec = domain::parse_spec(t, domain::default_guest_dir());
    if (!spec) return refuse(spec.error().message());
    log::info("incoming domain {}: {} vCPUs, {} of memory", t.name, t.cpus, t.memory);
    const int rc = domain::run_domain(*spec);
    return finish_domain(rc);
}

Result<UniqueFd> connect_migration(const std::string& dest) {
    VIREO_TRY_ASSIGN(auto a, parse_address(dest, "DEST"));
    if (a.unix_socket) return connect_unix(a.path);
    VIREO_TRY_ASSIGN(addrinfo * res, resolve(a, false));
    std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> free_res(res, ::freeaddrinfo);
    int last = ECONNREFUSED;
    for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
        UniqueFd fd(::socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        if (!fd) continue;
        if (::connect(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0) {
            if (errno != EINPROGRESS) {
                last = errno;
                continue;
            }
            pollfd p{fd.get(), POLLOUT, 0};
            int err = 0;
            socklen_t len = sizeof err;
            if (::poll(&p, 1, 10000) != 1 ||
                ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
                last = err != 0 ? err : ETIMEDOUT;
                continue;
            }
        }
        const int one = 1;
        (void)::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        return fd;
    }
    return fail_errno(last, "connecting to {}", dest);
}

}  // namespace vireo::cli
