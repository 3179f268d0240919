// The host's shared memory regions (`[shm.NAME]`, docs/shm.md), allocated by the supervisor
// before any domain is built: each a memory file (memfd, its pages allocated now, so nothing
// fails later for lack of them) and, with doorbells, one eventfd per (peer, vector). A domain
// process gets them as inherited descriptors, never as paths, and its spec names them
// (domain::ShmOptions' fd= form). The regions live as long as the host.
#pragma once

#include <string>
#include <vector>

#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "domain/spec.hpp"
#include "host/config.hpp"

namespace vireo::host {

class SharedRegions {
  public:
    SharedRegions() = default;
    /// Allocates every region of `regions` (which must outlive this), all or nothing.
    static Result<SharedRegions> allocate(const std::vector<ShmRegion>& regions);

    /// What domain `name` is handed: for each region it shares, an entry of `text.shm` and its
    /// descriptors appended to `fds`, which the domain process finds at fd `first_fd` + their
    /// index in `fds`.
    void hand_to(const std::string& name, domain::DomainText& text, std::vector<int>& fds,
                 int first_fd) const;
    /// Zeroes the regions `name` owns (the first of their domains): the owner starting as a
    /// new process finds its regions as it finds its RAM. Borrowers keep what is there.
    void clear_owned(const std::string& name) const;
    size_t size() const noexcept { return regions_.size(); }

  private:
    struct Allocated {
        const ShmRegion* config = nullptr;
        UniqueFd memory;
        std::vector<UniqueFd> doorbells;  // (peer p, vector v) at p * vectors + v
    };
    std::vector<Allocated> regions_;
};

}  // namespace vireo::host
