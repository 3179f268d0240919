#include "memory/guest_memory.hpp"

#include <linux/memfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace vireo::memory {

namespace {

// The host bytes of a region (the mapping GuestMemory owns).
uint8_t* host_bytes(const Region& r) noexcept {
    return static_cast<uint8_t*>(r.host.ptr());
}

// Private anonymous memory of `size` bytes at a 2 MiB-aligned address (KVM maps a 2 MiB page
// of the host as one nested-paging entry only where guest and host addresses agree modulo
// 2 MiB; regions start 2 MiB-aligned in the guest), advised for transparent huge pages.
Result<uint8_t*> map_anonymous(uint64_t size, const std::string& name) {
    constexpr uint64_t kAlign = GuestMemory::kHugePageSize;
    const uint64_t span = size + kAlign;
    void* raw = ::mmap(nullptr, span, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw == MAP_FAILED) return fail_errno(errno, "guest memory: mapping {} MiB", size >> 20);
    const auto base = reinterpret_cast<uintptr_t>(raw);
    const uintptr_t start = (base + kAlign - 1) & ~uintptr_t{kAlign - 1};
    if (start > base) ::munmap(raw, start - base);
    if (const uintptr_t tail = base + span - (start + size); tail > 0)
        ::munmap(reinterpret_cast<void*>(start + size), tail);
    auto* p = reinterpret_cast<uint8_t*>(start);
    // Advice only: a host without transparent huge pages (or with them off) just says no.
    (void)::madvise(p, size, MADV_HUGEPAGE);
    (void)::madvise(p, size, MADV_DONTFORK);
    (void)::prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, start, size, name.c_str());
    return p;
}

}  // namespace

Result<void> GuestMemory::check_layout(std::vector<RegionSpec>& sorted, bool huge_pages,
                                       uint64_t& total) {
    if (sorted.empty()) return fail(ErrorCode::InvalidArgument, "guest memory: no RAM regions");
    std::sort(sorted.begin(), sorted.end(),
              [](const RegionSpec& a, const RegionSpec& b) { return a.start < b.start; });
    total = 0;
    for (size_t i = 0; i < sorted.size(); ++i) {
        const auto& r = sorted[i];
        if (r.size == 0)
            return fail(ErrorCode::InvalidArgument, "guest memory: region at {:#x} has size 0",
                        r.start.value());
        if (!is_aligned(r.start.value(), kPageSize) || !is_aligned(r.size, kPageSize))
            return fail(ErrorCode::InvalidArgument,
                        "guest memory: region [{:#x}, +{:#x}) is not 4 KiB-aligned",
                        r.start.value(), r.size);
        if (!r.start.checked_add(r.size))
            return fail(ErrorCode::OutOfRange,
                        "guest memory: region at {:#x} of {:#x} bytes ends past 2^64",
                        r.start.value(), r.size);
        if (i > 0 && sorted[i - 1].start.value() + sorted[i - 1].size > r.start.value())
            return fail(ErrorCode::AlreadyExists,
                        "guest memory: regions at {:#x} and {:#x} overlap",
                        sorted[i - 1].start.value(), r.start.value());
        if (huge_pages &&
            (!is_aligned(r.start.value(), kHugePageSize) || !is_aligned(r.size, kHugePageSize)))
            return fail(ErrorCode::InvalidArgument,
                        "guest memory: region [{:#x}, +{:#x}) is not 2 MiB-aligned (huge pages)",
                        r.start.value(), r.size);
        auto t = checked_add(total, r.size);
        if (!t) return fail(ErrorCode::OutOfRange, "guest memory: total size overflows");
        total = *t;
    }
    return ok();
}

