#include "vmm/console.hpp"

#include <poll.h>
#include <pthread.h>
#include <unistd.h>

#include <vector>

#include "base/log.hpp"
#include "base/thread_class.hpp"

namespace vireo::vmm {

namespace {
constexpr uint8_t kEscape = 0x01;  // Ctrl-A
}

ConsoleInput::ConsoleInput(std::function<void()> on_escape) : on_escape_(std::move(on_escape)) {}

ConsoleInput::~ConsoleInput() {
    if (thread_.joinable()) {
        (void)stop_->signal();
        {
            std::lock_guard lock(mu_);
            if (serial_) serial_->stop_waiting();
        }
        thread_.join();
    }
    restore_terminal();
}

bool stdin_in_foreground() {
    if (::isatty(STDIN_FILENO) != 1) return true;
    // No controlling terminal: -1.
    const pid_t foreground = ::tcgetpgrp(STDIN_FILENO);
    return foreground == -1 || foreground == ::getpgrp();
}

Result<void> ConsoleInput::start(bool in_foreground) {
    VIREO_TRY_ASSIGN(auto efd, EventFd::create());
    stop_ = std::make_unique<EventFd>(std::move(efd));
    tty_ = ::isatty(STDIN_FILENO) == 1;
    if (tty_) {
        // Started in the background of a job-control shell (`vireo run ... &`): reading the
        // terminal or setting it raw would stop the whole process, guest and all, with
        // SIGTTIN/SIGTTOU. The console stays output-only.
        if (!in_foreground) {
            tty_ = false;
            log::info(
                "stdin is a terminal this process does not own (started in the "
                "background): console input is off");
            return ok();
        }
    }
    if (tty_ && ::tcgetattr(STDIN_FILENO, &saved_) == 0) {
        termios raw = saved_;
        ::cfmakeraw(&raw);
        raw.c_oflag |= OPOST | ONLCR;  // keep output newlines sane for our own messages
        if (::tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0) raw_ = true;
    }
    thread_ = std::thread([this] {
        ::pthread_setname_np(::pthread_self(), "vireo-stdin");
        confine_thread(ThreadClass::ConsoleInput);
        loop();
    });
    return ok();
}

void ConsoleInput::restore_terminal() {
    if (raw_) {
        ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
        raw_ = false;
    }
}

void ConsoleInput::attach(std::shared_ptr<devices::Serial> serial) {
    std::lock_guard lock(mu_);
    serial_ = std::move(serial);
}

void ConsoleInput::loop() {
    bool escape_pending = false;
    uint8_t buf[256];
    std::vector<uint8_t> out;
    for (;;) {
        pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {stop_->fd(), POLLIN, 0}};
        if (::poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            return;
        }
        if (fds[1].revents) return;
        if (!(fds[0].revents & (POLLIN | POLLHUP))) continue;
        ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;  // EOF: no more input, the guest keeps running
        out.clear();
        for (ssize_t i = 0; i < n; ++i) {
            uint8_t c = buf[i];
            if (tty_ && escape_pending) {
                escape_pending = false;
                if (c == 'x' || c == 'X') {
                    if (on_escape_) on_escape_();
                    return;
                }
                if (c == kEscape) out.push_back(c);
                continue;
            }
            if (tty_ && c == kEscape) {
                escape_pending = true;
                continue;
            }
            out.push_back(c);
        }
        std::shared_ptr<devices::Serial> serial;
        {
            std::lock_guard lock(mu_);
            serial = serial_;
        }
        if (serial && !out.empty()) serial->enqueue_input(out);
    }
}

}  // namespace vireo::vmm
