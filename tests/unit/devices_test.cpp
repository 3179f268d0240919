// Legacy devices and the bus that dispatches to them, driven register by register as a guest
// driver would (no VM needed: the devices only see offsets and bytes).
#include <gtest/gtest.h>

#include <atomic>
#include <ctime>
#include <thread>
#include <vector>

#include "devices/bus.hpp"
#include "devices/legacy/cmos.hpp"
#include "devices/legacy/i8042.hpp"
#include "devices/legacy/serial.hpp"

namespace vireo::devices {
namespace {

// Records every access it gets.
class Recorder final : public Device {
  public:
    explicit Recorder(const char* name) : name_(name) {}
    const char* name() const noexcept override { return name_; }
    void read(uint64_t offset, std::span<uint8_t> data) override {
        reads.push_back(offset);
        std::fill(data.begin(), data.end(), 0x42);
    }
    void write(uint64_t offset, std::span<const uint8_t> data) override {
        writes.push_back({offset, data.size()});
    }
    std::vector<uint64_t> reads;
    std::vector<std::pair<uint64_t, size_t>> writes;

  private:
    const char* name_;
};

TEST(Bus, RefusesEveryOverlapAndBadRange) {
    Bus bus("test");
    ASSERT_TRUE(bus.attach(0x100, 0x10, std::make_shared<Recorder>("a")));
    ASSERT_TRUE(bus.attach(0x200, 0x10, std::make_shared<Recorder>("b")));
    struct Case {
        uint64_t base, size;
    };
    for (const Case c : {Case{0x100, 0x10}, Case{0xf8, 0x10}, Case{0x108, 0x1}, Case{0x10f, 0x2},
                         Case{0x80, 0x200}, Case{0x1ff, 0x2}, Case{0x0, UINT64_MAX}}) {
        auto r = bus.attach(c.base, c.size, std::make_shared<Recorder>("x"));
        ASSERT_FALSE(r) << std::hex << c.base << "+" << c.size;
        EXPECT_EQ(r.error().code(), ErrorCode::AlreadyExists);
        EXPECT_NE(r.error().message().find("overlaps"), std::string::npos);
    }
    EXPECT_FALSE(bus.attach(0x300, 0, std::make_shared<Recorder>("empty")));
    EXPECT_FALSE(bus.attach(UINT64_MAX - 4, 0x10, std::make_shared<Recorder>("wraps")));
    // Adjacent ranges on either side are fine.
    EXPECT_TRUE(bus.attach(0xf0, 0x10, std::make_shared<Recorder>("below")));
    EXPECT_TRUE(bus.attach(0x110, 0x10, std::make_shared<Recorder>("above")));
}

TEST(Bus, DispatchesByOffsetAndRefusesAccessesThatLeaveARange) {
    Bus bus("test");
    auto a = std::make_shared<Recorder>("a");
    ASSERT_TRUE(bus.attach(0x3f8, 8, a));
    uint8_t b[4] = {0, 0, 0, 0};
    EXPECT_TRUE(bus.read(0x3fd, std::span(b, 1)));
    EXPECT_EQ(b[0], 0x42);
    EXPECT_TRUE(bus.write(0x3f8, std::span<const uint8_t>(b, 4)));
    EXPECT_EQ(a->reads, std::vector<uint64_t>{5});
    ASSERT_EQ(a->writes.size(), 1u);
    EXPECT_EQ(a->writes[0], (std::pair<uint64_t, size_t>{0, 4}));
    // Past the end, straddling the end, before the start: no device sees it; reads are 0xff.
    for (uint64_t addr : {uint64_t{0x400}, uint64_t{0x3fe}, uint64_t{0x3f7}, UINT64_MAX - 1}) {
        std::fill(std::begin(b), std::end(b), 0);
        EXPECT_FALSE(bus.read(addr, std::span(b, 4))) << std::hex << addr;
        EXPECT_EQ(b[3], 0xff);
        EXPECT_FALSE(bus.write(addr, std::span<const uint8_t>(b, 4)));
    }
    EXPECT_EQ(a->reads.size(), 1u);
    EXPECT_EQ(a->writes.size(), 1u);
}

class Bytes final : public OutputTap {
  public:
    void put(uint8_t byte) noexcept override { got.push_back(static_cast<char>(byte)); }
    std::string got;
};

class Level final : public IrqLine {
  public:
    void set_level(bool asserted) override {
        level = asserted;
        ++changes;
    }
    bool level = false;
    int changes = 0;
};

struct Uart {
    std::shared_ptr<Level> irq = std::make_shared<Level>();
    std::shared_ptr<Bytes> out = std::make_shared<Bytes>(), tap = std::make_shared<Bytes>();
    Serial serial{irq, out, tap};
    uint8_t rd(uint64_t reg) {
        uint8_t v = 0;
        serial.read(reg, std::span(&v, 1));
        return v;
    }
    void wr(uint64_t reg, uint8_t v) { serial.write(reg, std::span<const uint8_t>(&v, 1)); }
};

TEST(Serial, OutputReachesTheLogAndTheTapAndRaisesThre) {
    Uart u;
    EXPECT_EQ(u.rd(5) & 0x60, 0x60) << "LSR: holding register and transmitter empty";
    EXPECT_EQ(u.rd(2) & 0x0f, 0x01) << "IIR: nothing pending";
    u.wr(1, 0x02);  // IER: THRE interrupt; the holding register is empty, so it fires now
    EXPECT_TRUE(u.irq->level);
    EXPECT_EQ(u.rd(2) & 0x0f, 0x02) << "IIR: THRE";
    EXPECT_FALSE(u.irq->level) << "reading IIR while it reports THRE clears it";
    for (char c : std::string("hi\n"))
        u.wr(0, static_cast<uint8_t>(c));
    EXPECT_EQ(u.out->got, "hi\n");
    EXPECT_EQ(u.tap->got, "hi\n");
    EXPECT_TRUE(u.irq->level) << "each byte sent empties the holding register again";
    u.wr(1, 0);
    EXPECT_FALSE(u.irq->level);
}

TEST(Serial, InputIsBoundedByTheFifoAndRaisesRxData) {
    Uart u;
    u.wr(1, 0x01);  // IER: received data
    const std::vector<uint8_t> in{'a', 'b'};
    EXPECT_EQ(u.serial.enqueue_input(in), 2u);
    EXPECT_TRUE(u.irq->level);
    EXPECT_EQ(u.rd(5) & 0x01, 0x01) << "LSR: data ready";
    EXPECT_EQ(u.rd(2) & 0x0f, 0x04) << "IIR: received data";
    EXPECT_EQ(u.rd(0), 'a');
    EXPECT_EQ(u.rd(0), 'b');
    EXPECT_EQ(u.rd(5) & 0x01, 0);
    EXPECT_FALSE(u.irq->level);
    EXPECT_EQ(u.rd(0), 0) << "an empty FIFO reads 0";

    // More than the FIFO holds: the writer blocks (back-pressure) until the guest reads or the
    // domain stops; nothing beyond kFifoSize is ever buffered.
    std::vector<uint8_t> flood(Serial::kFifoSize * 3, 'x');
    std::atomic<size_t> accepted{0};
    std::thread writer([&] { accepted = u.serial.enqueue_input(flood); });
    for (size_t i = 0; i < Serial::kFifoSize / 2; ++i) {
        while ((u.rd(5) & 0x01) == 0)
            std::this_thread::yield();
        EXPECT_EQ(u.rd(0), 'x');
    }
    u.serial.stop_waiting();
    writer.join();
    EXPECT_GE(accepted.load(), Serial::kFifoSize);
    EXPECT_LE(accepted.load(), Serial::kFifoSize + Serial::kFifoSize / 2);
    u.wr(2, 0x03);  // FCR: enable, clear the receive FIFO
    EXPECT_EQ(u.rd(5) & 0x01, 0);
}

TEST(Serial, DivisorLatchAndLoopback) {
    Uart u;
    u.wr(3, 0x80);  // LCR: DLAB
    u.wr(0, 0x01);
    u.wr(1, 0x00);
    EXPECT_EQ(u.rd(0), 0x01);
    EXPECT_EQ(u.rd(1), 0x00);
    u.wr(3, 0x03);  // 8N1
    EXPECT_TRUE(u.out->got.empty()) << "divisor writes are not output";
    u.wr(4, 0x10 | 0x02);  // MCR: loopback, RTS
    u.wr(0, 'z');
    EXPECT_TRUE(u.out->got.empty()) << "loopback bytes stay inside the UART";
    EXPECT_EQ(u.rd(0), 'z');
    EXPECT_EQ(u.rd(6) & 0x10, 0x10) << "MSR: RTS looped back to CTS";
    u.wr(7, 0x5a);
    EXPECT_EQ(u.rd(7), 0x5a) << "scratch register";
}

// A snapshot of the UART (docs/snapshot.md): a UART built the same way and restored from it
// shows the guest the same registers, FIFO and interrupt.
TEST(Serial, StateRoundTripsThroughASnapshot) {
    Uart a;
    a.wr(3, 0x80);  // DLAB: divisor 3
    a.wr(0, 0x03);
    a.wr(3, 0x03);
    a.wr(7, 0x5a);
    a.wr(1, 0x01);  // IER: received data
    const std::vector<uint8_t> in{'o', 'k'};
    ASSERT_EQ(a.serial.enqueue_input(in), 2u);
    snapshot::Encoder e;
    a.serial.save(e);

    Uart b;
    snapshot::Decoder d(e.data(), "serial");
    b.serial.restore(d);
    ASSERT_TRUE(d.finish());
    EXPECT_TRUE(b.irq->level) << "received data pending: the line is up again";
    EXPECT_EQ(b.rd(7), 0x5a);
    EXPECT_EQ(b.rd(3), 0x03);
    EXPECT_EQ(b.rd(1), 0x01);
    EXPECT_EQ(b.rd(0), 'o');
    EXPECT_EQ(b.rd(0), 'k');
    EXPECT_FALSE(b.irq->level);
    b.wr(3, 0x80);
    EXPECT_EQ(b.rd(0), 0x03) << "the divisor latch";

    // A FIFO longer than the UART's is refused, and the UART is left as it was.
    snapshot::Encoder big;
    for (int i = 0; i < 6; ++i)
        big.u8(0xff);
    big.boolean(false);
    big.boolean(false);
    big.bytes(std::vector<uint8_t>(Serial::kFifoSize + 1, 'x'));
    Uart c;
    snapshot::Decoder bad(big.data(), "serial");
    c.serial.restore(bad);
    EXPECT_FALSE(bad.finish());
    EXPECT_EQ(c.rd(5) & 0x01, 0) << "no data ready";
    EXPECT_EQ(c.rd(7), 0) << "the scratch register untouched";
}

TEST(Cmos, NvramRoundTripsThroughASnapshot) {
    Cmos a;
    const uint8_t index = 0x40, value = 0xab;
    a.write(0, std::span<const uint8_t>(&index, 1));
    a.write(1, std::span<const uint8_t>(&value, 1));
    snapshot::Encoder e;
    a.save(e);
    Cmos b;
    snapshot::Decoder d(e.data(), "cmos");
    b.restore(d);
    ASSERT_TRUE(d.finish());
    uint8_t v = 0;
    b.read(1, std::span(&v, 1));  // the index came back too
    EXPECT_EQ(v, 0xab);

    snapshot::Encoder short_nvram;
    short_nvram.u8(0x10);
    short_nvram.bytes(std::vector<uint8_t>(16, 0));
    snapshot::Decoder bad(short_nvram.data(), "cmos");
    Cmos c;
    c.restore(bad);
    EXPECT_NE(bad.finish().error().message().find("the CMOS NVRAM"), std::string::npos);
}

TEST(Cmos, HostUtcInBcdAndAWritableNvram) {
    Cmos c;
    auto reg = [&](uint8_t index) {
        c.write(0, std::span<const uint8_t>(&index, 1));
        uint8_t v = 0;
        c.read(1, std::span(&v, 1));
        return v;
    };
    auto set = [&](uint8_t index, uint8_t value) {
        c.write(0, std::span<const uint8_t>(&index, 1));
        c.write(1, std::span<const uint8_t>(&value, 1));
    };
    // The date as the host's clock had it just before and just after the reads (a month may
    // turn between them).
    auto utc = [] {
        const std::time_t now = std::time(nullptr);
        std::tm t{};
        ::gmtime_r(&now, &t);
        return t;
    };
    auto from_bcd = [](uint8_t v) { return (v >> 4) * 10 + (v & 0x0f); };
    const std::tm before = utc();
    const int year = from_bcd(reg(0x09)), month = from_bcd(reg(0x08)),
              century = from_bcd(reg(0x32));
    const std::tm after = utc();
    for (const std::tm* t : {&before, &after}) {
        if (year == t->tm_year % 100 && month == t->tm_mon + 1 && century == 19 + t->tm_year / 100)
            break;
        EXPECT_EQ(t, &before) << "CMOS date " << century << year << "-" << month;
    }
    EXPECT_EQ(reg(0x0a) & 0x80, 0) << "never 'update in progress'";
    EXPECT_EQ(reg(0x0d), 0x80) << "RTC valid";
    set(0x40, 0xab);
    EXPECT_EQ(reg(0x40), 0xab);
    set(0x09, 0x99);
    EXPECT_NE(reg(0x09), 0x99) << "the clock stays the host's";
    set(0x0d, 0);
    EXPECT_EQ(reg(0x0d), 0x80);
    EXPECT_EQ(reg(0x80 | 0x40), 0xab) << "bit 7 of the index is the NMI mask, not an address";
}

TEST(I8042, OnlyThePulseResetCommandResetsTheMachine) {
    std::vector<PlatformEvent> events;
    I8042 kbd([&](PlatformEvent e) { events.push_back(e); });
    for (const uint8_t cmd : std::vector<uint8_t>{0x20, 0xaa, 0xad, 0xd1, 0xff}) {
        kbd.write(4, std::span<const uint8_t>(&cmd, 1));
    }
    uint8_t data = 0xfe;
    kbd.write(0, std::span<const uint8_t>(&data, 1));  // the data port, not the command port
    EXPECT_TRUE(events.empty());
    uint8_t status = 0xff;
    kbd.read(4, std::span(&status, 1));
    EXPECT_EQ(status, 0) << "status: both buffers empty";
    const uint8_t reset = 0xfe;
    kbd.write(4, std::span<const uint8_t>(&reset, 1));
    EXPECT_EQ(events, std::vector<PlatformEvent>{PlatformEvent::Reset});
}

}  // namespace
}  // namespace vireo::devices
