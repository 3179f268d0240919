// One vCPU's local APIC, as the user-space interrupt model emulates it (issue 22: `--irqchip
// userspace`): the xAPIC register page (MMIO at 0xfee00000) and the x2APIC's MSRs (0x800-0x8ff),
// IA32_APIC_BASE and IA32_TSC_DEADLINE; the IRR, ISR and TMR, task and processor priority
// (TPR/CR8, PPR), EOI (a level-triggered vector's EOI goes to the I/O APIC unless the guest
// suppressed the broadcast), the ICR (IPIs: fixed, lowest priority, NMI, INIT, startup, with
// shorthands and logical or physical destinations, handed to the VMM to route), self-IPIs, the
// LVT entries and the timer (one-shot, periodic, TSC-deadline) on a 1 GHz bus clock (KVM's).
// The vCPU's side: pending() (the vector the CPU would take now), acknowledge(), and whether
// LINT0 takes the 8259s' ExtINT.
//
// A guest-facing state machine: any offset, width, MSR and value is accepted (what the guest
// must not do gets #GP or is ignored, as on hardware); fuzzed by fuzz/irqchip_fuzz.cpp.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <optional>
#include <span>

#include "devices/device.hpp"
#include "devices/irqchip/pit.hpp"  // Clock

namespace vireo::devices::irqchip {

/// An interprocessor interrupt the guest asked for by writing the ICR.
struct Ipi {
    enum Mode : uint8_t { Fixed = 0, LowestPriority = 1, Smi = 2, Nmi = 4, Init = 5, Startup = 6 };
    enum Shorthand : uint8_t { None = 0, Self = 1, AllIncludingSelf = 2, AllExcludingSelf = 3 };
    uint32_t source = 0;       ///< the sender's APIC ID
    uint32_t destination = 0;  ///< APIC ID or logical mask (xAPIC: 8 bits, x2APIC: 32)
    uint8_t vector = 0;
    Mode mode = Fixed;
    Shorthand shorthand = None;
    bool logical = false;
    bool level = false;   ///< level-triggered (INIT de-assert is level with assert clear)
    bool assert = true;   ///< the level bit (only INIT de-assert clears it)
    bool x2apic = false;  ///< sent in x2APIC mode (32-bit destinations)
};

/// What a local APIC asks of the VMM. Called without the APIC's lock held.
class LapicSink {
  public:
    virtual ~LapicSink() = default;
    /// Routes an IPI to its destinations (the sender's own APIC included for shorthands 1 and
    /// 2, and for a destination that names it).
    virtual void send_ipi(const Ipi& ipi) = 0;
    /// The EOI of a level-triggered `vector`: the I/O APIC's remote IRR.
    virtual void eoi_broadcast(uint8_t vector) = 0;
    /// Calls Lapic::timer_expired() at `deadline_ns` (Clock time); 0: no timer.
    virtual void arm_timer(uint64_t deadline_ns) = 0;
    /// The Clock time at which the guest's TSC reaches `tsc` (the TSC-deadline timer).
    virtual uint64_t tsc_to_ns(uint64_t tsc) = 0;
    /// An interrupt became deliverable (pending() changed): the vCPU should look (leave HLT).
    virtual void kick() = 0;
};

class Lapic final : public Device {
  public:
    static constexpr uint64_t kBase = 0xfee00000;
    static constexpr uint64_t kSize = 0x1000;
    static constexpr uint32_t kFirstMsr = 0x800, kLastMsr = 0x8ff;
    static constexpr uint32_t kApicBaseMsr = 0x1b, kTscDeadlineMsr = 0x6e0;
    // IA32_APIC_BASE bits.
    static constexpr uint64_t kBaseBsp = 1u << 8, kBaseX2apic = 1u << 10, kBaseEnable = 1u << 11;
    // Register offsets (xAPIC; the x2APIC MSR is 0x800 + offset / 16).
    static constexpr uint32_t kId = 0x20, kVersion = 0x30, kTpr = 0x80, kApr = 0x90, kPpr = 0xa0,
                              kEoi = 0xb0, kRrd = 0xc0, kLdr = 0xd0, kDfr = 0xe0, kSvr = 0xf0,
                              kIsr = 0x100, kTmr = 0x180, kIrr = 0x200, kEsr = 0x280,
                              kLvtCmci = 0x2f0, kIcrLow = 0x300, kIcrHigh = 0x310,
                              kLvtTimer = 0x320, kLvtThermal = 0x330, kLvtPerf = 0x340,
                              kLvtLint0 = 0x350, kLvtLint1 = 0x360, kLvtError = 0x370,
                              kTimerInitial = 0x380, kTimerCurrent = 0x390, kTimerDivide = 0x3e0,
                              kSelfIpi = 0x3f0;
    static constexpr uint32_t kLvtMasked = 1u << 16;
    static constexpr uint32_t kSvrEnable = 1u << 8, kSvrSuppressEoiBroadcast = 1u << 12;
    /// Version 0x14 (integrated), six LVT entries, EOI-broadcast suppression.
    static constexpr uint32_t kVersionValue = 0x14 | (5u << 16) | (1u << 24);

