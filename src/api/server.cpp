#include "api/server.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <system_error>
#include <thread>
#include <vector>

#include "base/log.hpp"
#include "base/thread_class.hpp"
#include "base/unix_socket.hpp"

namespace vireo::api {

using Clock = std::chrono::steady_clock;

namespace {

Json error_response(const Json& id, const std::string& code, const std::string& message) {
    return Json{{"id", id}, {"error", {{"code", code}, {"message", message}}}};
}

}  // namespace

bool within_depth(std::string_view text, size_t max_depth) noexcept {
    size_t depth = 0;
    bool in_string = false, escaped = false;
    for (const char ch : text) {
        if (in_string) {
            if (escaped)
                escaped = false;
            else if (ch == '\\')
                escaped = true;
            else if (ch == '"')
                in_string = false;
        } else if (ch == '"') {
            in_string = true;
        } else if (ch == '[' || ch == '{') {
            if (++depth > max_depth) return false;
        } else if ((ch == ']' || ch == '}') && depth > 0) {
            --depth;
        }
    }
    return true;
}

std::variant<Request, RequestError> parse_request(std::string_view line) {
    // Bounded before parsing: nlohmann's parser is iterative, but copying and printing a value
    // recurse once per level, and the id is echoed back.
    if (!within_depth(line, kMaxDepth))
        return RequestError{
            error_response(nullptr, "too-deep",
                           fmt::format("requests nest at most {} levels", kMaxDepth))
                .dump(),
            true};
    Json req = Json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (req.is_discarded())
        return RequestError{
            error_response(nullptr, "parse-error", "the request is not valid JSON").dump()};
    if (!req.is_object())
        return RequestError{
            error_response(nullptr, "invalid-request", "the request must be a JSON object").dump()};
    Request r;
    if (auto it = req.find("id"); it != req.end()) r.id = std::move(*it);
    const auto m = req.find("method");
    if (m == req.end() || !m->is_string())
        return RequestError{
            error_response(r.id, "invalid-request", "\"method\" (a string) is required").dump()};
    r.method = m->get<std::string>();
    if (auto it = req.find("params"); it != req.end())
        r.params = std::move(*it);
    else
        r.params = Json::object();
    if (!r.params.is_object())
        return RequestError{
            error_response(r.id, "invalid-params", "\"params\" must be an object").dump()};
    return r;
}

const char* api_error_code(ErrorCode code) noexcept {
    switch (code) {
        case ErrorCode::InvalidArgument:
        case ErrorCode::OutOfRange:
            return "invalid-params";
        case ErrorCode::NotFound:
            return "not-found";
        case ErrorCode::BadState:
            return "bad-state";
        default:
            return "failed";
    }
}

std::string dispatch(const std::map<std::string, Method>& methods, const Request& r) {
    if (r.method == "version")
        return Json{{"id", r.id}, {"result", {{"api", kApiVersion}, {"vireo", "0.1.0"}}}}.dump();
    auto it = methods.find(r.method);
    if (it == methods.end()) {
        std::string known = "version";
        for (const auto& [name, m] : methods)
            known += ", " + name;
        return error_response(r.id, "unknown-method",
                              fmt::format("unknown method \"{}\" (known: {})", r.method, known))
            .dump();
    }
    return dispatch_one(it->second, r);
}

std::string dispatch_one(const Method& method, const Request& r) {
    try {
        auto result = method(r.params);
        if (!result)
            return error_response(r.id, api_error_code(result.error().code()),
                                  result.error().message())
                .dump();
        return Json{{"id", r.id}, {"result", *std::move(result)}}.dump();
    } catch (const Json::exception& e) {  // typed access to params (e.g. at().get<int>())
        return error_response(r.id, "invalid-params", e.what()).dump();
    } catch (const std::exception& e) {
        return error_response(r.id, "failed", e.what()).dump();
    }
}

std::string handle_request(const std::map<std::string, Method>& methods, std::string_view line) {
    auto parsed = parse_request(line);
    if (auto* err = std::get_if<RequestError>(&parsed)) return std::move(err->reply);
    return dispatch(methods, std::get<Request>(parsed));
}

Result<std::unique_ptr<Server>> Server::create(const std::string& path) {
    VIREO_TRY_ASSIGN(auto listener, listen_unix(path, "--api-socket"));
    VIREO_TRY_ASSIGN(auto wake, EventFd::create());
    UniqueFd spare(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!spare) return fail_errno(errno, "--api-socket: open /dev/null");
    std::unique_ptr<Server> server(
        new Server(std::move(listener), std::move(wake), std::move(spare)));
    server->add("server.stats", [s = server.get()](const Json&) -> Result<Json> {
        const auto& st = s->stats_;
        const auto get = [](const std::atomic<uint64_t>& v) {
            return v.load(std::memory_order_relaxed);
        };
        return Json{{"requests", get(st.requests)},
                    {"too_large", get(st.too_large)},
                    {"too_deep", get(st.too_deep)},
                    {"request_timeouts", get(st.request_timeouts)},
                    {"slow_readers", get(st.slow_readers)},
                    {"evicted", get(st.evicted)},
                    {"busy", get(st.busy)},
                    {"accept_errors", get(st.accept_errors)}};
    });
    return server;
}

Server::~Server() {
    stop();
}

void Server::add(std::string name, Method method, Kind kind) {
    kinds_[name] = kind;
    methods_[std::move(name)] = std::move(method);
}

void Server::add(std::string name, FdMethod method, Kind kind) {
    // Listed with the others; called through the connection's descriptor (handle_lines).
    auto shared = std::make_shared<FdMethod>(std::move(method));
    add(
        name, [shared](const Json& p) { return (*shared)(p, UniqueFd()); }, kind);
    fd_methods_[std::move(name)] = *shared;
}

Result<void> Server::start() {
    try {
        thread_ = std::thread([this] {
            ::pthread_setname_np(::pthread_self(), "vireo-api");
            confine_thread(ThreadClass::Api);
            serve();
        });
    } catch (const std::system_error& e) {  // no thread (e.g. at the process limit)
        return fail_errno(e.code().value(), "API server: starting its thread");
    }
    return ok();
}

void Server::stop() {
    stop_.store(true, std::memory_order_release);
    (void)wake_.signal();
    if (thread_.joinable()) thread_.join();
    for (auto& w : workers_)
        if (w.thread.joinable()) w.thread.join();
    workers_.clear();
}

struct Server::Conn {
    UniqueFd fd;
    uint64_t serial = 0;
    std::string in;                       // received, not yet handled
    std::string out;                      // replies not yet sent
    Clock::time_point request_started{};  // first byte of the partial request in `in`
    Clock::time_point last_done{};        // connected, or last request answered
    Clock::time_point last_sent{};        // last time the client took some of `out`
    bool running = false;                 // its request runs on a worker
    bool eof = false;                     // it will send no more: close once answered
    UniqueFd passed;                      // a descriptor sent with its next request
};

// Keeps the descriptor a message carried (the newest one; any other is closed).
static void take_passed(UniqueFd& passed, msghdr& msg) {
    for (cmsghdr* h = CMSG_FIRSTHDR(&msg); h != nullptr; h = CMSG_NXTHDR(&msg, h)) {
        if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS) continue;
        const size_t count = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; ++i) {
            int fd;
            std::memcpy(&fd, CMSG_DATA(h) + i * sizeof(int), sizeof fd);
            passed.reset(fd);
        }
    }
}

