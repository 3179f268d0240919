#include "host/shm.hpp"

#include <fcntl.h>
#include <fmt/ranges.h>
#include <linux/falloc.h>
#include <sys/eventfd.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstring>

#include "base/log.hpp"
#include "base/size.hpp"

namespace vireo::host {

Result<SharedRegions> SharedRegions::allocate(const std::vector<ShmRegion>& regions) {
    SharedRegions out;
    for (const auto& r : regions) {
        Allocated a;
        a.config = &r;
        const std::string label = "vireo-shm-" + r.name;
        unsigned flags = MFD_CLOEXEC;
        if (r.hugepages) flags |= MFD_HUGETLB;  // the default huge page size: 2 MiB on x86
        a.memory.reset(::memfd_create(label.c_str(), flags));
        if (!a.memory) return fail_errno(errno, "shm.{}: memfd_create", r.name);
        if (::ftruncate(a.memory.get(), static_cast<off_t>(r.size)) != 0)
            return fail_errno(errno, "shm.{}: size {}", r.name, r.size);
        // Every page now (admission counted them): a guest never faults on a region the host
        // cannot fill.
        if (::fallocate(a.memory.get(), 0, 0, static_cast<off_t>(r.size)) != 0)
            return fail_errno(errno, "shm.{}: allocating {}{}", r.name, size_text(r.size),
                              r.hugepages ? " of huge pages" : "");
        if (r.doorbells) {
            const size_t n = r.domains.size() * r.vectors;
            for (size_t i = 0; i < n; ++i) {
                UniqueFd e(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
                if (!e) return fail_errno(errno, "shm.{}: eventfd", r.name);
                a.doorbells.push_back(std::move(e));
            }
        }
        log::info("shm.{}: {}{} for {}{}", r.name, size_text(r.size),
                  r.hugepages ? " (huge pages)" : "", fmt::join(r.domains, ", "),
                  r.doorbells ? fmt::format(", {} doorbell(s) each", r.vectors) : "");
        out.regions_.push_back(std::move(a));
    }
    return out;
}

void SharedRegions::hand_to(const std::string& name, domain::DomainText& text,
                            std::vector<int>& fds, int first_fd) const {
    for (const auto& a : regions_) {
        const ShmRegion& r = *a.config;
        const int peer = r.peer_of(name);
        if (peer < 0) continue;
        const int memory_fd = first_fd + static_cast<int>(fds.size());
        fds.push_back(a.memory.get());
        std::string spec =
            fmt::format("fd={},size={}B,name={},peer={}", memory_fd, r.size, r.name, peer);
        if (r.is_readonly(name)) spec += ",readonly";
        if (r.doorbells) {
            spec += fmt::format(",peers={},vectors={},doorbell-fds={}", r.domains.size(), r.vectors,
                                first_fd + static_cast<int>(fds.size()));
            for (const auto& e : a.doorbells)
                fds.push_back(e.get());
        }
        spec += ",names=" + fmt::format("{}", fmt::join(r.domains, ":"));
        text.shm.push_back(std::move(spec));
    }
}

void SharedRegions::clear_owned(const std::string& name) const {
    for (const auto& a : regions_) {
        if (a.config->peer_of(name) != 0) continue;
        // A hole over the whole file: every mapping (the borrowers' too) reads zeros.
        // Then allocated again, as at start-up.
        const off_t size = static_cast<off_t>(a.config->size);
        if (::fallocate(a.memory.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, size) != 0 ||
            ::fallocate(a.memory.get(), 0, 0, size) != 0)
            log::warn("shm.{}: cannot clear it for its owner {}: {}", a.config->name, name,
                      std::strerror(errno));
        else
            log::info("shm.{}: cleared for its owner {} starting anew", a.config->name, name);
    }
}

}  // namespace vireo::host
