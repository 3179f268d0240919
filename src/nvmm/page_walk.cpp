#include "nvmm/page_walk.hpp"

namespace vireo::nvmm {

std::optional<Translation> walk_page_tables(const nvmm_x64_state& s, uint64_t gva,
                                            const ReadGuest& read) {
    constexpr uint64_t kCr0Pg = 1ull << 31, kCr4Pse = 1u << 4, kCr4Pae = 1u << 5,
                       kCr4La57 = 1u << 12, kEferLma = 1u << 10, kEferNxe = 1u << 11;
    constexpr uint64_t kAddress = 0x000ffffffffff000ull;
    const uint64_t cr0 = s.crs[NVMM_X64_CR_CR0], cr4 = s.crs[NVMM_X64_CR_CR4];
    const uint64_t efer = s.msrs[NVMM_X64_MSR_EFER];
    uint64_t prot = NVMM_PROT_ALL;
    if (!(cr0 & kCr0Pg)) return Translation{(efer & kEferLma) ? gva : gva & 0xffffffffu, prot};
    const bool pae = cr4 & kCr4Pae;
    const bool nx = efer & kEferNxe;
    int levels;
    uint64_t table;
    if (!pae) {  // 32-bit: two levels of 1024 four-byte entries
        levels = 2;
        table = s.crs[NVMM_X64_CR_CR3] & 0xfffff000u;
        gva &= 0xffffffffu;
    } else if (!(efer & kEferLma)) {  // PAE: CR3 points at four PDPTEs
        gva &= 0xffffffffu;
        const auto pdpte = read((s.crs[NVMM_X64_CR_CR3] & 0xffffffe0u) + ((gva >> 30) & 3) * 8, 8);
        if (!pdpte || !(*pdpte & 1)) return std::nullopt;
        levels = 2;
        table = *pdpte & kAddress;
    } else {
        levels = (cr4 & kCr4La57) ? 5 : 4;
        table = s.crs[NVMM_X64_CR_CR3] & kAddress;
    }
    for (int level = levels; level >= 1; --level) {
        const unsigned bits = pae ? 9 : 10;
        const unsigned shift = 12 + bits * static_cast<unsigned>(level - 1);
        const uint64_t index = (gva >> shift) & ((1u << bits) - 1);
        const unsigned size = pae ? 8 : 4;
        const auto entry = read(table + index * size, size);
        if (!entry || !(*entry & 1)) return std::nullopt;
        const uint64_t e = *entry;
        if (!(e & 2)) prot &= ~uint64_t{NVMM_PROT_WRITE};
        if (!(e & 4)) prot &= ~uint64_t{NVMM_PROT_USER};
        if (nx && (e >> 63)) prot &= ~uint64_t{NVMM_PROT_EXEC};
        const bool large = level > 1 && (e & 0x80) && (pae || (cr4 & kCr4Pse));
        if (level == 1 || large) {
            const uint64_t offset_mask = (uint64_t{1} << shift) - 1;
            uint64_t base;
            if (!pae && large)  // a 4 MiB page: bits 13-20 are physical address bits 32-39
                base = (e & 0xffc00000u) | ((e & 0x1fe000u) << 19);
            else
                base = e & kAddress & ~offset_mask;
            return Translation{base | (gva & offset_mask), prot};
        }
        table = e & (pae ? kAddress : 0xfffff000u);
    }
    return std::nullopt;
}

}  // namespace vireo::nvmm
