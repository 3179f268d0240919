// The 8254 programmable interval timer (ports 0x40-0x43) and the PC's port 0x61 (channel 2's
// gate and output, the speaker bit, the refresh toggle). Counters run from a 1.193182 MHz clock
// derived from the host's monotonic clock, so reading one costs no timer. Channel 0's output is
// IRQ 0: the PIT asks its TimerSink for a wake-up at the next rising edge of that output, and
// the VMM calls expired() when it comes; modes 0-5, binary and BCD, LSB/MSB/both access, counter
// and status latches, read-back.
//
// A guest-facing state machine: any port, width and value is accepted; fuzzed by
// fuzz/irqchip_fuzz.cpp.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <span>

#include "devices/device.hpp"

namespace vireo::devices::irqchip {

/// Time for the PIT: the host's monotonic clock, or a test's.
class Clock {
  public:
    virtual ~Clock() = default;
    virtual uint64_t now_ns() const = 0;
};

/// The host's CLOCK_MONOTONIC.
class MonotonicClock final : public Clock {
  public:
    uint64_t now_ns() const override;
};

/// The VMM's timer for channel 0 and the IRQ 0 line. Called without the PIT's lock held.
class TimerSink {
  public:
    virtual ~TimerSink() = default;
    /// Calls Pit::expired() at `deadline_ns` (Clock time); 0: no wake-up needed.
    virtual void arm(uint64_t deadline_ns) = 0;
    /// Channel 0's output rose (an edge on IRQ 0).
    virtual void irq0_edge() = 0;
};

class Pit final : public Device {
  public:
    static constexpr uint16_t kBasePort = 0x40, kControlPort = 0x43, kPort61 = 0x61;
    static constexpr uint64_t kHz = 1193182;
    /// IRQ 0 edges come at most this often (10 kHz; Linux programs 100-1000 Hz).
    static constexpr uint64_t kMinPeriodNs = 100'000;

    /// `clock` and `sink` must outlive the PIT.
    Pit(const Clock& clock, TimerSink& sink);

    const char* name() const noexcept override { return "pit"; }
    /// Port accesses with `offset` the absolute port number (0x40-0x43, 0x61); a bus attaches
    /// PitPorts views (RangeView).
    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;

    /// The VMM's timer fired: raises IRQ 0 for the edges due by now (at most one: a host that
    /// fell behind does not flood the guest) and arms the next wake-up.
    void expired();

    void save(snapshot::Encoder& e) const override;
    void restore(snapshot::Decoder& d) override;

  private:
    struct Channel {
        uint32_t count = 0x10000;  // reload value, 1..0x10000 (0 written means 0x10000)
        uint64_t load_ns = 0;      // when counting started
        uint8_t mode = 0;
        bool bcd = false;
        uint8_t access = 3;  // 1: LSB, 2: MSB, 3: LSB then MSB
        bool gate = true;
        bool write_msb = false;  // LSB/MSB access: the next write is the MSB
        bool read_msb = false;   // ... the next read is the MSB
        uint8_t write_lsb = 0;
        bool latched = false;
        uint16_t latch = 0;
        bool latch_msb = false;  // a latched LSB/MSB value: the next read is its MSB
        bool status_latched = false;
        uint8_t status = 0;
        bool null_count = true;
        bool armed = false;  // counting (a count was written; modes 1 and 5 need a gate edge)
    };

    uint64_t ticks(const Channel& c, uint64_t now) const;
    uint16_t counter(const Channel& c, uint64_t now) const;
    bool output(const Channel& c, uint64_t now) const;
    /// The next time after `now` at which channel 0's output rises, or 0 if never.
    uint64_t next_edge(const Channel& c, uint64_t now) const;
    void load(Channel& c, uint32_t value, uint64_t now);
    void latch_count(Channel& c, uint64_t now);
    void control(uint8_t value, uint64_t now);
    uint8_t read_counter(Channel& c, uint64_t now);
    void write_counter(Channel& c, uint8_t value, uint64_t now);
    void set_gate2(bool gate, uint64_t now);
    uint64_t rearm(uint64_t now);

    const Clock& clock_;
    TimerSink& sink_;
    mutable std::mutex mu_;
    std::array<Channel, 3> channels_;
    uint8_t port61_ = 0;  // bits 0 (gate 2) and 1 (speaker data)
    bool refresh_ = false;
    uint64_t deadline_ = 0;  // the wake-up asked for (0: none)
};

/// The PIT's ports as a bus sees them: 0x40-0x43 (base 0x40) or 0x61 (base 0x61).
using PitPorts = RangeView<Pit>;

}  // namespace vireo::devices::irqchip
