// Guest RAM in a snapshot. A "RAM " section lists the regions (guest-physical start and size);
// each region's bytes are one mapped section (tag 'R' + region index) in which only pages that
// are not all zeros are written: the file stays sparse, an idle guest's snapshot is small, and
// a restore maps the sections copy-on-write (memory::GuestMemory::map_file) without reading
// them. Untouched guest memory reads as zeros, so a page of zeros and a hole are the same.
#pragma once

#include <cstdint>
#include <vector>

#include "memory/guest_memory.hpp"
#include "snapshot/format.hpp"

namespace vireo::snapshot {

inline constexpr uint32_t kRamTag = tag("RAM ");
inline constexpr uint32_t kRamVersion = 1;
/// More regions than any machine vireo builds has (two: below and above the MMIO hole).
inline constexpr uint32_t kMaxRamRegions = 64;
/// Region `i`'s mapped section.
constexpr uint32_t ram_tag(uint32_t i) {
    return static_cast<uint32_t>('R') | i << 8;
}

struct MemorySaveStats {
    uint64_t guest_bytes = 0;    ///< all of guest RAM
    uint64_t written_bytes = 0;  ///< the pages written (not all zeros)
};

/// Writes guest RAM as above into `w` (whose descriptor is `fd`). The guest must not run.
/// Reads every page once (a page never touched reads as the shared zero page: nothing is
/// allocated) and writes runs of non-zero pages with one pwrite each.
Result<MemorySaveStats> save_memory(Writer& w, int fd, const memory::GuestMemory& mem);

/// The RAM layout a snapshot records, each region with the file offset of its bytes; checked
/// against the file: every region's section is there, mapped, exactly the region's size; at
/// most kMaxRamRegions regions; the regions themselves are checked by GuestMemory::map_file.
Result<std::vector<memory::GuestMemory::FileRegion>> memory_layout(const Reader& r);

}  // namespace vireo::snapshot
