// Many concurrent clients of a `vireo up` host, in one process: each client thread asks the
// host for `list` and then one domain for `info` (what `vireo list` and `vireo info NAME` do),
// again and again, on a fresh connection each time. host_control.sh runs it while domains
// boot; one process instead of hundreds of `vireo` processes keeps the load on the server, not
// on exec (which costs seconds each in an emulated test host).
//
// usage: api_load RUN_DIR CLIENTS ROUNDS DOMAIN...
// Prints the requests, failures and answer times (median, 99th percentile, worst); exits 1 if
// any request failed or the rounds took longer than two minutes. A domain that is still starting is
// not a failure (the CLI refuses it with a clear error), and neither is a host that answers `busy`
// (api::call retries it).
//
// usage: api_load --hold SOCKET N SECONDS
// Opens N connections to SOCKET (as many as the server takes) and holds them, silent, for
// SECONDS; prints how many were open at the end. For the open-files limit (hardening.sh).
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "api/server.hpp"

namespace {

using Clock = std::chrono::steady_clock;
constexpr int kTimeoutMs = 20000;  // a request that takes longer is a failure
// A client whose rounds are not done by then stops (a failure): the load ends in bounded time
// even against a server that answers nothing.
constexpr auto kAllRounds = std::chrono::seconds(120);

}  // namespace

// Silent clients: connected, never sending. The server may close some (busy at its limits).
int hold(const std::string& path, int n, int seconds) {
    std::vector<int> fds;
    for (int i = 0; i < n; ++i) {
        const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
        if (fd < 0) break;
        if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
            ::close(fd);
            continue;
        }
        fds.push_back(fd);
    }
    std::this_thread::sleep_for(std::chrono::seconds(seconds));
    size_t open = 0;
    for (int fd : fds) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 0) == 0) ++open;  // else answered "busy" and closed by the server
        ::close(fd);
    }
    std::printf("%zu of %d connections still open after %d s\n", open, n, seconds);
    return 0;
}

int main(int argc, char** argv) {
    if (argc == 5 && std::string(argv[1]) == "--hold")
        return hold(argv[2], std::atoi(argv[3]), std::atoi(argv[4]));
    if (argc < 5) {
        std::fprintf(stderr,
                     "usage: api_load RUN_DIR CLIENTS ROUNDS DOMAIN...\n"
                     "       api_load --hold SOCKET N SECONDS\n");
        return 2;
    }
    const std::string run_dir = argv[1];
    const int clients = std::atoi(argv[2]);
    const int rounds = std::atoi(argv[3]);
    const std::vector<std::string> domains(argv + 4, argv + argc);
    if (clients <= 0 || clients > 1000 || rounds <= 0) {
        std::fprintf(stderr, "api_load: CLIENTS 1-1000, ROUNDS > 0\n");
        return 2;
    }
    std::mutex mu;
    std::vector<double> ms;  // every answer's time
    std::vector<std::string> failures;
    auto note = [&](Clock::time_point t0, const std::string& failure) {
        const double d = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        std::lock_guard lock(mu);
        ms.push_back(d);
        if (!failure.empty()) failures.push_back(failure);
    };
    std::vector<std::thread> threads;
    const auto deadline = Clock::now() + kAllRounds;
    for (int c = 0; c < clients; ++c)
        threads.emplace_back([&, c] {
            for (int i = 0; i < rounds; ++i) {
                if (Clock::now() > deadline) {
                    std::lock_guard lock(mu);
                    failures.push_back("client " + std::to_string(c) + ": " +
                                       std::to_string(rounds - i) + " rounds not done in time");
                    break;
                }
                auto t0 = Clock::now();
                auto list = vireo::api::call(run_dir + "/vireo.sock", "list", {}, kTimeoutMs);
                note(t0, list ? "" : "list: " + list.error().message());
                if (!list) continue;
                const std::string& name = domains[static_cast<size_t>(c + i) % domains.size()];
                for (const auto& d : *list) {
                    if (d.value("name", std::string()) != name) continue;
                    if (d.value("state", std::string()) == "starting") break;  // not a failure
                    t0 = Clock::now();
                    auto info =
                        vireo::api::call(d.value("api", std::string()), "info", {}, kTimeoutMs);
                    note(t0, info ? "" : "info " + name + ": " + info.error().message());
                }
            }
        });
    for (auto& t : threads)
        t.join();
    std::sort(ms.begin(), ms.end());
    auto at = [&](double q) {
        return ms.empty() ? 0.0
                          : ms[std::min(ms.size() - 1,
                                        static_cast<size_t>(q * static_cast<double>(ms.size())))];
    };
    std::printf(
        "%zu requests from %d clients, %zu failed; answered in %.1f ms median, %.1f ms "
        "p99, %.1f ms worst\n",
        ms.size(), clients, failures.size(), at(0.5), at(0.99), ms.empty() ? 0 : ms.back());
    for (size_t i = 0; i < failures.size() && i < 10; ++i)
        std::printf("  %s\n", failures[i].c_str());
    return failures.empty() ? 0 : 1;
}
