#include "base/event_fd.hpp"

#include <sys/eventfd.h>

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

}  // namespace vireo
