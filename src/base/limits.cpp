#include "base/limits.hpp"

#include <pthread.h>
#include <sys/resource.h>

namespace vireo {

uint64_t raise_fd_limit() noexcept {
    rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return 0;
    if (lim.rlim_cur < lim.rlim_max) {
        rlimit raised = lim;
        raised.rlim_cur = lim.rlim_max;
        if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) lim = raised;
    }
    return lim.rlim_cur;
}

bool set_thread_stack_size() noexcept {
    pthread_attr_t attr;
    if (::pthread_attr_init(&attr) != 0) return false;
    const bool ok = ::pthread_attr_setstacksize(&attr, kThreadStackSize) == 0 &&
                    ::pthread_setattr_default_np(&attr) == 0;
    ::pthread_attr_destroy(&attr);
    return ok;
}

}  // namespace vireo
