#include "api/metrics.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <map>

#include "base/log.hpp"
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
            for (const auto& [counter, n] : member(dev, "counters", false).items())
                f.add("vireo_device_" + metric_name(counter) + "_total", "counter",
                      "virtio device counter " + counter, l, n.get<double>());
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
    std::unique_ptr<MetricsEndpoint> e(
        new MetricsEndpoint(std::move(fd), std::move(stop), std::move(render), actual));
    e->thread_ = std::thread([p = e.get()] {
        ::pthread_setname_np(::pthread_self(), "vireo-metrics");
        p->serve();
    });
    return e;
}

MetricsEndpoint::~MetricsEndpoint() {
    (void)stop_.signal();
    if (thread_.joinable()) thread_.join();
}

void MetricsEndpoint::serve() {
    for (;;) {
        pollfd fds[2] = {{stop_.fd(), POLLIN, 0}, {fd_.get(), POLLIN, 0}};
        if (::poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            return;
        }
        if (fds[0].revents) return;
        UniqueFd c(::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (c) answer(c.get());
    }
}

void MetricsEndpoint::answer(int client) {
    // Read the request head (at most 8 KiB, 1 s in all).
    std::string req;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    while (req.find("\r\n\r\n") == std::string::npos && req.find("\n\n") == std::string::npos &&
           req.size() < 8192) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        pollfd p{client, POLLIN, 0};
        if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) return;
        char buf[1024];
        const ssize_t n = ::recv(client, buf, sizeof buf, 0);
        if (n <= 0) return;
        req.append(buf, static_cast<size_t>(n));
    }
    const bool get = req.rfind("GET /metrics ", 0) == 0 || req.rfind("GET /metrics?", 0) == 0 ||
                     req.rfind("GET / ", 0) == 0;
    std::string body = get ? render_() : "not found: GET /metrics\n";
    const std::string head = fmt::format(
        "HTTP/1.0 {}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        get ? "200 OK" : "404 Not Found", body.size());
    (void)send_all(client, head + body, 1000);
}

}  // namespace vireo::api