Result<GuestMemory> GuestMemory::create(std::span<const RegionSpec> layout, const std::string& name,
                                        bool huge_pages) {
    std::vector<RegionSpec> sorted(layout.begin(), layout.end());
    uint64_t total = 0;
    VIREO_TRY(check_layout(sorted, huge_pages, total));

    GuestMemory mem;
    if (!huge_pages) {
        for (const auto& spec : sorted) {
            VIREO_TRY_ASSIGN(uint8_t * p, map_anonymous(spec.size, name));
            mem.regions_.push_back(Region{spec.start, spec.size, Hva(p), 0});
        }
        mem.total_size_ = total;
        return mem;
    }
    // Huge pages: a hugetlbfs memfd, mapped without MAP_NORESERVE so every page is reserved now.
    const int fd = ::memfd_create(name.c_str(), MFD_CLOEXEC | MFD_HUGETLB | MFD_HUGE_2MB);
    if (fd < 0) return fail_errno(errno, "guest memory: memfd_create with 2 MiB huge pages");
    mem.fd_.reset(fd);
    if (::ftruncate(fd, static_cast<off_t>(total)) != 0)
        return fail_errno(errno, "guest memory: sizing the {} MiB memfd", total >> 20);
    uint64_t offset = 0;
    for (const auto& spec : sorted) {
        void* p = ::mmap(nullptr, spec.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
                         static_cast<off_t>(offset));
        if (p == MAP_FAILED && errno == ENOMEM)
            return fail(ErrorCode::ResourceExhausted,
                        "guest memory: not enough free 2 MiB huge pages for {} MiB at guest {:#x} "
                        "(HugePages_Free in /proc/meminfo; raise /proc/sys/vm/nr_hugepages)",
                        spec.size >> 20, spec.start.value());
        if (p == MAP_FAILED)
            return fail_errno(errno, "guest memory: mapping {} MiB at guest {:#x}", spec.size >> 20,
                              spec.start.value());
        (void)::madvise(p, spec.size, MADV_DONTFORK);
        mem.regions_.push_back(Region{spec.start, spec.size, Hva(p), offset});
        offset += spec.size;
    }
    mem.total_size_ = total;
    return mem;
}

Result<GuestMemory> GuestMemory::create_flat(uint64_t size) {
    RegionSpec spec{Gpa(0), size};
    return create(std::span<const RegionSpec>(&spec, 1));
}

Result<GuestMemory> GuestMemory::map_file(std::span<const FileRegion> layout, int fd,
                                          const std::string& name) {
    std::vector<RegionSpec> sorted;
    for (const auto& r : layout) {
        if (!is_aligned(r.file_offset, kPageSize))
            return fail(
                ErrorCode::InvalidArgument,
                "guest memory: file offset {:#x} of the region at {:#x} is not 4 KiB-aligned",
                r.file_offset, r.spec.start.value());
        if (r.file_offset > static_cast<uint64_t>(INT64_MAX) - r.spec.size)
            return fail(ErrorCode::OutOfRange, "guest memory: file offset {:#x} too large",
                        r.file_offset);
        sorted.push_back(r.spec);
    }
    uint64_t total = 0;
    VIREO_TRY(check_layout(sorted, false, total));
    GuestMemory mem;
    mem.file_backed_ = true;
    for (const auto& spec : sorted) {
        const auto it = std::find_if(layout.begin(), layout.end(), [&](const FileRegion& r) {
            return r.spec.start == spec.start;
        });
        // A 2 MiB-aligned reservation (as for anonymous memory), the file mapped over it.
        VIREO_TRY_ASSIGN(uint8_t * p, map_anonymous(spec.size, name));
        mem.regions_.push_back(Region{spec.start, spec.size, Hva(p), 0});
        if (::mmap(p, spec.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE,
                   fd, static_cast<off_t>(it->file_offset)) == MAP_FAILED)
            return fail_errno(errno, "guest memory: mapping {} MiB of the snapshot at guest {:#x}",
                              spec.size >> 20, spec.start.value());
        (void)::madvise(p, spec.size, MADV_DONTFORK);
    }
    mem.total_size_ = total;
    return mem;
}

Result<void> GuestMemory::replace_with_anonymous(uint8_t* host, uint64_t n) {
    // SAFETY: [host, host + n) is page-aligned and lies within one region this object maps;
    // MAP_FIXED replaces only those pages (KVM follows through its MMU notifier).
    if (::mmap(host, n, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0) == MAP_FAILED)
        return fail_errno(errno, "guest memory: replacing {} bytes of snapshot memory", n);
    (void)::madvise(host, n, MADV_DONTFORK);
    return ok();
}

GuestMemory::GuestMemory(GuestMemory&& other) noexcept
    : regions_(std::move(other.regions_)),
      total_size_(std::exchange(other.total_size_, 0)),
      fd_(std::move(other.fd_)),
      file_backed_(std::exchange(other.file_backed_, false)),
      dirty_(std::exchange(other.dirty_, std::make_unique<DirtyLog>())) {
    other.regions_.clear();
}

GuestMemory& GuestMemory::operator=(GuestMemory&& other) noexcept {
    if (this != &other) {
        release();
        regions_ = std::move(other.regions_);
        other.regions_.clear();
        total_size_ = std::exchange(other.total_size_, 0);
        fd_ = std::move(other.fd_);
        file_backed_ = std::exchange(other.file_backed_, false);
        dirty_ = std::exchange(other.dirty_, std::make_unique<DirtyLog>());
    }
    return *this;
}

