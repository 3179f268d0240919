// vireo's control API: JSON over a Unix socket, one request per line, one response per line.
//
//   -> {"id": 1, "method": "balloon.set", "params": {"memory": "256M"}}
//   <- {"id": 1, "result": {...}}            or   {"id": 1, "error": {"code": "...", "message":
//   "..."}}
//
// One thread serves every client (poll over the listener and all connections; requests are
// small and the methods quick), so concurrent clients neither race nor need a thread each.
// The socket is created with mode 0600 (owner only); a path that exists and answers is refused
// (another vireo owns it), a stale one is replaced; the path is removed on exit. Requests are
// capped (kMaxRequest bytes): longer lines, malformed JSON, unknown methods and wrong
// parameter types get structured errors and the connection stays usable.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <thread>

#include "base/event_fd.hpp"
#include "base/result.hpp"
#include "base/unique_fd.hpp"

namespace vireo::api {

inline constexpr int kApiVersion = 1;
inline constexpr size_t kMaxRequest = 64 * 1024;
inline constexpr size_t kMaxClients = 64;

/// What a method throws to answer with an error.
struct ApiError : std::runtime_error {
    ApiError(std::string code_, const std::string& message)
        : std::runtime_error(message), code(std::move(code_)) {}
    std::string code;  ///< "invalid-params", "not-found", "bad-state", "unsupported", "failed"
};

using Json = nlohmann::json;
using Method = std::function<Json(const Json& params)>;

/// Parses one request line and dispatches it; returns the response line (without newline).
/// Exposed for the fuzzer and unit tests.
std::string handle_request(const std::map<std::string, Method>& methods, std::string_view line);

class Server {
  public:
    static Result<std::unique_ptr<Server>> create(const std::string& path);
    ~Server();

    /// Registers a method. Before start().
    void add(std::string name, Method method) { methods_[std::move(name)] = std::move(method); }
    Result<void> start();
    void stop();

  private:
    Server(UniqueFd fd, std::string path, EventFd wake)
        : fd_(std::move(fd)), path_(std::move(path)), wake_(std::move(wake)) {}
    void serve();

    UniqueFd fd_;
    std::string path_;
    EventFd wake_;
    std::map<std::string, Method> methods_;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

/// A client: sends one request and returns the response's "result" (or the error as a failed
/// Result, message "code: message").
Result<Json> call(const std::string& path, const std::string& method, const Json& params = {});

}  // namespace vireo::api
