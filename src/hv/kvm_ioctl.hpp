// Internal to hv/: ioctl wrapper that retries EINTR (for every ioctl but KVM_RUN).
#pragma once

#include <sys/ioctl.h>

#include <cerrno>

namespace vireo::hv::detail {

template <typename Arg>
int kvm_ioctl(int fd, unsigned long request, Arg arg) noexcept {
    int r;
    do {
        r = ::ioctl(fd, request, arg);
    } while (r < 0 && errno == EINTR);
    return r;
}

}  // namespace vireo::hv::detail
