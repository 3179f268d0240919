// The I/O APIC (82093AA register layout, version 0x20 with its EOI register), as the guest
// sees it at 0xfec00000: an index register (IOREGSEL), a data window (IOWIN), the EOI register;
// behind them the ID, version, arbitration and 24 redirection entries. Device lines come in
// through set_irq(); each interrupt goes out as the message-signalled interrupt its entry
// describes, to an MsiSink: KVM's local APICs in the split model (KVM_SIGNAL_MSI), vireo's own
// in the user-space model. Level-triggered entries keep their remote IRR until the local APIC's
// EOI of their vector (end_of_interrupt()), then fire again if their line is still up.
//
// A guest-facing state machine: any offset, width and value is accepted (unknown registers read
// 0 and ignore writes); fuzzed by fuzz/irqchip_fuzz.cpp.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <span>

#include "devices/device.hpp"
#include "devices/pci/msix.hpp"

namespace vireo::devices::irqchip {

using pci::MsiMessage;

/// Where the I/O APIC's interrupts go. Called without the I/O APIC's lock held.
class MsiSink {
  public:
    virtual ~MsiSink() = default;
    virtual void deliver(const MsiMessage& message) = 0;
};

class Ioapic final : public Device {
  public:
    static constexpr uint64_t kBase = 0xfec00000;
    static constexpr uint64_t kSize = 0x1000;
    static constexpr unsigned kPins = 24;
    static constexpr uint8_t kVersion = 0x20;

    // Register offsets in the MMIO window, and register indices behind IOREGSEL.
    static constexpr uint64_t kRegSel = 0x00, kWindow = 0x10, kEoi = 0x40;
    static constexpr uint8_t kIdReg = 0x00, kVersionReg = 0x01, kArbReg = 0x02, kRedirBase = 0x10;

    // Redirection entry bits.
    static constexpr uint64_t kVectorMask = 0xff;
    static constexpr uint64_t kDeliveryStatus = 1ull << 12;
    static constexpr uint64_t kRemoteIrr = 1ull << 14;
    static constexpr uint64_t kLevel = 1ull << 15;
    static constexpr uint64_t kMasked = 1ull << 16;

    /// `sink` must outlive the I/O APIC.
    explicit Ioapic(MsiSink& sink, uint8_t id = 0);

    const char* name() const noexcept override { return "ioapic"; }
    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;

    /// Drives input `pin` (pins past kPins are ignored). An edge-triggered entry fires on a
    /// rising edge (held while masked, fired when unmasked); a level-triggered one while the
    /// line is up and its remote IRR clear.
    void set_irq(unsigned pin, bool level);
    /// A pulse on input `pin` (up and down again at once, as the PIT's IRQ 0 is): an edge entry
    /// fires as on a rising edge; a level entry fires once if its remote IRR is clear, and an
    /// EOI cannot find the line still up (a pulse raised in two calls could fire again for
    /// every EOI that came in between).
    void pulse(unsigned pin);
    /// The local APICs' EOI of `vector` (their EOI broadcast, or a write of the EOI register).
    void end_of_interrupt(uint8_t vector);

    /// Redirection entry `pin` (0 for pins past kPins).
    uint64_t entry(unsigned pin) const;
    /// The message entry `pin` sends (address: destination and mode; data: vector, delivery
    /// mode, trigger mode).
    static MsiMessage message(uint64_t entry) noexcept;

    void save(snapshot::Encoder& e) const override;
    void restore(snapshot::Decoder& d) override;

  private:
    // Pending messages collected under the lock and delivered after it.
    struct Outbox {
        std::array<MsiMessage, kPins> messages;
        unsigned count = 0;
    };
    uint32_t read_register(uint8_t index) const;
    void write_register(uint8_t index, uint32_t value, Outbox& out);
    void service(Outbox& out);
    // Under mu_: input `pin` goes up (an edge entry latches the rising edge).
    void raise_locked(unsigned pin);
    // Under mu_: drops the remote IRR of the level entries with `vector`, then services them.
    void eoi_locked(uint8_t vector, Outbox& out);
    void send(const Outbox& out);

    MsiSink& sink_;
    mutable std::mutex mu_;
    uint8_t id_;
    uint8_t select_ = 0;
    uint32_t lines_ = 0;  // input lines that are up
    uint32_t edges_ = 0;  // rising edges of edge-triggered entries not yet sent
    std::array<uint64_t, kPins> entries_;
};

}  // namespace vireo::devices::irqchip
