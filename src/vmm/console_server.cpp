#include "vmm/console_server.hpp"

#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.hpp"
#include "base/thread_class.hpp"
#include "base/unix_socket.hpp"

namespace vireo::vmm {

Result<std::shared_ptr<ConsoleServer>> ConsoleServer::create(const std::string& path) {
    VIREO_TRY_ASSIGN(auto fd, listen_unix(path, "--console-socket"));
    VIREO_TRY_ASSIGN(auto stop, EventFd::create());
    return std::shared_ptr<ConsoleServer>(new ConsoleServer(std::move(fd), std::move(stop)));
}

ConsoleServer::~ConsoleServer() {
    (void)stop_.signal();
    {
        std::lock_guard lock(mu_);
        if (serial_) serial_->stop_waiting();
    }
    if (thread_.joinable()) thread_.join();
}

Result<void> ConsoleServer::start() {
    thread_ = std::thread([this] {
        ::pthread_setname_np(::pthread_self(), "vireo-console");
        confine_thread(ThreadClass::Console);
        loop();
    });
    return ok();
}

void ConsoleServer::attach(std::shared_ptr<devices::Serial> serial) {
    std::lock_guard lock(mu_);
    serial_ = std::move(serial);
}

void ConsoleServer::put(uint8_t byte) noexcept {
    std::lock_guard lock(mu_);
    ring_[ring_pos_] = byte;
    ring_pos_ = (ring_pos_ + 1) % kReplay;
    ring_len_ = std::min(ring_len_ + 1, kReplay);
    if (!client_ || client_gone_) return;
    // Never wait for the client: a vCPU is writing. Only the console thread closes the fd.
    if (::send(client_.get(), &byte, 1, MSG_DONTWAIT | MSG_NOSIGNAL) != 1) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            dropped_.fetch_add(1, std::memory_order_relaxed);
        else
            client_gone_ = true;
    }
}

void ConsoleServer::accept_client() {
    UniqueFd c(::accept4(listener_.fd(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!c) return;
    std::lock_guard lock(mu_);
    if (client_) {
        (void)send_all(c.get(), "vireo: this console is attached elsewhere\r\n", 100);
        return;
    }
    // Replay what the guest wrote lately, oldest first, then go live.
    const size_t first = (ring_pos_ + kReplay - ring_len_) % kReplay;
    std::string replay;
    replay.reserve(ring_len_);
    for (size_t i = 0; i < ring_len_; ++i)
        replay.push_back(static_cast<char>(ring_[(first + i) % kReplay]));
    if (!send_all(c.get(), replay, 1000)) return;
    client_ = std::move(c);
    client_gone_ = false;
}

void ConsoleServer::loop() {
    uint8_t buf[256];
    for (;;) {
        int client_fd;
        {
            std::lock_guard lock(mu_);
            if (client_gone_) client_.reset();
            client_fd = client_ ? client_.get() : -1;
        }
        pollfd fds[3] = {
            {stop_.fd(), POLLIN, 0}, {listener_.fd(), POLLIN, 0}, {client_fd, POLLIN, 0}};
        if (::poll(fds, client_fd >= 0 ? 3 : 2, 500) < 0) {
            if (errno == EINTR) continue;
            log::error("console: poll: {}", std::strerror(errno));
            return;
        }
        if (fds[0].revents) return;
        if (fds[1].revents & POLLIN) accept_client();
        if (client_fd < 0 || (fds[2].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
        const ssize_t n = ::recv(client_fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n <= 0) {  // detached
            std::lock_guard lock(mu_);
            client_.reset();
            continue;
        }
        std::shared_ptr<devices::Serial> serial;
        {
            std::lock_guard lock(mu_);
            serial = serial_;
        }
        if (serial) serial->enqueue_input(std::span<const uint8_t>(buf, static_cast<size_t>(n)));
    }
}

}  // namespace vireo::vmm