Result<void> GuestMemory::start_dirty_log() const {
    const bool first = dirty_->words.empty();
    for (size_t i = 0; i < regions_.size(); ++i) {
        const uint64_t n = (regions_[i].size / kPageSize + 63) / 64;
        if (first) {
            dirty_->words.push_back(std::make_unique<std::atomic<uint64_t>[]>(n));  // zeroed
        } else {
            for (uint64_t w = 0; w < n; ++w)
                dirty_->words[i][w].store(0, std::memory_order_relaxed);
        }
    }
    dirty_->on.store(true, std::memory_order_release);
    return ok();
}

void GuestMemory::stop_dirty_log() const noexcept {
    dirty_->on.store(false, std::memory_order_release);
}

void GuestMemory::mark_region(size_t index, uint64_t offset, uint64_t len) const noexcept {
    if (len == 0) return;
    const uint64_t first = offset / kPageSize;
    const uint64_t last = (offset + len - 1) / kPageSize;  // offset + len <= region size
    auto* words = dirty_->words[index].get();
    for (uint64_t p = first; p <= last; ++p)
        words[p / 64].fetch_or(uint64_t{1} << (p % 64), std::memory_order_relaxed);
}

void GuestMemory::mark_dirty(Gpa gpa, uint64_t len) const noexcept {
    if (!dirty_logging()) return;
    for (size_t i = 0; i < regions_.size(); ++i) {
        const Region& r = regions_[i];
        const uint64_t a = std::max(gpa.value(), r.start.value());
        const uint64_t end = gpa.value() + std::min(len, UINT64_MAX - gpa.value());
        const uint64_t b = std::min(end, r.end());
        if (a < b) mark_region(i, a - r.start.value(), b - a);
    }
}

void GuestMemory::mark_dirty_host(const void* host, uint64_t len) const noexcept {
    if (!dirty_logging()) return;
    const auto h = reinterpret_cast<uintptr_t>(host);
    for (size_t i = 0; i < regions_.size(); ++i) {
        const auto base = reinterpret_cast<uintptr_t>(regions_[i].host.ptr());
        if (h < base || h - base >= regions_[i].size) continue;
        const uint64_t off = h - base;
        mark_region(i, off, std::min<uint64_t>(len, regions_[i].size - off));
        return;
    }
}

void GuestMemory::take_dirty(size_t index, std::span<uint64_t> words) const noexcept {
    if (index >= dirty_->words.size()) return;
    const uint64_t n =
        std::min<uint64_t>(words.size(), (regions_[index].size / kPageSize + 63) / 64);
    for (uint64_t w = 0; w < n; ++w)
        words[w] |= dirty_->words[index][w].exchange(0, std::memory_order_acq_rel);
}

GuestMemory::~GuestMemory() {
    release();
}

Result<void> GuestMemory::discard(Gpa gpa, uint64_t len) const {
    if (!is_aligned(gpa.value(), kPageSize) || !is_aligned(len, kPageSize))
        return fail(ErrorCode::InvalidArgument,
                    "guest memory: discarding [{:#x}, +{:#x}): not whole 4 KiB pages", gpa.value(),
                    len);
    // Anonymous memory: MADV_DONTNEED frees the pages (a 2 MiB page is split first). A memfd:
    // MADV_REMOVE punches the pages out of the file itself.
    const int advice = huge_pages() ? MADV_REMOVE : MADV_DONTNEED;
    return for_each_chunk(gpa, len, [&](uint8_t* host, uint64_t, uint64_t n) -> Result<void> {
        if (file_backed_) return replace_with_anonymous(host, n);
        // SAFETY: host..host+n lies within one mapped region, page-aligned (checked above).
        if (::madvise(host, n, advice) != 0)
            return fail_errno(errno, "guest memory: discarding {} bytes at {:#x}", n, gpa.value());
        return ok();
    });
}

Result<void> GuestMemory::clear(bool keep_pages) const {
    for (const auto& r : regions_) {
        if (keep_pages) {
            std::memset(host_bytes(r), 0, r.size);
        } else if (file_backed_) {
            VIREO_TRY(replace_with_anonymous(host_bytes(r), r.size));
            (void)::madvise(host_bytes(r), r.size, MADV_HUGEPAGE);
        } else if (::madvise(host_bytes(r), r.size, MADV_DONTNEED) != 0) {
            return fail_errno(errno, "guest memory: dropping {} MiB", r.size >> 20);
        }
    }
    return ok();
}

Result<void> GuestMemory::populate(bool lock) const {
    for (const auto& r : regions_) {
        if (::madvise(host_bytes(r), r.size, MADV_POPULATE_WRITE) != 0)  // huge pages too
            return fail_errno(errno, "prefaulting {} MiB of guest memory", r.size >> 20);
        if (lock && ::mlock(host_bytes(r), r.size) != 0)
            return fail_errno(errno, "locking {} MiB of guest memory (RLIMIT_MEMLOCK?)",
                              r.size >> 20);
    }
    return ok();
}

