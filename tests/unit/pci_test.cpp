// The PCI bus driven as a guest kernel drives it: configuration mechanism #1 through the port
// device, BAR sizing and placement, the command register, the capability list, MSI-X's table,
// masks and pending bits. No VM needed: the bus only sees offsets and bytes.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "devices/pci/bus.hpp"
#include "devices/pci/ivshmem.hpp"
#include "devices/pci/msix.hpp"

namespace vireo::devices::pci {
namespace {

// A function with a 4 KiB 32-bit BAR 0, a 1 MiB 64-bit prefetchable BAR 2, a 32-byte I/O BAR
// 4, and an MSI-X capability with 4 vectors (table at BAR 0 + 0x800, PBA at + 0xc00).
class TestFunction final : public PciFunction {
  public:
    TestFunction() : PciFunction(Identity{0x1af4, 0x1110, 0x050000, 1, 0x1af4, 0x1100}) {
        EXPECT_TRUE(add_bar(0, BarKind::Memory32, 0x1000));
        EXPECT_TRUE(add_bar(2, BarKind::Memory64, 0x100000, true));
        EXPECT_TRUE(add_bar(4, BarKind::Io, 32));
        msix = Msix::create(4, [this](uint16_t v, const MsiMessage& m) {
                   sent.push_back({v, m});
               }).value();
        const auto body = msix->capability(0, 0x800, 0, 0xc00);
        const auto writable = Msix::capability_writable();
        msix_cap = config_.add_capability(kCapabilityMsix, body, writable).value();
        config_.set_interrupt_pin(1);
    }
    const char* name() const noexcept override { return "test"; }
    void bar_read(uint32_t bar, uint64_t offset, std::span<uint8_t> data) override {
        if (bar == 0 && offset >= 0x800 && offset < 0xc00)
            return msix->table_read(offset - 0x800, data);
        if (bar == 0 && offset >= 0xc00) return msix->pba_read(offset - 0xc00, data);
        reads.push_back({bar, offset});
        std::fill(data.begin(), data.end(), uint8_t{0x5a});
    }
    void bar_write(uint32_t bar, uint64_t offset, std::span<const uint8_t> data) override {
        if (bar == 0 && offset >= 0x800 && offset < 0xc00)
            return msix->table_write(offset - 0x800, data);
        writes.push_back({bar, offset});
    }
    void config_changed(const Change& c) override {
        if (c.touches(msix_cap + 2, 2)) msix->set_control(config_.u16(msix_cap + 2));
    }

