#include "devices/irqchip/lapic.hpp"

#include <algorithm>
#include <cstring>

namespace vireo::devices::irqchip {

namespace {

constexpr uint32_t kIcrDeliveryStatus = 1u << 12;
constexpr uint32_t kLvtTimerBits = 0x700ff;  // vector, mask, mode (one-shot/periodic/deadline)
constexpr uint32_t kLvtLintBits = 0x1a7ff;   // vector, delivery mode, polarity, trigger, mask
constexpr uint32_t kLvtOtherBits = 0x107ff;  // vector, delivery mode, mask
constexpr uint32_t kTimerPeriodic = 1, kTimerDeadline = 2;  // LVT timer modes (0: one-shot)
constexpr uint32_t kEsrReceiveIllegal = 1u << 6, kEsrSendIllegal = 1u << 5;
/// A periodic timer fires at most this often (10 kHz; KVM's floor is 200 µs by default).
constexpr uint64_t kMinPeriodNs = 100'000;
constexpr uint64_t kBaseAddressMask = 0xffffff000ull;  // bits 12-35
constexpr uint64_t kBaseValid =
    kBaseAddressMask | Lapic::kBaseBsp | Lapic::kBaseX2apic | Lapic::kBaseEnable;

constexpr uint32_t kLvts[] = {Lapic::kLvtCmci, Lapic::kLvtTimer, Lapic::kLvtThermal,
                              Lapic::kLvtPerf, Lapic::kLvtLint0, Lapic::kLvtLint1,
                              Lapic::kLvtError};

// The registers an x2APIC MSR reaches (offset = (msr - 0x800) * 16); others are #GP.
bool x2apic_register(uint32_t offset, bool write) {
    switch (offset) {
        case Lapic::kId:
        case Lapic::kVersion:
        case Lapic::kPpr:
        case Lapic::kLdr:
        case Lapic::kTimerCurrent:
            return !write;
        case Lapic::kEoi:
        case Lapic::kSelfIpi:
            return write;
        case Lapic::kTpr:
        case Lapic::kSvr:
        case Lapic::kEsr:
        case Lapic::kLvtCmci:
        case Lapic::kIcrLow:
        case Lapic::kLvtTimer:
        case Lapic::kLvtThermal:
        case Lapic::kLvtPerf:
        case Lapic::kLvtLint0:
        case Lapic::kLvtLint1:
        case Lapic::kLvtError:
        case Lapic::kTimerInitial:
        case Lapic::kTimerDivide:
            return true;
        default:
            return !write && offset >= Lapic::kIsr && offset < Lapic::kIrr + 0x80;
    }
}

}  // namespace

Lapic::Lapic(uint32_t id, bool bsp, const Clock& clock, LapicSink& sink)
    : id_(id), bsp_(bsp), clock_(clock), sink_(sink) {
    power_on();
}

void Lapic::power_on() {
    base_ = kBase | kBaseEnable | (bsp_ ? kBaseBsp : 0);
    regs_.fill(0);
    reg(kId) = id_ << 24;
    reg(kVersion) = kVersionValue;
    for (uint32_t lvt : kLvts)
        reg(lvt) = kLvtMasked;
    reg(kDfr) = 0xffffffff;
    reg(kSvr) = 0xff;
    timer_start_ns_ = deadline_ns_ = tsc_deadline_ = 0;
}

void Lapic::wire_lints() {
    std::lock_guard lock(mu_);
    reg(kLvtLint0) = 7u << 8;  // ExtINT
    reg(kLvtLint1) = 4u << 8;  // NMI
}

void Lapic::reset() {
    Effects fx;
    {
        std::lock_guard lock(mu_);
        if (deadline_ns_ != 0) fx.arm = 0;
        power_on();
    }
    finish(fx);
}

void Lapic::set(uint32_t base, uint8_t v, bool on) {
    uint32_t& word = reg(base + (v >> 5) * 16);
    const uint32_t bit = 1u << (v & 31);
    word = on ? word | bit : word & ~bit;
}

std::optional<uint8_t> Lapic::highest(uint32_t base) const {
    for (int i = 7; i >= 0; --i) {
        const uint32_t word = reg(base + static_cast<uint32_t>(i) * 16);
        if (word != 0) return static_cast<uint8_t>(i * 32 + 31 - __builtin_clz(word));
    }
    return std::nullopt;
}

uint32_t Lapic::ppr() const {
    const uint32_t tpr = reg(kTpr) & 0xff;
    const uint32_t isrv = highest(kIsr).value_or(0);
    return (tpr & 0xf0) >= (isrv & 0xf0) ? tpr : isrv & 0xf0;
}

std::optional<uint8_t> Lapic::pending_locked() const {
    if ((base_ & kBaseEnable) == 0) return std::nullopt;
    const auto v = highest(kIrr);
    if (!v || (*v & 0xf0u) <= (ppr() & 0xf0)) return std::nullopt;
    return v;
}

std::optional<uint8_t> Lapic::pending() const {
    std::lock_guard lock(mu_);
    return pending_locked();
}

std::optional<uint8_t> Lapic::acknowledge() {
    std::lock_guard lock(mu_);
    const auto v = pending_locked();
    if (v) {
        set(kIrr, *v, false);
        set(kIsr, *v, true);
    }
    return v;
}

uint8_t Lapic::cr8() const {
    std::lock_guard lock(mu_);
    return static_cast<uint8_t>((reg(kTpr) >> 4) & 0xf);
}

void Lapic::set_cr8(uint8_t value) {
    Effects fx;
    {
        std::lock_guard lock(mu_);
        const uint32_t tpr = (value & 0xfu) << 4;
        if (tpr == reg(kTpr)) return;  // (no kick: the vCPU writes back what it had)
        reg(kTpr) = tpr;
        fx.kick = pending_locked().has_value();
    }
    finish(fx);
}

bool Lapic::accepts_extint() const {
    std::lock_guard lock(mu_);
    if ((base_ & kBaseEnable) == 0) return true;
    const uint32_t lvt0 = reg(kLvtLint0);
    return (lvt0 & kLvtMasked) == 0 && ((lvt0 >> 8) & 7) == 7;
}

void Lapic::accept(uint8_t vector, bool level) {
    Effects fx;
    {
        std::lock_guard lock(mu_);
        accept_locked(vector, level, fx);
    }
    finish(fx);
}

void Lapic::accept_locked(uint8_t vector, bool level, Effects& fx) {
    if (!enabled()) return;
    if (vector < 16) {
        reg(kEsr) |= kEsrReceiveIllegal;
        return;
    }
    set(kIrr, vector, true);
    set(kTmr, vector, level);
    fx.kick = pending_locked().has_value();
}

void Lapic::eoi_locked(Effects& fx) {
    const auto v = highest(kIsr);
    if (!v) return;
    set(kIsr, *v, false);
    if (test(kTmr, *v) && (reg(kSvr) & kSvrSuppressEoiBroadcast) == 0) fx.eoi = *v;
    fx.kick = pending_locked().has_value();
}

uint64_t Lapic::timer_period_ns() const {
    const uint32_t dcr = reg(kTimerDivide);
    const uint32_t index = (dcr & 3) | ((dcr >> 1) & 4);
    const uint64_t divisor = index == 7 ? 1 : uint64_t{2} << index;
    return uint64_t{reg(kTimerInitial)} * divisor;  // 1 GHz bus: a tick is a nanosecond
}

uint32_t Lapic::current_count(uint64_t now) const {
    const uint32_t initial = reg(kTimerInitial);
    if (initial == 0 || timer_mode() == kTimerDeadline) return 0;
    const uint64_t period = timer_period_ns();
    const uint64_t tick_ns = period / initial;  // the divisor
    const uint64_t ticks = (now > timer_start_ns_ ? now - timer_start_ns_ : 0) / tick_ns;
    if (timer_mode() == kTimerPeriodic) return static_cast<uint32_t>(initial - ticks % initial);
    return ticks >= initial ? 0 : static_cast<uint32_t>(initial - ticks);
}

void Lapic::start_timer(uint64_t now, Effects& fx) {
    if (timer_mode() == kTimerDeadline) return;
    timer_start_ns_ = now;
    if (reg(kTimerInitial) == 0) {
        deadline_ns_ = 0;
        fx.arm = 0;
        return;
    }
    uint64_t period = timer_period_ns();
    if (timer_mode() == kTimerPeriodic) period = std::max(period, kMinPeriodNs);
    deadline_ns_ = now + period;
    fx.arm = deadline_ns_;
}

void Lapic::timer_expired() {
    Effects fx;
    {
        std::lock_guard lock(mu_);
        const uint64_t now = clock_.now_ns();
        if (deadline_ns_ == 0) return;
        if (now < deadline_ns_) {  // early: wait on
            fx.arm = deadline_ns_;
        } else {
            const uint32_t lvt = reg(kLvtTimer);
            if ((lvt & kLvtMasked) == 0) accept_locked(static_cast<uint8_t>(lvt), false, fx);
            if (timer_mode() == kTimerPeriodic) {
                const uint64_t period = std::max(timer_period_ns(), kMinPeriodNs);
                deadline_ns_ += period;
                if (deadline_ns_ <= now) deadline_ns_ = now + period;  // no catching up
                fx.arm = deadline_ns_;
            } else {
                deadline_ns_ = 0;
                if (timer_mode() == kTimerDeadline) tsc_deadline_ = 0;
            }
        }
    }
    finish(fx);
}

uint32_t Lapic::read_register(uint32_t offset) const {
    switch (offset) {
        case kId:
            return x2apic() ? id_ : reg(kId);
        case kPpr:
            return ppr();
        case kLdr:
            return x2apic() ? ((id_ >> 4) << 16) | (1u << (id_ & 15)) : reg(kLdr);
        case kIcrLow:
            return reg(kIcrLow) & ~kIcrDeliveryStatus;  // always sent at once
        case kTimerCurrent:
            return current_count(clock_.now_ns());
        case kVersion:
        case kTpr:
        case kDfr:
        case kSvr:
        case kEsr:
        case kIcrHigh:
        case kTimerInitial:
        case kTimerDivide:
            return reg(offset);
        default:
            if (offset >= kIsr && offset < kIrr + 0x80) return reg(offset);
            if (std::find(std::begin(kLvts), std::end(kLvts), offset) != std::end(kLvts))
                return reg(offset);
            return 0;  // APR, RRD, EOI, self-IPI, reserved
    }
}

bool Lapic::write_register(uint32_t offset, uint32_t value, Effects& fx) {
    const bool x2 = x2apic();
    switch (offset) {
        case kId:
            if (x2) return false;
            reg(kId) = value & 0xff000000;
            return true;
        case kTpr:
            reg(kTpr) = value & 0xff;
            fx.kick = pending_locked().has_value();
            return true;
        case kEoi:
            if (x2 && value != 0) return false;
            eoi_locked(fx);
            return true;
        case kLdr:
            if (x2) return false;
            reg(kLdr) = value & 0xff000000;
            return true;
        case kDfr:
            if (x2) return false;
            reg(kDfr) = value | 0x0fffffff;
            return true;
        case kSvr:
            reg(kSvr) = value & (0xffu | kSvrEnable | kSvrSuppressEoiBroadcast);
            if ((value & kSvrEnable) == 0)
                for (uint32_t lvt : kLvts)
                    reg(lvt) |= kLvtMasked;
            return true;
        case kEsr:
            reg(kEsr) = 0;
            return true;
        case kIcrLow:
            reg(kIcrLow) = value & ~kIcrDeliveryStatus;
            if (!x2) send_icr(value, reg(kIcrHigh), fx);  // x2APIC: write_msr sends
            return true;
        case kIcrHigh:
            if (x2) return false;
            reg(kIcrHigh) = value & 0xff000000;
            return true;
        case kLvtTimer: {
            const uint32_t old_mode = timer_mode();
            uint32_t v = value & kLvtTimerBits;
            if (((v >> 17) & 3) == 3) v &= ~(3u << 17);  // reserved mode: one-shot
            if ((reg(kSvr) & kSvrEnable) == 0) v |= kLvtMasked;
            reg(kLvtTimer) = v;
            if (timer_mode() != old_mode) {  // a new mode stops the timer (as KVM)
                if (deadline_ns_ != 0) fx.arm = 0;
                deadline_ns_ = 0;
                tsc_deadline_ = 0;
                reg(kTimerInitial) = 0;
            }
            return true;
        }
        case kLvtLint0:
        case kLvtLint1:
        case kLvtCmci:
        case kLvtThermal:
        case kLvtPerf:
        case kLvtError: {
            uint32_t v =
                value & (offset == kLvtLint0 || offset == kLvtLint1 ? kLvtLintBits : kLvtOtherBits);
            if ((reg(kSvr) & kSvrEnable) == 0) v |= kLvtMasked;
            reg(offset) = v;
            return true;
        }
        case kTimerInitial:
            if (timer_mode() == kTimerDeadline) return true;  // ignored in that mode
            reg(kTimerInitial) = value;
            start_timer(clock_.now_ns(), fx);
            return true;
        case kTimerDivide:
            reg(kTimerDivide) = value & 0xb;
            if (deadline_ns_ != 0) start_timer(clock_.now_ns(), fx);
            return true;
        case kSelfIpi:
            if (!x2) return true;
            accept_locked(static_cast<uint8_t>(value), false, fx);
            return true;
        default:
            return !x2;  // read-only or reserved: ignored in xAPIC mode, #GP in x2APIC mode
    }
}

void Lapic::send_icr(uint32_t low, uint32_t high, Effects& fx) {
    Ipi ipi;
    ipi.source = id_;
    ipi.vector = static_cast<uint8_t>(low);
    const uint32_t mode = (low >> 8) & 7;
    if (mode == 3 || mode == 7) return;  // reserved
    ipi.mode = static_cast<Ipi::Mode>(mode);
    ipi.logical = (low >> 11) & 1;
    ipi.assert = (low >> 14) & 1;
    ipi.level = (low >> 15) & 1;
    ipi.shorthand = static_cast<Ipi::Shorthand>((low >> 18) & 3);
    ipi.x2apic = x2apic();
    ipi.destination = ipi.x2apic ? high : high >> 24;
    if ((ipi.mode == Ipi::Fixed || ipi.mode == Ipi::LowestPriority) && ipi.vector < 16) {
        reg(kEsr) |= kEsrSendIllegal;
        return;
    }
    fx.ipi = ipi;
}

void Lapic::finish(const Effects& fx) {
    if (fx.arm) sink_.arm_timer(*fx.arm);
    if (fx.eoi) sink_.eoi_broadcast(*fx.eoi);
    if (fx.ipi) sink_.send_ipi(*fx.ipi);
    if (fx.kick) sink_.kick();
}

void Lapic::read(uint64_t offset, std::span<uint8_t> data) {
    std::fill(data.begin(), data.end(), 0);
    if (offset >= kSize || data.empty()) return;
    uint32_t value = 0;
    {
        std::lock_guard lock(mu_);
        if ((base_ & kBaseEnable) == 0 || x2apic()) return;
        value = read_register(static_cast<uint32_t>(offset) & 0xff0);
    }
    const size_t shift = offset & 0xf;
    if (shift >= 4) return;  // past the register's 32 bits
    const size_t n = std::min(data.size(), 4 - shift);
    for (size_t i = 0; i < n; ++i)
        data[i] = static_cast<uint8_t>(value >> (8 * (shift + i)));
}

void Lapic::write(uint64_t offset, std::span<const uint8_t> data) {
    // Registers take aligned 32-bit writes; anything else is dropped (undefined on hardware).
    if (offset >= kSize || (offset & 0xf) != 0 || data.size() < 4) return;
    uint32_t value;
    std::memcpy(&value, data.data(), 4);
    Effects fx;
    {
        std::lock_guard lock(mu_);
        if ((base_ & kBaseEnable) == 0 || x2apic()) return;
        (void)write_register(static_cast<uint32_t>(offset), value, fx);
    }
    finish(fx);
}

bool Lapic::read_msr(uint32_t msr, uint64_t& value) {
    std::lock_guard lock(mu_);
    if (msr == kApicBaseMsr) {
        value = base_;
        return true;
    }
    if (msr == kTscDeadlineMsr) {
        value = timer_mode() == kTimerDeadline ? tsc_deadline_ : 0;
        return true;
    }
    if (msr < kFirstMsr || msr > kLastMsr || !x2apic()) return false;
    const uint32_t offset = (msr - kFirstMsr) << 4;
    if (!x2apic_register(offset, false)) return false;
    value = read_register(offset);
    if (offset == kIcrLow) value |= uint64_t{reg(kIcrHigh)} << 32;
    return true;
}

bool Lapic::write_msr(uint32_t msr, uint64_t value) {
    // The TSC's deadline in Clock time, asked of the VMM before the lock is taken.
    const uint64_t deadline_ns = msr == kTscDeadlineMsr && value != 0 ? sink_.tsc_to_ns(value) : 0;
    Effects fx;
    bool ok = true;
    {
        std::lock_guard lock(mu_);
        if (msr == kApicBaseMsr) {
            const bool was_x2 = x2apic(), was_on = (base_ & kBaseEnable) != 0;
            const bool x2 = (value & kBaseX2apic) != 0, on = (value & kBaseEnable) != 0;
            // Reserved bits, x2APIC without the APIC on, and x2APIC straight back to xAPIC.
            if ((value & ~kBaseValid) != 0 || (x2 && !on) || (was_x2 && was_on && on && !x2) ||
                (value & kBaseBsp) != (base_ & kBaseBsp)) {
                ok = false;
            } else {
                base_ = value;
                if (was_on && !on) {  // off: as at INIT, but IA32_APIC_BASE stays
                    if (deadline_ns_ != 0) fx.arm = 0;
                    deadline_ns_ = 0;
                    for (uint32_t lvt : kLvts)
                        reg(lvt) |= kLvtMasked;
                    reg(kSvr) &= ~kSvrEnable;
                }
                if (!was_x2 && x2) reg(kId) = id_ << 24;
            }
        } else if (msr == kTscDeadlineMsr) {
            if (timer_mode() == kTimerDeadline && (base_ & kBaseEnable) != 0) {
                tsc_deadline_ = value;
                deadline_ns_ = value == 0 ? 0 : std::max<uint64_t>(deadline_ns, 1);
                fx.arm = deadline_ns_;
            }
        } else if (msr < kFirstMsr || msr > kLastMsr || !x2apic()) {
            ok = false;
        } else {
            const uint32_t offset = (msr - kFirstMsr) << 4;
            if (!x2apic_register(offset, true) || (offset != kIcrLow && (value >> 32) != 0)) {
                ok = false;
            } else if (offset == kIcrLow) {
                reg(kIcrLow) = static_cast<uint32_t>(value) & ~kIcrDeliveryStatus;
                reg(kIcrHigh) = static_cast<uint32_t>(value >> 32);
                send_icr(static_cast<uint32_t>(value), reg(kIcrHigh), fx);
            } else {
                ok = write_register(offset, static_cast<uint32_t>(value), fx);
            }
        }
    }
    finish(fx);
    return ok;
}

bool Lapic::matches_logical(uint32_t mask, bool x2) const {
    std::lock_guard lock(mu_);
    if (x2) {
        const uint32_t ldr = ((id_ >> 4) << 16) | (1u << (id_ & 15));
        return (mask >> 16) == (ldr >> 16) && (mask & ldr & 0xffff) != 0;
    }
    const uint32_t ldr = reg(kLdr) >> 24;
    mask &= 0xff;
    if ((reg(kDfr) >> 28) == 0xf) return (mask & ldr) != 0;       // flat
    return (mask >> 4) == (ldr >> 4) && (mask & ldr & 0xf) != 0;  // cluster
}

void Lapic::save(snapshot::Encoder& e) const {
    std::lock_guard lock(mu_);
    const uint64_t now = clock_.now_ns();
    e.u64(base_);
    for (uint32_t r : regs_)
        e.u32(r);
    e.u64(tsc_deadline_);
    e.u64(now > timer_start_ns_ ? now - timer_start_ns_ : 0);  // since the count was loaded
    e.boolean(deadline_ns_ != 0);
    e.u64(deadline_ns_ > now ? deadline_ns_ - now : 0);  // until the timer fires
}

void Lapic::restore(snapshot::Decoder& d) {
    const uint64_t base = d.u64();
    std::array<uint32_t, 64> regs;
    for (uint32_t& r : regs)
        r = d.u32();
    const uint64_t tsc_deadline = d.u64();
    const uint64_t since = d.u64();
    const bool armed = d.boolean();
    const uint64_t until = d.u64();
    if (!d.ok()) return;
    if ((base & ~kBaseValid) != 0 || (base & kBaseBsp) != (bsp_ ? kBaseBsp : 0) ||
        ((base & kBaseX2apic) != 0 && (base & kBaseEnable) == 0))
        return d.invalid("local APIC base");
    if (regs[kVersion >> 4] != kVersionValue) return d.invalid("local APIC version");
    Effects fx;
    {
        std::lock_guard lock(mu_);
        const uint64_t now = clock_.now_ns();
        base_ = base;
        regs_ = regs;
        tsc_deadline_ = tsc_deadline;
        timer_start_ns_ = since < now ? now - since : 0;
        deadline_ns_ = armed ? std::max<uint64_t>(now + until, 1) : 0;
        fx.arm = deadline_ns_;
        fx.kick = pending_locked().has_value();
    }
    finish(fx);
}

}  // namespace vireo::devices::irqchip
