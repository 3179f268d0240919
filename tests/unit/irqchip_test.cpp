// The user-space interrupt controllers' state machines (src/devices/irqchip/).
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "devices/irqchip/ioapic.hpp"
#include "devices/irqchip/lapic.hpp"
#include "devices/irqchip/pic.hpp"
#include "devices/irqchip/pit.hpp"

namespace vireo::devices::irqchip {
namespace {

struct Sink final : MsiSink {
    void deliver(const MsiMessage& m) override { sent.push_back(m); }
    std::vector<MsiMessage> sent;
};

void reg_write(Ioapic& io, uint8_t index, uint32_t value) {
    uint8_t sel = index;
    io.write(Ioapic::kRegSel, {&sel, 1});
    uint8_t v[4];
    std::memcpy(v, &value, 4);
    io.write(Ioapic::kWindow, v);
}

uint32_t reg_read(Ioapic& io, uint8_t index) {
    uint8_t sel = index;
    io.write(Ioapic::kRegSel, {&sel, 1});
    uint8_t v[4];
    io.read(Ioapic::kWindow, v);
    uint32_t value;
    std::memcpy(&value, v, 4);
    return value;
}

void program(Ioapic& io, unsigned pin, uint64_t entry) {
    reg_write(io, static_cast<uint8_t>(Ioapic::kRedirBase + 2 * pin + 1),
              static_cast<uint32_t>(entry >> 32));
    reg_write(io, static_cast<uint8_t>(Ioapic::kRedirBase + 2 * pin), static_cast<uint32_t>(entry));
}

TEST(Ioapic, ResetStateAndIdentityRegisters) {
    Sink sink;
    Ioapic io(sink, 1);
    EXPECT_EQ(reg_read(io, Ioapic::kIdReg), 1u << 24);
    EXPECT_EQ(reg_read(io, Ioapic::kVersionReg), 0x170020u);  // 24 entries, version 0x20
    for (unsigned pin = 0; pin < Ioapic::kPins; ++pin)
        EXPECT_EQ(io.entry(pin), Ioapic::kMasked) << pin;
    reg_write(io, Ioapic::kIdReg, 5u << 24);
    EXPECT_EQ(reg_read(io, Ioapic::kIdReg), 5u << 24);
    reg_write(io, Ioapic::kVersionReg, 0);  // read-only
    EXPECT_EQ(reg_read(io, Ioapic::kVersionReg), 0x170020u);
    EXPECT_EQ(reg_read(io, 0x7f), 0u);  // no such register
    io.set_irq(3, true);                // masked: nothing goes out
    EXPECT_TRUE(sink.sent.empty());
}

TEST(Ioapic, EdgeEntrySendsItsMessageOnRisingEdges) {
    Sink sink;
    Ioapic io(sink);
    program(io, 4, (uint64_t{3} << 56) | 0x31);  // physical destination 3, fixed, vector 0x31
    io.set_irq(4, true);
    ASSERT_EQ(sink.sent.size(), 1u);
    EXPECT_EQ(sink.sent[0].address, 0xfee03000u);
    EXPECT_EQ(sink.sent[0].data, 0x31u);
    io.set_irq(4, true);  // still up: no new edge
    io.set_irq(4, false);
    io.set_irq(4, true);
    EXPECT_EQ(sink.sent.size(), 2u);
}

TEST(Ioapic, MaskedEdgeWaitsForUnmask) {
    Sink sink;
    Ioapic io(sink);
    program(io, 2, Ioapic::kMasked | 0x40);
    io.set_irq(2, true);
    EXPECT_TRUE(sink.sent.empty());
    program(io, 2, 0x40);
    ASSERT_EQ(sink.sent.size(), 1u);
    EXPECT_EQ(sink.sent[0].data & 0xff, 0x40u);
}

TEST(Ioapic, LevelEntryWaitsForEoiAndFiresAgainWhileUp) {
    Sink sink;
    Ioapic io(sink);
    program(io, 10, Ioapic::kLevel | (uint64_t{1} << 11) | (uint64_t{0x0f} << 56) | 0x51);
    io.set_irq(10, true);
    ASSERT_EQ(sink.sent.size(), 1u);
    EXPECT_EQ(sink.sent[0].address, 0xfee0f004u);      // logical destination 0x0f
    EXPECT_EQ(sink.sent[0].data, 0x51u | (1u << 15));  // level-triggered
    EXPECT_TRUE(io.entry(10) & Ioapic::kRemoteIrr);
    io.set_irq(10, true);
    EXPECT_EQ(sink.sent.size(), 1u);  // remote IRR set: no second message
    io.end_of_interrupt(0x52);        // another vector: nothing
    EXPECT_EQ(sink.sent.size(), 1u);
    io.end_of_interrupt(0x51);  // still up: fires again
    EXPECT_EQ(sink.sent.size(), 2u);
    io.set_irq(10, false);
    io.end_of_interrupt(0x51);
    EXPECT_EQ(sink.sent.size(), 2u);
    EXPECT_FALSE(io.entry(10) & Ioapic::kRemoteIrr);
    // The EOI register does what the broadcast does.
    io.set_irq(10, true);
    EXPECT_EQ(sink.sent.size(), 3u);
    uint8_t vector = 0x51;
    io.write(Ioapic::kEoi, {&vector, 1});
    EXPECT_EQ(sink.sent.size(), 4u);
}

TEST(Ioapic, APulseFiresOnceEvenOnALevelEntry) {
    Sink sink;
    Ioapic io(sink);
    program(io, 2, 0x30 | Ioapic::kLevel);
    io.pulse(2);
    ASSERT_EQ(sink.sent.size(), 1u);
    io.end_of_interrupt(0x30);  // the line is down again: nothing more
    EXPECT_EQ(sink.sent.size(), 1u);
    io.pulse(2);
    io.pulse(2);  // remote IRR still set: the second pulse is lost, as on hardware
    EXPECT_EQ(sink.sent.size(), 2u);
    io.end_of_interrupt(0x30);
    EXPECT_EQ(sink.sent.size(), 2u);
    program(io, 3, 0x31);  // edge
    io.pulse(3);
    io.pulse(3);
    EXPECT_EQ(sink.sent.size(), 4u);
    io.set_irq(4, true);  // a line held up is left up by another pin's pulse
    program(io, 4, 0x32 | Ioapic::kLevel);
    EXPECT_EQ(sink.sent.size(), 5u);
    io.pulse(4);  // remote IRR set: nothing, and the line stays up
    io.end_of_interrupt(0x32);
    EXPECT_EQ(sink.sent.size(), 6u) << "still up after the pulse: fires again at the EOI";
}

TEST(Ioapic, RemoteIrrAndDeliveryStatusAreReadOnly) {
    Sink sink;
    Ioapic io(sink);
    program(io, 1, Ioapic::kLevel | 0x60);
    io.set_irq(1, true);
    ASSERT_TRUE(io.entry(1) & Ioapic::kRemoteIrr);
    // The guest rewrites the entry without the bit: the remote IRR stays.
    reg_write(io, Ioapic::kRedirBase + 2, static_cast<uint32_t>(Ioapic::kLevel | 0x60));
    EXPECT_TRUE(io.entry(1) & Ioapic::kRemoteIrr);
    // ... and cannot set the bits on an idle entry.
    reg_write(io, Ioapic::kRedirBase + 4,
              static_cast<uint32_t>(Ioapic::kRemoteIrr | Ioapic::kDeliveryStatus | 0x61));
    EXPECT_EQ(io.entry(2), 0x61u);
    // Switching to edge drops a remote IRR.
    reg_write(io, Ioapic::kRedirBase + 2, 0x60);
    EXPECT_FALSE(io.entry(1) & Ioapic::kRemoteIrr);
}

TEST(Ioapic, ExtendedDestinationIdAndDeliveryMode) {
    const uint64_t entry = (uint64_t{0x12} << 56) | (uint64_t{0x5} << 49) | (0x4u << 8) | 0x22;
    const MsiMessage m = Ioapic::message(entry);
    EXPECT_EQ(m.address, 0xfee12000u | (0x5u << 5));
    EXPECT_EQ(m.data, 0x22u | (0x4u << 8));  // NMI delivery mode
}

TEST(Ioapic, OddAccessesAreHarmless) {
    Sink sink;
    Ioapic io(sink);
    uint8_t buf[8];
    std::memset(buf, 0xaa, sizeof buf);
    io.read(0x0, buf);  // 8 bytes over IOREGSEL and padding
    EXPECT_EQ(buf[0], 0u);
    EXPECT_EQ(buf[4], 0u);
    io.read(0xffc, {buf, 4});
    EXPECT_EQ(buf[0], 0u);
    io.write(Ioapic::kWindow, {buf, 2});  // a short write of the window is ignored
    io.write(0x800, {buf, 8});
    io.set_irq(99, true);  // past the pins
    io.write(Ioapic::kEoi, {});
    EXPECT_TRUE(sink.sent.empty());
}

TEST(Ioapic, SnapshotRoundTrip) {
    Sink sink;
    Ioapic a(sink, 2);
    program(a, 5, Ioapic::kLevel | 0x70);
    a.set_irq(5, true);
    uint8_t sel = 0x1b;
    a.write(Ioapic::kRegSel, {&sel, 1});
    snapshot::Encoder e;
    a.save(e);
    Ioapic b(sink);
    snapshot::Decoder d(e.data(), "I/O APIC");
    b.restore(d);
    ASSERT_TRUE(d.finish());
    EXPECT_EQ(b.entry(5), a.entry(5));
    EXPECT_EQ(reg_read(b, Ioapic::kIdReg), 2u << 24);
    b.end_of_interrupt(0x70);  // the restored line is up: fires again
    EXPECT_EQ(sink.sent.size(), 2u);
    // A hostile section is refused.
    snapshot::Encoder bad;
    bad.u8(0x20);
    bad.u8(0);
    bad.u32(0);
    bad.u32(0);
    for (unsigned i = 0; i < Ioapic::kPins; ++i)
        bad.u64(0);
    snapshot::Decoder bd(bad.data(), "I/O APIC");
    Ioapic c(sink);
    c.restore(bd);
    EXPECT_FALSE(bd.finish());
}

}  // namespace
}  // namespace vireo::devices::irqchip

