#include "memory/guest_memory.hpp"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <vector>

namespace vireo::memory {
namespace {

// Two adjacent regions [0x0, 0x4000) and [0x4000, 0x6000), then a hole, then [0x10000, 0x11000).
GuestMemory make_memory() {
    std::array<RegionSpec, 3> layout{RegionSpec{Gpa(0x10000), 0x1000},
                                     RegionSpec{Gpa(0x4000), 0x2000}, RegionSpec{Gpa(0), 0x4000}};
    auto mem = GuestMemory::create(layout);
    EXPECT_TRUE(mem) << mem.error().message();
    return std::move(mem).value();
}

// A byte of a region, read straight from the host mapping (what the guest would see).
uint8_t host_byte(const Region& r, uint64_t offset) {
    return static_cast<const uint8_t*>(r.host.ptr())[offset];
}

std::vector<std::byte> bytes(size_t n, uint8_t fill) {
    return std::vector<std::byte>(n, std::byte{fill});
}

TEST(GuestMemory, LayoutIsSortedAndSized) {
    auto mem = make_memory();
    ASSERT_EQ(mem.regions().size(), 3u);
    EXPECT_EQ(mem.regions()[0].start, Gpa(0));
    EXPECT_EQ(mem.regions()[1].start, Gpa(0x4000));
    EXPECT_EQ(mem.regions()[2].start, Gpa(0x10000));
    EXPECT_EQ(mem.total_size(), 0x7000u);
    EXPECT_EQ(mem.fd(), -1);  // anonymous memory; a memfd only for huge pages
}

TEST(GuestMemory, RejectsBadLayouts) {
    std::array<RegionSpec, 2> overlap{RegionSpec{Gpa(0), 0x2000}, RegionSpec{Gpa(0x1000), 0x1000}};
    EXPECT_EQ(GuestMemory::create(overlap).error().code(), ErrorCode::AlreadyExists);
    std::array<RegionSpec, 1> empty{RegionSpec{Gpa(0), 0}};
    EXPECT_EQ(GuestMemory::create(empty).error().code(), ErrorCode::InvalidArgument);
    std::array<RegionSpec, 1> unaligned{RegionSpec{Gpa(0x10), 0x1000}};
    EXPECT_EQ(GuestMemory::create(unaligned).error().code(), ErrorCode::InvalidArgument);
    std::array<RegionSpec, 1> wraps{RegionSpec{Gpa(UINT64_MAX - 0xfff), 0x2000}};
    EXPECT_EQ(GuestMemory::create(wraps).error().code(), ErrorCode::OutOfRange);
    EXPECT_FALSE(GuestMemory::create({}));
}

TEST(GuestMemory, ReadWriteRoundTrip) {
    auto mem = make_memory();
    ASSERT_TRUE(mem.write_obj<uint64_t>(Gpa(0x100), 0x1122334455667788));
    EXPECT_EQ(*mem.read_obj<uint64_t>(Gpa(0x100)), 0x1122334455667788u);
    ASSERT_TRUE(mem.write_obj<uint32_t>(Gpa(0x10ffc), 0xdeadbeef));  // last 4 bytes of RAM
    EXPECT_EQ(*mem.read_obj<uint32_t>(Gpa(0x10ffc)), 0xdeadbeefu);
}

TEST(GuestMemory, AccessSplitsAcrossAdjacentRegions) {
    auto mem = make_memory();
    auto in = bytes(0x100, 0x5a);
    ASSERT_TRUE(mem.write(Gpa(0x3f80), in));  // 0x80 bytes in region 0, 0x80 in region 1
    std::vector<std::byte> out(0x100);
    ASSERT_TRUE(mem.read(Gpa(0x3f80), out));
    EXPECT_EQ(in, out);
    EXPECT_EQ(host_byte(mem.regions()[0], 0x3fff), 0x5a);
    EXPECT_EQ(host_byte(mem.regions()[1], 0x7f), 0x5a);
    EXPECT_EQ(host_byte(mem.regions()[1], 0x80), 0x00);
}

TEST(GuestMemory, RefusesEveryAccessThatLeavesRam) {
    auto mem = make_memory();
    struct Case {
        uint64_t gpa, len;
    };
    const Case cases[] = {
        {0x6000, 1},           // first byte of the hole
        {0x5fff, 2},           // straddles region 1's end into the hole
        {0xfff0, 0x20},        // straddles the hole into region 2
        {0x10ff0, 0x20},       // straddles the end of RAM
        {0x11000, 1},          // just past the end
        {UINT64_MAX, 1},       // the top of the address space
        {UINT64_MAX - 4, 16},  // wraps around 2^64
        {0x0, 0x7001},         // all RAM and one more
        {0x100, UINT64_MAX},   // absurd length
        {0x20000000, 0x1000},  // far away
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(testing::Message() << "gpa " << std::hex << c.gpa << " len " << c.len);
        EXPECT_FALSE(mem.contains(Gpa(c.gpa), c.len));
        if (c.len <= 0x10000) {
            auto buf = bytes(c.len, 0xcc);
            auto r = mem.read(Gpa(c.gpa), buf);
            ASSERT_FALSE(r);
            EXPECT_EQ(r.error().code(), ErrorCode::OutOfRange);
            EXPECT_EQ(buf, bytes(c.len, 0xcc)) << "a refused read must not copy anything";
            EXPECT_FALSE(mem.write(Gpa(c.gpa), buf));
        }
        EXPECT_FALSE(mem.slice(Gpa(c.gpa), c.len));
    }
    // A refused write touches nothing, even the part that is in RAM.
    EXPECT_FALSE(mem.write(Gpa(0x5ff0), bytes(0x20, 0xee)));
    EXPECT_EQ(host_byte(mem.regions()[1], 0x1ff0), 0x00);
}

TEST(GuestMemory, SliceStaysInOneRegion) {
    auto mem = make_memory();
    auto s = mem.slice(Gpa(0x4000), 0x2000);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->size(), 0x2000u);
    EXPECT_EQ(s->gpa(), Gpa(0x4000));
    EXPECT_EQ(s->iov().iov_base, mem.regions()[1].host.ptr());
    EXPECT_FALSE(mem.slice(Gpa(0x3000), 0x2000));  // crosses 0x4000: refused, even if adjacent
    EXPECT_TRUE(mem.slice(Gpa(0x5fff), 1));
    EXPECT_TRUE(mem.slice(Gpa(0x5fff), 0));
}

TEST(GuestSlice, EveryAccessStaysInside) {
    auto mem = make_memory();
    auto s = mem.slice(Gpa(0x4000), 0x100).value();
    // Sub-slices: inside, at the very end, and every way of leaving (overflow included).
    auto sub = s.subslice(0x10, 0x20);
    ASSERT_TRUE(sub);
    EXPECT_EQ(sub->gpa(), Gpa(0x4010));
    EXPECT_EQ(sub->size(), 0x20u);
    EXPECT_TRUE(s.subslice(0x100, 0));
    EXPECT_FALSE(s.subslice(0x101, 0));
    EXPECT_FALSE(s.subslice(0xff, 2));
    EXPECT_FALSE(s.subslice(8, UINT64_MAX));
    EXPECT_FALSE(s.subslice(UINT64_MAX, 2));
    EXPECT_FALSE(sub->subslice(0x10, 0x11)) << "a sub-slice cannot reach its parent's bytes";
    EXPECT_EQ(s.tail(0xf0).size(), 0x10u);
    EXPECT_EQ(s.tail(0xf0).gpa(), Gpa(0x40f0));
    EXPECT_TRUE(s.tail(0x200).empty());

    // Copies are clamped to the slice; typed accesses are all or nothing.
    std::array<uint8_t, 8> in{1, 2, 3, 4, 5, 6, 7, 8};
    EXPECT_EQ(s.write_at(0xfc, in), 4u);
    EXPECT_EQ(s.write_at(0x100, in), 0u);
    EXPECT_EQ(s.write_at(UINT64_MAX, in), 0u);
    EXPECT_EQ(*mem.read_obj<uint8_t>(Gpa(0x4100)), 0) << "the byte after the slice is untouched";
    std::array<uint8_t, 8> out{};
    EXPECT_EQ(s.read_at(0xfc, out), 4u);
    EXPECT_EQ(out[3], 4);
    EXPECT_EQ(*s.read_obj<uint32_t>(0xfc), 0x04030201u);
    EXPECT_FALSE(s.read_obj<uint64_t>(0xfc));
    EXPECT_FALSE(s.write_obj<uint64_t>(0xfc, 0));
    EXPECT_EQ(*s.read_obj<uint32_t>(0xfc), 0x04030201u) << "a refused write writes nothing";
    EXPECT_FALSE(s.read_obj<uint8_t>(UINT64_MAX));

    // Atomic ring accesses: out of range or misaligned, nothing happens.
    s.store_u16(0x10, 0xbeef, std::memory_order_release);
    EXPECT_EQ(s.load_u16(0x10, std::memory_order_acquire), 0xbeef);
    s.store_u16(0xff, 0x1111, std::memory_order_relaxed);
    s.store_u16(0x100, 0x1111, std::memory_order_relaxed);
    EXPECT_EQ(*mem.read_obj<uint16_t>(Gpa(0x4100)), 0);
    EXPECT_EQ(s.load_u16(0x100, std::memory_order_relaxed), 0);

    // iovecs for system calls are clamped too.
    EXPECT_EQ(s.iov(0xf0, 0x1000).iov_len, 0x10u);
    EXPECT_EQ(s.iov(0x200, 1).iov_len, 0u);
    EXPECT_EQ(s.iov().iov_len, 0x100u);
}

TEST(GuestMemory, DiscardTakesWholePagesOfRam) {
    auto mem = make_memory();
    ASSERT_TRUE(mem.write_obj<uint32_t>(Gpa(0x4000), 0xfeed));
    ASSERT_TRUE(mem.write_obj<uint32_t>(Gpa(0x10000), 0xfeed));
    EXPECT_FALSE(mem.discard(Gpa(0x4800), 0x1000)) << "not page-aligned";
    EXPECT_FALSE(mem.discard(Gpa(0x5000), 0x2000)) << "leaves RAM";
    EXPECT_EQ(*mem.read_obj<uint32_t>(Gpa(0x4000)), 0xfeedu);
    ASSERT_TRUE(mem.discard(Gpa(0x3000), 0x2000)) << "spans two adjacent regions";
    EXPECT_EQ(*mem.read_obj<uint32_t>(Gpa(0x4000)), 0u) << "discarded pages read as zeros";
    EXPECT_EQ(*mem.read_obj<uint32_t>(Gpa(0x10000)), 0xfeedu);
}

TEST(GuestMemory, PopulateTouchesEveryPage) {
    auto mem = make_memory();
    EXPECT_TRUE(mem.populate(false));
}

TEST(GuestMemory, FindRegion) {
    auto mem = make_memory();
    EXPECT_EQ(mem.find(Gpa(0x4fff)), &mem.regions()[1]);
    EXPECT_EQ(mem.find(Gpa(0x6000)), nullptr);
    EXPECT_EQ(mem.find(Gpa(0x10000)), &mem.regions()[2]);
}

TEST(GuestMemory, UntouchedMemoryIsFree) {
    // 64 GiB of guest RAM costs nothing until touched (MAP_NORESERVE anonymous memory).
    auto mem = GuestMemory::create_flat(uint64_t{64} << 30);
    ASSERT_TRUE(mem) << mem.error().message();
    EXPECT_TRUE(mem->write_obj<uint64_t>(Gpa((uint64_t{64} << 30) - 8), 1));
}

TEST(GuestMemory, RegionsAre2MiBAlignedOnTheHost) {
    // KVM maps a host huge page as one 2 MiB nested-paging entry only where guest and host
    // addresses agree modulo 2 MiB.
    std::array<RegionSpec, 2> layout{RegionSpec{Gpa(0), uint64_t{6} << 20},
                                     RegionSpec{Gpa(uint64_t{4} << 30), uint64_t{4} << 20}};
    auto mem = GuestMemory::create(layout);
    ASSERT_TRUE(mem) << mem.error().message();
    for (const auto& r : mem->regions())
        EXPECT_EQ(r.host.value() % GuestMemory::kHugePageSize, 0u);
    EXPECT_FALSE(mem->huge_pages());
}

TEST(GuestMemory, MoveKeepsMappings) {
    auto a = make_memory();
    ASSERT_TRUE(a.write_obj<uint32_t>(Gpa(0), 42));
    GuestMemory b = std::move(a);
    EXPECT_EQ(*b.read_obj<uint32_t>(Gpa(0)), 42u);
    EXPECT_TRUE(a.regions().empty());
    EXPECT_FALSE(a.read_obj<uint32_t>(Gpa(0)));
}

}  // namespace
}  // namespace vireo::memory

