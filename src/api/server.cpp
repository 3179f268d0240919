#include "api/server.hpp"

#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "base/log.hpp"

namespace vireo::api {

namespace {

Json error_response(const Json& id, const std::string& code, const std::string& message) {
    return Json{{"id", id}, {"error", {{"code", code}, {"message", message}}}};
}

bool address_for(const std::string& path, sockaddr_un& a) {
    a = {};
    a.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof a.sun_path) return false;
    std::memcpy(a.sun_path, path.data(), path.size());
    return true;
}

bool send_all(int fd, const std::string& s) {
    size_t off = 0;
    while (off < s.size()) {
        const ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) {
            pollfd p{fd, POLLOUT, 0};
            if (::poll(&p, 1, 1000) <= 0) return false;  // a client that does not read
            continue;
        }
        if (n <= 0) return false;
        off += static_cast<size_t>(n);
    }
    return true;
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
    sockaddr_un a{};
    if (!address_for(path, a))
        return fail(ErrorCode::InvalidArgument,
                    "--api-socket: \"{}\" does not fit a Unix socket "
                    "address (1 to {} bytes)",
                    path, sizeof a.sun_path - 1);
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return fail(ErrorCode::AlreadyExists, "--api-socket: {} exists and is not a socket",
                        path);
        UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (probe && ::connect(probe.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0)
            return fail(ErrorCode::AlreadyExists, "--api-socket: {} is in use by a running vireo",
                        path);
        ::unlink(path.c_str());  // stale: its owner is gone
    }
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) return fail_errno(errno, "--api-socket: socket");
    const mode_t old = ::umask(0177);  // 0600 from the start: no window with wider access
    const int rc = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a);
    const int bind_errno = errno;
    ::umask(old);
    if (rc != 0) return fail_errno(bind_errno, "--api-socket: cannot create {}", path);
    if (::listen(fd.get(), 64) != 0) {
        const int e = errno;
        ::unlink(path.c_str());
        return fail_errno(e, "--api-socket: listen");
    }
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
    struct Client {
        UniqueFd fd;
        std::string buf;
    };
    std::vector<Client> clients;
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
        for (size_t i = 0; i < clients.size(); ++i) {
            const size_t slot = i + 2;
            if (slot >= fds.size() || fds[slot].fd != clients[i].fd.get()) continue;
            if ((fds[slot].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
            Client& c = clients[i];
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
        std::erase_if(clients, [](const Client& c) { return !c.fd; });
    }
}

Result<Json> call(const std::string& path, const std::string& method, const Json& params) {
    sockaddr_un a{};
    if (!address_for(path, a))
        return fail(ErrorCode::InvalidArgument, "API socket path \"{}\" is too long", path);
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return fail_errno(errno, "socket");
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0)
        return fail_errno(errno, "no vireo answers on {}", path);
    Json req{{"id", 1}, {"method", method}};
    if (!params.is_null()) req["params"] = params;
    if (!send_all(fd.get(), req.dump() + "\n")) return fail_errno(errno, "sending to {}", path);
    std::string buf;
    char chunk[4096];
    while (buf.find('\n') == std::string::npos) {
        const ssize_t n = ::recv(fd.get(), chunk, sizeof chunk, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return fail(ErrorCode::System, "{} closed the connection", path);
        buf.append(chunk, static_cast<size_t>(n));
    }
    Json resp = Json::parse(buf.substr(0, buf.find('\n')), nullptr, false);
    if (resp.is_discarded()) return fail(ErrorCode::System, "malformed response from {}", path);
    if (resp.contains("error"))
        return fail(ErrorCode::InvalidArgument, "{}: {}",
                    resp["error"].value("code", std::string("error")),
                    resp["error"].value("message", std::string()));
    return resp.value("result", Json());
}

}  // namespace vireo::api
