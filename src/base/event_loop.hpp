// A per-domain event loop: one thread, one epoll set. Device back-ends run here (queue
// notifications arrive as ioeventfds, I/O completions as eventfds); vCPU threads never do
// back-end work. Handlers are registered before start() and live until the loop is destroyed,
// so the dispatch path takes no lock and allocates nothing.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "base/event_fd.hpp"
#include "base/result.hpp"
#include "base/unique_fd.hpp"

namespace vireo {

class EventLoop {
  public:
    using Handler = std::function<void()>;

    static Result<std::unique_ptr<EventLoop>> create(std::string name = "vireo-io");
    ~EventLoop();
    EventLoop(const EventLoop&) = delete;
    EventLoop& operator=(const EventLoop&) = delete;

    /// Calls `on_readable` on the loop thread whenever `fd` is readable (level-triggered: the
    /// handler must drain it). Only before start().
    Result<void> add(int fd, Handler on_readable);
    /// Turns watching of an added `fd` off or on (back-pressure: a back-end whose guest queue is
    /// full stops listening until the guest adds buffers). Any thread; no allocation.
    Result<void> watch(int fd, bool on);
    /// Starts the loop thread.
    Result<void> start();
    /// Stops and joins the loop thread (idempotent). Handlers are not called afterwards.
    void stop();
    /// Parks the loop thread between two dispatches until release(): no handler runs
    /// meanwhile (a snapshot holds the devices still). Returns once it is parked, or at once
    /// if the loop thread is not running. Any thread but the loop's; one hold at a time.
    void hold();
    void release();
    /// Runs the loop on the calling thread until stop() is called from another thread or a
    /// handler (for tests and benchmarks that want no extra thread).
    void run();
    /// Waits up to `timeout_ms` once and dispatches what is ready; returns the number of
    /// handlers called. For harnesses that drive the loop themselves.
    size_t poll_once(int timeout_ms);

  private:
    explicit EventLoop(std::string name) : name_(std::move(name)) {}

    struct Entry {
        int fd;
        Handler handler;
    };
    std::string name_;
    UniqueFd epoll_;
    std::unique_ptr<EventFd> wake_;
    std::vector<std::unique_ptr<Entry>> entries_;
    std::atomic<bool> stop_{false};
    std::atomic<bool> hold_{false};
    std::mutex hold_mu_;
    std::condition_variable hold_cv_;
    bool held_ = false;  // guarded by hold_mu_
    std::thread thread_;
};

}  // namespace vireo