namespace vireo::memory {
namespace {

TEST(GuestMemory, WriteFromFileMappingCopiesAndChecks) {
    auto mem = GuestMemory::create_flat(8 << 20);
    ASSERT_TRUE(mem);
    char path[] = "/tmp/vireo-image-XXXXXX";
    int fd = ::mkstemp(path);
    ASSERT_GE(fd, 0);
    std::vector<uint8_t> data(5 << 20);
    for (size_t i = 0; i < data.size(); ++i)
        data[i] = static_cast<uint8_t>(i * 7);
    ASSERT_EQ(::write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
    void* map = ::mmap(nullptr, data.size(), PROT_READ, MAP_PRIVATE, fd, 0);
    ASSERT_NE(map, MAP_FAILED);
    std::span<const uint8_t> file(static_cast<const uint8_t*>(map), data.size());
    ASSERT_TRUE(mem->write_from_file_mapping(Gpa(0x100000), file));
    std::vector<std::byte> back(data.size());
    ASSERT_TRUE(mem->read(Gpa(0x100000), back));
    EXPECT_EQ(std::memcmp(back.data(), data.data(), data.size()), 0);
    // The mapping still reads back the file after its pages were dropped.
    EXPECT_EQ(file[4 << 20], data[4 << 20]);
    EXPECT_FALSE(mem->write_from_file_mapping(Gpa(6 << 20), file));  // would leave RAM
    ::munmap(map, data.size());
    ::close(fd);
    ::unlink(path);
}

}  // namespace
}  // namespace vireo::memory
