// vireo's control API: JSON over a Unix socket, one request per line, one response per line.
//
//   -> {"id": 1, "method": "balloon.set", "params": {"memory": "256M"}}
//   <- {"id": 1, "result": {...}}            or   {"id": 1, "error": {"code": "...", "message":
//   "..."}}
//
// One thread serves every client (poll over the listener and all connections), and nothing it
// does waits for a client: replies are queued per client and sent as the socket takes them.
// Methods that can block (they wait for a domain or a file) are registered as Blocking and run
// on a worker thread, at most kMaxWorkers at once. Bounds, each counted when hit (stats()):
// a request is at most kMaxRequest bytes and kMaxDepth levels of nesting (checked before it is
// parsed, so no parser or serializer recurses deeper than that on the 1 MiB thread stack) and
// must arrive whole within kRequestTimeoutMs of its first byte; a client that leaves more than
// kMaxPendingOutput bytes of replies unread, or reads none of them for kSendTimeoutMs, is
// dropped; at kMaxClients the client idle the longest makes room for a new one (a client whose
// request is running is never evicted: the new one is told "busy"). The socket is created with
// mode 0600 (owner only); a path that exists and answers is refused (another vireo owns it), a
// stale one is replaced; the path is removed on exit if it is still this server's socket.
#pragma once

#include <fcntl.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <variant>

#include "base/event_fd.hpp"
#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "base/unix_socket.hpp"

namespace vireo::api {

inline constexpr int kApiVersion = 1;
inline constexpr size_t kMaxRequest = 64 * 1024;
inline constexpr size_t kMaxDepth = 32;  ///< nesting of arrays and objects in a request
inline constexpr size_t kMaxClients = 128;
inline constexpr size_t kMaxPendingOutput = 4 * 1024 * 1024;
inline constexpr int kRequestTimeoutMs = 5000;
inline constexpr int kSendTimeoutMs = 5000;
/// At stop(), how long the clients of requests that were still running get to take their
/// answers (all together).
inline constexpr int kStopFlushMs = 1000;
inline constexpr size_t kMaxWorkers = 4;

using Json = nlohmann::json;
/// A method answers with its result, or fails with an Error whose ErrorCode becomes the
/// reply's error code (api_error_code()). The one error convention: no method throws.
using Method = std::function<Result<Json>(const Json& params)>;
/// A method that takes a file descriptor the client sent with the request (SCM_RIGHTS on the
/// request's bytes): a file a jailed domain cannot open itself, such as a snapshot to write.
/// It gets an empty UniqueFd when none came.
using FdMethod = std::function<Result<Json>(const Json& params, UniqueFd fd)>;

/// The API error code of an ErrorCode, mapped here only: InvalidArgument and OutOfRange are
/// "invalid-params", NotFound "not-found", BadState "bad-state", anything else "failed".
const char* api_error_code(ErrorCode code) noexcept;

/// j[key] if it is there and an array (`array`) or an object, else an empty one; by reference,
/// so loops over it make no temporaries.
inline const Json& member(const Json& j, const char* key, bool array) {
    static const Json kNoArray = Json::array(), kNoObject = Json::object();
    const auto it = j.find(key);
    if (it != j.end() && (array ? it->is_array() : it->is_object())) return *it;
    return array ? kNoArray : kNoObject;
}

/// True if `text`, read as JSON, nests arrays and objects at most `max_depth` deep (brackets
/// inside strings do not count). Linear, no recursion: run before anything parses the text.
bool within_depth(std::string_view text, size_t max_depth) noexcept;

/// A request that parsed: what to call with what, and the id to answer with.
struct Request {
    Json id;
    std::string method;
    Json params;
};

/// A request line that did not parse: the error response line to send instead, and whether it
/// was refused for its nesting (counted as `too_deep`).
struct RequestError {
    std::string reply;
    bool too_deep = false;
};

/// Parses one request line: the request, or the error to answer with.
std::variant<Request, RequestError> parse_request(std::string_view line);

/// Calls the request's method; returns the response line (without newline).
std::string dispatch(const std::map<std::string, Method>& methods, const Request& request);
/// Calls `method` for `request` (its result or error as the response line).
std::string dispatch_one(const Method& method, const Request& request);

/// parse_request, then dispatch. Exposed for the fuzzer and unit tests.
std::string handle_request(const std::map<std::string, Method>& methods, std::string_view line);

/// What a server has turned away or cut off, by bound (see the top of this file).
struct ServerStats {
    std::atomic<uint64_t> requests{0};
    std::atomic<uint64_t> too_large{0};         ///< over kMaxRequest
    std::atomic<uint64_t> too_deep{0};          ///< over kMaxDepth
    std::atomic<uint64_t> request_timeouts{0};  ///< a request not whole within its time
    std::atomic<uint64_t> slow_readers{0};      ///< replies not read: dropped
    std::atomic<uint64_t> evicted{0};           ///< idle clients that made room
    std::atomic<uint64_t> busy{0};              ///< clients or requests told "busy"
    std::atomic<uint64_t> accept_errors{0};     ///< e.g. at the open-files limit
};

class Server {
  public:
    /// Inline methods run on the serving thread and must not wait for anything; Blocking ones
    /// (they wait for a domain, a child process or a file) run on a worker.
    enum class Kind { Inline, Blocking };

