#include "devices/irqchip/ioapic.hpp"

#include <algorithm>
#include <cstring>

namespace vireo::devices::irqchip {

namespace {
constexpr uint64_t kReadOnly = Ioapic::kDeliveryStatus | Ioapic::kRemoteIrr;
constexpr uint32_t kAllPins = (1u << Ioapic::kPins) - 1;
}  // namespace

Ioapic::Ioapic(MsiSink& sink, uint8_t id) : sink_(sink), id_(id & 0xf) {
    entries_.fill(kMasked);  // every entry masked at reset
}

MsiMessage Ioapic::message(uint64_t entry) noexcept {
    const uint64_t dest = (entry >> 56) & 0xff;
    const uint64_t ext_dest = (entry >> 49) & 0x7f;  // extended destination ID (APIC ids > 255)
    const uint64_t logical = (entry >> 11) & 1;
    MsiMessage m;
    m.address = 0xfee00000u | (dest << 12) | (ext_dest << 5) | (logical << 2);
    m.data = static_cast<uint32_t>((entry & kVectorMask) | (((entry >> 8) & 7) << 8) |
                                   (((entry >> 15) & 1) << 15));
    return m;
}

uint64_t Ioapic::entry(unsigned pin) const {
    if (pin >= kPins) return 0;
    std::lock_guard lock(mu_);
    return entries_[pin];
}

void Ioapic::service(Outbox& out) {
    for (unsigned pin = 0; pin < kPins; ++pin) {
        const uint32_t bit = 1u << pin;
        uint64_t& e = entries_[pin];
        if (e & kMasked) continue;
        if (e & kLevel) {
            if (!(lines_ & bit) || (e & kRemoteIrr)) continue;
            e |= kRemoteIrr;
        } else {
            if (!(edges_ & bit)) continue;
            edges_ &= ~bit;
        }
        out.messages[out.count++] = message(e);
    }
}

void Ioapic::send(const Outbox& out) {
    for (unsigned i = 0; i < out.count; ++i)
        sink_.deliver(out.messages[i]);
}

void Ioapic::raise_locked(unsigned pin) {
    const uint32_t bit = 1u << pin;
    if (!(lines_ & bit) && !(entries_[pin] & kLevel)) edges_ |= bit;  // a rising edge
    lines_ |= bit;
}

void Ioapic::set_irq(unsigned pin, bool level) {
    if (pin >= kPins) return;
    Outbox out;
    {
        std::lock_guard lock(mu_);
        if (level)
            raise_locked(pin);
        else
            lines_ &= ~(1u << pin);
        service(out);
    }
    send(out);
}

void Ioapic::pulse(unsigned pin) {
    if (pin >= kPins) return;
    Outbox out;
    {
        std::lock_guard lock(mu_);
        const uint32_t was = lines_ & (1u << pin);
        raise_locked(pin);
        service(out);
        lines_ = (lines_ & ~(1u << pin)) | was;
    }
    send(out);
}

void Ioapic::eoi_locked(uint8_t vector, Outbox& out) {
    for (uint64_t& e : entries_)
        if ((e & kLevel) && (e & kRemoteIrr) && (e & kVectorMask) == vector) e &= ~kRemoteIrr;
    service(out);
}

void Ioapic::end_of_interrupt(uint8_t vector) {
    Outbox out;
    {
        std::lock_guard lock(mu_);
        eoi_locked(vector, out);
    }
    send(out);
}

uint32_t Ioapic::read_register(uint8_t index) const {
    switch (index) {
        case kIdReg:
        case kArbReg:
            return uint32_t{id_} << 24;
        case kVersionReg:
            return kVersion | ((kPins - 1) << 16);
        default:
            break;
    }
    if (index < kRedirBase || index >= kRedirBase + 2 * kPins) return 0;
    const uint64_t e = entries_[(size_t{index} - kRedirBase) / 2];
    return static_cast<uint32_t>((index & 1) ? e >> 32 : e);
}

void Ioapic::write_register(uint8_t index, uint32_t value, Outbox& out) {
    if (index == kIdReg) {
        id_ = static_cast<uint8_t>((value >> 24) & 0xf);
        return;
    }
    if (index < kRedirBase || index >= kRedirBase + 2 * kPins) return;  // version, arb: read-only
    uint64_t& e = entries_[(size_t{index} - kRedirBase) / 2];
    if (index & 1) {
        e = (e & 0xffffffffu) | (uint64_t{value} << 32);
        return;
    }
    e = (e & ~uint64_t{0xffffffffu}) | (value & ~kReadOnly) | (e & kReadOnly);
    if (!(e & kLevel)) e &= ~kRemoteIrr;  // an edge-triggered entry has no remote IRR
    service(out);                         // unmasking sends what waited
}

void Ioapic::read(uint64_t offset, std::span<uint8_t> data) {
    std::lock_guard lock(mu_);
    for (size_t i = 0; i < data.size(); ++i) {
        const uint64_t at = offset + i;
        uint32_t reg = 0;
        if (at >= kRegSel && at < kRegSel + 4)
            reg = select_;
        else if (at >= kWindow && at < kWindow + 4)
            reg = read_register(select_);
        data[i] = static_cast<uint8_t>(reg >> (8 * (at & 3)));
    }
}

void Ioapic::write(uint64_t offset, std::span<const uint8_t> data) {
    if (data.empty()) return;
    Outbox out;
    {
        std::lock_guard lock(mu_);
        if (offset == kRegSel) {
            select_ = data[0];
        } else if (offset == kWindow && data.size() >= 4) {
            uint32_t v;
            std::memcpy(&v, data.data(), 4);
            write_register(select_, v, out);
        } else if (offset == kEoi) {
            eoi_locked(data[0], out);
        }
    }
    send(out);
}

void Ioapic::save(snapshot::Encoder& e) const {
    std::lock_guard lock(mu_);
    e.u8(id_);
    e.u8(select_);
    e.u32(lines_);
    e.u32(edges_);
    for (uint64_t v : entries_)
        e.u64(v);
}

void Ioapic::restore(snapshot::Decoder& d) {
    std::lock_guard lock(mu_);
    const uint8_t id = d.u8();
    const uint8_t select = d.u8();
    const uint32_t lines = d.u32();
    const uint32_t edges = d.u32();
    std::array<uint64_t, kPins> entries;
    for (uint64_t& v : entries)
        v = d.u64();
    if (id > 0xf) return d.invalid("I/O APIC id");
    if ((lines | edges) & ~kAllPins) return d.invalid("I/O APIC lines");
    id_ = id, select_ = select, lines_ = lines, edges_ = edges, entries_ = entries;
}

}  // namespace vireo::devices::irqchip