    /// `clock` and `sink` must outlive the APIC. `bsp`: the bootstrap processor's.
    Lapic(uint32_t id, bool bsp, const Clock& clock, LapicSink& sink);

    const char* name() const noexcept override { return "lapic"; }
    /// The xAPIC register page (`offset` from kBase); reads 0 and ignores writes unless the
    /// APIC is enabled in xAPIC mode.
    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;
    /// RDMSR / WRMSR of IA32_APIC_BASE, IA32_TSC_DEADLINE and the x2APIC range; false: #GP.
    bool read_msr(uint32_t msr, uint64_t& value);
    bool write_msr(uint32_t msr, uint64_t value);

    /// An interrupt for this APIC (the I/O APIC's message, an MSI, an IPI): a fixed or
    /// lowest-priority `vector`, edge or level. Dropped while the APIC is disabled, and for
    /// vectors 0-15 (an illegal-vector error).
    void accept(uint8_t vector, bool level);
    /// The vector the CPU takes now (highest requested above the processor priority), if any.
    std::optional<uint8_t> pending() const;
    /// The CPU takes pending(): it moves from IRR to ISR. Nothing if none is pending.
    std::optional<uint8_t> acknowledge();
    /// CR8 (TPR bits 7:4) as the CPU sees it, and its writes.
    uint8_t cr8() const;
    void set_cr8(uint8_t value);
    /// LINT0 takes the 8259s' INTR (unmasked, ExtINT), or the APIC is off (the 8259s then go
    /// straight to the CPU).
    bool accepts_extint() const;
    /// The VMM's timer for this APIC fired: the LVT timer's interrupt, and the next deadline.
    void timer_expired();
    /// INIT (or power-on): every register to its reset value; the ID and BSP flag stay.
    void reset();
    /// LINT0 to ExtINT and LINT1 to NMI, unmasked: the BSP's virtual-wire wiring as firmware
    /// leaves it for the kernel (the 8259s reach the CPU through LINT0).
    void wire_lints();

    uint32_t id() const noexcept { return id_; }
    /// Whether a logical destination `mask` (xAPIC flat or cluster, x2APIC cluster) names it.
    bool matches_logical(uint32_t mask, bool x2apic) const;

    void save(snapshot::Encoder& e) const override;
    void restore(snapshot::Decoder& d) override;

  private:
    struct Effects {  // collected under the lock, done after it
        std::optional<Ipi> ipi;
        std::optional<uint8_t> eoi;
        std::optional<uint64_t> arm;
        bool kick = false;
    };
    void power_on();  // every register to its reset value (the lock held, or not yet shared)
    bool x2apic() const { return (base_ & kBaseX2apic) != 0; }
    bool enabled() const { return (base_ & kBaseEnable) != 0 && (reg(kSvr) & kSvrEnable) != 0; }
    uint32_t& reg(uint32_t offset) { return regs_[offset >> 4]; }
    uint32_t reg(uint32_t offset) const { return regs_[offset >> 4]; }
    bool test(uint32_t base, uint8_t v) const {
        return (reg(base + (v >> 5) * 16) >> (v & 31)) & 1;
    }
    void set(uint32_t base, uint8_t v, bool on);
    std::optional<uint8_t> highest(uint32_t base) const;
    uint32_t ppr() const;
    std::optional<uint8_t> pending_locked() const;
    uint32_t read_register(uint32_t offset) const;
    /// Returns false for a register the guest may not write (x2APIC: #GP).
    bool write_register(uint32_t offset, uint32_t value, Effects& fx);
    void accept_locked(uint8_t vector, bool level, Effects& fx);
    void eoi_locked(Effects& fx);
    void send_icr(uint32_t low, uint32_t high, Effects& fx);
    uint32_t timer_mode() const { return (reg(kLvtTimer) >> 17) & 3; }
    uint64_t timer_period_ns() const;
    uint32_t current_count(uint64_t now) const;
    void start_timer(uint64_t now, Effects& fx);
    void finish(const Effects& fx);

    const uint32_t id_;
    const bool bsp_;
    const Clock& clock_;
    LapicSink& sink_;
    mutable std::mutex mu_;
    uint64_t base_ = 0;
    std::array<uint32_t, 64> regs_{};
    uint64_t timer_start_ns_ = 0;  // one-shot/periodic: when the count was loaded
    uint64_t deadline_ns_ = 0;     // the timer's next expiry (0: none)
    uint64_t tsc_deadline_ = 0;    // IA32_TSC_DEADLINE as written
};

}  // namespace vireo::devices::irqchip
