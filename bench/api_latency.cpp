#include "api_latency.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "api/server.hpp"

namespace vireo::bench {

namespace {

using Clock = std::chrono::steady_clock;

struct Figures {
    double p50_us = 0, p99_us = 0, max_us = 0;
};

Figures figures(std::vector<double>& us) {
    Figures f;
    if (us.empty()) return f;
    std::sort(us.begin(), us.end());
    f.p50_us = us[us.size() / 2];
    f.p99_us = us[std::min(us.size() - 1, us.size() * 99 / 100)];
    f.max_us = us.back();
    return f;
}

}  // namespace

int run_api(const ApiOptions& o) {
    auto client = api::Client::connect(o.socket, 10000);
    if (!client) {
        std::fprintf(stderr, "vireo-bench api: %s\n", client.error().message().c_str());
        return 1;
    }
    // Warm up.
    for (int i = 0; i < 50; ++i)
        (void)client->call("info");
    std::vector<double> info_us, pause_us;
    for (int i = 0; i < o.requests; ++i) {
        const auto t0 = Clock::now();
        if (!client->call("info")) return 1;
        info_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    }
    for (int i = 0; i < o.requests / 4; ++i) {
        const auto t0 = Clock::now();
        auto p = client->call("pause");
        auto u = client->call("unpause");
        if (!p || !u) {
            std::fprintf(stderr, "vireo-bench api: %s\n", (!p ? p : u).error().message().c_str());
            return 1;
        }
        pause_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    }
    // Concurrent clients, each with its own connection, all calling info.
    std::atomic<int> failures{0};
    std::vector<std::vector<double>> per(static_cast<size_t>(o.clients));
    const int each = std::max(1, o.requests / o.clients);
    const auto c0 = Clock::now();
    {
        std::vector<std::thread> threads;
        for (int c = 0; c < o.clients; ++c)
            threads.emplace_back([&, c] {
                auto cl = api::Client::connect(o.socket, 10000);
                if (!cl) {
                    failures += each;
                    return;
                }
                for (int i = 0; i < each; ++i) {
                    const auto t0 = Clock::now();
                    if (!cl->call("info")) ++failures;
                    per[static_cast<size_t>(c)].push_back(
                        std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
                }
            });
        for (auto& t : threads)
            t.join();
    }
    const double wall = std::chrono::duration<double>(Clock::now() - c0).count();
    std::vector<double> conc_us;
    for (auto& v : per)
        conc_us.insert(conc_us.end(), v.begin(), v.end());
    const Figures fi = figures(info_us), fp = figures(pause_us), fc = figures(conc_us);
    std::printf("%-28s %10s %10s %10s\n", "request", "p50 us", "p99 us", "max us");
    std::printf("%-28s %10.1f %10.1f %10.1f\n", "info", fi.p50_us, fi.p99_us, fi.max_us);
    std::printf("%-28s %10.1f %10.1f %10.1f\n", "pause + unpause", fp.p50_us, fp.p99_us, fp.max_us);
    std::printf("%-28s %10.1f %10.1f %10.1f\n",
                (std::to_string(o.clients) + " clients: info").c_str(), fc.p50_us, fc.p99_us,
                fc.max_us);
    std::printf("concurrent: %zu requests in %.3f s (%.0f/s), %d failed\n", conc_us.size(), wall,
                static_cast<double>(conc_us.size()) / wall, failures.load());
    if (o.json)
        std::printf(
            "{\"info_p50_us\":%.1f,\"info_p99_us\":%.1f,\"pause_unpause_p50_us\":%.1f,"
            "\"pause_unpause_p99_us\":%.1f,\"concurrent_p50_us\":%.1f,\"concurrent_p99_us\":%.1f,"
            "\"concurrent_failures\":%d}\n",
            fi.p50_us, fi.p99_us, fp.p50_us, fp.p99_us, fc.p50_us, fc.p99_us, failures.load());
    return failures.load() == 0 ? 0 : 1;
}

}  // namespace vireo::bench
