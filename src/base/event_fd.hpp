// eventfd wrapper: the doorbell between KVM (ioeventfd / irqfd) and vireo's threads.
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

}  // namespace vireo
