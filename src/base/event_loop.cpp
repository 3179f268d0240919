#include "base/event_loop.hpp"

#include <pthread.h>
#include <sys/epoll.h>

#include <cerrno>

#include "base/log.hpp"
#include "base/thread_class.hpp"

namespace vireo {

Result<std::unique_ptr<EventLoop>> EventLoop::create(std::string name) {
    std::unique_ptr<EventLoop> loop(new EventLoop(std::move(name)));
    loop->epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
    if (!loop->epoll_) return fail_errno(errno, "epoll_create1");
    VIREO_TRY_ASSIGN(auto wake, EventFd::create());
    loop->wake_ = std::make_unique<EventFd>(std::move(wake));
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = nullptr;  // the wake-up eventfd
    if (::epoll_ctl(loop->epoll_.get(), EPOLL_CTL_ADD, loop->wake_->fd(), &ev) != 0)
        return fail_errno(errno, "epoll_ctl(wake-up eventfd)");
    return loop;
}

EventLoop::~EventLoop() {
    stop();
}

Result<void> EventLoop::add(int fd, Handler on_readable) {
    if (thread_.joinable())
        return fail(ErrorCode::BadState, "event loop: handlers are added before it starts");
    auto entry = std::make_unique<Entry>(Entry{fd, std::move(on_readable)});
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = entry.get();
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0)
        return fail_errno(errno, "epoll_ctl(add fd {})", fd);
    entries_.push_back(std::move(entry));
    return ok();
}

Result<void> EventLoop::watch(int fd, bool on) {
    for (auto& entry : entries_) {
        if (entry->fd != fd) continue;
        epoll_event ev{};
        ev.events = on ? uint32_t{EPOLLIN} : 0u;
        ev.data.ptr = entry.get();
        if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev) != 0)
            return fail_errno(errno, "epoll_ctl(modify fd {})", fd);
        return ok();
    }
    return fail(ErrorCode::InvalidArgument, "event loop: fd {} is not watched", fd);
}

size_t EventLoop::poll_once(int timeout_ms) {
    epoll_event events[32];
    int n = ::epoll_wait(epoll_.get(), events, 32, timeout_ms);
    if (n < 0) {
        if (errno != EINTR)
            log::error("event loop {}: epoll_wait: {}", name_, std::strerror(errno));
        return 0;
    }
    size_t called = 0;
    for (int i = 0; i < n; ++i) {
        auto* entry = static_cast<Entry*>(events[i].data.ptr);
        if (entry == nullptr) {
            (void)wake_->consume();
            continue;
        }
        if (stop_.load(std::memory_order_acquire)) break;
        entry->handler();
        ++called;
    }
    return called;
}

void EventLoop::run() {
    while (!stop_.load(std::memory_order_acquire)) {
        if (hold_.load(std::memory_order_acquire)) {
            std::unique_lock lock(hold_mu_);
            held_ = true;
            hold_cv_.notify_all();
            hold_cv_.wait(lock, [&] {
                return !hold_.load(std::memory_order_acquire) ||
                       stop_.load(std::memory_order_acquire);
            });
            held_ = false;
            continue;
        }
        poll_once(-1);
    }
}

void EventLoop::hold() {
    if (!thread_.joinable()) return;
    std::unique_lock lock(hold_mu_);
    hold_.store(true, std::memory_order_release);
    (void)wake_->signal();
    hold_cv_.wait(lock, [&] { return held_ || stop_.load(std::memory_order_acquire); });
}

void EventLoop::release() {
    {
        std::lock_guard lock(hold_mu_);
        hold_.store(false, std::memory_order_release);
    }
    hold_cv_.notify_all();
}

Result<void> EventLoop::start() {
    if (thread_.joinable()) return fail(ErrorCode::BadState, "event loop already started");
    stop_.store(false, std::memory_order_release);
    thread_ = std::thread([this] {
        ::pthread_setname_np(::pthread_self(), name_.substr(0, 15).c_str());
        confine_thread(ThreadClass::IoLoop);
        run();
    });
    return ok();
}

void EventLoop::stop() {
    {
        std::lock_guard lock(hold_mu_);  // a held loop wakes up to stop
        stop_.store(true, std::memory_order_release);
    }
    hold_cv_.notify_all();
    if (wake_) (void)wake_->signal();
    if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

}  // namespace vireo
