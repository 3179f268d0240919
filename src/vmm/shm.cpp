#include "vmm/shm.hpp"

#include <sys/mman.h>

#include <cerrno>

namespace vireo::vmm {

Result<std::shared_ptr<SharedRegion>> SharedRegion::map(int fd, uint64_t size, bool readonly) {
    if (size == 0 || size % 4096 != 0)
        return fail(ErrorCode::InvalidArgument, "shared memory: {} bytes is no whole page", size);
    void* p =
        ::mmap(nullptr, size, readonly ? PROT_READ : PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) return fail_errno(errno, "shared memory: mmap of {} bytes", size);
    // Not in a core dump: it is other domains' memory too.
    (void)::madvise(p, size, MADV_DONTDUMP);
    return std::shared_ptr<SharedRegion>(new SharedRegion(p, size, readonly));
}

SharedRegion::~SharedRegion() {
    ::munmap(host_, size_);
}

}  // namespace vireo::vmm