// Sends what the socket takes now. False: the peer is gone.
bool Server::flush(Conn& c, Clock::time_point now) {
    while (!c.out.empty()) {
        const ssize_t n =
            ::send(c.fd.get(), c.out.data(), c.out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
        if (n <= 0) return false;
        c.out.erase(0, static_cast<size_t>(n));
        c.last_sent = now;
    }
    return true;
}

void Server::queue_reply(Conn& c, std::string_view line, Clock::time_point now) {
    if (c.out.empty()) c.last_sent = now;  // the send timeout runs from here
    c.out.append(line);
    c.out.push_back('\n');
}

// Answers every whole line `c` has sent, in order; stops at one that runs on a worker.
void Server::handle_lines(Conn& c) {
    const auto now = Clock::now();
    size_t nl;
    while (!c.running && (nl = c.in.find('\n')) != std::string::npos) {
        const std::string line = c.in.substr(0, nl);
        c.in.erase(0, nl + 1);
        if (!c.in.empty()) c.request_started = now;
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        stats_.requests.fetch_add(1, std::memory_order_relaxed);
        auto parsed = parse_request(line);
        if (auto* err = std::get_if<RequestError>(&parsed)) {
            if (err->too_deep) stats_.too_deep.fetch_add(1, std::memory_order_relaxed);
            queue_reply(c, err->reply, now);
            c.last_done = now;
            continue;
        }
        auto& req = std::get<Request>(parsed);
        // A descriptor sent with this request goes to it if its method takes one; it is
        // closed otherwise, and in any case once the request is done.
        Method method;
        if (auto fm = fd_methods_.find(req.method); fm != fd_methods_.end()) {
            auto fd = std::make_shared<UniqueFd>(std::move(c.passed));
            method = [fm = fm->second, fd](const Json& p) { return fm(p, std::move(*fd)); };
        }
        c.passed.reset();
        const auto kind = kinds_.find(req.method);
        if (kind == kinds_.end() || kind->second == Kind::Inline) {
            queue_reply(c, method ? dispatch_one(method, req) : dispatch(methods_, req), now);
            c.last_done = now;
            continue;
        }
        size_t running = 0;
        for (const auto& w : workers_)
            running += w.done.load(std::memory_order_acquire) ? 0u : 1u;
        if (running >= kMaxWorkers) {
            stats_.busy.fetch_add(1, std::memory_order_relaxed);
            queue_reply(
                c,
                error_response(req.id, "busy",
                               fmt::format("{} requests are running; try again", kMaxWorkers))
                    .dump(),
                now);
            c.last_done = now;
            continue;
        }
        c.running = true;
        Worker& w = workers_.emplace_back();
        w.thread = std::thread(
            [this, &w, serial = c.serial, req = std::move(req), method = std::move(method)] {
                ::pthread_setname_np(::pthread_self(), "vireo-api-work");
                std::string reply = method ? dispatch_one(method, req) : dispatch(methods_, req);
                {
                    std::lock_guard lock(done_mu_);
                    done_.emplace_back(serial, std::move(reply));
                }
                w.done.store(true, std::memory_order_release);
                (void)wake_.signal();
            });
    }
}

// Replies of finished workers go to their clients (if still connected); finished threads are
// joined.
std::vector<std::pair<uint64_t, std::string>> Server::take_done() {
    std::vector<std::pair<uint64_t, std::string>> done;
    std::lock_guard lock(done_mu_);
    done.swap(done_);
    return done;
}

void Server::finish_workers(std::vector<Conn>& clients) {
    const auto now = Clock::now();
    for (auto& [serial, reply] : take_done())
        for (auto& c : clients)
            if (c.serial == serial) {
                queue_reply(c, reply, now);
                c.running = false;
                c.last_done = now;
                if (!c.in.empty()) c.request_started = now;
                handle_lines(c);
            }
    for (auto it = workers_.begin(); it != workers_.end();) {
        if (it->done.load(std::memory_order_acquire)) {
            it->thread.join();
            it = workers_.erase(it);
        } else {
            ++it;
        }
    }
}

void Server::accept_clients(std::vector<Conn>& clients) {
    for (;;) {
        UniqueFd fd(::accept4(listener_.fd(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
        if (!fd) {
            if (errno == EINTR) continue;
            if (errno != EMFILE && errno != ENFILE) return;  // EAGAIN: all taken
            // At the open-files limit the pending client would keep the listener readable
            // (and this thread spinning): give back the spare fd, take the client, tell it.
            stats_.accept_errors.fetch_add(1, std::memory_order_relaxed);
            spare_.reset();
            UniqueFd c(::accept4(listener_.fd(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
            if (c)
                (void)send_all(c.get(),
                               error_response(nullptr, "busy",
                                              "the server is out of file descriptors; try again")
                                       .dump() +
                                   "\n",
                               0);
            c.reset();
            spare_.reset(take_spare());
            return;
        }
        const auto now = Clock::now();
        if (clients.size() >= kMaxClients) {
            // Room is made by the client that has gone longest without a request answered
            // (a slow or silent one); one whose request is running keeps its place.
            auto victim = clients.end();
            for (auto it = clients.begin(); it != clients.end(); ++it)
                if (!it->running && (victim == clients.end() || it->last_done < victim->last_done))
                    victim = it;
            if (victim == clients.end()) {
                stats_.busy.fetch_add(1, std::memory_order_relaxed);
                (void)send_all(
                    fd.get(),
                    error_response(nullptr, "busy", "too many API clients; try again").dump() +
                        "\n",
                    0);
                continue;
            }
            stats_.evicted.fetch_add(1, std::memory_order_relaxed);
            clients.erase(victim);
        }
        Conn& c = clients.emplace_back();
        c.fd = std::move(fd);
        c.serial = ++next_serial_;
        c.last_done = c.last_sent = now;
    }
}

void Server::serve() {
    std::vector<Conn> clients;
    clients.reserve(kMaxClients + 1);
    std::vector<pollfd> fds;
    using std::chrono::milliseconds;
    while (!stop_.load(std::memory_order_acquire)) {
        // The nearest deadline decides how long to wait.
        auto now = Clock::now();
        auto wake_at = now + std::chrono::seconds(1);
        fds.clear();
        fds.push_back({wake_.fd(), POLLIN, 0});
        fds.push_back({listener_.fd(), static_cast<short>(spare_ ? POLLIN : 0), 0});
        for (const auto& c : clients) {
            short ev = 0;
            if (!c.running && !c.eof && c.out.empty()) ev |= POLLIN;  // one reply at a time
            if (!c.out.empty()) {
                ev |= POLLOUT;
                wake_at = std::min(wake_at, c.last_sent + milliseconds(kSendTimeoutMs));
            }
            if (!c.in.empty() && !c.running)
                wake_at = std::min(wake_at, c.request_started + milliseconds(kRequestTimeoutMs));
            // A client that hung up while its request runs would report POLLHUP on every
            // round: it is left out until its reply is there to fail on.
            fds.push_back({c.eof && c.out.empty() ? -1 : c.fd.get(), ev, 0});
        }
        const auto wait = std::chrono::duration_cast<milliseconds>(wake_at - now).count();
        if (::poll(fds.data(), fds.size(), static_cast<int>(std::max<int64_t>(wait, 0) + 1)) < 0) {
            if (errno == EINTR) continue;
            log::error("api: poll: {}", std::strerror(errno));
            return;
        }
        if (fds[0].revents & POLLIN) (void)wake_.consume();
        now = Clock::now();
        for (size_t i = 0; i < clients.size(); ++i) {
            Conn& c = clients[i];
            const pollfd& p = fds[i + 2];
            bool drop = false;
            if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
                char chunk[4096];
                // Room for one descriptor: the kernel closes any more (MSG_CTRUNC).
                alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
                iovec iov{chunk, sizeof chunk};
                msghdr msg{};
                msg.msg_iov = &iov;
                msg.msg_iovlen = 1;
                msg.msg_control = control;
                msg.msg_controllen = sizeof control;
                const ssize_t n = ::recvmsg(c.fd.get(), &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
                if (n > 0) take_passed(c.passed, msg);
                if (n > 0) {
                    if (c.in.empty()) c.request_started = now;
                    c.in.append(chunk, static_cast<size_t>(n));
                } else if (n == 0) {
                    c.eof = true;  // half-closed: answer what it sent, then close
                    if (!c.in.empty() && c.in.back() != '\n') c.in.push_back('\n');
                } else if (errno != EAGAIN && errno != EINTR) {
                    drop = true;
                }
            }
            if (!drop) handle_lines(c);
            if (!drop && !c.running && c.in.size() > kMaxRequest) {
                stats_.too_large.fetch_add(1, std::memory_order_relaxed);
                queue_reply(
                    c,
                    error_response(nullptr, "too-large",
                                   fmt::format("requests are at most {} bytes", kMaxRequest))
                        .dump(),
                    now);
                c.in.clear();
                c.eof = true;
            }
            if (!drop && !c.in.empty() && !c.running &&
                now - c.request_started > milliseconds(kRequestTimeoutMs)) {
                stats_.request_timeouts.fetch_add(1, std::memory_order_relaxed);
                queue_reply(c,
                            error_response(nullptr, "timeout",
                                           fmt::format("a request must arrive within {} ms",
                                                       kRequestTimeoutMs))
                                .dump(),
                            now);
                c.in.clear();
                c.eof = true;
            }
            if (!drop) drop = !flush(c, now);
            if (!drop && !c.out.empty() &&
                (c.out.size() > kMaxPendingOutput ||
                 now - c.last_sent > milliseconds(kSendTimeoutMs))) {
                stats_.slow_readers.fetch_add(1, std::memory_order_relaxed);
                drop = true;
            }
            if (!drop && c.eof && !c.running && c.out.empty() && c.in.empty()) drop = true;
            if (drop) c.fd.reset();
        }
        std::erase_if(clients, [](const Conn& c) { return !c.fd; });
        finish_workers(clients);
        // New clients after this round's hang-ups, so that clients which have already gone do
        // not count against the limit.
        if (fds[1].revents & POLLIN) accept_clients(clients);
        if (!spare_) spare_.reset(take_spare());
    }
    // Stopping: the requests still running finish (stop() waits for them in any case) and
    // their clients get the answers — a save or a migration that ends the domain answers as it
    // ends —, all of them within kStopFlushMs; nothing new is started.
    for (auto& w : workers_)
        if (w.thread.joinable()) w.thread.join();
    const auto now = Clock::now();
    for (auto& [serial, reply] : take_done())
        for (auto& c : clients)
            if (c.serial == serial && c.fd) queue_reply(c, reply, now);
    const auto until = now + milliseconds(kStopFlushMs);
    for (auto& c : clients) {
        while (c.fd && !c.out.empty() && Clock::now() < until) {
            if (!flush(c, Clock::now()) || c.out.empty()) break;
            pollfd p{c.fd.get(), POLLOUT, 0};
            (void)::poll(&p, 1, 50);
        }
    }
}

Result<Client> Client::connect(const std::string& path, int timeout_ms) {
    VIREO_TRY_ASSIGN(auto fd, connect_unix(path));
    return Client(std::move(fd), path, timeout_ms);
}

Result<Json> Client::call(const std::string& method, const Json& params) {
    return call_impl(method, params, -1);
}

Result<Json> Client::call_with_fd(const std::string& method, const Json& params, int pass_fd) {
    return call_impl(method, params, pass_fd);
}

Result<Json> Client::call_impl(const std::string& method, const Json& params, int pass_fd) {
    Json req{{"id", ++next_id_}, {"method", method}};
    if (!params.is_null()) req["params"] = params;
    std::string out = req.dump() + "\n";
    if (pass_fd >= 0) {
        // The descriptor rides on the request's first byte; the rest follows as usual.
        alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
        iovec iov{out.data(), 1};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        cmsghdr* h = CMSG_FIRSTHDR(&msg);
        h->cmsg_level = SOL_SOCKET;
        h->cmsg_type = SCM_RIGHTS;
        h->cmsg_len = CMSG_LEN(sizeof(int));
        std::memcpy(CMSG_DATA(h), &pass_fd, sizeof pass_fd);
        ssize_t n;
        do {
            n = ::sendmsg(fd_.get(), &msg, MSG_NOSIGNAL);
        } while (n < 0 && errno == EINTR);
        if (n != 1) return fail_errno(errno, "sending a file descriptor to {}", path_);
        out.erase(0, 1);
    }
    // A server at its client limit answers "busy" and closes without reading: the request may
    // not go out, but the answer is there to read, so a failed send is reported only if no
    // answer follows.
    const bool sent = send_all(fd_.get(), out, timeout_ms_);
    const int send_errno = errno;
    size_t nl;
    while ((nl = buf_.find('\n')) == std::string::npos) {
        pollfd p{fd_.get(), POLLIN, 0};
        const int r = ::poll(&p, 1, timeout_ms_);
        if (r < 0 && errno == EINTR) continue;
        if (r == 0)
            return fail(ErrorCode::System, "{} did not answer {} within {} ms", path_, method,
                        timeout_ms_);
        char chunk[4096];
        const ssize_t n = ::recv(fd_.get(), chunk, sizeof chunk, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0 && !sent) return fail_errno(send_errno, "sending to {}", path_);
        if (n <= 0) return fail(ErrorCode::System, "{} closed the connection", path_);
        buf_.append(chunk, static_cast<size_t>(n));
        if (buf_.size() > kMaxPendingOutput)
            return fail(ErrorCode::System, "{} answered with an over-long line", path_);
    }
    const std::string_view line = std::string_view(buf_).substr(0, nl);
    if (!within_depth(line, kMaxDepth + 16))  // replies nest a little deeper than requests
        return fail(ErrorCode::System, "malformed response from {}", path_);
    Json resp = Json::parse(line, nullptr, false);
    buf_.erase(0, nl + 1);
    if (resp.is_discarded()) return fail(ErrorCode::System, "malformed response from {}", path_);
    if (resp.contains("error")) {
        const std::string code = resp["error"].value("code", std::string("error"));
        return fail(code == "not-found"   ? ErrorCode::NotFound
                    : code == "bad-state" ? ErrorCode::BadState
                                          : ErrorCode::InvalidArgument,
                    "{}: {}", code, resp["error"].value("message", std::string()));
    }
    return resp.value("result", Json());
}

Result<Json> call(const std::string& path, const std::string& method, const Json& params,
                  int timeout_ms) {
    // A server at its client limit answers "busy" and hangs up: try again a few times.
    for (int attempt = 0;; ++attempt) {
        VIREO_TRY_ASSIGN(auto client, Client::connect(path, timeout_ms));
        auto r = client.call(method, params);
        if (r || attempt == 5 || r.error().message().rfind("busy:", 0) != 0) return r;
        std::this_thread::sleep_for(std::chrono::milliseconds(10 << attempt));
    }
}

}  // namespace vireo::api
