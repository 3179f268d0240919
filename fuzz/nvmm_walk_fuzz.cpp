// libFuzzer target: libnvmm's page walk (nvmm_gva_to_gpa) over page tables a guest wrote. The
// input gives CR0, CR3, CR4, EFER and the address, then 64 KiB of guest memory holding the
// tables (reads past it find nothing). The walk must read only inside memory, end, and report
// only NVMM protection bits.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "nvmm/page_walk.hpp"

using namespace vireo::nvmm;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    constexpr size_t kHeader = 5 * 8;
    if (size < kHeader) return 0;
    uint64_t v[5];
    std::memcpy(v, data, sizeof v);
    nvmm_x64_state s{};
    s.crs[NVMM_X64_CR_CR0] = v[0];
    s.crs[NVMM_X64_CR_CR3] = v[1] & 0xffff;  // tables within the 64 KiB, most of the time
    s.crs[NVMM_X64_CR_CR4] = v[2];
    s.msrs[NVMM_X64_MSR_EFER] = v[3];
    std::vector<uint8_t> memory(64 * 1024);
    std::memcpy(memory.data(), data + kHeader, std::min(memory.size(), size - kHeader));
    unsigned reads = 0;
    const ReadGuest read = [&](uint64_t gpa, unsigned n) -> std::optional<uint64_t> {
        if (n != 4 && n != 8) abort();
        if (++reads > 6) abort();  // five levels and a PDPTE at most
        if (gpa > memory.size() - n) return std::nullopt;
        uint64_t w = 0;
        std::memcpy(&w, memory.data() + gpa, n);
        return w;
    };
    const auto r = walk_page_tables(s, v[4], read);
    if (r && (r->prot & ~uint64_t{NVMM_PROT_ALL})) abort();
    return 0;
}
