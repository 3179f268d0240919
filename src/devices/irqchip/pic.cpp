#include "devices/irqchip/pic.hpp"

namespace vireo::devices::irqchip {

namespace {
// IRQs whose trigger mode the ELCR may change (the timer, keyboard, cascade, RTC and FPU
// inputs are always edge-triggered on a PC).
constexpr uint8_t kElcrWritable[2] = {0xf8, 0xde};

unsigned priority(unsigned irq, uint8_t lowest) {
    return (irq - lowest - 1) & 7;  // 0 is the highest
}
}  // namespace

Pic::Pic(OutputSink& sink) : sink_(sink) {}

std::optional<unsigned> Pic::highest(const Chip& c, uint8_t mask) const {
    for (unsigned i = 0; i < 8; ++i) {
        const unsigned irq = (c.lowest_priority + 1 + i) & 7;
        if (mask & (1u << irq)) return irq;
    }
    return std::nullopt;
}

std::optional<unsigned> Pic::pending(const Chip& c) const {
    const auto irq = highest(c, static_cast<uint8_t>(c.irr & ~c.imr));
    if (!irq) return std::nullopt;
    uint8_t isr = c.isr;
    if (c.special_mask) isr = static_cast<uint8_t>(isr & ~c.imr);
    const auto current = highest(c, isr);
    if (current && priority(*current, c.lowest_priority) <= priority(*irq, c.lowest_priority))
        return std::nullopt;
    return irq;
}

void Pic::set_chip_irq(Chip& c, unsigned irq, bool level) {
    const auto bit = static_cast<uint8_t>(1u << irq);
    if (c.elcr & bit) {
        c.irr = level ? (c.irr | bit) : (c.irr & ~bit);
    } else if (level && !(c.lines & bit)) {
        c.irr |= bit;  // a rising edge
    }
    c.lines = level ? (c.lines | bit) : (c.lines & ~bit);
}

// The secondary's INT output is a level on the primary's IRQ 2: while the secondary has a
// request to give, the primary sees one (an edge there would lose a second request of a level
// line that is still up after an auto-EOI acknowledge).
void Pic::update_cascade() {
    Chip& primary = chips_[0];
    if (pending(chips_[1])) {
        primary.irr |= 4;
        primary.lines |= 4;
    } else {
        primary.irr &= static_cast<uint8_t>(~4u);
        primary.lines &= static_cast<uint8_t>(~4u);
    }
}

bool Pic::compute_output() const {
    return pending(chips_[0]).has_value();
}

void Pic::after_change(std::unique_lock<std::mutex>& lock) {
    update_cascade();
    const bool out = compute_output();
    if (out == output_) return;
    output_ = out;
    lock.unlock();
    sink_.set_output(out);
}

void Pic::set_irq(unsigned irq, bool level) {
    if (irq >= 16) return;
    std::unique_lock lock(mu_);
    set_chip_irq(chips_[irq / 8], irq % 8, level);
    after_change(lock);
}

bool Pic::output() const {
    std::lock_guard lock(mu_);
    return output_;
}

uint8_t Pic::ack_chip(Chip& c, unsigned irq) {
    const auto bit = static_cast<uint8_t>(1u << irq);
    if (!(c.elcr & bit)) c.irr &= static_cast<uint8_t>(~bit);  // an edge request is consumed
    if (c.auto_eoi) {
        if (c.rotate_on_auto_eoi) c.lowest_priority = static_cast<uint8_t>(irq);
    } else {
        c.isr |= bit;
    }
    return static_cast<uint8_t>(c.base | irq);
}

uint8_t Pic::acknowledge() {
    std::unique_lock lock(mu_);
    Chip& primary = chips_[0];
    Chip& secondary = chips_[1];
    uint8_t vector;
    const auto irq = pending(primary);
    if (!irq) {
        vector = static_cast<uint8_t>(primary.base | 7);  // spurious
    } else if (*irq == 2 && !primary.single) {
        ack_chip(primary, 2);
        const auto irq2 = pending(secondary);
        vector = irq2 ? ack_chip(secondary, *irq2) : static_cast<uint8_t>(secondary.base | 7);
    } else {
        vector = ack_chip(primary, *irq);
    }
    after_change(lock);
    return vector;
}

void Pic::eoi(Chip& c, unsigned irq) {
    c.isr &= static_cast<uint8_t>(~(1u << irq));
}

void Pic::write_chip(Chip& c, bool command, uint8_t value) {
    if (!command) {
        switch (c.icw_step) {
            case 2:
                c.base = value & 0xf8;
                c.icw_step = c.single ? (c.icw4_needed ? 4 : 0) : 3;
                return;
            case 3:  // ICW3: the cascade wiring is fixed (IRQ 2)
                c.icw_step = c.icw4_needed ? 4 : 0;
                return;
            case 4:
                c.auto_eoi = value & 2;
                c.icw_step = 0;
                return;
            default:
                c.imr = value;  // OCW1
                return;
        }
    }
    if (value & 0x10) {   // ICW1: start initialization
        c.irr &= c.elcr;  // edge requests are forgotten, level ones stay
        c.isr = 0;
        c.imr = 0;
        c.lowest_priority = 7;
        c.base = 0;
        c.auto_eoi = c.rotate_on_auto_eoi = c.special_mask = c.poll = c.read_isr = false;
        c.icw4_needed = value & 1;
        c.single = value & 2;
        c.icw_step = 2;
        return;
    }
    if (value & 0x08) {  // OCW3
        if (value & 0x04) c.poll = true;
        if (value & 0x02) c.read_isr = value & 1;
        if (value & 0x40) c.special_mask = value & 0x20;
        return;
    }
    // OCW2
    const unsigned level = value & 7;
    switch (value >> 5) {
        case 0:  // clear rotate in auto-EOI mode
        case 4:  // set it
            c.rotate_on_auto_eoi = (value >> 5) == 4;
            break;
        case 1:  // non-specific EOI
        case 5:  // ... and rotate
            if (const auto irq = highest(c, c.isr)) {
                eoi(c, *irq);
                if ((value >> 5) == 5) c.lowest_priority = static_cast<uint8_t>(*irq);
            }
            break;
        case 3:  // specific EOI
            eoi(c, level);
            break;
        case 7:  // specific EOI and rotate
            eoi(c, level);
            c.lowest_priority = static_cast<uint8_t>(level);
            break;
        case 6:  // set priority
            c.lowest_priority = static_cast<uint8_t>(level);
            break;
        default:
            break;
    }
}

uint8_t Pic::poll_chip(Chip& c) {
    const auto irq = pending(c);
    if (!irq) return 0x07;
    ack_chip(c, *irq);
    return static_cast<uint8_t>(0x80 | *irq);
}

uint8_t Pic::read_chip(Chip& c, bool command) {
    if (c.poll) {
        c.poll = false;
        return poll_chip(c);
    }
    if (command) return c.read_isr ? c.isr : c.irr;
    return c.imr;
}

uint8_t Pic::port_read(uint16_t port) {
    std::unique_lock lock(mu_);
    uint8_t v = 0xff;
    switch (port) {
        case kPrimaryPort:
        case kPrimaryPort + 1:
            v = read_chip(chips_[0], port == kPrimaryPort);
            break;
        case kSecondaryPort:
        case kSecondaryPort + 1:
            v = read_chip(chips_[1], port == kSecondaryPort);
            break;
        case kElcrPort:
        case kElcrPort + 1:
            v = chips_[port - kElcrPort].elcr;
            break;
        default:
            return v;
    }
    after_change(lock);  // a poll acknowledges
    return v;
}

void Pic::port_write(uint16_t port, uint8_t value) {
    std::unique_lock lock(mu_);
    switch (port) {
        case kPrimaryPort:
        case kPrimaryPort + 1:
            write_chip(chips_[0], port == kPrimaryPort, value);
            break;
        case kSecondaryPort:
        case kSecondaryPort + 1:
            write_chip(chips_[1], port == kSecondaryPort, value);
            break;
        case kElcrPort:
        case kElcrPort + 1: {
            Chip& c = chips_[port - kElcrPort];
            c.elcr = value & kElcrWritable[port - kElcrPort];
            break;
        }
        default:
            return;
    }
    after_change(lock);
}

void Pic::read(uint64_t offset, std::span<uint8_t> data) {
    for (size_t i = 0; i < data.size(); ++i)
        data[i] = offset + i <= 0xffff ? port_read(static_cast<uint16_t>(offset + i)) : 0xff;
}

void Pic::write(uint64_t offset, std::span<const uint8_t> data) {
    for (size_t i = 0; i < data.size(); ++i)
        if (offset + i <= 0xffff) port_write(static_cast<uint16_t>(offset + i), data[i]);
}

void Pic::save(snapshot::Encoder& e) const {
    std::lock_guard lock(mu_);
    for (const Chip& c : chips_) {
        for (uint8_t v :
             {c.irr, c.isr, c.imr, c.lines, c.elcr, c.base, c.icw_step, c.lowest_priority})
            e.u8(v);
        for (bool b : {c.icw4_needed, c.single, c.auto_eoi, c.rotate_on_auto_eoi, c.special_mask,
                       c.poll, c.read_isr})
            e.boolean(b);
    }
    e.boolean(output_);
}

void Pic::restore(snapshot::Decoder& d) {
    std::array<Chip, 2> chips;
    for (unsigned i = 0; i < 2; ++i) {
        Chip& c = chips[i];
        for (uint8_t* v :
             {&c.irr, &c.isr, &c.imr, &c.lines, &c.elcr, &c.base, &c.icw_step, &c.lowest_priority})
            *v = d.u8();
        for (bool* b : {&c.icw4_needed, &c.single, &c.auto_eoi, &c.rotate_on_auto_eoi,
                        &c.special_mask, &c.poll, &c.read_isr})
            *b = d.boolean();
        if (c.icw_step == 1 || c.icw_step > 4) return d.invalid("PIC initialization step");
        if (c.lowest_priority > 7) return d.invalid("PIC priority");
        if (c.elcr & ~kElcrWritable[i]) return d.invalid("PIC ELCR");
    }
    const bool output = d.boolean();
    std::lock_guard lock(mu_);
    chips_ = chips;
    output_ = output;
}

}  // namespace vireo::devices::irqchip
