// Guest RAM through a snapshot (snapshot/memory.hpp, GuestMemory::map_file): only non-zero
// pages are written; the restore maps the file copy-on-write, so the guest's writes never reach
// the file and two restores of one file are independent; a layout that does not match the
// file's sections is refused.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "base/unique_fd.hpp"
#include "memory/guest_memory.hpp"
#include "snapshot/format.hpp"
#include "snapshot/memory.hpp"
#include "snapshot/state.hpp"

namespace vireo::snapshot {
namespace {

using memory::Gpa;
using memory::GuestMemory;
using memory::RegionSpec;

constexpr uint64_t kMiB = uint64_t{1} << 20;

// Two regions, as a machine with an MMIO hole has (scaled down).
GuestMemory two_regions() {
    const RegionSpec layout[] = {{Gpa(0), 16 * kMiB}, {Gpa(64 * kMiB), 8 * kMiB}};
    auto mem = GuestMemory::create(layout);
    EXPECT_TRUE(mem) << mem.error().message();
    return std::move(*mem);
}

void put(const GuestMemory& mem, uint64_t gpa, const char* text) {
    ASSERT_TRUE(mem.write(Gpa(gpa), std::as_bytes(std::span(text, std::strlen(text) + 1))));
}

std::string get(const GuestMemory& mem, uint64_t gpa, size_t n) {
    std::string s(n, '\0');
    EXPECT_TRUE(mem.read(Gpa(gpa), std::as_writable_bytes(std::span(s.data(), n))));
    return s;
}

struct Saved {
    UniqueFd fd;
    MemorySaveStats stats;
};

Saved save(const GuestMemory& mem) {
    Saved s{UniqueFd(::memfd_create("snapshot-memory-test", MFD_CLOEXEC)), {}};
    Writer w(s.fd.get());
    auto stats = save_memory(w, s.fd.get(), mem);
    EXPECT_TRUE(stats) << stats.error().message();
    EXPECT_TRUE(w.finish());
    if (stats) s.stats = *stats;
    return s;
}

GuestMemory restore(int fd) {
    auto src = file_source(fd);
    EXPECT_TRUE(src);
    auto reader = Reader::open(*src);
    EXPECT_TRUE(reader) << reader.error().message();
    auto layout = memory_layout(*reader);
    EXPECT_TRUE(layout) << layout.error().message();
    auto mem = GuestMemory::map_file(*layout, fd);
    EXPECT_TRUE(mem) << mem.error().message();
    return std::move(*mem);
}

TEST(SnapshotMemory, OnlyTouchedPagesAreWrittenAndTheFileStaysSparse) {
    GuestMemory mem = two_regions();
    put(mem, 0x1000, "low page");
    put(mem, 0x1000 + 4096 * 3, "three pages on");
    put(mem, 64 * kMiB + 8 * kMiB - 16, "the last bytes");
    mem.read_obj<uint64_t>(Gpa(5 * kMiB)).value();  // read, not written: stays a hole
    Saved s = save(mem);
    EXPECT_EQ(s.stats.guest_bytes, 24 * kMiB);
    EXPECT_EQ(s.stats.written_bytes, 3 * 4096u);
    struct stat st {};
    ASSERT_EQ(::fstat(s.fd.get(), &st), 0);
    EXPECT_GT(static_cast<uint64_t>(st.st_size), 24 * kMiB);
    EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, 64 * 1024u);  // headers and 3 pages
}

TEST(SnapshotMemory, ARestoreSeesTheBytesAndItsWritesStayItsOwn) {
    GuestMemory mem = two_regions();
    put(mem, 0x2000, "kernel text");
    put(mem, 64 * kMiB + 0x3000, "page cache");
    Saved s = save(mem);

    GuestMemory a = restore(s.fd.get());
    GuestMemory b = restore(s.fd.get());
    ASSERT_EQ(a.regions().size(), 2u);
    EXPECT_EQ(a.regions()[1].start, Gpa(64 * kMiB));
    EXPECT_TRUE(a.file_backed());
    EXPECT_EQ(get(a, 0x2000, 12), std::string("kernel text", 12));
    EXPECT_EQ(get(a, 64 * kMiB + 0x3000, 11), std::string("page cache", 11));
    EXPECT_EQ(a.read_obj<uint64_t>(Gpa(0x5000)).value(), 0u);  // a hole reads as zeros

    put(a, 0x2000, "clone A");
    EXPECT_EQ(get(b, 0x2000, 12), std::string("kernel text", 12));  // b is independent
    GuestMemory c = restore(s.fd.get());                            // and the file unchanged
    EXPECT_EQ(get(c, 0x2000, 12), std::string("kernel text", 12));
}

TEST(SnapshotMemory, DiscardAndClearGiveZerosNotTheSnapshotsBytes) {
    GuestMemory mem = two_regions();
    put(mem, 0x4000, "ballooned");
    put(mem, 0x9000, "rebooted");
    Saved s = save(mem);
    GuestMemory r = restore(s.fd.get());
    ASSERT_TRUE(r.discard(Gpa(0x4000), 4096));
    EXPECT_EQ(r.read_obj<uint64_t>(Gpa(0x4000)).value(), 0u);
    EXPECT_EQ(get(r, 0x9000, 9), std::string("rebooted", 9));  // the rest still the file's
    put(r, 0x4000, "reused");                                  // discarded memory is writable
    EXPECT_EQ(get(r, 0x4000, 7), std::string("reused", 7));
    ASSERT_TRUE(r.clear(false));
    EXPECT_EQ(r.read_obj<uint64_t>(Gpa(0x9000)).value(), 0u);
}

// A snapshot whose RAM section and mapped sections disagree.
UniqueFd file_with(std::span<const uint64_t> regions, std::span<const uint64_t> sections) {
    UniqueFd fd(::memfd_create("snapshot-memory-test", MFD_CLOEXEC));
    Writer w(fd.get());
    Encoder e;
    e.u32(static_cast<uint32_t>(regions.size() / 2));
    for (uint64_t v : regions)
        e.u64(v);
    EXPECT_TRUE(w.add(kRamTag, kRamVersion, e.data()));
    for (size_t i = 0; i < sections.size(); ++i)
        EXPECT_TRUE(w.add_mapped(ram_tag(static_cast<uint32_t>(i)), kRamVersion, sections[i]));
    EXPECT_TRUE(w.finish());
    return fd;
}

std::string layout_error(std::span<const uint64_t> regions, std::span<const uint64_t> sections) {
    UniqueFd fd = file_with(regions, sections);
    auto src = file_source(fd.get());
    auto reader = Reader::open(*src);
    EXPECT_TRUE(reader) << reader.error().message();
    auto layout = memory_layout(*reader);
    if (!layout) return layout.error().message();
    auto mem = GuestMemory::map_file(*layout, fd.get());
    return mem ? "" : mem.error().message();
}

TEST(SnapshotMemory, ALayoutThatDoesNotMatchItsSectionsIsRefused) {
    const uint64_t one[] = {0, 2 * kMiB};
    const uint64_t sized[] = {2 * kMiB};
    EXPECT_EQ(layout_error(one, sized), "");
    const std::span<const uint64_t> none;
    EXPECT_NE(layout_error(one, none).find("bytes of RAM region 0 (section"), std::string::npos);
    const uint64_t shorter[] = {kMiB};
    EXPECT_NE(layout_error(one, shorter)
                  .find("RAM region 0 is 0x200000 bytes but its section "
                        "holds 0x100000"),
              std::string::npos);
    const uint64_t overlapping[] = {0, 2 * kMiB, kMiB, 2 * kMiB};
    const uint64_t two[] = {2 * kMiB, 2 * kMiB};
    EXPECT_NE(layout_error(overlapping, two).find("overlap"), std::string::npos);
    const uint64_t unaligned[] = {0x800, 2 * kMiB};
    EXPECT_NE(layout_error(unaligned, sized).find("not 4 KiB-aligned"), std::string::npos);
    EXPECT_NE(layout_error(none, none).find("RAM state is malformed"), std::string::npos);
}

}  // namespace
}  // namespace vireo::snapshot
