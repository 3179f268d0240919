#include "devices/irqchip/pit.hpp"

#include <ctime>

namespace vireo::devices::irqchip {

namespace {
constexpr uint64_t kNsPerSecond = 1'000'000'000;

uint64_t ticks_to_ns(uint64_t ticks) {  // rounded up: the tick has happened by then
    return static_cast<uint64_t>(
        (static_cast<unsigned __int128>(ticks) * kNsPerSecond + Pit::kHz - 1) / Pit::kHz);
}

uint32_t from_bcd(uint32_t v) {
    return (v & 0xf) + ((v >> 4) & 0xf) * 10 + ((v >> 8) & 0xf) * 100 + ((v >> 12) & 0xf) * 1000;
}

uint16_t to_bcd(uint32_t v) {
    v %= 10000;
    return static_cast<uint16_t>((v % 10) | ((v / 10 % 10) << 4) | ((v / 100 % 10) << 8) |
                                 ((v / 1000) << 12));
}
}  // namespace

uint64_t MonotonicClock::now_ns() const {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * kNsPerSecond + static_cast<uint64_t>(ts.tv_nsec);
}

Pit::Pit(const Clock& clock, TimerSink& sink) : clock_(clock), sink_(sink) {
    channels_[2].gate = false;  // port 0x61 bit 0 starts clear
}

uint64_t Pit::ticks(const Channel& c, uint64_t now) const {
    if (now <= c.load_ns) return 0;
    return static_cast<uint64_t>(static_cast<unsigned __int128>(now - c.load_ns) * kHz /
                                 kNsPerSecond);
}

uint16_t Pit::counter(const Channel& c, uint64_t now) const {
    uint32_t v;
    if (!c.armed) {
        v = c.count;
    } else {
        const uint64_t d = ticks(c, now);
        switch (c.mode) {
            case 2:
                v = static_cast<uint32_t>(c.count - d % c.count);
                break;
            case 3:
                v = static_cast<uint32_t>(c.count - (2 * d) % c.count);
                break;
            default:  // 0, 1, 4, 5 count down through zero
                v = static_cast<uint32_t>((c.count - d) & 0xffff);
                break;
        }
    }
    return c.bcd ? to_bcd(v) : static_cast<uint16_t>(v);
}

bool Pit::output(const Channel& c, uint64_t now) const {
    if (!c.armed) return c.mode != 0;  // mode 0 drives its output low from the control word
    if (!c.gate && (c.mode == 2 || c.mode == 3)) return true;
    const uint64_t d = ticks(c, now);
    switch (c.mode) {
        case 0:
        case 1:
            return d >= c.count;
        case 2:
            return d % c.count != c.count - 1u;
        case 3:
            return d % c.count < (c.count + 1u) / 2;
        default:  // 4, 5: low for the one tick at the terminal count
            return d != c.count;
    }
}

uint64_t Pit::next_edge(const Channel& c, uint64_t now) const {
    if (!c.armed) return 0;
    const uint64_t d = ticks(c, now);
    uint64_t at;  // in ticks since the load
    switch (c.mode) {
        case 0:
        case 1:
            if (d >= c.count) return 0;
            at = c.count;
            break;
        case 2:
        case 3:
            at = (d / c.count + 1) * c.count;
            break;
        default:
            if (d >= c.count + 1u) return 0;
            at = c.count + 1u;
            break;
    }
    return c.load_ns + ticks_to_ns(at);
}

void Pit::load(Channel& c, uint32_t value, uint64_t now) {
    uint32_t count = c.bcd ? from_bcd(value) : value;
    if (count == 0) count = c.bcd ? 10000 : 0x10000;
    c.count = count;
    c.load_ns = now;
    c.null_count = false;
    c.armed = true;
}

void Pit::latch_count(Channel& c, uint64_t now) {
    if (c.latched) return;  // the first latch holds until it is read
    c.latched = true;
    c.latch = counter(c, now);
    c.latch_msb = false;
}

void Pit::control(uint8_t value, uint64_t now) {
    const unsigned select = value >> 6;
    if (select == 3) {  // read-back
        for (unsigned i = 0; i < 3; ++i) {
            if (!(value & (2u << i))) continue;
            Channel& c = channels_[i];
            if (!(value & 0x20)) latch_count(c, now);
            if (!(value & 0x10) && !c.status_latched) {
                c.status_latched = true;
                c.status =
                    static_cast<uint8_t>((output(c, now) ? 0x80 : 0) | (c.null_count ? 0x40 : 0) |
                                         (c.access << 4) | (c.mode << 1) | (c.bcd ? 1 : 0));
            }
        }
        return;
    }
    Channel& c = channels_[select];
    const uint8_t access = (value >> 4) & 3;
    if (access == 0) {  // counter latch
        latch_count(c, now);
        return;
    }
    uint8_t mode = (value >> 1) & 7;
    if (mode > 5) mode = static_cast<uint8_t>(mode - 4);  // 6 and 7 are 2 and 3
    c.access = access;
    c.mode = mode;
    c.bcd = value & 1;
    c.write_msb = c.read_msb = false;
    c.null_count = true;
    c.armed = false;
}

uint8_t Pit::read_counter(Channel& c, uint64_t now) {
    if (c.status_latched) {
        c.status_latched = false;
        return c.status;
    }
    uint16_t v;
    bool msb;
    if (c.latched) {
        v = c.latch;
        if (c.access == 3) {
            msb = c.latch_msb;
            c.latch_msb = !c.latch_msb;
            if (msb) c.latched = false;
        } else {
            msb = c.access == 2;
            c.latched = false;
        }
    } else {
        v = counter(c, now);
        if (c.access == 3) {
            msb = c.read_msb;
            c.read_msb = !c.read_msb;
        } else {
            msb = c.access == 2;
        }
    }
    return static_cast<uint8_t>(msb ? v >> 8 : v);
}

void Pit::write_counter(Channel& c, uint8_t value, uint64_t now) {
    switch (c.access) {
        case 1:
            load(c, value, now);
            break;
        case 2:
            load(c, uint32_t{value} << 8, now);
            break;
        default:
            if (!c.write_msb) {
                c.write_lsb = value;
                c.write_msb = true;
            } else {
                c.write_msb = false;
                load(c, c.write_lsb | (uint32_t{value} << 8), now);
            }
            break;
    }
}

void Pit::set_gate2(bool gate, uint64_t now) {
    Channel& c = channels_[2];
    if (gate && !c.gate && c.armed && c.mode != 0 && c.mode != 4) c.load_ns = now;  // retrigger
    c.gate = gate;
}

uint64_t Pit::rearm(uint64_t now) {
    uint64_t next = next_edge(channels_[0], now);
    // A guest's tiny count (mode 2 with 2 ticks is 600 kHz) must not make the host's timer
    // spin: at most one wake-up every kMinPeriodNs.
    if (next != 0 && next < now + kMinPeriodNs) next = now + kMinPeriodNs;
    deadline_ = next;
    return deadline_;
}

void Pit::expired() {
    const uint64_t now = clock_.now_ns();
    bool edge;
    uint64_t next;
    {
        std::lock_guard lock(mu_);
        edge = deadline_ != 0 && now >= deadline_;
        next = edge ? rearm(now) : deadline_;
    }
    if (edge) sink_.irq0_edge();
    sink_.arm(next);
}

void Pit::read(uint64_t offset, std::span<uint8_t> data) {
    const uint64_t now = clock_.now_ns();
    std::lock_guard lock(mu_);
    for (size_t i = 0; i < data.size(); ++i) {
        const uint64_t port = offset + i;
        uint8_t v = 0xff;
        if (port >= kBasePort && port < kControlPort) {
            v = read_counter(channels_[port - kBasePort], now);
        } else if (port == kPort61) {
            refresh_ = !refresh_;
            v = static_cast<uint8_t>((port61_ & 3) | (refresh_ ? 0x10 : 0) |
                                     (output(channels_[2], now) ? 0x20 : 0));
        }
        data[i] = v;
    }
}

void Pit::write(uint64_t offset, std::span<const uint8_t> data) {
    const uint64_t now = clock_.now_ns();
    bool changed = false;
    uint64_t next = 0;
    {
        std::lock_guard lock(mu_);
        const uint64_t before = deadline_;
        for (size_t i = 0; i < data.size(); ++i) {
            const uint64_t port = offset + i;
            if (port >= kBasePort && port < kControlPort)
                write_counter(channels_[port - kBasePort], data[i], now);
            else if (port == kControlPort)
                control(data[i], now);
            else if (port == kPort61) {
                port61_ = data[i] & 3;
                set_gate2(data[i] & 1, now);
            }
        }
        next = rearm(now);
        changed = next != before;
    }
    if (changed) sink_.arm(next);
}

void Pit::save(snapshot::Encoder& e) const {
    const uint64_t now = clock_.now_ns();
    std::lock_guard lock(mu_);
    for (const Channel& c : channels_) {
        e.u32(c.count);
        e.u64(now > c.load_ns ? now - c.load_ns : 0);  // the host clock does not travel
        for (uint8_t v : {c.mode, c.access, c.write_lsb, c.status})
            e.u8(v);
        e.u16(c.latch);
        for (bool b : {c.bcd, c.gate, c.write_msb, c.read_msb, c.latched, c.latch_msb,
                       c.status_latched, c.null_count, c.armed})
            e.boolean(b);
    }
    e.u8(port61_);
    e.boolean(refresh_);
}

void Pit::restore(snapshot::Decoder& d) {
    const uint64_t now = clock_.now_ns();
    std::array<Channel, 3> channels;
    for (Channel& c : channels) {
        c.count = d.u32();
        const uint64_t elapsed = d.u64();
        for (uint8_t* v : {&c.mode, &c.access, &c.write_lsb, &c.status})
            *v = d.u8();
        c.latch = d.u16();
        for (bool* b : {&c.bcd, &c.gate, &c.write_msb, &c.read_msb, &c.latched, &c.latch_msb,
                        &c.status_latched, &c.null_count, &c.armed})
            *b = d.boolean();
        if (c.count == 0 || c.count > 0x10000) return d.invalid("PIT count");
        if (c.mode > 5 || c.access == 0 || c.access > 3) return d.invalid("PIT mode");
        c.load_ns = elapsed < now ? now - elapsed : 0;
    }
    const uint8_t port61 = d.u8();
    const bool refresh = d.boolean();
    if (port61 & ~3u) return d.invalid("PIT port 0x61");
    uint64_t next;
    {
        std::lock_guard lock(mu_);
        channels_ = channels;
        port61_ = port61;
        refresh_ = refresh;
        next = rearm(now);
    }
    sink_.arm(next);
}

}  // namespace vireo::devices::irqchip
