#include "base/event_fd.hpp"

#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>

namespace vireo {

Result<EventFd> EventFd::create() {
    int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0) return fail_errno(errno, "eventfd");
    return EventFd(UniqueFd(fd));
}

Result<void> EventFd::signal(uint64_t value) const {
    if (::write(fd_.get(), &value, sizeof value) != sizeof value)
        return fail_errno(errno, "eventfd write");
    return ok();
}

Result<uint64_t> EventFd::consume() const {
    uint64_t value = 0;
    if (::read(fd_.get(), &value, sizeof value) != sizeof value) {
        if (errno == EAGAIN) return uint64_t{0};
        return fail_errno(errno, "eventfd read");
    }
    return value;
}

Result<TimerFd> TimerFd::create() {
    int fd = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (fd < 0) return fail_errno(errno, "timerfd_create");
    return TimerFd(UniqueFd(fd));
}

Result<void> TimerFd::arm(int64_t ns) const {
    itimerspec t{};  // all zero: disarmed
    t.it_value.tv_sec = ns / 1000000000;
    t.it_value.tv_nsec = ns % 1000000000;
    if (::timerfd_settime(fd_.get(), 0, &t, nullptr) != 0)
        return fail_errno(errno, "timerfd_settime");
    return ok();
}

void TimerFd::consume() const noexcept {
    uint64_t n = 0;
    (void)!::read(fd_.get(), &n, sizeof n);
}

}  // namespace vireo
