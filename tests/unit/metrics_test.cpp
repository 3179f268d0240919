// The Prometheus text rendering of domains' metrics.
#include "api/metrics.hpp"

#include <gtest/gtest.h>

namespace vireo::api {
namespace {

Json domain(const std::string& state, uint64_t io) {
    return Json{{"state", state},
                {"uptime_s", 2.5},
                {"boots", 1},
                {"memory_bytes", 1 << 20},
                {"vcpus", Json::array({{{"id", 0},
                                        {"cpu_s", 0.5},
                                        {"exits", {{"io", io}}},
                                        {"kvm", {{"exits", 10}, {"halt_wait_ns", 2000000000}}}}})},
                {"devices", Json::array({{{"name", "virtio-blk@0xd0000000"},
                                          {"driver_errors", 0},
                                          {"counters", {{"read_bytes", 4096}}}}})}};
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
    EXPECT_NE(t.find("vireo_vcpu_halt_seconds_total{domain=\"a\",vcpu=\"0\"} 2\n"),
              std::string::npos);
    EXPECT_NE(t.find("vireo_device_read_bytes_total{domain=\"a\",device=\"virtio-blk@0xd0000000\"} "
                     "4096\n"),
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

}  // namespace
}  // namespace vireo::api
