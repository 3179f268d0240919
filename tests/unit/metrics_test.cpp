// The Prometheus text rendering of domains' metrics.
#include "api/metrics.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

#include "base/unique_fd.hpp"

namespace vireo::api {
namespace {

Json domain(const std::string& state, uint64_t io) {
    return Json{{"state", state},
                {"uptime_s", 2.5},
                {"boots", 1},
                {"memory_bytes", 1 << 20},
                {"vmm_pool",
                 {{"limit_bytes", 262144},
                  {"used_bytes", 8192},
                  {"high_water_bytes", 262144},
                  {"refused", io}}},
                {"vcpus", Json::array({{{"id", 0},
                                        {"cpu_s", 0.5},
                                        {"exits", {{"io", io}}},
                                        {"kvm", {{"exits", 10}, {"halt_wait_ns", 2000000000}}}}})},
                {"devices", Json::array({{{"name", "virtio-blk@0xd0000000"},
                                          {"driver_errors", 0},
                                          {"counters", {{"read_bytes", 4096}}}},
                                         {{"name", "virtio-net@0xd0001000"},
                                          {"driver_errors", 0},
                                          {"counters", {{"host_sockets", 3}}}}})}};
}

size_t count(const std::string& text, const std::string& needle) {
    size_t n = 0;
    for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1))
        ++n;
    return n;
}

TEST(Prometheus, FamiliesOnceSamplesPerDomain) {
    const std::string t =
        prometheus_text({{"a", domain("running", 7)}, {"b", domain("paused", 9)}});
    EXPECT_EQ(count(t, "# TYPE vireo_vcpu_exits_total counter\n"), 1u);
    EXPECT_NE(t.find("vireo_vcpu_exits_total{domain=\"a\",vcpu=\"0\",reason=\"io\"} 7\n"),
              std::string::npos);
    EXPECT_NE(t.find("vireo_vcpu_exits_total{domain=\"b\",vcpu=\"0\",reason=\"io\"} 9\n"),
              std::string::npos);
    EXPECT_NE(t.find("vireo_domain_paused{domain=\"b\"} 1\n"), std::string::npos);
    EXPECT_NE(t.find("vireo_vmm_pool_used_bytes{domain=\"a\"} 8192\n"), std::string::npos);
    EXPECT_NE(t.find("vireo_vmm_pool_refused_total{domain=\"b\"} 9\n"), std::string::npos);
    EXPECT_NE(t.find("vireo_vcpu_halt_seconds_total{domain=\"a\",vcpu=\"0\"} 2\n"),
              std::string::npos);
    EXPECT_NE(t.find("vireo_device_read_bytes_total{domain=\"a\",device=\"virtio-blk@0xd0000000\"} "
                     "4096\n"),
              std::string::npos);
    // A level is a gauge, without _total.
    EXPECT_NE(t.find("# TYPE vireo_device_host_sockets gauge\n"), std::string::npos);
    EXPECT_NE(
        t.find("vireo_device_host_sockets{domain=\"a\",device=\"virtio-net@0xd0001000\"} 3\n"),
        std::string::npos);
    // Every sample line belongs to a family announced before it.
    EXPECT_EQ(t.rfind("# TYPE vireo_domain_boots_total", t.find("vireo_domain_boots_total{")) <
                  t.find("vireo_domain_boots_total{"),
              true);
}

TEST(Prometheus, LabelValuesEscapedAndJunkIgnored) {
    const std::string t =
        prometheus_text({{"we\"ird\\name\n", domain("running", 1)}, {"x", Json("not an object")}});
    EXPECT_NE(t.find("domain=\"we\\\"ird\\\\name\\n\""), std::string::npos);
    EXPECT_EQ(t.find("domain=\"x\""), std::string::npos);
}

TEST(MetricsEndpoint, RefusesNonLoopback) {
    EXPECT_FALSE(check_metrics_address("10.0.0.1:9100"));
    EXPECT_FALSE(check_metrics_address("0.0.0.0:9100"));
    EXPECT_FALSE(check_metrics_address("127.0.0.1"));
    EXPECT_FALSE(check_metrics_address("127.0.0.1:70000"));
    EXPECT_FALSE(check_metrics_address("[::]:9100"));
    EXPECT_TRUE(check_metrics_address("127.0.0.1:9100"));
    EXPECT_TRUE(check_metrics_address("[::1]:9100"));
    EXPECT_TRUE(check_metrics_address("localhost:0"));
}

UniqueFd connect_to(uint16_t port) {
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return UniqueFd();
    return fd;
}

// A GET, answered in full within `ms`: the status line, or "" on a timeout.
std::string scrape(uint16_t port, int ms) {
    UniqueFd fd = connect_to(port);
    if (!fd) return "";
    const std::string req = "GET /metrics HTTP/1.0\r\n\r\n";
    if (::send(fd.get(), req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size()))
        return "";
    std::string got;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        pollfd p{fd.get(), POLLIN, 0};
        if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) return "";
        char buf[65536];
        const ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
        if (n < 0) return "";
        if (n == 0) break;
        got.append(buf, static_cast<size_t>(n));
    }
    return got.substr(0, got.find("\r\n"));
}

// Silent, half-sent and non-reading clients, more than it serves at once: the page still
// answers, and the slow ones are closed after their time.
TEST(MetricsEndpoint, SlowAndSilentClientsDoNotHoldThePageUp) {
    const std::string big(4 << 20, 'x');  // more than a socket buffer: a non-reader stalls
    auto e = MetricsEndpoint::create("127.0.0.1:0", [&] { return big; });
    ASSERT_TRUE(e) << e.error().message();
    (*e)->start();
    const uint16_t port = (*e)->port();
    std::vector<UniqueFd> hostile;
    for (size_t i = 0; i < MetricsEndpoint::kMaxClients + 8; ++i) {
        hostile.push_back(connect_to(port));
        ASSERT_TRUE(hostile.back());
        if (i % 3 == 1) (void)::send(hostile.back().get(), "GET /met", 8, MSG_NOSIGNAL);
        if (i % 3 == 2)
            (void)::send(hostile.back().get(), "GET / HTTP/1.0\r\n\r\n", 18, MSG_NOSIGNAL);
    }
    // Every slot is taken: the scrape waits in the backlog for at most the slow ones' time.
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(scrape(port, 10000), "HTTP/1.0 200 OK");
    const auto took = std::chrono::steady_clock::now() - t0;
    EXPECT_LT(took, std::chrono::milliseconds(
                        3 * (MetricsEndpoint::kRequestMs + MetricsEndpoint::kSendMs)));
    EXPECT_GE((*e)->timed_out(), MetricsEndpoint::kMaxClients / 2);
    // With the hostile clients gone, a scrape is answered at once.
    hostile.clear();
    EXPECT_EQ(scrape(port, 2000), "HTTP/1.0 200 OK");
}

}  // namespace
}  // namespace vireo::api