void GuestMemory::release() noexcept {
    for (auto& r : regions_)
        ::munmap(host_bytes(r), r.size);
    regions_.clear();
}

const Region* GuestMemory::find(Gpa gpa) const noexcept {
    // First region starting after gpa; the candidate is the one before it.
    auto it = std::upper_bound(regions_.begin(), regions_.end(), gpa,
                               [](Gpa g, const Region& r) { return g < r.start; });
    if (it == regions_.begin()) return nullptr;
    --it;
    return gpa.value() - it->start.value() < it->size ? &*it : nullptr;
}

template <typename Fn>
Result<void> GuestMemory::for_each_chunk(Gpa gpa, uint64_t len, Fn&& fn) const {
    if (!contains(gpa, len))
        return fail(ErrorCode::OutOfRange, "guest access [{:#x}, +{:#x}) is outside guest RAM",
                    gpa.value(), len);
    uint64_t done = 0;
    while (done < len) {
        Gpa cur(gpa.value() + done);  // cannot overflow: contains() checked the whole range
        const Region* r = find(cur);
        uint64_t off = cur.offset_from(r->start);
        uint64_t chunk = std::min(len - done, r->size - off);
        if constexpr (std::is_void_v<decltype(fn(host_bytes(*r) + off, done, chunk))>)
            fn(host_bytes(*r) + off, done, chunk);
        else
            VIREO_TRY(fn(host_bytes(*r) + off, done, chunk));
        done += chunk;
    }
    return ok();
}

bool GuestMemory::contains(Gpa gpa, uint64_t len) const noexcept {
    if (!range_fits(gpa.value(), len)) return false;
    uint64_t cur = gpa.value();
    uint64_t remaining = len;
    do {
        const Region* r = find(Gpa(cur));
        if (r == nullptr) return false;
        uint64_t avail = r->end() - cur;
        if (remaining <= avail) return true;
        remaining -= avail;
        cur = r->end();  // continue only if the next region is adjacent
    } while (true);
}

Result<void> GuestMemory::read(Gpa gpa, std::span<std::byte> out) const {
    return for_each_chunk(gpa, out.size(), [&](const uint8_t* host, uint64_t at, uint64_t n) {
        // SAFETY: host..host+n lies within one mapped region (checked by for_each_chunk).
        std::memcpy(out.data() + at, host, n);
    });
}

Result<void> GuestMemory::write(Gpa gpa, std::span<const std::byte> in) const {
    return for_each_chunk(gpa, in.size(), [&](uint8_t* host, uint64_t at, uint64_t n) {
        // SAFETY: host..host+n lies within one mapped region (checked by for_each_chunk).
        std::memcpy(host, in.data() + at, n);
    });
}

Result<void> GuestMemory::write_from_file_mapping(Gpa gpa, std::span<const uint8_t> src) const {
    if (!contains(gpa, src.size()))
        return fail(ErrorCode::OutOfRange, "guest access [{:#x}, +{:#x}) is outside guest RAM",
                    gpa.value(), src.size());
    constexpr size_t kChunk = size_t{2} << 20;
    for (size_t off = 0; off < src.size(); off += kChunk) {
        auto piece = src.subspan(off, std::min(kChunk, src.size() - off));
        VIREO_TRY(write(Gpa(gpa.value() + off), std::as_bytes(piece)));
        // Drop the whole pages of the piece just copied.
        auto begin = reinterpret_cast<uintptr_t>(piece.data());
        auto first = (begin + kPageSize - 1) & ~uintptr_t{kPageSize - 1};
        auto last = (begin + piece.size()) & ~uintptr_t{kPageSize - 1};
        if (last > first) ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
    }
    return ok();
}

Result<GuestSlice> GuestMemory::slice(Gpa gpa, uint64_t len) const {
    const Region* r = find(gpa);
    if (r == nullptr || !range_fits(gpa.value(), len))
        return fail(ErrorCode::OutOfRange, "guest range [{:#x}, +{:#x}) is outside guest RAM",
                    gpa.value(), len);
    uint64_t off = gpa.offset_from(r->start);
    if (len > r->size - off)
        return fail(ErrorCode::OutOfRange,
                    "guest range [{:#x}, +{:#x}) leaves its RAM region (ends at {:#x})",
                    gpa.value(), len, r->end());
    // SAFETY: [off, off+len) is within the region's mapping, checked just above.
    return GuestSlice(gpa, host_bytes(*r) + off, len);
}

}  // namespace vireo::memory
