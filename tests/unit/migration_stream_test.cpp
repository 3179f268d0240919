// The live-migration stream (snapshot/stream.hpp) over a socket pair and over bytes, against an
// in-memory guest RAM: what a sender writes the receiver reads back into the same pages; every
// bound is refused with one line and writes nothing; and the dirty log of the pages vireo's own
// devices write (GuestMemory::mark_dirty), which a migration resends.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <cstring>
#include <thread>

#include "base/unique_fd.hpp"
#include "memory/guest_memory.hpp"
#include "snapshot/format.hpp"
#include "snapshot/stream.hpp"

namespace vireo::snapshot::stream {
namespace {

using memory::Gpa;

memory::GuestMemory ram() {
    const memory::RegionSpec layout[] = {{Gpa(0), 64 * kPage}, {Gpa(1 << 20), 16 * kPage}};
    auto m = memory::GuestMemory::create(layout, "test-ram");
    EXPECT_TRUE(m) << m.error().message();
    return std::move(m).value();
}

struct Pair {
    Pair() {
        int sv[2];
        EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        a.reset(sv[0]);
        b.reset(sv[1]);
    }
    UniqueFd a, b;
};

TEST(MigrationStream, PagesZerosAndTheStateArriveWhereTheyWereSent) {
    auto src = ram(), dst = ram();
    for (uint64_t page = 0; page < 8; ++page)
        ASSERT_TRUE(src.write_obj(Gpa(page * kPage + 8), page + 1));
    ASSERT_TRUE(src.write_obj(Gpa((1 << 20) + 3 * kPage), uint64_t{0xfeed}));
    ASSERT_TRUE(dst.write_obj(Gpa(40 * kPage), uint64_t{7}));  // zeroed by a Zeros record
    Pair p;
    std::thread sender([&] {
        Channel ch(p.a.get(), 5000);
        EXPECT_TRUE(ch.write(std::span<const uint8_t>(encode_hello("tok", "{\"x\":1}"))));
        EXPECT_TRUE(send_pages(ch, src, Gpa(0), 8));
        EXPECT_TRUE(send_pages(ch, src, Gpa((1 << 20) + 3 * kPage), 1));
        EXPECT_TRUE(send_zeros(ch, Gpa(32 * kPage), 16));
        const uint8_t state[] = {1, 2, 3};
        EXPECT_TRUE(send_state(ch, state));
        EXPECT_TRUE(send_record(ch, Record::Go));
    });
    Channel ch(p.b.get(), 5000);
    auto hello = read_hello(ch);
    ASSERT_TRUE(hello) << hello.error().message();
    EXPECT_EQ(hello->token, "tok");
    EXPECT_EQ(hello->spec, "{\"x\":1}");
    ReceiveStats stats;
    auto state = receive_memory(ch, dst, stats);
    ASSERT_TRUE(state) << state.error().message();
    EXPECT_EQ(*state, (std::vector<uint8_t>{1, 2, 3}));
    EXPECT_TRUE(receive_go(ch));
    sender.join();
    EXPECT_EQ(stats.pages, 9u);
    EXPECT_EQ(stats.zero_pages, 16u);
    for (uint64_t page = 0; page < 8; ++page)
        EXPECT_EQ(*dst.read_obj<uint64_t>(Gpa(page * kPage + 8)), page + 1);
    EXPECT_EQ(*dst.read_obj<uint64_t>(Gpa((1 << 20) + 3 * kPage)), 0xfeedu);
    EXPECT_EQ(*dst.read_obj<uint64_t>(Gpa(40 * kPage)), 0u);
}

std::vector<uint8_t> record(uint8_t kind, uint64_t gpa, uint32_t count) {
    std::vector<uint8_t> r{kind};
    for (int i = 0; i < 8; ++i)
        r.push_back(static_cast<uint8_t>(gpa >> (8 * i)));
    for (int i = 0; i < 4; ++i)
        r.push_back(static_cast<uint8_t>(count >> (8 * i)));
    return r;
}

std::string refusal(const std::vector<uint8_t>& bytes) {
    auto mem = ram();
    MemoryInput in(bytes);
    ReceiveStats stats;
    auto r = receive_memory(in, mem, stats);
    return r ? "" : r.error().message();
}

TEST(MigrationStream, EveryBoundIsRefusedWithOneLine) {
    // Pages outside RAM (in the hole between the regions, past the end), across the regions'
    // gap, unaligned, too many at once, none, an unknown record, a cancel, a short stream.
    EXPECT_NE(refusal(record('P', 64 * kPage, 1)).find("not guest RAM"), std::string::npos);
    EXPECT_NE(refusal(record('Z', (1 << 20) + 15 * kPage, 2)).find("not guest RAM"),
              std::string::npos);
    EXPECT_NE(refusal(record('P', 12, 1)).find("not guest RAM"), std::string::npos);
    EXPECT_NE(refusal(record('P', 0, kMaxPagesPerRecord + 1)).find("a record of"),
              std::string::npos);
    EXPECT_NE(refusal(record('Z', 0, 0)).find("a record of 0 pages"), std::string::npos);
    EXPECT_NE(refusal({'Q'}).find("unexpected record 0x51"), std::string::npos);
    EXPECT_NE(refusal({'G'}).find("unexpected record"), std::string::npos);
    EXPECT_NE(refusal({'C'}).find("cancelled"), std::string::npos);
    EXPECT_NE(refusal(record('P', 0, 2)).find("closed"), std::string::npos);  // bytes missing
    const std::vector<uint8_t> big_state{'S', 0xff, 0xff, 0xff, 0xff};
    EXPECT_NE(refusal(big_state).find("state is"), std::string::npos);
    // A state whose length says more than comes: an error, and nothing allocated up front.
    const std::vector<uint8_t> short_state{'S', 0, 0, 0, 8, 1, 2};
    EXPECT_NE(refusal(short_state).find("closed"), std::string::npos);
}

TEST(MigrationStream, AHelloIsCheckedBeforeItsFieldsAreRead) {
    auto hello = encode_hello("t", "{}");
    auto bad = hello;
    bad[0] = 'X';
    MemoryInput in(bad);
    EXPECT_NE(read_hello(in).error().message().find("no migration stream"), std::string::npos);
    bad = hello;
    bad[8] = 2;  // version 2
    MemoryInput in2(bad);
    EXPECT_NE(read_hello(in2).error().message().find("version 2"), std::string::npos);
    auto long_token = encode_hello(std::string(kMaxToken + 1, 'x'), "{}");
    MemoryInput in3(long_token);
    EXPECT_NE(read_hello(in3).error().message().find("the token of 257 bytes"), std::string::npos);
}

TEST(MigrationStream, ASilentPeerTimesOut) {
    Pair p;
    Channel ch(p.b.get(), 200);
    uint8_t b[1];
    auto r = ch.read(b);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message().find("sent nothing"), std::string::npos);
}

TEST(DirtyLog, DevicesWritesAreLoggedOnlyWhileOnAndTakenOnce) {
    auto mem = ram();
    mem.mark_dirty(Gpa(0), kPage);  // off: nothing
    ASSERT_TRUE(mem.start_dirty_log());
    mem.mark_dirty(Gpa(kPage + 100), 2 * kPage);  // pages 1, 2 and 3
    auto slice = mem.slice(Gpa((1 << 20) + 5 * kPage), kPage);
    ASSERT_TRUE(slice);
    mem.mark_dirty_host(slice->iov().iov_base, 1);  // region 1, page 5
    mem.mark_dirty(Gpa(64 * kPage), kPage);         // outside RAM: nothing
    std::vector<uint64_t> r0(1), r1(1);
    mem.take_dirty(0, r0);
    mem.take_dirty(1, r1);
    EXPECT_EQ(r0[0], 0b1110u);
    EXPECT_EQ(r1[0], 1u << 5);
    std::vector<uint64_t> again(1);
    mem.take_dirty(0, again);
    EXPECT_EQ(again[0], 0u);  // taken once
    mem.stop_dirty_log();
    mem.mark_dirty(Gpa(0), kPage);
    mem.take_dirty(0, again);
    EXPECT_EQ(again[0], 0u);
}

TEST(SnapshotWriter, WritesIntoMemoryWhatAReaderReadsBack) {
    std::vector<uint8_t> buf;
    Writer w(&buf);
    const uint8_t payload[] = {9, 8, 7};
    ASSERT_TRUE(w.add(tag("TEST"), 1, payload));
    EXPECT_FALSE(w.add_mapped(tag("RAM0"), 1, 4096));  // no mapped section in memory
    ASSERT_TRUE(w.finish());
    auto r = Reader::open(memory_source(buf));
    ASSERT_TRUE(r) << r.error().message();
    const auto* s = r->find(tag("TEST"));
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(std::vector<uint8_t>(r->bytes(*s).begin(), r->bytes(*s).end()),
              (std::vector<uint8_t>{9, 8, 7}));
}

}  // namespace
}  // namespace vireo::snapshot::stream
