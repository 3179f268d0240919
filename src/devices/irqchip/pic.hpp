// The 8259A programmable interrupt controller pair of a PC (primary at ports 0x20-0x21,
// secondary at 0xa0-0xa1 cascaded on the primary's IRQ 2, edge/level control at 0x4d0-0x4d1):
// initialization words ICW1-ICW4, operation words OCW1 (mask), OCW2 (non-specific, specific and
// rotating EOI), OCW3 (IRR/ISR reads, poll, special mask), auto-EOI, fixed and rotating priority.
// Devices drive IRQ 0-15 through set_irq(); the pair's output (the CPU's INTR, wired to LINT0 as
// ExtINT) is reported to an OutputSink on each change, and the CPU's interrupt acknowledge is
// acknowledge(), which returns the vector.
//
// A guest-facing state machine: any port, width and value is accepted; fuzzed by
// fuzz/irqchip_fuzz.cpp.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <optional>
#include <span>

#include "devices/device.hpp"

namespace vireo::devices::irqchip {

/// The PIC pair's INTR output. Called without the PIC's lock held, on each change.
class OutputSink {
  public:
    virtual ~OutputSink() = default;
    virtual void set_output(bool asserted) = 0;
};

class Pic final : public Device {
  public:
    static constexpr uint16_t kPrimaryPort = 0x20, kSecondaryPort = 0xa0, kElcrPort = 0x4d0;

    /// `sink` must outlive the PIC.
    explicit Pic(OutputSink& sink);

    const char* name() const noexcept override { return "pic"; }
    /// Port accesses with `offset` the absolute port number (each byte of a wider access is the
    /// next port); a bus attaches PicPorts views (RangeView) at the three ranges.
    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;
    /// The same, by absolute port number (0x20, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1).
    uint8_t port_read(uint16_t port);
    void port_write(uint16_t port, uint8_t value);

    /// Drives IRQ `irq` (0-15; others ignored).
    void set_irq(unsigned irq, bool level);
    /// The CPU's interrupt acknowledge: the vector of the highest-priority request, which moves
    /// to in-service (or nothing if the request went away: the 8259A then answers with its
    /// spurious IRQ 7 / 15 vector).
    uint8_t acknowledge();
    /// Whether the output is asserted.
    bool output() const;

    void save(snapshot::Encoder& e) const override;
    void restore(snapshot::Decoder& d) override;

  private:
    struct Chip {
        uint8_t irr = 0, isr = 0, imr = 0xff;
        uint8_t lines = 0;     // input lines that are up
        uint8_t elcr = 0;      // level-triggered inputs
        uint8_t base = 0;      // vector base (ICW2)
        uint8_t icw_step = 0;  // 0: ready; 2, 3, 4: the next initialization word
        bool icw4_needed = false;
        bool single = false;
        bool auto_eoi = false;
        bool rotate_on_auto_eoi = false;
        bool special_mask = false;
        bool poll = false;
        bool read_isr = false;
        uint8_t lowest_priority = 7;  // the IRQ with the lowest priority (rotation)
    };
    // Index 0: primary, 1: secondary.
    std::optional<unsigned> highest(const Chip& c, uint8_t mask) const;
    std::optional<unsigned> pending(const Chip& c) const;
    void update_cascade();
    void set_chip_irq(Chip& c, unsigned irq, bool level);
    void eoi(Chip& c, unsigned irq);
    uint8_t ack_chip(Chip& c, unsigned irq);
    void write_chip(Chip& c, bool command, uint8_t value);
    uint8_t read_chip(Chip& c, bool command);
    uint8_t poll_chip(Chip& c);
    bool compute_output() const;
    void after_change(std::unique_lock<std::mutex>& lock);

    OutputSink& sink_;
    mutable std::mutex mu_;
    std::array<Chip, 2> chips_;
    bool output_ = false;
};

/// One of the PIC's three port ranges as a bus sees it.
using PicPorts = RangeView<Pic>;

}  // namespace vireo::devices::irqchip
