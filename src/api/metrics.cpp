#include "api/metrics.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <vector>

#include "base/log.hpp"
#include "base/thread_class.hpp"
#include "base/unix_socket.hpp"

namespace vireo::api {

namespace {

// Label values: backslash, double quote and newline escaped (exposition format).
std::string escape(std::string_view v) {
    std::string out;
    for (char c : v) {
        if (c == '\\' || c == '"') out += '\\';
        if (c == '\n') {
            out += "\\n";
            continue;
        }
        out += c;
    }
    return out;
}

// Metric names: [a-zA-Z0-9_] only.
std::string metric_name(std::string_view v) {
    std::string out;
    for (char c : v)
        out += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
    return out;
}

struct Family {
    const char* type;
    std::string help;
    std::vector<std::string> samples;
};

class Families {
  public:
    void add(const std::string& name, const char* type, const std::string& help,
             const std::string& labels, double value) {
        Family& f = map_[name];
        if (f.help.empty()) {
            f.type = type;
            f.help = help;
        }
        f.samples.push_back(fmt::format("{}{{{}}} {}", name, labels, value));
    }
    std::string text() const {
        std::string out;
        for (const auto& [name, f] : map_) {
            out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, f.help, name, f.type);
            for (const auto& s : f.samples)
                out += s + "\n";
        }
        return out;
    }

  private:
    std::map<std::string, Family> map_;
};

double num(const Json& j, const char* key) {
    const auto it = j.find(key);
    return it != j.end() && it->is_number() ? it->get<double>() : 0.0;
}

}  // namespace

std::string prometheus_text(const std::vector<std::pair<std::string, Json>>& domains) {
    Families f;
    for (const auto& [domain, m] : domains) {
        if (!m.is_object()) continue;
        const std::string d = fmt::format("domain=\"{}\"", escape(domain));
        const std::string state = m.value("state", std::string());
        f.add("vireo_domain_running", "gauge", "1 if the domain's vCPUs are running", d,
              state == "running" ? 1 : 0);
        f.add("vireo_domain_paused", "gauge", "1 if the domain is paused", d,
              state == "paused" ? 1 : 0);
        f.add("vireo_domain_uptime_seconds", "gauge", "Seconds since the domain process started", d,
              num(m, "uptime_s"));
        f.add("vireo_domain_boots_total", "counter", "Boots, the first included", d,
              num(m, "boots"));
        f.add("vireo_domain_reboots_throttled_total", "counter",
              "Restarts delayed because the guest rebooted in a loop", d,
              num(m, "reboots_throttled"));
        f.add("vireo_domain_memory_bytes", "gauge", "Guest memory", d, num(m, "memory_bytes"));
        const Json& pool = member(m, "vmm_pool", false);
        if (!pool.empty()) {
            f.add("vireo_vmm_pool_limit_bytes", "gauge",
                  "The domain's VMM pool: what a guest can make the VMM allocate", d,
                  num(pool, "limit_bytes"));
            f.add("vireo_vmm_pool_used_bytes", "gauge", "VMM pool in use", d,
                  num(pool, "used_bytes"));
            f.add("vireo_vmm_pool_high_water_bytes", "gauge", "Most of the VMM pool ever in use", d,
                  num(pool, "high_water_bytes"));
            f.add("vireo_vmm_pool_refused_total", "counter",
                  "Takes the VMM pool refused (the work was refused or dropped)", d,
                  num(pool, "refused"));
        }
        f.add("vireo_console_dropped_bytes_total", "counter",
              "Console output a slow attached client did not get", d,
              num(m, "console_dropped_bytes"));
        f.add("vireo_console_log_bytes_total", "counter", "Console output written to its log", d,
              num(m, "console_log_bytes"));
        f.add("vireo_console_log_rotations_total", "counter",
              "Times the console log reached its bound and was renamed to PATH.1", d,
              num(m, "console_log_rotations"));
        f.add("vireo_console_log_dropped_bytes_total", "counter",
              "Console output not written to its log (a failed write, e.g. a full disk)", d,
              num(m, "console_log_dropped_bytes"));
        for (const auto& v : member(m, "vcpus", true)) {
            const std::string l = fmt::format("{},vcpu=\"{}\"", d, v.value("id", 0));
            f.add("vireo_vcpu_cpu_seconds_total", "counter",
                  "Host CPU time of the vCPU thread (guest time and exits)", l, num(v, "cpu_s"));
            for (const auto& [reason, n] : member(v, "exits", false).items())
                f.add("vireo_vcpu_exits_total", "counter", "Exits to vireo (user space) by reason",
                      fmt::format("{},reason=\"{}\"", l, escape(reason)), n.get<double>());
            const Json& kvm = member(v, "kvm", false);
            if (kvm.contains("halt_wait_ns"))
                f.add("vireo_vcpu_halt_seconds_total", "counter",
                      "Time the vCPU waited halted in KVM", l,
                      kvm["halt_wait_ns"].get<double>() / 1e9);
            for (const auto& [stat, n] : kvm.items())
                f.add("vireo_vcpu_kvm", "untyped", "KVM's own per-vCPU statistics (binary stats)",
                      fmt::format("{},stat=\"{}\"", l, escape(stat)), n.get<double>());
        }
        for (const auto& dev : member(m, "devices", true)) {
            const std::string l =
                fmt::format("{},device=\"{}\"", d, escape(dev.value("name", std::string())));
            f.add("vireo_device_driver_errors_total", "counter",
                  "Times the guest driver broke the virtio rules (device needed a reset)", l,
                  num(dev, "driver_errors"));
            for (const auto& [counter, n] : member(dev, "counters", false).items()) {
                if (counter == "host_sockets")  // a level, not a count of events
                    f.add("vireo_device_host_sockets", "gauge",
                          "Host sockets the guest holds through user networking", l,
                          n.get<double>());
                else
                    f.add("vireo_device_" + metric_name(counter) + "_total", "counter",
                          "virtio device counter " + counter, l, n.get<double>());
            }
        }
    }
    return f.text();
}