// ---- 8259A pair ------------------------------------------------------------------------------

namespace vireo::devices::irqchip {
namespace {

struct Output final : OutputSink {
    void set_output(bool a) override {
        asserted = a;
        ++changes;
    }
    bool asserted = false;
    int changes = 0;
};

// Linux's init_8259A: ICW1 edge + ICW4, ICW2 base, ICW3 cascade, ICW4 8086 mode.
void init_pair(Pic& pic, uint8_t base1, uint8_t base2, bool auto_eoi = false) {
    pic.port_write(0x21, 0xff);
    pic.port_write(0xa1, 0xff);
    pic.port_write(0x20, 0x11);
    pic.port_write(0x21, base1);
    pic.port_write(0x21, 0x04);
    pic.port_write(0x21, auto_eoi ? 0x03 : 0x01);
    pic.port_write(0xa0, 0x11);
    pic.port_write(0xa1, base2);
    pic.port_write(0xa1, 0x02);
    pic.port_write(0xa1, auto_eoi ? 0x03 : 0x01);
    pic.port_write(0x21, 0x00);  // unmask all
    pic.port_write(0xa1, 0x00);
}

TEST(Pic, EdgeInterruptAcknowledgeAndEoi) {
    Output out;
    Pic pic(out);
    init_pair(pic, 0x30, 0x38);
    pic.set_irq(1, true);
    EXPECT_TRUE(out.asserted);
    EXPECT_EQ(pic.acknowledge(), 0x31);
    EXPECT_FALSE(out.asserted);
    pic.port_write(0x20, 0x0b);  // OCW3: read ISR
    EXPECT_EQ(pic.port_read(0x20), 0x02);
    pic.set_irq(1, false);
    pic.set_irq(1, true);  // a new edge waits behind the one in service
    EXPECT_FALSE(out.asserted);
    pic.port_write(0x20, 0x20);  // non-specific EOI
    EXPECT_TRUE(out.asserted);
    EXPECT_EQ(pic.acknowledge(), 0x31);
}

TEST(Pic, PriorityMaskAndSecondary) {
    Output out;
    Pic pic(out);
    init_pair(pic, 0x20, 0x28);
    pic.port_write(0x21, 0x01);  // mask IRQ 0
    pic.set_irq(0, true);
    EXPECT_FALSE(out.asserted);
    pic.set_irq(12, true);  // secondary IRQ 4, through the cascade
    pic.set_irq(3, true);
    EXPECT_TRUE(out.asserted);
    EXPECT_EQ(pic.acknowledge(), 0x2c);  // IRQ 2 (the cascade) outranks IRQ 3
    pic.port_write(0xa0, 0x20);
    pic.port_write(0x20, 0x20);
    EXPECT_EQ(pic.acknowledge(), 0x23);
    pic.port_write(0x20, 0x63);  // specific EOI of IRQ 3
    pic.port_write(0x21, 0x00);  // unmask: the held edge of IRQ 0
    EXPECT_EQ(pic.acknowledge(), 0x20);
    // Nothing pending: the spurious IRQ 7.
    pic.port_write(0x20, 0x20);
    EXPECT_EQ(pic.acknowledge(), 0x27);
}

TEST(Pic, LevelTriggeredThroughElcrAndAutoEoi) {
    Output out;
    Pic pic(out);
    init_pair(pic, 0x30, 0x38, true);
    pic.port_write(0x4d1, 0xff);  // IRQ 9-15 level (8 and 13 stay edge)
    EXPECT_EQ(pic.port_read(0x4d1), 0xde);
    pic.set_irq(9, true);
    EXPECT_EQ(pic.acknowledge(), 0x39);
    // Auto-EOI: nothing in service; the level line still up requests again.
    EXPECT_TRUE(out.asserted);
    pic.set_irq(9, false);
    EXPECT_FALSE(out.asserted);
}

TEST(Pic, PollAndRotation) {
    Output out;
    Pic pic(out);
    init_pair(pic, 0x30, 0x38);
    pic.set_irq(5, true);
    pic.port_write(0x20, 0x0c);  // OCW3: poll
    EXPECT_EQ(pic.port_read(0x20), 0x85);
    pic.port_write(0x20, 0xe5);  // rotate on specific EOI of IRQ 5: it becomes the lowest
    pic.set_irq(4, true);
    pic.set_irq(6, true);
    EXPECT_EQ(pic.acknowledge(), 0x36);  // 6 now outranks 4
}

TEST(Pic, OddPortsAndSnapshot) {
    Output out;
    Pic pic(out);
    uint8_t buf[4] = {1, 2, 3, 4};
    pic.write(0x1f, buf);  // spills over 0x20-0x22
    pic.read(0x9f, buf);
    init_pair(pic, 0x30, 0x38);
    pic.set_irq(4, true);
    snapshot::Encoder e;
    pic.save(e);
    Output out2;
    Pic b(out2);
    snapshot::Decoder d(e.data(), "PIC");
    b.restore(d);
    ASSERT_TRUE(d.finish());
    EXPECT_EQ(b.acknowledge(), 0x34);
    snapshot::Encoder bad;
    for (int i = 0; i < 2; ++i) {
        for (int j = 0; j < 8; ++j)
            bad.u8(j == 6 ? 9 : 0);  // initialization step 9
        for (int j = 0; j < 7; ++j)
            bad.boolean(false);
    }
    bad.boolean(false);
    snapshot::Decoder bd(bad.data(), "PIC");
    b.restore(bd);
    EXPECT_FALSE(bd.finish());
}

TEST(Pic, RangeViewsMapBusOffsetsToPorts) {
    Output out;
    Pic pic(out);
    PicPorts secondary(pic, Pic::kSecondaryPort);
    uint8_t mask = 0x5a;
    secondary.write(1, {&mask, 1});  // port 0xa1: the secondary's mask
    EXPECT_EQ(pic.port_read(0xa1), 0x5a);
    uint8_t v = 0;
    secondary.read(1, {&v, 1});
    EXPECT_EQ(v, 0x5a);
    EXPECT_STREQ(secondary.name(), "pic");
}

// ---- 8254 PIT ----------------------------------------------------------------------------------

struct FakeClock final : Clock {
    uint64_t now_ns() const override { return now; }
    uint64_t now = 1'000'000'000;
};

void out(Pit& pit, uint16_t port, uint8_t v) {
    pit.write(port, {&v, 1});
}

uint8_t in(Pit& pit, uint16_t port) {
    uint8_t v = 0;
    pit.read(port, {&v, 1});
    return v;
}

uint64_t ticks_ns(uint64_t ticks) {
    return ticks * 1'000'000'000 / Pit::kHz;
}

struct Timer final : TimerSink {
    void arm(uint64_t d) override { deadline = d; }
    void irq0_edge() override { ++edges; }
    uint64_t deadline = 0;
    int edges = 0;
};

TEST(Pit, PeriodicModeTwoRaisesIrq0EachPeriod) {
    FakeClock clock;
    Timer timer;
    Pit pit(clock, timer);
    // Linux's PIT clockevent: channel 0, LSB/MSB, mode 2, count 11932 (100 Hz).
    out(pit, 0x43, 0x34);
    out(pit, 0x40, static_cast<uint8_t>(11932 & 0xff));
    out(pit, 0x40, static_cast<uint8_t>(11932 >> 8));
    ASSERT_NE(timer.deadline, 0u);
    EXPECT_NEAR(static_cast<double>(timer.deadline - clock.now), 10'000'000.0, 2000.0);
    for (int i = 0; i < 5; ++i) {
        clock.now = timer.deadline;
        pit.expired();
    }
    EXPECT_EQ(timer.edges, 5);
    // A host that fell a second behind gets one edge, not a hundred.
    clock.now += 1'000'000'000;
    pit.expired();
    EXPECT_EQ(timer.edges, 6);
    EXPECT_GT(timer.deadline, clock.now);
}

TEST(Pit, CounterLatchReadBackAndOneShot) {
    FakeClock clock;
    Timer timer;
    Pit pit(clock, timer);
    out(pit, 0x43, 0x30);  // channel 0, mode 0
    out(pit, 0x40, 0x00);
    out(pit, 0x40, 0x10);  // 4096 ticks
    clock.now += ticks_ns(1000);
    out(pit, 0x43, 0x00);  // latch channel 0
    clock.now += ticks_ns(500);
    const unsigned lsb = in(pit, 0x40), msb = in(pit, 0x40);
    EXPECT_NEAR(static_cast<double>(lsb | (msb << 8)), 3096.0, 2.0);  // the latched value
    out(pit, 0x43, 0xe2);  // read-back: status of channel 0
    EXPECT_EQ(in(pit, 0x40) & 0x3f, 0x30);
    clock.now = timer.deadline;
    pit.expired();
    EXPECT_EQ(timer.edges, 1);
    EXPECT_EQ(timer.deadline, 0u);  // mode 0 fires once
}

TEST(Pit, Channel2GateAndOutputThroughPort61) {
    FakeClock clock;
    Timer timer;
    Pit pit(clock, timer);
    out(pit, 0x61, 0x01);  // gate 2 on, speaker off
    out(pit, 0x43, 0xb0);  // channel 2, mode 0
    out(pit, 0x42, 100);
    out(pit, 0x42, 0);
    EXPECT_FALSE(in(pit, 0x61) & 0x20);
    clock.now += ticks_ns(200);
    EXPECT_TRUE(in(pit, 0x61) & 0x20);
    EXPECT_EQ(timer.deadline, 0u);  // channel 2 raises no IRQ
}

TEST(Pit, TinyCountsCannotFloodTheHost) {
    FakeClock clock;
    Timer timer;
    Pit pit(clock, timer);
    out(pit, 0x43, 0x14);  // channel 0, LSB only, mode 2
    out(pit, 0x40, 2);
    EXPECT_GE(timer.deadline, clock.now + Pit::kMinPeriodNs);
    out(pit, 0x43, 0x36);  // BCD-free mode 3, count 0 = 65536
    out(pit, 0x40, 0);
    out(pit, 0x40, 0);
    EXPECT_NEAR(static_cast<double>(timer.deadline - clock.now), 54'925'000.0, 2000.0);
}

// ---- the local APIC ----

struct ApicSink final : LapicSink {
    void send_ipi(const Ipi& ipi) override { ipis.push_back(ipi); }
    void eoi_broadcast(uint8_t v) override { eois.push_back(v); }
    void arm_timer(uint64_t d) override { deadline = d; }
    uint64_t tsc_to_ns(uint64_t tsc) override { return tsc * 2; }  // a 500 MHz TSC
    void kick() override { ++kicks; }
    std::vector<Ipi> ipis;
    std::vector<uint8_t> eois;
    uint64_t deadline = 0;
    int kicks = 0;
};

uint32_t apic_read(Lapic& a, uint32_t off) {
    uint8_t v[4];
    a.read(off, v);
    uint32_t x;
    std::memcpy(&x, v, 4);
    return x;
}

void apic_write(Lapic& a, uint32_t off, uint32_t value) {
    uint8_t v[4];
    std::memcpy(v, &value, 4);
    a.write(off, v);
}

// A local APIC as software leaves it: enabled, spurious vector 0xff.
struct Apic {
    FakeClock clock;
    ApicSink sink;
    Lapic apic{3, true, clock, sink};
    Apic() { apic_write(apic, Lapic::kSvr, 0x1ff); }
};

TEST(Lapic, ResetStateAndIdentity) {
    FakeClock clock;
    ApicSink sink;
    Lapic a(3, true, clock, sink);
    uint64_t base = 0;
    ASSERT_TRUE(a.read_msr(Lapic::kApicBaseMsr, base));
    EXPECT_EQ(base, Lapic::kBase | Lapic::kBaseEnable | Lapic::kBaseBsp);
    EXPECT_EQ(apic_read(a, Lapic::kId), 3u << 24);
    EXPECT_EQ(apic_read(a, Lapic::kVersion), Lapic::kVersionValue);
    EXPECT_EQ(apic_read(a, Lapic::kSvr), 0xffu);
    EXPECT_EQ(apic_read(a, Lapic::kDfr), 0xffffffffu);
    for (uint32_t lvt : {Lapic::kLvtTimer, Lapic::kLvtLint0, Lapic::kLvtLint1, Lapic::kLvtError})
        EXPECT_EQ(apic_read(a, lvt), Lapic::kLvtMasked) << lvt;
    // Software-disabled: a fixed interrupt is dropped, and LVTs stay masked.
    a.accept(0x40, false);
    EXPECT_FALSE(a.pending());
    apic_write(a, Lapic::kLvtLint0, 0x700);
    EXPECT_EQ(apic_read(a, Lapic::kLvtLint0), 0x700u | Lapic::kLvtMasked);
    EXPECT_FALSE(a.accepts_extint());
    apic_write(a, Lapic::kSvr, 0x1ff);
    apic_write(a, Lapic::kLvtLint0, 0x700);  // ExtINT, unmasked
    EXPECT_TRUE(a.accepts_extint());
    uint64_t v;
    EXPECT_FALSE(a.read_msr(0x802, v)) << "x2APIC MSRs are #GP in xAPIC mode";
}

TEST(Lapic, PriorityOrderingTprAndEoi) {
    Apic t;
    auto& a = t.apic;
    a.accept(0x31, false);
    a.accept(0x52, true);  // level
    a.accept(0x55, false);
    EXPECT_GE(t.sink.kicks, 1);
    EXPECT_EQ(a.pending(), 0x55);
    apic_write(a, Lapic::kTpr, 0x50);  // class 5 and below wait
    EXPECT_FALSE(a.pending());
    EXPECT_EQ(apic_read(a, Lapic::kPpr), 0x50u);
    a.set_cr8(0);
    EXPECT_EQ(a.cr8(), 0);
    EXPECT_EQ(a.acknowledge(), 0x55);
    EXPECT_EQ(apic_read(a, Lapic::kPpr), 0x50u);  // in service
    EXPECT_FALSE(a.pending()) << "0x52 is in the same class as 0x55 in service";
    apic_write(a, Lapic::kEoi, 0);  // ends 0x55 (edge: no broadcast)
    EXPECT_TRUE(t.sink.eois.empty());
    EXPECT_EQ(a.acknowledge(), 0x52);
    EXPECT_TRUE(apic_read(a, Lapic::kTmr + 0x20) & (1u << (0x52 - 64)));
    apic_write(a, Lapic::kEoi, 0);  // level: the I/O APIC hears of it
    EXPECT_EQ(t.sink.eois, std::vector<uint8_t>{0x52});
    EXPECT_EQ(a.acknowledge(), 0x31);
    apic_write(a, Lapic::kSvr, 0x1ff | Lapic::kSvrSuppressEoiBroadcast);
    a.accept(0x60, true);
    EXPECT_EQ(a.acknowledge(), 0x60);
    apic_write(a, Lapic::kEoi, 0);
    EXPECT_EQ(t.sink.eois.size(), 1u) << "suppressed: the guest writes the I/O APIC's EOI";
    a.accept(7, false);  // illegal vector
    EXPECT_EQ(apic_read(a, Lapic::kEsr), 0x40u) << "received illegal vector";
    apic_write(a, Lapic::kEsr, 0);
    EXPECT_EQ(apic_read(a, Lapic::kEsr), 0u);
    EXPECT_EQ(a.pending(), std::nullopt);
}

TEST(Lapic, IcrSendsIpisInBothModes) {
    Apic t;
    auto& a = t.apic;
    apic_write(a, Lapic::kIcrHigh, 0x05000000);
    apic_write(a, Lapic::kIcrLow, 0x4500);   // INIT, assert, physical, to APIC 5
    apic_write(a, Lapic::kIcrLow, 0x0612);   // startup, vector 0x12
    apic_write(a, Lapic::kIcrLow, 0xc0030);  // fixed 0x30 to all but self
    apic_write(a, Lapic::kIcrLow, 0x0005);   // fixed vector 5: illegal, not sent
    ASSERT_EQ(t.sink.ipis.size(), 3u);
    EXPECT_EQ(t.sink.ipis[0].mode, Ipi::Init);
    EXPECT_EQ(t.sink.ipis[0].destination, 5u);
    EXPECT_EQ(t.sink.ipis[0].source, 3u);
    EXPECT_EQ(t.sink.ipis[1].mode, Ipi::Startup);
    EXPECT_EQ(t.sink.ipis[1].vector, 0x12);
    EXPECT_EQ(t.sink.ipis[2].shorthand, Ipi::AllExcludingSelf);
    EXPECT_EQ(apic_read(a, Lapic::kIcrLow) & (1u << 12), 0u) << "always idle";
    // x2APIC: the ICR is one 64-bit MSR with a 32-bit destination; self-IPI MSR.
    ASSERT_TRUE(a.write_msr(Lapic::kApicBaseMsr, Lapic::kBase | Lapic::kBaseEnable |
                                                     Lapic::kBaseBsp | Lapic::kBaseX2apic));
    uint64_t v = 0;
    ASSERT_TRUE(a.read_msr(0x802, v));
    EXPECT_EQ(v, 3u);
    ASSERT_TRUE(a.read_msr(0x80d, v));
    EXPECT_EQ(v, (0u << 16) | (1u << 3)) << "cluster 0, bit 3";
    ASSERT_TRUE(a.write_msr(0x830, (uint64_t{300} << 32) | 0x4041));
    ASSERT_EQ(t.sink.ipis.size(), 4u);
    EXPECT_EQ(t.sink.ipis[3].destination, 300u);
    EXPECT_TRUE(t.sink.ipis[3].x2apic);
    ASSERT_TRUE(a.write_msr(0x83f, 0x77));
    EXPECT_EQ(a.pending(), 0x77);
    // #GP: reads of write-only registers, writes of read-only ones, xAPIC-only registers, a
    // non-zero EOI, reserved high bits, x2APIC straight back to xAPIC.
    EXPECT_FALSE(a.read_msr(0x80b, v));
    EXPECT_FALSE(a.write_msr(0x802, 1));
    EXPECT_FALSE(a.write_msr(0x80e, 0));
    EXPECT_FALSE(a.write_msr(0x831, 0));
    EXPECT_FALSE(a.write_msr(0x80b, 1));
    EXPECT_FALSE(a.write_msr(0x808, uint64_t{1} << 32));
    EXPECT_FALSE(
        a.write_msr(Lapic::kApicBaseMsr, Lapic::kBase | Lapic::kBaseEnable | Lapic::kBaseBsp));
    EXPECT_EQ(apic_read(a, Lapic::kId), 0u) << "no MMIO in x2APIC mode";
    // Logical destinations.
    EXPECT_TRUE(a.matches_logical(0x00008, true));
    EXPECT_FALSE(a.matches_logical(0x10008, true));
}

TEST(Lapic, LogicalXapicFlatAndCluster) {
    Apic t;
    auto& a = t.apic;
    apic_write(a, Lapic::kLdr, 0x24000000);
    EXPECT_TRUE(a.matches_logical(0x04, false));  // flat: any common bit
    EXPECT_FALSE(a.matches_logical(0x08, false));
    apic_write(a, Lapic::kDfr, 0x0fffffff);  // cluster model
    EXPECT_TRUE(a.matches_logical(0x24, false));
    EXPECT_FALSE(a.matches_logical(0x14, false));
}

TEST(Lapic, TimerOneShotPeriodicAndTscDeadline) {
    Apic t;
    auto& a = t.apic;
    const uint64_t t0 = t.clock.now;
    apic_write(a, Lapic::kTimerDivide, 0xb);       // divide by 1
    apic_write(a, Lapic::kLvtTimer, 0x40);         // one-shot, vector 0x40
    apic_write(a, Lapic::kTimerInitial, 1000000);  // 1 ms at 1 GHz
    EXPECT_EQ(t.sink.deadline, t0 + 1000000);
    t.clock.now += 400000;
    EXPECT_EQ(apic_read(a, Lapic::kTimerCurrent), 600000u);
    a.timer_expired();  // early: waits on
    EXPECT_FALSE(a.pending());
    t.clock.now = t0 + 1000000;
    a.timer_expired();
    EXPECT_EQ(a.acknowledge(), 0x40);
    apic_write(a, Lapic::kEoi, 0);
    EXPECT_EQ(apic_read(a, Lapic::kTimerCurrent), 0u);
    // Periodic, divide by 2: every 2 ms; a host that fell behind gets one tick, not a flood.
    apic_write(a, Lapic::kLvtTimer, 0x20041);
    apic_write(a, Lapic::kTimerDivide, 0x0);
    apic_write(a, Lapic::kTimerInitial, 1000000);
    const uint64_t t1 = t.clock.now;
    EXPECT_EQ(t.sink.deadline, t1 + 2000000);
    t.clock.now = t1 + 2000000;
    a.timer_expired();
    EXPECT_EQ(t.sink.deadline, t1 + 4000000);
    EXPECT_EQ(a.acknowledge(), 0x41);
    apic_write(a, Lapic::kEoi, 0);
    t.clock.now = t1 + 100000000;  // 100 ms late
    a.timer_expired();
    EXPECT_EQ(t.sink.deadline, t.clock.now + 2000000);
    EXPECT_EQ(a.acknowledge(), 0x41);
    apic_write(a, Lapic::kEoi, 0);
    // A tiny periodic count cannot flood the host.
    apic_write(a, Lapic::kTimerDivide, 0xb);
    apic_write(a, Lapic::kTimerInitial, 1);
    EXPECT_GE(t.sink.deadline, t.clock.now + 100000);
    // TSC-deadline: the mode change stops the timer; IA32_TSC_DEADLINE arms it in Clock time.
    apic_write(a, Lapic::kLvtTimer, 0x40042);
    EXPECT_EQ(t.sink.deadline, 0u);
    ASSERT_TRUE(a.write_msr(Lapic::kTscDeadlineMsr, 5000000000));
    EXPECT_EQ(t.sink.deadline, 10000000000u);  // the sink's 500 MHz TSC
    uint64_t v = 0;
    ASSERT_TRUE(a.read_msr(Lapic::kTscDeadlineMsr, v));
    EXPECT_EQ(v, 5000000000u);
    t.clock.now = 10000000000;
    a.timer_expired();
    EXPECT_EQ(a.acknowledge(), 0x42);
    ASSERT_TRUE(a.read_msr(Lapic::kTscDeadlineMsr, v));
    EXPECT_EQ(v, 0u) << "fired: the deadline clears";
    apic_write(a, Lapic::kTimerInitial, 5);  // ignored in TSC-deadline mode
    EXPECT_EQ(apic_read(a, Lapic::kTimerInitial), 0u);
}

TEST(Lapic, OddAccessesSoftwareDisableAndSnapshot) {
    Apic t;
    auto& a = t.apic;
    uint8_t b[8];
    a.read(0x81, {b, 1});  // a byte of the TPR
    a.read(0xffc, {b, 8});
    a.read(0x5000, {b, 4});
    uint8_t two[2] = {1, 2};
    a.write(0x80, two);  // not a 32-bit write: dropped
    EXPECT_EQ(apic_read(a, Lapic::kTpr), 0u);
    apic_write(a, 0x3d0, 1);  // reserved
    apic_write(a, Lapic::kVersion, 0);
    EXPECT_EQ(apic_read(a, Lapic::kVersion), Lapic::kVersionValue);
    apic_write(a, Lapic::kLvtTimer, 0x20050);
    apic_write(a, Lapic::kTimerInitial, 5000000);
    a.accept(0x66, true);
    // Save, then restore into a fresh APIC: registers, pending interrupts and the timer.
    snapshot::Encoder e;
    a.save(e);
    FakeClock clock2;
    clock2.now = t.clock.now + 1000;
    ApicSink sink2;
    Lapic b2(3, true, clock2, sink2);
    snapshot::Decoder d(e.data(), "lapic");
    b2.restore(d);
    ASSERT_TRUE(d.finish());
    EXPECT_EQ(b2.pending(), 0x66);
    EXPECT_EQ(apic_read(b2, Lapic::kLvtTimer), 0x20050u);
    EXPECT_EQ(sink2.deadline, clock2.now + 10000000) << "5M bus ticks, divided by 2";
    // Hostile: another version, a BSP flag that is not this APIC's.
    auto bad = e.data();
    bad[8 + 4 * 3] ^= 1;  // the version register
    Lapic c(3, true, clock2, sink2);
    snapshot::Decoder d2(bad, "lapic");
    c.restore(d2);
    EXPECT_FALSE(d2.finish());
    Lapic ap(3, false, clock2, sink2);
    snapshot::Decoder d3(e.data(), "lapic");
    ap.restore(d3);
    EXPECT_FALSE(d3.finish());
    // Software disable masks every LVT; INIT puts everything back.
    apic_write(a, Lapic::kSvr, 0xff);
    EXPECT_TRUE(apic_read(a, Lapic::kLvtTimer) & Lapic::kLvtMasked);
    a.reset();
    EXPECT_EQ(apic_read(a, Lapic::kSvr), 0xffu);
    EXPECT_FALSE(a.pending());
    EXPECT_EQ(t.sink.deadline, 0u);
}

}  // namespace
}  // namespace vireo::devices::irqchip
