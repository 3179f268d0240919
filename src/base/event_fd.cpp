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

namespace {

Result<void> set_timer(int fd, int64_t sec, int64_t nsec, int flags) {
    itimerspec t{};  // all zero: disarmed
    t.it_value.tv_sec = static_cast<time_t>(sec);
    t.it_value.tv_nsec = static_cast<long>(nsec);
    if (::timerfd_settime(fd, flags, &t, nullptr) != 0) return fail_errno(errno, "timerfd_settime");
    return ok();
}

}  // namespace

Result<void> TimerFd::arm(int64_t ns) const {
    return set_timer(fd_.get(), ns / 1000000000, ns % 1000000000, 0);
}

Result<void> TimerFd::arm_at(uint64_t deadline_ns) const {
    return set_timer(fd_.get(), static_cast<int64_t>(deadline_ns / 1000000000),
                     static_cast<int64_t>(deadline_ns % 1000000000), TFD_TIMER_ABSTIME);
}

void TimerFd::consume() const noexcept {
    uint64_t n = 0;
    (void)!::read(fd_.get(), &n, sizeof n);
}

}  // namespace vireo
