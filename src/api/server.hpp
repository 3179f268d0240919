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
inline constexpr size_t kMaxClients = 128;

/// What a method throws to answer with an error.
struct ApiError : std::runtime_error {
    ApiError(std::string code_, const std::string& message)
        : std::runtime_error(message), code(std::move(code_)) {}
    std::string code;  ///< "invalid-params", "not-found", "bad-state", "unsupported", "failed"
};

using Json = nlohmann::json;
using Method = std::function<Json(const Json& params)>;

/// j[key] if it is there and an array (`array`) or an object, else an empty one; by reference,
/// so loops over it make no temporaries.
inline const Json& member(const Json& j, const char* key, bool array) {
    static const Json kNoArray = Json::array(), kNoObject = Json::object();
    const auto it = j.find(key);
    if (it != j.end() && (array ? it->is_array() : it->is_object())) return *it;
    return array ? kNoArray : kNoObject;
}

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

/// A client connection: requests one after another on one socket.
class Client {
  public:
    /// Connects to the API socket at `path`; each call waits at most `timeout_ms` for the reply.
    static Result<Client> connect(const std::string& path, int timeout_ms = 10000);
    /// Sends one request and returns the response's "result", or the error as a failed Result
    /// with message "code: message" (ErrorCode NotFound / BadState for those codes).
    Result<Json> call(const std::string& method, const Json& params = {});

  private:
    Client(UniqueFd fd, std::string path, int timeout_ms)
        : fd_(std::move(fd)), path_(std::move(path)), timeout_ms_(timeout_ms) {}
    UniqueFd fd_;
    std::string path_;
    int timeout_ms_;
    std::string buf_;
    uint64_t next_id_ = 0;
};

/// One request on a fresh connection (see Client::call); retried a few times (10 ms to 0.3 s
/// apart) while the server answers "busy".
Result<Json> call(const std::string& path, const std::string& method, const Json& params = {},
                  int timeout_ms = 10000);

/// Callers of "shutdown" that wait for the guest to power off press the button again this often:
/// a guest still booting (no button driver or acpid yet) drops a press without a trace.
inline constexpr int kPowerButtonRepeatSeconds = 10;

}  // namespace vireo::api
