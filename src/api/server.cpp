#include "api/server.hpp"

#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "base/log.hpp"
#include "base/unix_socket.hpp"

namespace vireo::api {

namespace {

Json error_response(const Json& id, const std::string& code, const std::string& message) {
    return Json{{"id", id}, {"error", {{"code", code}, {"message", message}}}};
}

}  // namespace

std::string handle_request(const std::map<std::string, Method>& methods, std::string_view line) {
    Json req = Json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (req.is_discarded())
        return error_response(nullptr, "parse-error", "the request is not valid JSON").dump();
    if (!req.is_object())
        return error_response(nullptr, "invalid-request", "the request must be a JSON object")
            .dump();
    const Json id = req.contains("id") ? req["id"] : Json(nullptr);
    if (!req.contains("method") || !req["method"].is_string())
        return error_response(id, "invalid-request", "\"method\" (a string) is required").dump();
    const std::string method = req["method"].get<std::string>();
    Json params = req.contains("params") ? req["params"] : Json::object();
    if (!params.is_object())
        return error_response(id, "invalid-params", "\"params\" must be an object").dump();
    if (method == "version")
        return Json{{"id", id}, {"result", {{"api", kApiVersion}, {"vireo", "0.1.0"}}}}.dump();
    auto it = methods.find(method);
    if (it == methods.end()) {
        std::string known = "version";
        for (const auto& [name, m] : methods)
            known += ", " + name;
        return error_response(id, "unknown-method",
                              fmt::format("unknown method \"{}\" (known: {})", method, known))
            .dump();
    }
    try {
        return Json{{"id", id}, {"result", it->second(params)}}.dump();
    } catch (const ApiError& e) {
        return error_response(id, e.code, e.what()).dump();
    } catch (const Json::exception& e) {
        return error_response(id, "invalid-params", e.what()).dump();
    } catch (const std::exception& e) {
        return error_response(id, "failed", e.what()).dump();
    }
}

Result<std::unique_ptr<Server>> Server::create(const std::string& path) {
    VIREO_TRY_ASSIGN(auto fd, listen_unix(path, "--api-socket"));
    VIREO_TRY_ASSIGN(auto wake, EventFd::create());
    return std::unique_ptr<Server>(new Server(std::move(fd), path, std::move(wake)));
}

Server::~Server() {
    stop();
    ::unlink(path_.c_str());
}

Result<void> Server::start() {
    thread_ = std::thread([this] {
        ::pthread_setname_np(::pthread_self(), "vireo-api");
        serve();
    });
    return ok();
}

void Server::stop() {
    stop_.store(true, std::memory_order_release);
    (void)wake_.signal();
    if (thread_.joinable()) thread_.join();
}

void Server::serve() {
    struct Conn {
        UniqueFd fd;
        std::string buf;
    };
    std::vector<Conn> clients;
    std::vector<pollfd> fds;
    while (!stop_.load(std::memory_order_acquire)) {
        fds.clear();
        fds.push_back({wake_.fd(), POLLIN, 0});
        fds.push_back({fd_.get(), POLLIN, 0});
        for (const auto& c : clients)
            fds.push_back({c.fd.get(), POLLIN, 0});
        if (::poll(fds.data(), fds.size(), -1) < 0) {
            if (errno == EINTR) continue;
            log::error("api: poll: {}", std::strerror(errno));
            return;
        }
        for (size_t i = 0; i < clients.size(); ++i) {
            const size_t slot = i + 2;
            if (slot >= fds.size() || fds[slot].fd != clients[i].fd.get()) continue;
            if ((fds[slot].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
            Conn& c = clients[i];
            char chunk[4096];
            const ssize_t n = ::recv(c.fd.get(), chunk, sizeof chunk, 0);
            bool drop = n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR);
            if (n > 0) c.buf.append(chunk, static_cast<size_t>(n));
            size_t nl;
            while (!drop && (nl = c.buf.find('\n')) != std::string::npos) {
                const std::string line = c.buf.substr(0, nl);
                c.buf.erase(0, nl + 1);
                if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
                drop = !send_all(c.fd.get(), handle_request(methods_, line) + "\n");
            }
            if (!drop && c.buf.size() > kMaxRequest) {
                (void)send_all(
                    c.fd.get(),
                    error_response(nullptr, "too-large",
                                   fmt::format("requests are at most {} bytes", kMaxRequest))
                            .dump() +
                        "\n");
                drop = true;
            }
            if (drop) c.fd.reset();
        }
        std::erase_if(clients, [](const Conn& c) { return !c.fd; });
        // New clients after the hang-ups of this round are reaped, so that clients which have
        // already gone do not count against the limit.
        if (fds[1].revents & POLLIN) {
            for (;;) {
                UniqueFd c(::accept4(fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
                if (!c) break;
                if (clients.size() >= kMaxClients) {
                    (void)send_all(
                        c.get(),
                        error_response(nullptr, "busy", "too many API clients; try again").dump() +
                            "\n");
                    continue;
                }
                clients.push_back({std::move(c), {}});
            }
        }
    }
}

Result<Client> Client::connect(const std::string& path, int timeout_ms) {
    VIREO_TRY_ASSIGN(auto fd, connect_unix(path));
    return Client(std::move(fd), path, timeout_ms);
}

Result<Json> Client::call(const std::string& method, const Json& params) {
    Json req{{"id", ++next_id_}, {"method", method}};
    if (!params.is_null()) req["params"] = params;
    if (!send_all(fd_.get(), req.dump() + "\n", timeout_ms_))
        return fail_errno(errno, "sending to {}", path_);
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
        if (n <= 0) return fail(ErrorCode::System, "{} closed the connection", path_);
        buf_.append(chunk, static_cast<size_t>(n));
    }
    Json resp = Json::parse(std::string_view(buf_).substr(0, nl), nullptr, false);
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
