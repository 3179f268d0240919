// libFuzzer target: the user-space interrupt controllers as a hostile guest reaches them — the
// I/O APIC's MMIO window (any offset and width), the 8259A pair's and the 8254's ports (any port
// near theirs, any value), the local APIC's register page and MSRs (any offset, width, MSR and
// value, in xAPIC and x2APIC mode), device lines, EOIs, interrupt acknowledges, CR8, the clock
// moving and the PIT's and the local APIC's timers firing, snapshots saved and restored in
// between (and hostile snapshot bytes). Checks: the PIC's reported output matches what it last
// told its sink; the I/O APIC sends at most one message per pin per operation; the PIT never
// asks for a wake-up sooner than its minimum period after a guest's write; the local APIC never
// offers a vector at or below its processor priority, and never sends an IPI of a reserved
// delivery mode or an illegal fixed vector.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "devices/irqchip/ioapic.hpp"
#include "devices/irqchip/lapic.hpp"
#include "devices/irqchip/pic.hpp"
#include "devices/irqchip/pit.hpp"

using namespace vireo;
using namespace vireo::devices::irqchip;

namespace {

struct Input {
    const uint8_t* p;
    size_t n;
    bool empty() const { return n == 0; }
    uint8_t u8() {
        if (n == 0) return 0;
        --n;
        return *p++;
    }
    uint16_t u16() { return static_cast<uint16_t>(u8() | (u8() << 8)); }
};

struct Sinks final : MsiSink, OutputSink, TimerSink {
    void deliver(const MsiMessage& m) override {
        if ((m.address & 0xfff00000u) != 0xfee00000u) abort();
        ++messages;
    }
    void set_output(bool a) override { output = a; }
    void arm(uint64_t d) override {
        deadline = d;
        ++arms;
    }
    void irq0_edge() override { ++edges; }
    unsigned messages = 0;
    bool output = false;
    uint64_t deadline = 0;
    unsigned edges = 0;
    unsigned arms = 0;
};

struct ApicSinks final : LapicSink {
    void send_ipi(const Ipi& ipi) override {
        if (ipi.mode == 3 || ipi.mode == 7) abort();
        if ((ipi.mode == Ipi::Fixed || ipi.mode == Ipi::LowestPriority) && ipi.vector < 16) abort();
        ++ipis;
    }
    void eoi_broadcast(uint8_t) override { ++eois; }
    void arm_timer(uint64_t d) override { deadline = d; }
    uint64_t tsc_to_ns(uint64_t tsc) override { return tsc; }
    void kick() override {}
    unsigned ipis = 0, eois = 0;
    uint64_t deadline = 0;
};

// The local APIC's registers the guest reaches through the page or MSRs (its PPR read back).
uint32_t apic_ppr(Lapic& a) {
    uint64_t v = 0;
    if (a.read_msr(0x80a, v)) return static_cast<uint32_t>(v);
    uint8_t b[4] = {};
    a.read(Lapic::kPpr, b);
    return static_cast<uint32_t>(b[0]);
}

struct FakeClock final : Clock {
    uint64_t now_ns() const override { return now; }
    uint64_t now = 1'000'000'000;
};

template <typename T, typename... Args>
std::unique_ptr<T> round_trip(const T& from, Args&... args) {
    snapshot::Encoder e;
    from.save(e);
    auto to = std::make_unique<T>(args...);
    snapshot::Decoder d(e.data(), "fuzz");
    to->restore(d);
    if (!d.finish()) abort();  // what save() wrote, restore() takes
    return to;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    Sinks sinks;
    FakeClock clock;
    auto ioapic = std::make_unique<Ioapic>(sinks);
    auto pic = std::make_unique<Pic>(sinks);
    auto pit = std::make_unique<Pit>(clock, sinks);
    ApicSinks apic_sinks;
    auto lapic = std::make_unique<Lapic>(0, true, clock, apic_sinks);
    Input in{data, size};
    uint8_t buf[8];
    while (!in.empty()) {
        const uint8_t op = in.u8();
        const unsigned before = sinks.messages;
        switch (op % 17) {
            case 0: {  // I/O APIC MMIO write
                const uint16_t off = in.u16() & 0xfff;
                const size_t len = 1 + in.u8() % 8;
                for (size_t i = 0; i < len; ++i)
                    buf[i] = in.u8();
                ioapic->write(off, {buf, len});
                break;
            }
            case 1: {
                const uint16_t off = in.u16() & 0xfff;
                ioapic->read(off, {buf, 1 + size_t{in.u8()} % 8});
                break;
            }
            case 2:
                if (const uint8_t b = in.u8(); b & 0x80)
                    ioapic->pulse(b % 32);
                else
                    ioapic->set_irq(b % 32, in.u8() & 1);
                break;
            case 3:
                ioapic->end_of_interrupt(in.u8());
                break;
            case 4: {  // PIC ports, and their neighbours
                static constexpr uint16_t kPorts[] = {0x20, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1, 0x22};
                const uint8_t sel = in.u8();
                const uint8_t value = in.u8();
                pic->port_write(kPorts[sel % 7], value);
                break;
            }
            case 5: {
                static constexpr uint16_t kPorts[] = {0x20, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1};
                pic->port_read(kPorts[in.u8() % 6]);
                break;
            }
            case 6:
                pic->set_irq(in.u8() % 20, in.u8() & 1);
                break;
            case 7:
                pic->acknowledge();
                break;
            case 8: {  // PIT ports
                static constexpr uint16_t kPorts[] = {0x40, 0x41, 0x42, 0x43, 0x61, 0x44};
                const uint8_t sel = in.u8();
                const uint8_t value = in.u8();
                const unsigned arms = sinks.arms;
                pit->write(kPorts[sel % 6], {&value, 1});
                if (sinks.arms != arms && sinks.deadline != 0 &&
                    sinks.deadline < clock.now + Pit::kMinPeriodNs)
                    abort();
                break;
            }
            case 9: {
                static constexpr uint16_t kPorts[] = {0x40, 0x41, 0x42, 0x43, 0x61};
                pit->read(kPorts[in.u8() % 5], {buf, 1});
                break;
            }
            case 10:  // time passes; the timer fires if due
                clock.now += uint64_t{in.u16()} * 1000 * (1 + in.u8() % 64);
                if (sinks.deadline != 0 && clock.now >= sinks.deadline) pit->expired();
                break;
            case 11:  // snapshots: a round trip, or hostile bytes into a fresh device
                if (in.u8() & 1) {
                    ioapic = round_trip(*ioapic, static_cast<MsiSink&>(sinks));
                    pic = round_trip(*pic, static_cast<OutputSink&>(sinks));
                    pit = round_trip(*pit, static_cast<const Clock&>(clock),
                                     static_cast<TimerSink&>(sinks));
                    {
                        snapshot::Encoder e;
                        lapic->save(e);
                        auto to = std::make_unique<Lapic>(0, true, clock, apic_sinks);
                        snapshot::Decoder d(e.data(), "fuzz");
                        to->restore(d);
                        if (!d.finish()) abort();
                        lapic = std::move(to);
                    }
                } else {
                    const size_t len = std::min<size_t>(in.u8(), in.n);
                    Sinks other;  // the scratch devices' own
                    snapshot::Decoder d({in.p, len}, "fuzz");
                    Ioapic scratch(other);
                    scratch.restore(d);
                    snapshot::Decoder d2({in.p, len}, "fuzz");
                    Pic scratch2(other);
                    scratch2.restore(d2);
                    snapshot::Decoder d3({in.p, len}, "fuzz");
                    Pit scratch3(clock, other);
                    scratch3.restore(d3);
                    ApicSinks other_apic;
                    snapshot::Decoder d4({in.p, len}, "fuzz");
                    Lapic scratch4(0, true, clock, other_apic);
                    scratch4.restore(d4);
                    in.p += len, in.n -= len;
                }
                break;
            case 12: {  // the local APIC's page: any offset and width
                const uint16_t off = in.u16() & 0xfff;
                const size_t len = 1 + in.u8() % 8;
                for (size_t i = 0; i < len; ++i)
                    buf[i] = in.u8();
                if (in.u8() & 1)
                    lapic->write(off, {buf, len});
                else
                    lapic->read(off, {buf, len});
                break;
            }
            case 13: {  // its MSRs: the x2APIC range and its neighbours, APIC base, TSC deadline
                static constexpr uint32_t kMsrs[] = {Lapic::kApicBaseMsr, Lapic::kTscDeadlineMsr,
                                                     0x7ff, 0x900};
                const uint8_t sel = in.u8();
                const uint32_t msr = sel < 0xc0 ? 0x800 + in.u8() : kMsrs[sel % 4];
                uint64_t value = 0;
                for (int i = 0; i < 8; ++i)
                    value = value << 8 | in.u8();
                if (in.u8() & 1)
                    (void)lapic->write_msr(msr, value);
                else
                    (void)lapic->read_msr(msr, value);
                break;
            }
            case 14:  // interrupts in, the CPU taking one, EOI, CR8
                switch (in.u8() % 4) {
                    case 0:
                        lapic->accept(in.u8(), in.u8() & 1);
                        break;
                    case 1:
                        (void)lapic->acknowledge();
                        break;
                    case 2:
                        lapic->set_cr8(in.u8());
                        break;
                    default:
                        lapic->reset();
                        break;
                }
                break;
            case 15:  // the local APIC's timer fires if due
                if (apic_sinks.deadline != 0 && clock.now >= apic_sinks.deadline)
                    lapic->timer_expired();
                break;
            case 16:
                (void)lapic->accepts_extint();
                (void)lapic->cr8();
                break;
        }
        if (const auto v = lapic->pending();
            v && (*v & 0xf0u) <= (apic_ppr(*lapic) & 0xf0u) && apic_ppr(*lapic) != 0)
            abort();
        if (sinks.messages - before > Ioapic::kPins) abort();
        if (pic->output() != sinks.output) abort();
    }
    return 0;
}
