// Shared memory a machine shows its guest as an ivshmem device (devices/pci/ivshmem.hpp;
// docs/shm.md): the region's mapping in this process, and what one machine knows of it — its
// own peer number and, with doorbells, one eventfd per (peer, vector).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/result.hpp"

namespace vireo::vmm {

/// A shared mapping of `size` bytes of a memory file (a memfd, or a file on tmpfs), kept for
/// as long as a machine shows it. Read-only for a read-only borrower: its guest's writes do
/// not reach the region.
class SharedRegion {
  public:
    /// Maps `size` bytes of `fd` from offset 0 (the fd may be closed afterwards).
    static Result<std::shared_ptr<SharedRegion>> map(int fd, uint64_t size, bool readonly);
    ~SharedRegion();
    SharedRegion(const SharedRegion&) = delete;
    SharedRegion& operator=(const SharedRegion&) = delete;

    void* host() const noexcept { return host_; }
    uint64_t size() const noexcept { return size_; }
    bool readonly() const noexcept { return readonly_; }

  private:
    SharedRegion(void* host, uint64_t size, bool readonly)
        : host_(host), size_(size), readonly_(readonly) {}
    void* host_;
    uint64_t size_;
    bool readonly_;
};

/// One region as a machine shows it.
struct ShmConfig {
    std::string name;  ///< the region's name (logs, vireo info)
    std::shared_ptr<SharedRegion> region;
    /// Doorbells: this machine's peer number (IVPosition) among `peers`, `vectors` interrupt
    /// vectors each, and the eventfd of (peer p, vector v) at doorbell_fds[p * vectors + v]
    /// (borrowed: the caller keeps them open while the machine lives). A write of
    /// p << 16 | v to the Doorbell register signals that eventfd in the kernel; the eventfds
    /// at this machine's own index are its interrupts. Without doorbells: IVPosition reads
    /// -1 and the device has no MSI-X.
    bool doorbells = false;
    uint16_t peer = 0;
    uint16_t peers = 1;
    uint16_t vectors = 1;
    std::vector<int> doorbell_fds;
    std::vector<std::string> peer_names;  ///< the peers' domains, in peer order (may be empty)
};

}  // namespace vireo::vmm
