// The device side of the split virtqueue against a driver that follows the rules, and one that
// breaks each of them: every violation is an error, nothing outside guest RAM is touched.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>

#include "virtio/testing/driver.hpp"
#include "virtio/virtio.hpp"

namespace vireo::virtio {
namespace {

using memory::Gpa;
using testing::Buf;
using testing::DriverQueue;
using testing::RawDesc;

constexpr uint64_t kRam = 16 << 20;
constexpr uint64_t kRings = 0x10000;
constexpr uint64_t kBufs = 0x100000;

class QueueTest : public ::testing::Test {
  protected:
    void SetUp() override {
        mem_ =
            std::make_unique<memory::GuestMemory>(memory::GuestMemory::create_flat(kRam).value());
        dq_ = std::make_unique<DriverQueue>(*mem_, kRings, 16);
    }
    Result<void> activate(bool event_idx = false, bool indirect = true, uint32_t max_chain = 16) {
        return q_.activate(*mem_, dq_->config(), 1024, max_chain, event_idx, indirect);
    }
    std::unique_ptr<memory::GuestMemory> mem_;
    std::unique_ptr<DriverQueue> dq_;
    Queue q_;
    Chain chain_{64};
};

TEST_F(QueueTest, PopsAChainWithReadableThenWritableSegments) {
    ASSERT_TRUE(activate());
    Buf bufs[] = {{kBufs, 16}, {kBufs + 0x1000, 512, true}, {kBufs + 0x2000, 1, true}};
    const uint16_t head = dq_->add(bufs);
    auto got = q_.pop(chain_);
    ASSERT_TRUE(got) << got.error().message();
    ASSERT_TRUE(*got);
    EXPECT_EQ(chain_.head(), head);
    ASSERT_EQ(chain_.readable().size(), 1u);
    ASSERT_EQ(chain_.writable().size(), 2u);
    EXPECT_EQ(chain_.readable_bytes(), 16u);
    EXPECT_EQ(chain_.writable_bytes(), 513u);
    EXPECT_EQ(chain_.readable()[0].buf.gpa(), Gpa(kBufs));
    EXPECT_EQ(chain_.readable()[0].len(), 16u);
    EXPECT_FALSE(*q_.pop(chain_));
}

TEST_F(QueueTest, PopsIndirectChains) {
    ASSERT_TRUE(activate());
    Buf bufs[] = {{kBufs, 16}, {kBufs + 0x1000, 4096, true}, {kBufs + 0x3000, 1, true}};
    dq_->add(bufs, kBufs + 0x8000);
    auto got = q_.pop(chain_);
    ASSERT_TRUE(got && *got);
    EXPECT_EQ(chain_.segments().size(), 3u);
    EXPECT_EQ(chain_.writable_bytes(), 4097u);
}

TEST_F(QueueTest, UsedRingAndInterruptSuppression) {
    ASSERT_TRUE(activate());
    Buf b[] = {{kBufs, 8, true}};
    const uint16_t head = dq_->add(b);
    ASSERT_TRUE(*q_.pop(chain_));
    q_.push_used(head, 8);
    auto u = dq_->next_used();
    ASSERT_TRUE(u);
    EXPECT_EQ(u->id, head);
    EXPECT_EQ(u->len, 8u);
    EXPECT_TRUE(q_.needs_interrupt());
    EXPECT_FALSE(q_.needs_interrupt());  // nothing new since
    dq_->set_avail_flags(kAvailNoInterrupt);
    dq_->add(b);
    ASSERT_TRUE(*q_.pop(chain_));
    q_.push_used(chain_.head(), 0);
    EXPECT_FALSE(q_.needs_interrupt());
}

TEST_F(QueueTest, EventIdx) {
    ASSERT_TRUE(activate(/*event_idx=*/true));
    Buf b[] = {{kBufs, 8, true}};
    EXPECT_FALSE(*q_.pop(chain_));
    EXPECT_EQ(dq_->avail_event(), 0);  // "notify me at the next buffer"
    dq_->set_used_event(1);            // interrupt only once the second buffer is used
    for (int i = 0; i < 2; ++i) {
        dq_->add(b);
        ASSERT_TRUE(*q_.pop(chain_));
        q_.push_used(chain_.head(), 0);
        EXPECT_EQ(q_.needs_interrupt(), i == 1) << i;
    }
    EXPECT_FALSE(*q_.pop(chain_));
    EXPECT_EQ(dq_->avail_event(), 2);
}

TEST_F(QueueTest, ActivationChecksRings) {
    auto c = dq_->config();
    c.size = 12;
    EXPECT_FALSE(q_.activate(*mem_, c, 1024, 16, false, false));  // not a power of two
    c = dq_->config();
    c.size = 2048;
    EXPECT_FALSE(q_.activate(*mem_, c, 1024, 16, false, false));  // above the maximum
    c = dq_->config();
    c.desc += 8;
    EXPECT_FALSE(q_.activate(*mem_, c, 1024, 16, false, false));  // misaligned
    c = dq_->config();
    c.device = kRam - 8;
    EXPECT_FALSE(q_.activate(*mem_, c, 1024, 16, false, false));  // runs out of RAM
    c = dq_->config();
    c.driver = 0xd0000000;
    EXPECT_FALSE(q_.activate(*mem_, c, 1024, 16, false, false));  // MMIO space
    c = dq_->config();
    c.desc = ~uint64_t{0} & ~uint64_t{15};
    EXPECT_FALSE(q_.activate(*mem_, c, 1024, 16, false, false));  // wraps
    EXPECT_FALSE(q_.active());
}

// Each malformed chain must be refused with an error, never crash or read outside RAM.
struct Malformed {
    const char* name;
    std::function<void(DriverQueue&)> build;
    bool indirect_negotiated = true;
};

class MalformedTest : public QueueTest, public ::testing::WithParamInterface<Malformed> {};

TEST_P(MalformedTest, IsRefused) {
    ASSERT_TRUE(activate(false, GetParam().indirect_negotiated, 8));
    GetParam().build(*dq_);
    auto got = q_.pop(chain_);
    ASSERT_FALSE(got) << GetParam().name << " was accepted";
    EXPECT_FALSE(got.error().message().empty());
}

const Malformed kMalformed[] = {
    {"head out of range", [](DriverQueue& d) { d.put_avail(16); }},
    {"next out of range",
     [](DriverQueue& d) {
         d.write_desc(0, {kBufs, 8, kDescNext, 99});
         d.put_avail(0);
     }},
    {"cycle",
     [](DriverQueue& d) {
         d.write_desc(0, {kBufs, 8, kDescNext, 1});
         d.write_desc(1, {kBufs, 8, kDescNext, 0});
         d.put_avail(0);
     }},
    {"too long",
     [](DriverQueue& d) {
         for (uint16_t i = 0; i < 12; ++i)
             d.write_desc(i, {kBufs, 8, kDescNext, static_cast<uint16_t>(i + 1)});
         d.write_desc(12, {kBufs, 8, 0, 0});
         d.put_avail(0);
     }},
    {"buffer outside RAM",
     [](DriverQueue& d) {
         d.write_desc(0, {kRam - 4, 8, 0, 0});
         d.put_avail(0);
     }},
    {"buffer in MMIO space",
     [](DriverQueue& d) {
         d.write_desc(0, {0xd0000000, 0x100, kDescWrite, 0});
         d.put_avail(0);
     }},
    {"length overflow",
     [](DriverQueue& d) {
         d.write_desc(0, {~uint64_t{0} - 16, 0x1000, kDescWrite, 0});
         d.put_avail(0);
     }},
    {"readable after writable",
     [](DriverQueue& d) {
         d.write_desc(0, {kBufs, 8, kDescWrite | kDescNext, 1});
         d.write_desc(1, {kBufs, 8, 0, 0});
         d.put_avail(0);
     }},
    {"indirect not negotiated",
     [](DriverQueue& d) {
         d.write_desc(0, {kBufs, 16, kDescIndirect, 0});
         d.put_avail(0);
     },
     false},
    {"indirect with next",
     [](DriverQueue& d) {
         d.write_desc(0, {kBufs, 16, kDescIndirect | kDescNext, 1});
         d.put_avail(0);
     }},
    {"indirect table of odd length",
     [](DriverQueue& d) {
         d.write_desc(0, {kBufs, 24, kDescIndirect, 0});
         d.put_avail(0);
     }},
    {"indirect table outside RAM",
     [](DriverQueue& d) {
         d.write_desc(0, {kRam - 16, 32, kDescIndirect, 0});
         d.put_avail(0);
     }},
    {"avail index far ahead", [](DriverQueue& d) { d.set_avail_idx(100); }},
};

INSTANTIATE_TEST_SUITE_P(Rules, MalformedTest, ::testing::ValuesIn(kMalformed),
                         [](const auto& param_info) {
                             std::string n = param_info.param.name;
                             for (auto& ch : n)
                                 if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                             return n;
                         });

TEST_F(QueueTest, NestedAndCyclicIndirectTablesAreRefused) {
    ASSERT_TRUE(activate(false, true, 8));
    // Nested: the indirect table holds an indirect descriptor.
    ASSERT_TRUE(mem_->write_obj(Gpa(kBufs), RawDesc{kBufs, 16, kDescIndirect, 0}));
    dq_->write_desc(0, {kBufs, 16, kDescIndirect, 0});
    dq_->put_avail(0);
    EXPECT_FALSE(q_.pop(chain_));
    // Cyclic inside the table.
    dq_ = std::make_unique<DriverQueue>(*mem_, kRings, 16);
    ASSERT_TRUE(activate(false, true, 8));
    ASSERT_TRUE(mem_->write_obj(Gpa(kBufs + 0x100), RawDesc{kBufs, 8, kDescNext, 1}));
    ASSERT_TRUE(mem_->write_obj(Gpa(kBufs + 0x110), RawDesc{kBufs, 8, kDescNext, 0}));
    dq_->write_desc(1, {kBufs + 0x100, 32, kDescIndirect, 0});
    dq_->put_avail(1);
    EXPECT_FALSE(q_.pop(chain_));
}

}  // namespace
}  // namespace vireo::virtio
