// Guest RAM: the only way vireo touches guest memory.
//
// GuestMemory is built once from a layout and is immutable afterwards, so it can be shared by
// every thread without locks. It covers RAM only (MMIO is never reachable through it). Every
// access checks [gpa, gpa + len) with overflow checks and is split across regions where it spans
// adjacent ones; an access that leaves RAM anywhere fails as a whole before any byte is copied.
// slice() is the one place that turns a guest address range into host memory: it returns a
// GuestSlice (memory/guest_slice.hpp), whose every access is checked against the range.
//
// Memory is private anonymous memory mapped MAP_NORESERVE, each region at a 2 MiB-aligned host
// address and advised MADV_HUGEPAGE: where the host's transparent huge pages allow it
// (enabled = always or madvise), the guest's memory comes in 2 MiB pages that KVM maps as 2 MiB
// nested-paging entries (fewer TLB misses and nested page faults); untouched memory costs the
// host nothing (at 2 MiB granularity), and touched pages stay swappable unless the caller locks
// them. MADV_DONTFORK keeps it out of any child process. With huge_pages it is instead a
// hugetlbfs memfd (explicit 2 MiB pages, reserved up front, never swapped).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "memory/address.hpp"
#include "memory/guest_slice.hpp"

namespace vireo::memory {

/// One RAM range requested of GuestMemory::create(). Page-aligned start and size.
struct RegionSpec {
    Gpa start;
    uint64_t size = 0;
};

/// One mapped RAM region.
struct Region {
    Gpa start;
    uint64_t size = 0;
    Hva host;                ///< host address of the region's mapping (for KVM's memory slots)
    uint64_t fd_offset = 0;  ///< offset of the region in the backing memfd (huge pages)

    /// One past the last guest-physical address of the region (cannot overflow: create()
    /// refuses regions that end past 2^64).
    uint64_t end() const noexcept { return start.value() + size; }
};

class GuestMemory {
  public:
    /// Maps the given RAM regions (page-aligned, non-empty, non-overlapping; any order).
    /// `name` labels the mappings in /proc/PID/maps (where the kernel names anonymous memory).
    /// With `huge_pages` the memory is a hugetlbfs memfd (2 MiB pages; every region a multiple of 2
    /// MiB) and mapped without MAP_NORESERVE, so the kernel reserves every huge page now: too few
    /// free huge pages fail here, not when the guest first touches one.
    static Result<GuestMemory> create(std::span<const RegionSpec> layout,
                                      const std::string& name = "vireo-guest-ram",
                                      bool huge_pages = false);
    static constexpr uint64_t kHugePageSize = uint64_t{2} << 20;
    /// Convenience: a single region [0, size).
    static Result<GuestMemory> create_flat(uint64_t size);
    /// One region of a restore: RAM at `spec` that starts as the bytes at `file_offset` of a
    /// snapshot file (page-aligned).
    struct FileRegion {
        RegionSpec spec;
        uint64_t file_offset = 0;
    };
    /// Guest RAM mapped copy-on-write from the file `fd` (a restore, snapshot/memory.hpp):
    /// nothing is read or copied now; a page is read from the file (its page cache, which
    /// several clones of one snapshot share) when the guest first touches it, and becomes
    /// this guest's own when it is written. The file is never written. The layout is checked
    /// as create() checks it. discard() and clear() put zeroed anonymous memory over the
    /// pages they drop (dropping a file page would bring the snapshot's bytes back).
    static Result<GuestMemory> map_file(std::span<const FileRegion> layout, int fd,
                                        const std::string& name = "vireo-guest-ram");

    GuestMemory(GuestMemory&&) noexcept;
    GuestMemory& operator=(GuestMemory&&) noexcept;
    GuestMemory(const GuestMemory&) = delete;
    GuestMemory& operator=(const GuestMemory&) = delete;
    ~GuestMemory();

    /// Regions sorted by start address.
    std::span<const Region> regions() const noexcept { return regions_; }
    /// Sum of all region sizes.
    uint64_t total_size() const noexcept { return total_size_; }
    /// The backing memfd (huge_pages only; -1 for anonymous memory).
    int fd() const noexcept { return fd_.get(); }
    /// Returns the pages of [gpa, gpa + len) (page-aligned, all RAM) to the host: the guest
    /// reads zeros there afterwards. For a balloon or free page reporting.
    Result<void> discard(Gpa gpa, uint64_t len) const;
    /// Touches every page now (so nothing fails later for lack of host memory) and, with
    /// `lock`, locks them in RAM (never swapped; needs RLIMIT_MEMLOCK).
    Result<void> populate(bool lock) const;
    /// Zeroes all guest RAM (a machine reset). With `keep_pages` every page stays allocated
    /// (prefaulted, locked or huge-page memory: nothing may fail later for lack of memory);
    /// otherwise the pages go back to the host and come back zeroed on first touch.
    Result<void> clear(bool keep_pages) const;
    /// True if backed by 2 MiB huge pages (pages cannot be freed one 4 KiB page at a time).
    bool huge_pages() const noexcept { return static_cast<bool>(fd_); }  // only they have a memfd
    /// True if (some of) the memory still maps a snapshot file (map_file()).
    bool file_backed() const noexcept { return file_backed_; }

