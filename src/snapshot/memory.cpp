#include "snapshot/memory.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "snapshot/state.hpp"

namespace vireo::snapshot {

namespace {

constexpr uint64_t kPage = memory::kPageSize;
// At most this much is written with one pwrite (a run of non-zero pages).
constexpr uint64_t kMaxRun = uint64_t{8} << 20;

bool zero_page(const uint8_t* p) noexcept {
    // Eight words at a time; the compiler vectorizes the OR.
    const auto* w = reinterpret_cast<const uint64_t*>(p);
    for (size_t i = 0; i < kPage / 8; i += 8) {
        const uint64_t any =
            w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7];
        if (any != 0) return false;
    }
    return true;
}

Result<void> write_all(int fd, const uint8_t* p, uint64_t n, uint64_t offset) {
    while (n > 0) {
        const ssize_t w = ::pwrite(fd, p, n, static_cast<off_t>(offset));
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return fail_errno(errno, "snapshot: writing guest memory");
        if (w == 0) return fail(ErrorCode::System, "snapshot: writing guest memory: no progress");
        p += w;
        n -= static_cast<uint64_t>(w);
        offset += static_cast<uint64_t>(w);
    }
    return ok();
}

}  // namespace

Result<MemorySaveStats> save_memory(Writer& w, int fd, const memory::GuestMemory& mem) {
    const auto regions = mem.regions();
    if (regions.size() > kMaxRamRegions)
        return fail(ErrorCode::OutOfRange, "snapshot: {} RAM regions (at most {})", regions.size(),
                    kMaxRamRegions);
    Encoder e;
    e.u32(static_cast<uint32_t>(regions.size()));
    for (const auto& r : regions) {
        e.u64(r.start.value());
        e.u64(r.size);
    }
    VIREO_TRY(w.add(kRamTag, kRamVersion, e.data()));
    MemorySaveStats stats;
    for (uint32_t i = 0; i < regions.size(); ++i) {
        const auto& r = regions[i];
        VIREO_TRY_ASSIGN(const uint64_t base, w.add_mapped(ram_tag(i), kRamVersion, r.size));
        const auto* host = static_cast<const uint8_t*>(r.host.ptr());
        uint64_t run = 0, run_len = 0;  // the pending run of non-zero pages
        for (uint64_t off = 0; off < r.size; off += kPage) {
            if (!zero_page(host + off)) {
                if (run_len == 0) run = off;
                run_len += kPage;
                if (run_len < kMaxRun) continue;
            }
            if (run_len != 0) {
                VIREO_TRY(write_all(fd, host + run, run_len, base + run));
                stats.written_bytes += run_len;
                run_len = 0;
            }
        }
        if (run_len != 0) {
            VIREO_TRY(write_all(fd, host + run, run_len, base + run));
            stats.written_bytes += run_len;
        }
        stats.guest_bytes += r.size;
    }
    return stats;
}

Result<std::vector<memory::GuestMemory::FileRegion>> memory_layout(const Reader& r) {
    const SectionInfo* ram = r.find(kRamTag);
    if (ram == nullptr) return fail(ErrorCode::InvalidArgument, "snapshot: no guest memory (RAM)");
    if (ram->version != kRamVersion)
        return fail(ErrorCode::Unsupported, "snapshot: RAM section version {}; this vireo reads {}",
                    ram->version, kRamVersion);
    Decoder d(r.bytes(*ram), "RAM");
    const uint32_t count = d.u32();
    if (count == 0 || count > kMaxRamRegions) d.invalid("region count");
    std::vector<memory::GuestMemory::FileRegion> out;
    for (uint32_t i = 0; d.ok() && i < count; ++i) {
        memory::GuestMemory::FileRegion f;
        f.spec.start = memory::Gpa(d.u64());
        f.spec.size = d.u64();
        out.push_back(f);
    }
    VIREO_TRY(d.finish());
    for (uint32_t i = 0; i < count; ++i) {
        const SectionInfo* s = r.find(ram_tag(i));
        if (s == nullptr || (s->flags & kSectionMapped) == 0)
            return fail(ErrorCode::InvalidArgument,
                        "snapshot: the bytes of RAM region {} (section {}) are missing", i,
                        tag_name(ram_tag(i)));
        if (s->length != out[i].spec.size)
            return fail(ErrorCode::InvalidArgument,
                        "snapshot: RAM region {} is {:#x} bytes but its section holds {:#x}", i,
                        out[i].spec.size, s->length);
        out[i].file_offset = s->offset;
    }
    return out;
}

}  // namespace vireo::snapshot