    std::unique_ptr<Msix> msix;
    uint32_t msix_cap = 0;
    std::vector<std::pair<uint16_t, MsiMessage>> sent;
    std::vector<std::pair<uint32_t, uint64_t>> reads, writes;
};

// Drives the bus through ports 0xCF8/0xCFC, as Linux's pci_conf1 does.
struct Guest {
    Guest() : bus(std::make_shared<PciBus>()), ports(bus) {}
    void select(uint32_t device, uint32_t reg) {
        const uint32_t a = 0x8000'0000u | (device << 11) | (reg & 0xfc);
        ports.write(0, std::span(reinterpret_cast<const uint8_t*>(&a), 4));
    }
    uint32_t read(uint32_t device, uint32_t reg, size_t size = 4) {
        select(device, reg);
        uint8_t b[4] = {};
        ports.read(4 + (reg & 3), std::span(b, size));
        uint32_t v = 0;
        std::memcpy(&v, b, size);
        return v;
    }
    void write(uint32_t device, uint32_t reg, uint32_t v, size_t size = 4) {
        select(device, reg);
        ports.write(4 + (reg & 3), std::span(reinterpret_cast<const uint8_t*>(&v), size));
    }
    std::shared_ptr<PciBus> bus;
    ConfigPorts ports;
};

TEST(Pci, HostBridgeAtZeroAndNothingElseUntilAdded) {
    Guest g;
    EXPECT_EQ(g.read(0, kVendorId), 0x0008'1b36u);
    EXPECT_EQ(g.read(0, 0x08) >> 8, 0x060000u);  // class: host bridge
    EXPECT_EQ(g.read(1, kVendorId), 0xffff'ffffu);
    EXPECT_EQ(g.read(31, kVendorId), 0xffff'ffffu);
    auto f = std::make_shared<TestFunction>();
    ASSERT_EQ(g.bus->add(f).value(), 1u);
    EXPECT_EQ(g.read(1, kVendorId), 0x1110'1af4u);
    EXPECT_EQ(g.read(1, kVendorId, 2), 0x1af4u);
    EXPECT_EQ(g.read(1, kDeviceId, 2), 0x1110u);  // a word at 0xCFE
    EXPECT_EQ(g.read(1, kInterruptPin, 1), 1u);
}

TEST(Pci, ConfigAddressRules) {
    Guest g;
    g.bus->add(std::make_shared<TestFunction>()).value();
    // Not enabled (bit 31 clear), another bus, another function: all ones, writes dropped.
    uint32_t a = (1u << 11);
    g.ports.write(0, std::span(reinterpret_cast<const uint8_t*>(&a), 4));
    uint8_t b[4];
    g.ports.read(4, b);
    EXPECT_EQ(b[0], 0xff);
    a = 0x8000'0000u | (1u << 16) | (1u << 11);
    g.ports.write(0, std::span(reinterpret_cast<const uint8_t*>(&a), 4));
    g.ports.read(4, b);
    EXPECT_EQ(b[0], 0xff);
    a = 0x8000'0000u | (1u << 11) | (1u << 8);
    g.ports.write(0, std::span(reinterpret_cast<const uint8_t*>(&a), 4));
    g.ports.read(4, b);
    EXPECT_EQ(b[0], 0xff);
    // CONFIG_ADDRESS reads back without its reserved bits; a byte access to it is not it.
    a = 0x8000'0000u | (1u << 11) | 0x13;
    g.ports.write(0, std::span(reinterpret_cast<const uint8_t*>(&a), 4));
    uint32_t back = 0;
    g.ports.read(0, std::span(reinterpret_cast<uint8_t*>(&back), 4));
    EXPECT_EQ(back, 0x8000'0000u | (1u << 11) | 0x10);
    const uint8_t one = 0;
    g.ports.write(0, std::span(&one, 1));
    g.ports.read(0, std::span(reinterpret_cast<uint8_t*>(&back), 4));
    EXPECT_EQ(back, 0x8000'0000u | (1u << 11) | 0x10);
    // A read that runs past 0xCFF gets nothing.
    g.ports.read(6, std::span(b, 4));
    EXPECT_EQ(b[0], 0xff);
}

TEST(Pci, BarSizingAndPlacement) {
    Guest g;
    auto f = std::make_shared<TestFunction>();
    g.bus->add(f).value();
    // Sizing: all ones, read the mask back (flag bits stay).
    g.write(1, kBar0, 0xffff'ffff);
    EXPECT_EQ(g.read(1, kBar0), 0xffff'f000u);
    g.write(1, kBar0 + 8, 0xffff'ffff);  // BAR 2, 64-bit prefetchable
    g.write(1, kBar0 + 12, 0xffff'ffff);
    EXPECT_EQ(g.read(1, kBar0 + 8), 0xfff0'0000u | 0b1100u);
    EXPECT_EQ(g.read(1, kBar0 + 12), 0xffff'ffffu);
    g.write(1, kBar0 + 16, 0xffff'ffff);  // BAR 4, I/O
    EXPECT_EQ(g.read(1, kBar0 + 16), 0xffff'ffe1u);
    EXPECT_EQ(g.read(1, kBar0 + 4), 0u);   // BAR 1: none
    EXPECT_EQ(g.read(1, kBar0 + 20), 0u);  // BAR 5: none
    g.write(1, kBar0 + 20, 0xffff'ffff);
    EXPECT_EQ(g.read(1, kBar0 + 20), 0u);
    // Placed, but nothing decodes until the command register says so.
    g.write(1, kBar0, 0xe000'0000);
    g.write(1, kBar0 + 8, 0x0000'0000);
    g.write(1, kBar0 + 12, 0x1);  // 4 GiB
    g.write(1, kBar0 + 16, 0xc000);
    uint8_t b[4];
    EXPECT_FALSE(g.bus->bar_read(false, 0xe000'0010, b));
    EXPECT_EQ(f->decoded(0), PciFunction::kNotDecoded);
    g.write(1, kCommand, kCommandMemory, 2);
    EXPECT_EQ(f->decoded(0), 0xe000'0000u);
    EXPECT_EQ(f->decoded(2), 0x1'0000'0000u);
    EXPECT_EQ(f->decoded(4), PciFunction::kNotDecoded);  // I/O still off
    ASSERT_TRUE(g.bus->bar_read(false, 0xe000'0010, b));
    ASSERT_TRUE(g.bus->bar_write(false, 0x1'0000'0ff8, std::span(b, 4)));
    EXPECT_FALSE(g.bus->bar_read(false, 0xe000'1000, b));                // past BAR 0
    EXPECT_FALSE(g.bus->bar_read(false, 0xe000'0ffe, std::span(b, 4)));  // straddles its end
    EXPECT_FALSE(g.bus->bar_read(true, 0xc000, b));
    g.write(1, kCommand, kCommandMemory | kCommandIo, 2);
    EXPECT_TRUE(g.bus->bar_read(true, 0xc01f, std::span(b, 1)));
    EXPECT_FALSE(g.bus->bar_read(true, 0xc020, std::span(b, 1)));
    ASSERT_EQ(f->reads.size(), 2u);
    EXPECT_EQ(f->reads[0], (std::pair<uint32_t, uint64_t>{0, 0x10}));
    EXPECT_EQ(f->reads[1], (std::pair<uint32_t, uint64_t>{4, 0x1f}));
    EXPECT_EQ(f->writes.at(0), (std::pair<uint32_t, uint64_t>{2, 0xff8}));
    // Sizing again while decoding (a kernel turns decoding off first): a 32-bit BAR then sits
    // just below 4 GiB, as on hardware; a 64-bit one's all-ones address wraps: not decoded.
    g.write(1, kBar0, 0xffff'ffff);
    EXPECT_EQ(f->decoded(0), 0xffff'f000u);
    g.write(1, kBar0 + 8, 0xffff'ffff);
    g.write(1, kBar0 + 12, 0xffff'ffff);
    EXPECT_EQ(f->decoded(2), PciFunction::kNotDecoded);
    // Memory decoding off again: gone.
    g.write(1, kCommand, 0, 2);
    EXPECT_EQ(f->decoded(0), PciFunction::kNotDecoded);
}

TEST(Pci, ReadOnlyFieldsAndStatus) {
    Guest g;
    g.bus->add(std::make_shared<TestFunction>()).value();
    g.write(1, kVendorId, 0x1234'5678);
    EXPECT_EQ(g.read(1, kVendorId), 0x1110'1af4u);
    g.write(1, kCommand, 0xffff, 2);
    EXPECT_EQ(g.read(1, kCommand, 2), 0x0547u);  // only the bits a function implements
    // Status: capabilities listed (read-only), error bits cleared by writing 1.
    EXPECT_NE(g.read(1, kStatus, 2) & kStatusCapabilities, 0u);
    g.write(1, kStatus, 0xffff, 2);
    EXPECT_NE(g.read(1, kStatus, 2) & kStatusCapabilities, 0u);
    g.write(1, kInterruptLine, 11, 1);
    EXPECT_EQ(g.read(1, kInterruptLine, 1), 11u);
    EXPECT_EQ(g.read(1, kInterruptPin, 1), 1u);
    g.write(1, kInterruptPin, 4, 1);
    EXPECT_EQ(g.read(1, kInterruptPin, 1), 1u);
    EXPECT_EQ(g.read(1, 0x30), 0u);  // no expansion ROM
    g.write(1, 0x30, 0xffff'ffff);
    EXPECT_EQ(g.read(1, 0x30), 0u);
}

TEST(Pci, CapabilityListAndMsixControl) {
    Guest g;
    auto f = std::make_shared<TestFunction>();
    g.bus->add(f).value();
    const uint32_t cap = g.read(1, kCapabilities, 1);
    ASSERT_EQ(cap, kFirstCapability);
    EXPECT_EQ(g.read(1, cap, 1), kCapabilityMsix);
    EXPECT_EQ(g.read(1, cap + 1, 1), 0u);   // the last
    EXPECT_EQ(g.read(1, cap + 2, 2), 3u);   // table size - 1, off, unmasked
    EXPECT_EQ(g.read(1, cap + 4), 0x800u);  // BIR 0
    EXPECT_EQ(g.read(1, cap + 8), 0xc00u);
    // Only enable and function mask are writable.
    g.write(1, cap + 2, 0xffff, 2);
    EXPECT_EQ(g.read(1, cap + 2, 2), 0xc003u);
    g.write(1, cap + 4, 0x1234'5678);
    EXPECT_EQ(g.read(1, cap + 4), 0x800u);
    EXPECT_TRUE(f->msix->enabled());
}

// MSI-X, as a driver programs it: table entries (masked at reset), enable, unmask.
TEST(Pci, MsixMasksAndPending) {
    Guest g;
    auto f = std::make_shared<TestFunction>();
    g.bus->add(f).value();
    g.write(1, kBar0, 0xe000'0000);
    g.write(1, kCommand, kCommandMemory, 2);
    auto write32 = [&](uint64_t a, uint32_t v) {
        g.bus->bar_write(false, a, std::span(reinterpret_cast<const uint8_t*>(&v), 4));
    };
    auto read32 = [&](uint64_t a) {
        uint32_t v = 0;
        g.bus->bar_read(false, a, std::span(reinterpret_cast<uint8_t*>(&v), 4));
        return v;
    };
    const uint64_t table = 0xe000'0800, pba = 0xe000'0c00;
    EXPECT_EQ(read32(table + 12), 1u);     // masked at reset
    write32(table + 16 + 0, 0xfee0'0000);  // vector 1
    write32(table + 16 + 4, 0);
    write32(table + 16 + 8, 0x4041);
    // Signalled while MSI-X is off: pending.
    f->msix->signal(1);
    EXPECT_TRUE(f->sent.empty());
    EXPECT_EQ(read32(pba), 0b10u);
    const uint32_t cap = kFirstCapability;
    g.write(1, cap + 2, kMsixEnable, 2);
    EXPECT_TRUE(f->sent.empty());  // the vector itself is still masked
    write32(table + 16 + 12, 0);   // unmask: the pending message goes
    ASSERT_EQ(f->sent.size(), 1u);
    EXPECT_EQ(f->sent[0].first, 1);
    EXPECT_EQ(f->sent[0].second.address, 0xfee0'0000u);
    EXPECT_EQ(f->sent[0].second.data, 0x4041u);
    EXPECT_EQ(read32(pba), 0u);
    f->msix->signal(1);
    EXPECT_EQ(f->sent.size(), 2u);
    // The function mask holds them all.
    g.write(1, cap + 2, kMsixEnable | kMsixFunctionMask, 2);
    f->msix->signal(1);
    EXPECT_EQ(f->sent.size(), 2u);
    g.write(1, cap + 2, kMsixEnable, 2);
    EXPECT_EQ(f->sent.size(), 3u);
    // Out of range, odd widths and misaligned accesses do nothing.
    f->msix->signal(4);
    f->msix->signal(0xffff);
    EXPECT_EQ(f->sent.size(), 3u);
    const uint16_t w = 0xffff;
    g.bus->bar_write(false, table + 16, std::span(reinterpret_cast<const uint8_t*>(&w), 2));
    write32(table + 18, 0xffff'ffff);
    EXPECT_EQ(read32(table + 16), 0xfee0'0000u);
    uint64_t q = 0x1234'5678'9abc'def0;
    g.bus->bar_write(false, table + 32, std::span(reinterpret_cast<const uint8_t*>(&q), 8));
    EXPECT_EQ(read32(table + 32), 0x9abc'def0u);
    EXPECT_EQ(read32(table + 36), 0x1234'5678u);
    EXPECT_EQ(f->msix->message(2).address, 0x1234'5678'9abc'def0u);
    // The vector control keeps only its mask bit.
    write32(table + 12, 0xffff'fffe);
    EXPECT_EQ(read32(table + 12), 0u);
}

TEST(Pci, MsixTellsTheVmmWhatEachVectorBecomes) {
    // The VMM moves a vector's eventfd into an irqfd while it is deliverable: it must hear of
    // every change of a vector's message or mask, of the enable and function-mask bits, and
    // of a reset, and find the new state when it asks.
    std::vector<std::pair<uint16_t, bool>> heard;
    std::unique_ptr<Msix> m;
    m = Msix::create(
            2, [](uint16_t, const MsiMessage&) {},
            [&](uint16_t v) {
                heard.push_back({v, m->deliverable(v)});
            })
            .value();
    auto write32 = [&](uint64_t offset, uint32_t v) {
        m->table_write(offset, std::span(reinterpret_cast<const uint8_t*>(&v), 4));
    };
    write32(0, 0xfee0'0000);
    write32(8, 0x41);
    write32(12, 0);  // unmasked, but MSI-X is off
    ASSERT_FALSE(heard.empty());
    EXPECT_EQ(heard.back(), (std::pair<uint16_t, bool>{0, false}));
    heard.clear();
    write32(8, 0x41);  // the same value: nothing changed
    EXPECT_TRUE(heard.empty());
    m->set_control(kMsixEnable);
    EXPECT_EQ(heard, (std::vector<std::pair<uint16_t, bool>>{{0, true}, {1, false}}));
    heard.clear();
    m->set_control(kMsixEnable | kMsixFunctionMask);
    EXPECT_EQ(heard, (std::vector<std::pair<uint16_t, bool>>{{0, false}, {1, false}}));
    heard.clear();
    m->set_control(kMsixEnable | kMsixFunctionMask);  // no change
    EXPECT_TRUE(heard.empty());
    m->set_control(kMsixEnable);
    heard.clear();
    m->reset();
    EXPECT_EQ(heard, (std::vector<std::pair<uint16_t, bool>>{{0, false}, {1, false}}));
}

TEST(Pci, MsixLimits) {
    auto send = [](uint16_t, const MsiMessage&) {};
    EXPECT_FALSE(Msix::create(0, send));
    EXPECT_FALSE(Msix::create(kMsixMaxVectors + 1, send));
    auto m = Msix::create(kMsixMaxVectors, send).value();
    EXPECT_EQ(m->table_size(), 2048u * 16);
    EXPECT_EQ(m->pba_size(), 256u);
    EXPECT_EQ(Msix::create(65, send).value()->pba_size(), 16u);
}

TEST(Pci, BarDeclarationsAreChecked) {
    Config c(Identity{});
    EXPECT_FALSE(c.add_bar(0, BarKind::Memory32, 0x1001));  // not a power of two
    EXPECT_FALSE(c.add_bar(0, BarKind::Memory32, 8));       // too small
    EXPECT_FALSE(c.add_bar(0, BarKind::Io, 512));           // too large
    EXPECT_FALSE(c.add_bar(5, BarKind::Memory64, 0x1000));  // no room for the upper half
    EXPECT_FALSE(c.add_bar(6, BarKind::Memory32, 0x1000));
    ASSERT_TRUE(c.add_bar(0, BarKind::Memory64, 0x1000));
    EXPECT_FALSE(c.add_bar(1, BarKind::Memory32, 0x1000));  // BAR 0's upper half
    EXPECT_FALSE(c.add_bar(0, BarKind::Memory32, 0x1000));  // taken
    EXPECT_FALSE(c.place_bar(0, 0x1800));                   // not aligned
    EXPECT_TRUE(c.place_bar(0, 0x8'0000'0000));
    EXPECT_EQ(c.bar_address(0), 0x8'0000'0000u);
    ASSERT_TRUE(c.add_bar(2, BarKind::Memory32, 0x1000));
    EXPECT_FALSE(c.place_bar(2, 0x1'0000'0000));  // 32-bit BAR above 4 GiB
    // Capabilities must fit.
    std::vector<uint8_t> big(200), mask(200);
    EXPECT_FALSE(c.add_capability(kCapabilityVendor, big, mask));
    EXPECT_FALSE(
        c.add_capability(kCapabilityVendor, std::span(big).first(4), std::span(mask).first(3)));
}

TEST(Pci, BusHoldsThirtyOneDevices) {
    PciBus bus;
    for (uint32_t i = 1; i < kMaxDevices; ++i)
        EXPECT_EQ(bus.add(std::make_shared<TestFunction>()).value(), i);
    EXPECT_FALSE(bus.add(std::make_shared<TestFunction>()));
}

TEST(Pci, SnapshotKeepsWhatTheGuestSet) {
    auto a = std::make_shared<TestFunction>();
    const uint8_t cmd[2] = {kCommandMemory, 0};
    a->config_write(kCommand, cmd);
    const uint32_t bar = 0xd000'0000;
    a->config_write(kBar0, std::span(reinterpret_cast<const uint8_t*>(&bar), 4));
    snapshot::Encoder e;
    a->save(e);
    std::vector<uint8_t> bytes = e.data();
    // A file that claims another vendor: the identity stays this build's.
    bytes[4] = 0x34;  // after the u32 length: vendor ID's low byte
    auto b = std::make_shared<TestFunction>();
    snapshot::Decoder d(bytes, "pci");
    b->restore(d);
    ASSERT_TRUE(d.finish());
    uint8_t v[4];
    b->config_read(kVendorId, v);
    EXPECT_EQ(v[0], 0xf4);
    EXPECT_EQ(b->decoded(0), 0xd000'0000u);
}

// ---- ivshmem ----

struct Line final : IrqLine {
    void set_level(bool l) override {
        level = l;
        ++changes;
    }
    bool level = false;
    int changes = 0;
};

struct Shm {
    explicit Shm(bool doorbells, uint16_t peer = 3) {
        IvshmemConfig c;
        c.region_size = 16 << 20;
        c.doorbells = doorbells;
        c.peer = peer;
        c.vectors = 4;
        line = std::make_shared<Line>();
        dev = Ivshmem::create(
                  c, line,
                  [this](uint16_t p, uint16_t v) {
                      rung.push_back({p, v});
                  },
                  [this](uint16_t v, const MsiMessage& m) {
                      sent.push_back({v, m});
                  })
                  .value();
        slot = g.bus->add(dev).value();
        g.write(slot, kBar0, 0xe000'0000);
        g.write(slot, kBar0 + 4, 0xe000'1000);
        g.write(slot, kBar0 + 8, 0);
        g.write(slot, kBar0 + 12, 0x8);  // BAR2 at 32 GiB
        g.write(slot, kCommand, kCommandMemory, 2);
    }
    uint32_t reg(uint32_t offset) {
        uint32_t v = 0;
        EXPECT_TRUE(g.bus->bar_read(false, 0xe000'0000 + offset,
                                    std::span(reinterpret_cast<uint8_t*>(&v), 4)));
        return v;
    }
    void set(uint32_t offset, uint32_t v) {
        EXPECT_TRUE(g.bus->bar_write(false, 0xe000'0000 + offset,
                                     std::span(reinterpret_cast<const uint8_t*>(&v), 4)));
    }
    Guest g;
    std::shared_ptr<Line> line;
    std::shared_ptr<Ivshmem> dev;
    uint32_t slot = 0;
    std::vector<std::pair<uint16_t, uint16_t>> rung;
    std::vector<std::pair<uint16_t, MsiMessage>> sent;
};

TEST(Ivshmem, LooksLikeQemusToTheGuest) {
    Shm s(true);
    EXPECT_EQ(s.g.read(s.slot, kVendorId), 0x1110'1af4u);
    EXPECT_EQ(s.g.read(s.slot, 0x08), 0x0500'0001u);  // class RAM, revision 1
    EXPECT_EQ(s.g.read(s.slot, kSubsystemVendorId), 0x1100'1af4u);
    EXPECT_EQ(s.g.read(s.slot, kInterruptPin, 1), 1u);
    // BAR sizes as a kernel finds them.
    s.g.write(s.slot, kBar0, 0xffff'ffff);
    EXPECT_EQ(s.g.read(s.slot, kBar0), 0xffff'ff00u);
    s.g.write(s.slot, kBar0 + 4, 0xffff'ffff);
    EXPECT_EQ(s.g.read(s.slot, kBar0 + 4), 0xffff'f000u);
    s.g.write(s.slot, kBar0 + 8, 0xffff'ffff);
    s.g.write(s.slot, kBar0 + 12, 0xffff'ffff);
    EXPECT_EQ(s.g.read(s.slot, kBar0 + 8), 0xff00'0000u | 0b1100u);  // 16 MiB, 64-bit, prefetch
    EXPECT_EQ(s.g.read(s.slot, kBar0 + 12), 0xffff'ffffu);
    EXPECT_EQ(s.g.read(s.slot, kFirstCapability, 1), kCapabilityMsix);
    EXPECT_EQ(s.g.read(s.slot, kFirstCapability + 2, 2), 3u);  // 4 vectors
}

TEST(Ivshmem, PlainHasNoDoorbellsNoMsix) {
    Shm s(false);
    EXPECT_EQ(s.reg(kIvshmemIvPosition), 0xffff'ffffu);
    EXPECT_EQ(s.g.read(s.slot, kCapabilities, 1), 0u);
    EXPECT_EQ(s.g.read(s.slot, kBar0 + 4), 0u);  // no BAR1
    s.set(kIvshmemDoorbell, 0x0001'0000);
    EXPECT_TRUE(s.rung.empty());
}

TEST(Ivshmem, RegistersAndDoorbell) {
    Shm s(true, 7);
    EXPECT_EQ(s.reg(kIvshmemIvPosition), 7u);
    s.set(kIvshmemIvPosition, 9);  // read-only
    EXPECT_EQ(s.reg(kIvshmemIvPosition), 7u);
    s.set(kIvshmemDoorbell, (2u << 16) | 3u);
    s.set(kIvshmemDoorbell, (65535u << 16) | 0x1ff);  // a wild one: the VMM drops it
    ASSERT_EQ(s.rung.size(), 2u);
    EXPECT_EQ(s.rung[0], (std::pair<uint16_t, uint16_t>{2, 3}));
    EXPECT_EQ(s.rung[1], (std::pair<uint16_t, uint16_t>{65535, 0xff}));
    EXPECT_EQ(s.reg(kIvshmemDoorbell), 0u);  // write-only
    // Only aligned 32-bit accesses do anything.
    const uint16_t half = 1;
    s.g.bus->bar_write(false, 0xe000'000c, std::span(reinterpret_cast<const uint8_t*>(&half), 2));
    s.g.bus->bar_write(false, 0xe000'000d, std::span(reinterpret_cast<const uint8_t*>(&half), 2));
    EXPECT_EQ(s.rung.size(), 2u);
    EXPECT_EQ(s.dev->doorbell_address(), 0xe000'000cu);
    s.g.write(s.slot, kCommand, 0, 2);
    EXPECT_EQ(s.dev->doorbell_address(), PciFunction::kNotDecoded);
}

// INTx, as uio_pci_generic drives it: the interrupt status bit in config space says "mine",
// the command register's INTx disable masks it, IntrStatus is cleared by reading it.
TEST(Ivshmem, IntxFollowsMaskStatusAndDisable) {
    Shm s(true);
    s.dev->notify(0);
    EXPECT_FALSE(s.line->level);  // IntrMask is 0
    EXPECT_EQ(s.g.read(s.slot, kStatus, 2) & kStatusInterrupt, 0u);
    s.set(kIvshmemIntrMask, 1);
    EXPECT_TRUE(s.line->level);
    EXPECT_NE(s.g.read(s.slot, kStatus, 2) & kStatusInterrupt, 0u);
    s.g.write(s.slot, kCommand, kCommandMemory | kCommandIntxDisable, 2);
    EXPECT_FALSE(s.line->level);
    EXPECT_NE(s.g.read(s.slot, kStatus, 2) & kStatusInterrupt, 0u);  // still pending
    s.g.write(s.slot, kCommand, kCommandMemory, 2);
    EXPECT_TRUE(s.line->level);
    EXPECT_EQ(s.reg(kIvshmemIntrStatus), 1u);  // read: cleared
    EXPECT_FALSE(s.line->level);
    EXPECT_EQ(s.reg(kIvshmemIntrStatus), 0u);
    EXPECT_EQ(s.g.read(s.slot, kStatus, 2) & kStatusInterrupt, 0u);
    EXPECT_TRUE(s.sent.empty());
}

TEST(Ivshmem, MsixWhenTheDriverEnablesIt) {
    Shm s(true);
    const uint32_t entry = 0xe000'1000 + 16 * 2;  // vector 2 in BAR1
    auto put = [&](uint64_t a, uint32_t v) {
        s.g.bus->bar_write(false, a, std::span(reinterpret_cast<const uint8_t*>(&v), 4));
    };
    put(entry, 0xfee0'1000);
    put(entry + 8, 0x31);
    put(entry + 12, 0);  // unmasked
    s.g.write(s.slot, kFirstCapability + 2, kMsixEnable, 2);
    s.set(kIvshmemIntrMask, 1);
    s.dev->notify(2);
    ASSERT_EQ(s.sent.size(), 1u);
    EXPECT_EQ(s.sent[0].first, 2);
    EXPECT_EQ(s.sent[0].second.address, 0xfee0'1000u);
    EXPECT_EQ(s.sent[0].second.data, 0x31u);
    EXPECT_FALSE(s.line->level);  // MSI-X on: no INTx
    s.dev->notify(1);             // masked vector: pending in the PBA
    uint32_t pba = 0;
    s.g.bus->bar_read(false, 0xe000'1800, std::span(reinterpret_cast<uint8_t*>(&pba), 4));
    EXPECT_EQ(pba, 0b10u);
}

TEST(Ivshmem, SnapshotAndLimits) {
    Shm a(true);
    a.set(kIvshmemIntrMask, 1);
    a.dev->notify(0);
    snapshot::Encoder e;
    a.dev->save(e);
    Shm b(true);
    snapshot::Decoder d(e.data(), "ivshmem");
    b.dev->restore(d);
    ASSERT_TRUE(d.finish());
    EXPECT_EQ(b.reg(kIvshmemIntrMask), 1u);
    EXPECT_TRUE(b.line->level);
    IvshmemConfig c;
    c.region_size = 0x3000;
    EXPECT_FALSE(Ivshmem::create(c, nullptr, {}, [](uint16_t, const MsiMessage&) {}));
    c.region_size = 0x1000;
    c.vectors = 0;
    EXPECT_FALSE(Ivshmem::create(c, nullptr, {}, [](uint16_t, const MsiMessage&) {}));
    c.vectors = kIvshmemMaxVectors + 1;
    EXPECT_FALSE(Ivshmem::create(c, nullptr, {}, [](uint16_t, const MsiMessage&) {}));
    c.doorbells = false;
    EXPECT_TRUE(Ivshmem::create(c, nullptr, {}, [](uint16_t, const MsiMessage&) {}));
}

TEST(Ivshmem, MovedRegionThroughTheBusAndReadOnlyWrites) {
    // The VMM maps BAR2 where it placed it; a guest that moves the BAR reaches the region
    // through the bus (the model copies), and a read-only borrower's writes are dropped.
    std::vector<uint8_t> region(4096, 0);
    region[8] = 0x5a;
    for (bool readonly : {false, true}) {
        region[0x10] = region[0x11] = 0;
        IvshmemConfig c;
        c.region_size = region.size();
        c.doorbells = false;
        c.region = region.data();
        c.region_readonly = readonly;
        auto dev = Ivshmem::create(c, nullptr, {}, {}).value();
        Guest g;
        const uint32_t slot = g.bus->add(dev).value();
        g.write(slot, kBar0 + 8, 0x8000'0000);
        g.write(slot, kBar0 + 12, 0);
        g.write(slot, kCommand, kCommandMemory, 2);
        uint8_t b[4] = {};
        ASSERT_TRUE(g.bus->bar_read(false, 0x8000'0008, std::span(b, 1)));
        EXPECT_EQ(b[0], 0x5a);
        const uint8_t w[2] = {1, 2};
        ASSERT_TRUE(g.bus->bar_write(false, 0x8000'0010, std::span(w, 2)));
        EXPECT_EQ(region[0x10], readonly ? 0 : 1) << readonly;
        EXPECT_EQ(region[0x11], readonly ? 0 : 2) << readonly;
        // Past the BAR: not this device's.
        EXPECT_FALSE(g.bus->bar_read(false, 0x8000'0ffe, std::span(b, 4)));
    }
}

TEST(Ivshmem, ResetPutsThePowerOnStateBack) {
    Shm s(true);
    s.dev->mark_power_on();
    s.set(kIvshmemIntrMask, 1);
    s.dev->notify(0);
    EXPECT_TRUE(s.line->level);
    s.g.write(s.slot, kBar0, 0xd000'0000);
    s.dev->reset();
    EXPECT_FALSE(s.line->level);  // the line drops with the status
    EXPECT_EQ(s.reg(kIvshmemIntrMask), 0u);
    EXPECT_EQ(s.reg(kIvshmemIntrStatus), 0u);
    EXPECT_EQ(s.dev->decoded(0), 0xe000'0000u);  // BAR0 back where it was placed
    EXPECT_FALSE(s.dev->msix()->enabled());
}

}  // namespace
}  // namespace vireo::devices::pci