namespace {
struct Address {
    sockaddr_storage ss{};
    socklen_t len = 0;
};

Result<Address> parse_address(const std::string& address) {
    Address out;
    const size_t colon = address.rfind(':');
    if (colon == std::string::npos || colon + 1 == address.size())
        return fail(ErrorCode::InvalidArgument,
                    "--metrics \"{}\": use ADDR:PORT, e.g. 127.0.0.1:9100", address);
    std::string host = address.substr(0, colon);
    const std::string port_text = address.substr(colon + 1);
    char* end = nullptr;
    const long port = std::strtol(port_text.c_str(), &end, 10);
    if (*end != '\0' || port < 0 || port > 65535)
        return fail(ErrorCode::InvalidArgument, "--metrics: \"{}\" is not a port (0 to 65535)",
                    port_text);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    if (host == "localhost") host = "127.0.0.1";
    sockaddr_storage& ss = out.ss;
    socklen_t& len = out.len;
    auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
    if (::inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
        if ((ntohl(v4->sin_addr.s_addr) >> 24) != 127)
            return fail(ErrorCode::InvalidArgument,
                        "--metrics: {} is not a loopback address (127.0.0.0/8 or ::1): the "
                        "metrics endpoint has no authentication and is not for the network",
                        host);
        v4->sin_family = AF_INET;
        v4->sin_port = htons(static_cast<uint16_t>(port));
        len = sizeof *v4;
    } else if (::inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
        if (!IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr))
            return fail(ErrorCode::InvalidArgument,
                        "--metrics: {} is not a loopback address (127.0.0.0/8 or ::1)", host);
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(static_cast<uint16_t>(port));
        len = sizeof *v6;
    } else {
        return fail(ErrorCode::InvalidArgument, "--metrics: \"{}\" is not an IP address", host);
    }
    return out;
}
}  // namespace

Result<void> check_metrics_address(const std::string& address) {
    VIREO_TRY(parse_address(address));
    return ok();
}

Result<std::unique_ptr<MetricsEndpoint>> MetricsEndpoint::create(
    const std::string& address, std::function<std::string()> render) {
    VIREO_TRY_ASSIGN(Address a, parse_address(address));
    const sockaddr_storage& ss = a.ss;
    const socklen_t len = a.len;
    UniqueFd fd(::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) return fail_errno(errno, "--metrics: socket");
    const int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&ss), len) != 0)
        return fail_errno(errno, "--metrics: cannot listen on {}", address);
    if (::listen(fd.get(), 16) != 0) return fail_errno(errno, "--metrics: listen");
    sockaddr_storage bound{};
    socklen_t blen = sizeof bound;
    ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &blen);
    const uint16_t actual =
        ntohs(bound.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&bound)->sin_port
                                         : reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
    VIREO_TRY_ASSIGN(auto stop, EventFd::create());
    return std::unique_ptr<MetricsEndpoint>(
        new MetricsEndpoint(std::move(fd), std::move(stop), std::move(render), actual));
}

