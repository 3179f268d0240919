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
/// returns; everything else is 404. One thread, one connection at a time, 1 s per request.
class MetricsEndpoint {
  public:
    /// `address` is "127.0.0.1:9100", "[::1]:9100" or "localhost:9100"; other addresses are
    /// refused (metrics are not for the network).
    static Result<std::unique_ptr<MetricsEndpoint>> create(const std::string& address,
                                                           std::function<std::string()> render);
    ~MetricsEndpoint();
    uint16_t port() const noexcept { return port_; }

  private:
    MetricsEndpoint(UniqueFd fd, EventFd stop, std::function<std::string()> render, uint16_t port)
        : fd_(std::move(fd)), stop_(std::move(stop)), render_(std::move(render)), port_(port) {}
    void serve();
    void answer(int client);

    UniqueFd fd_;
    EventFd stop_;
    std::function<std::string()> render_;
    uint16_t port_;
    std::thread thread_;
};

}  // namespace vireo::api