    /// True if every byte of [gpa, gpa + len) is RAM. len 0 is in range iff gpa is in RAM.
    bool contains(Gpa gpa, uint64_t len) const noexcept;

    /// Copies guest memory out. Fails (copying nothing) if any byte is outside RAM.
    Result<void> read(Gpa gpa, std::span<std::byte> out) const;
    /// Copies into guest memory. Fails (writing nothing) if any byte is outside RAM.
    Result<void> write(Gpa gpa, std::span<const std::byte> in) const;
    /// Like write(), for a source that is a private read-only *file* mapping (a kernel image):
    /// copies chunk by chunk and drops each chunk's pages from this process's RSS as it goes
    /// (they stay in the page cache), so loading a large image does not inflate the VMM's RSS.
    /// Never use it on anonymous memory: dropped anonymous pages read back as zeros.
    Result<void> write_from_file_mapping(Gpa gpa, std::span<const uint8_t> file_bytes) const;

    template <typename T>
    Result<T> read_obj(Gpa gpa) const {
        static_assert(std::is_trivially_copyable_v<T>, "read_obj needs a trivially copyable T");
        T value;
        VIREO_TRY(read(gpa, std::as_writable_bytes(std::span<T, 1>(&value, 1))));
        return value;
    }
    template <typename T>
    Result<void> write_obj(Gpa gpa, const T& value) const {
        static_assert(std::is_trivially_copyable_v<T>, "write_obj needs a trivially copyable T");
        return write(gpa, std::as_bytes(std::span<const T, 1>(&value, 1)));
    }

    /// A checked view of [gpa, gpa + len) if it lies within one region (zero-copy I/O).
    /// Fails if the range leaves RAM or crosses a region boundary.
    Result<GuestSlice> slice(Gpa gpa, uint64_t len) const;

    /// The region containing `gpa`, or nullptr.
    const Region* find(Gpa gpa) const noexcept;

    // Writes by vireo itself (live migration). KVM logs the pages the guest writes; the pages
    // vireo's device back-ends write from user space (buffers completed to the driver, the used
    // rings) are logged here by the devices, while a log is on: a migration resends both.

    /// Starts logging (allocates one bit per page, once; every bit clear). Not thread-safe
    /// against another start or stop; marks from other threads may run meanwhile.
    Result<void> start_dirty_log() const;
    /// Stops logging (marks become no-ops again; the bitmap is kept for the next start).
    void stop_dirty_log() const noexcept;
    bool dirty_logging() const noexcept {
        return dirty_ != nullptr && dirty_->on.load(std::memory_order_acquire);
    }
    /// Marks the pages of [gpa, gpa + len) written (nothing outside RAM; a no-op when not
    /// logging: one load). Any thread.
    void mark_dirty(Gpa gpa, uint64_t len) const noexcept;
    /// The same for a host range inside guest RAM (an iovec a device filled).
    void mark_dirty_host(const void* host, uint64_t len) const noexcept;
    /// ORs region `index`'s log into `words` (bit i: page i of the region) and clears it.
    void take_dirty(size_t index, std::span<uint64_t> words) const noexcept;

  private:
    struct DirtyLog {
        std::atomic<bool> on{false};
        std::vector<std::unique_ptr<std::atomic<uint64_t>[]>> words;  // per region
    };
    void mark_region(size_t index, uint64_t offset, uint64_t len) const noexcept;
    GuestMemory() = default;
    void release() noexcept;
    static Result<void> check_layout(std::vector<RegionSpec>& sorted, bool huge_pages,
                                     uint64_t& total);
    // Zeroed anonymous memory over [host, host + n) (a file-backed range's discard).
    static Result<void> replace_with_anonymous(uint8_t* host, uint64_t n);

    // Checks the whole range first, then calls fn(host_ptr, offset_in_access, chunk_len) for
    // each piece (one per region crossed). fn's return (void or Result<void>) stops it early.
    template <typename Fn>
    Result<void> for_each_chunk(Gpa gpa, uint64_t len, Fn&& fn) const;

    std::vector<Region> regions_;
    uint64_t total_size_ = 0;
    UniqueFd fd_;  ///< the hugetlbfs memfd; none for anonymous memory
    bool file_backed_ = false;
    std::unique_ptr<DirtyLog> dirty_ = std::make_unique<DirtyLog>();
};

}  // namespace vireo::memory