void MetricsEndpoint::start() {
    if (thread_.joinable()) return;
    thread_ = std::thread([p = this] {
        ::pthread_setname_np(::pthread_self(), "vireo-metrics");
        confine_thread(ThreadClass::Metrics);
        p->serve();
    });
}

MetricsEndpoint::~MetricsEndpoint() {
    (void)stop_.signal();
    if (thread_.joinable()) thread_.join();
}

struct MetricsEndpoint::Conn {
    UniqueFd fd;
    std::chrono::steady_clock::time_point deadline;
    std::string in, out;
    size_t sent = 0;
    bool answering = false;  // the answer is being sent
};

void MetricsEndpoint::serve() {
    using Clock = std::chrono::steady_clock;
    std::vector<Conn> conns;
    Clock::time_point accept_again{};  // after EMFILE: not before then
    for (;;) {
        const auto now = Clock::now();
        // Too slow: its time is up (a request head not complete, an answer not taken).
        std::erase_if(conns, [&](const Conn& c) {
            if (now < c.deadline) return false;
            timed_out_.fetch_add(1, std::memory_order_relaxed);
            return true;
        });
        std::vector<pollfd> fds;
        fds.push_back({stop_.fd(), POLLIN, 0});
        const bool accepting = conns.size() < kMaxClients && now >= accept_again;
        fds.push_back({fd_.get(), static_cast<short>(accepting ? POLLIN : 0), 0});
        int timeout = -1;
        auto until = [&](Clock::time_point t) {
            const auto ms =
                std::chrono::duration_cast<std::chrono::milliseconds>(t - now).count() + 1;
            const int v = static_cast<int>(std::clamp<int64_t>(ms, 0, 60000));
            timeout = timeout < 0 ? v : std::min(timeout, v);
        };
        if (!accepting && conns.size() < kMaxClients) until(accept_again);
        for (const auto& c : conns) {
            fds.push_back({c.fd.get(), static_cast<short>(c.answering ? POLLOUT : POLLIN), 0});
            until(c.deadline);
        }
        if (::poll(fds.data(), fds.size(), timeout) < 0) {
            if (errno == EINTR) continue;
            return;
        }
        if (fds[0].revents) return;
        // Clients first (fds[2..] matches conns as it was), then new connections.
        size_t i = 2;
        std::erase_if(conns, [&](Conn& c) {
            const short re = fds[i++].revents;
            if (re == 0) return false;
            return !(c.answering ? on_writable(c) : on_readable(c));
        });
        if (accepting && (fds[1].revents & POLLIN)) {
            while (conns.size() < kMaxClients) {
                UniqueFd c(::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
                if (!c) {
                    // Out of descriptors: the pending connection stays in the backlog; wait a
                    // little rather than spin on a listener that stays readable.
                    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                        accept_again = Clock::now() + std::chrono::milliseconds(100);
                    break;
                }
                conns.push_back({std::move(c),
                                 Clock::now() + std::chrono::milliseconds(kRequestMs),
                                 {},
                                 {},
                                 0,
                                 false});
            }
        }
    }
}

bool MetricsEndpoint::on_readable(Conn& c) {
    char buf[1024];
    const ssize_t n = ::recv(c.fd.get(), buf, sizeof buf, 0);
    if (n < 0) return errno == EAGAIN || errno == EINTR;
    if (n == 0) return false;  // closed before its request was complete
    c.in.append(buf, static_cast<size_t>(n));
    if (c.in.find("\r\n\r\n") == std::string::npos && c.in.find("\n\n") == std::string::npos &&
        c.in.size() < kMaxRequestHead)
        return true;
    const bool get = c.in.rfind("GET /metrics ", 0) == 0 || c.in.rfind("GET /metrics?", 0) == 0 ||
                     c.in.rfind("GET / ", 0) == 0;
    const std::string body = get ? render_() : "not found: GET /metrics\n";
    c.out = fmt::format(
        "HTTP/1.0 {}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        get ? "200 OK" : "404 Not Found", body.size());
    c.out += body;
    c.in.clear();
    c.answering = true;
    c.deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kSendMs);
    return on_writable(c);
}

bool MetricsEndpoint::on_writable(Conn& c) {
    while (c.sent < c.out.size()) {
        const ssize_t n =
            ::send(c.fd.get(), c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
        if (n < 0) return errno == EAGAIN || errno == EINTR;
        c.sent += static_cast<size_t>(n);
    }
    return false;  // all sent: close (HTTP/1.0, Connection: close)
}

}  // namespace vireo::api
