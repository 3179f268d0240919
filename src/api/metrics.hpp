// Metrics in Prometheus' text format (version 0.0.4), and a loopback-only HTTP endpoint that
// serves them (`--metrics 127.0.0.1:PORT`).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "api/server.hpp"
#include "base/event_fd.hpp"
#include "base/result.hpp"
#include "base/unique_fd.hpp"

namespace vireo::api {

/// Renders domains' "metrics" results (domain name, JSON as the method returns it) as
/// Prometheus text: each family's HELP and TYPE once, then its samples for every domain.
std::string prometheus_text(const std::vector<std::pair<std::string, Json>>& domains);

/// Checks an ADDR:PORT for --metrics (syntax, loopback) without binding it.
Result<void> check_metrics_address(const std::string& address);

/// A minimal HTTP/1.0 server on a loopback address: GET /metrics answers with what `render`
/// returns; everything else is 404. One thread serves up to kMaxClients connections at once,
/// non-blocking: each gets kRequestMs for its request head (8 KiB at most) and kSendMs for the
/// answer, then is closed, so slow, silent or half-open clients cannot hold the page up. At the
/// open-files limit it stops accepting for a moment instead of spinning.
/// render() runs on that thread, one scrape at a time.
class MetricsEndpoint {
  public:
    /// `address` is "127.0.0.1:9100", "[::1]:9100" or "localhost:9100"; other addresses are
    /// refused (metrics are not for the network). Listens at once; serves from start() on.
    static Result<std::unique_ptr<MetricsEndpoint>> create(const std::string& address,
                                                           std::function<std::string()> render);
    /// Starts the serving thread (a domain starts it after entering its sandbox).
    void start();
    ~MetricsEndpoint();
    uint16_t port() const noexcept { return port_; }

    static constexpr size_t kMaxClients = 32;
    static constexpr int kRequestMs = 1000;
    static constexpr int kSendMs = 1000;
    static constexpr size_t kMaxRequestHead = 8192;

    /// Connections closed for being too slow (the bound hit).
    uint64_t timed_out() const noexcept { return timed_out_.load(); }

  private:
    MetricsEndpoint(UniqueFd fd, EventFd stop, std::function<std::string()> render, uint16_t port)
        : fd_(std::move(fd)), stop_(std::move(stop)), render_(std::move(render)), port_(port) {}
    struct Conn;
    void serve();
    /// Reads what arrived; once the head is complete, renders the answer. False: close it.
    bool on_readable(Conn& c);
    /// Sends what the socket takes. False: close it (all sent, or an error).
    bool on_writable(Conn& c);
    std::atomic<uint64_t> timed_out_{0};

    UniqueFd fd_;
    EventFd stop_;
    std::function<std::string()> render_;
    uint16_t port_;
    std::thread thread_;
};

}  // namespace vireo::api
