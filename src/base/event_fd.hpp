// eventfd wrapper: the doorbell between KVM (ioeventfd / irqfd) and vireo's threads; and a
// one-shot timerfd (what resumes a rate-limited queue without polling).
#pragma once

#include <cstdint>

#include "base/result.hpp"
#include "base/unique_fd.hpp"

namespace vireo {

/// A non-blocking, close-on-exec eventfd.
class EventFd {
  public:
    /// Creates an eventfd with initial value 0.
    static Result<EventFd> create();

    int fd() const noexcept { return fd_.get(); }
    /// Adds `value` to the counter (wakes readers).
    Result<void> signal(uint64_t value = 1) const;
    /// Reads and resets the counter; returns 0 if it was not signalled.
    Result<uint64_t> consume() const;

  private:
    explicit EventFd(UniqueFd fd) : fd_(std::move(fd)) {}
    UniqueFd fd_;
};

/// A non-blocking, close-on-exec one-shot timerfd on the monotonic clock.
class TimerFd {
  public:
    TimerFd() = default;  ///< none
    static Result<TimerFd> create();

    int fd() const noexcept { return fd_.get(); }
    /// Fires once in `ns` nanoseconds (0: disarms).
    Result<void> arm(int64_t ns) const;
    /// Fires once when CLOCK_MONOTONIC reaches `deadline_ns` (0: disarms).
    Result<void> arm_at(uint64_t deadline_ns) const;
    /// Reads (and so clears) the expirations, if any.
    void consume() const noexcept;

  private:
    explicit TimerFd(UniqueFd fd) : fd_(std::move(fd)) {}
    UniqueFd fd_;
};

}  // namespace vireo
