// libnvmm's nvmm_gva_to_gpa: a walk of the guest's page tables as its control registers and
// EFER describe them (no paging, 32-bit with 4 MiB pages, PAE, 4- and 5-level). The tables are
// guest memory, read through `read`: a bounded walk (at most five levels, one read each), unit
// tested and fuzzed (fuzz/nvmm_walk_fuzz.cpp).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>

#include "nvmm/nvmm.h"

namespace vireo::nvmm {

struct Translation {
    uint64_t gpa = 0;
    uint64_t prot = 0;  ///< NVMM_PROT_*: what every level allows
};

/// Reads `size` (4 or 8) bytes of guest-physical memory at `gpa`, or nothing where no memory is.
using ReadGuest = std::function<std::optional<uint64_t>(uint64_t gpa, unsigned size)>;

/// Translates `gva` with the paging state in `s` (CRS and MSRS parts); nothing if a level is
/// not present or its table is not memory.
std::optional<Translation> walk_page_tables(const nvmm_x64_state& s, uint64_t gva,
                                            const ReadGuest& read);

}  // namespace vireo::nvmm