    static Result<std::unique_ptr<Server>> create(const std::string& path);
    ~Server();

    /// Registers a method. Before start().
    void add(std::string name, Method method, Kind kind = Kind::Inline);
    /// Registers a method that takes a descriptor sent with its request. A descriptor goes to
    /// the next request of its connection and no further: any other method closes it; at most
    /// one is held per connection (a newer one replaces it; extra ones in a message are closed).
    void add(std::string name, FdMethod method, Kind kind = Kind::Inline);
    Result<void> start();
    void stop();
    const ServerStats& stats() const noexcept { return stats_; }

  private:
    struct Conn;
    Server(UnixListener listener, EventFd wake, UniqueFd spare)
        : listener_(std::move(listener)), wake_(std::move(wake)), spare_(std::move(spare)) {}
    using TimePoint = std::chrono::steady_clock::time_point;
    void serve();
    static bool flush(Conn& c, TimePoint now);
    static void queue_reply(Conn& c, std::string_view line, TimePoint now);
    void accept_clients(std::vector<Conn>& clients);
    void handle_lines(Conn& c);
    void finish_workers(std::vector<Conn>& clients);
    // The replies finished workers left, taken out (by connection serial).
    std::vector<std::pair<uint64_t, std::string>> take_done();

    UnixListener listener_;
    EventFd wake_;
    // The spare descriptor held for accepting at the open-files limit: any descriptor will do,
    // so a copy of wake_'s (no file system: a jailed domain has none to open).
    int take_spare() const noexcept { return ::fcntl(wake_.fd(), F_DUPFD_CLOEXEC, 0); }
    UniqueFd spare_;  // an fd given back at the open-files limit, to accept and say "busy"
    std::map<std::string, Method> methods_;
    std::map<std::string, FdMethod> fd_methods_;
    std::map<std::string, Kind> kinds_;
    std::atomic<bool> stop_{false};
    std::thread thread_;
    ServerStats stats_;
    uint64_t next_serial_ = 0;  // names connections for replies from workers

    struct Worker {
        std::thread thread;
        std::atomic<bool> done{false};
    };
    std::mutex done_mu_;  // done_: replies of finished workers, by connection serial
    std::vector<std::pair<uint64_t, std::string>> done_;
    std::list<Worker> workers_;  // only the serving thread (and stop(), after it) touches it
};

/// A client connection: requests one after another on one socket.
class Client {
  public:
    /// Connects to the API socket at `path`; each call waits at most `timeout_ms` for the reply.
    static Result<Client> connect(const std::string& path, int timeout_ms = 10000);
    /// Sends one request and returns the response's "result", or the error as a failed Result
    /// with message "code: message" (ErrorCode NotFound / BadState for those codes).
    Result<Json> call(const std::string& method, const Json& params = {});
    /// The same, sending descriptor `pass_fd` with the request (SCM_RIGHTS).
    Result<Json> call_with_fd(const std::string& method, const Json& params, int pass_fd);

  private:
    Result<Json> call_impl(const std::string& method, const Json& params, int pass_fd);
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
