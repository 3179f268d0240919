// The split interrupt model's user-space half (IrqchipMode::Split): KVM keeps the local APICs;
// vireo's I/O APIC, 8259A pair and 8254 PIT (devices/irqchip/) are wired to one machine here.
//
// - I/O APIC: its MMIO window is a device on the machine's bus. After each guest write its
//   redirection entries become KVM's routes for GSIs 0-23 (a masked entry: no route), so an
//   irqfd on a device's GSI delivers that entry's message in the kernel with no vireo thread
//   (the virtio devices' path), and KVM exits on the EOI of a level-triggered entry's vector
//   (ExitReason::IoapicEoi), which ends the entry's remote IRR here. Lines that vireo's own
//   devices drive (set_irq: the UART, the GED, PCI INTx) are raised in the model, which sends
//   the message with KVM_SIGNAL_MSI.
// - 8259A pair: its INTR output is vCPU 0's ExtINT (LINT0): the vCPU's loop injects the
//   acknowledged vector with KVM_INTERRUPT when KVM says it can take one (before_run), and asks
//   for an interrupt-window exit otherwise; a rising output kicks vCPU 0 out of KVM_RUN.
// - 8254 PIT: channel 0's output edges come from a timerfd on the device loop and go to the
//   PIC's IRQ 0 and the I/O APIC's pin 2 (the MADT's interrupt source override).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>

#include "base/event_fd.hpp"
#include "base/result.hpp"
#include "devices/bus.hpp"
#include "devices/irqchip/ioapic.hpp"
#include "devices/irqchip/pic.hpp"
#include "devices/irqchip/pit.hpp"
#include "hv/machine.hpp"
#include "hv/vcpu.hpp"
#include "snapshot/state.hpp"

namespace vireo::vmm {

class SplitIrqchip final : devices::irqchip::MsiSink,
                           devices::irqchip::OutputSink,
                           devices::irqchip::TimerSink {
  public:
    /// `machine` (enabled with IrqchipMode::Split) must outlive the chips.
    static Result<std::unique_ptr<SplitIrqchip>> create(hv::Machine& machine);
    ~SplitIrqchip() override;
    SplitIrqchip(const SplitIrqchip&) = delete;
    SplitIrqchip& operator=(const SplitIrqchip&) = delete;

    /// The I/O APIC's MMIO window (at devices::irqchip::Ioapic::kBase) as a bus device.
    std::shared_ptr<devices::Device> ioapic_window();
    /// Attaches the PIC's and the PIT's port ranges to `pio` (each new port bus).
    Result<void> attach_ports(devices::Bus& pio);
    /// The timerfd of the PIT's channel 0: the device loop calls on_timer() when readable.
    int timer_fd() const noexcept { return timer_.fd(); }
    void on_timer();
    /// vCPU 0, the one the 8259s interrupt (set once, before it runs).
    void set_bsp(hv::Vcpu& bsp) noexcept { bsp_ = &bsp; }

    /// Drives interrupt line `gsi`: its I/O APIC pin and, for 0-15, the PIC's IRQ (ISA lines
    /// are wired to both, as on a PC; IRQ 0 is the PIT's and comes in on pin 2).
    void set_irq(uint32_t gsi, bool level);
    /// ExitReason::IoapicEoi: the local APICs ended `vector`.
    void end_of_interrupt(uint8_t vector) { ioapic_.end_of_interrupt(vector); }
    /// On vCPU 0's thread before each run: the 8259s' pending interrupt, if any (above).
    Result<void> before_run(hv::Vcpu& bsp);

    /// Back to the power-on state (a guest reboot), with no timer armed.
    Result<void> reset();
    /// The three chips' state in a snapshot. restore() reads it back (and re-arms the PIT's
    /// timer); once the decoder finished without error, sync() hands KVM the restored routes.
    void save(snapshot::Encoder& e) const;
    void restore(snapshot::Decoder& d);
    Result<void> sync();

  private:
    SplitIrqchip(hv::Machine& machine, TimerFd timer);
    class Window;
    void deliver(const devices::irqchip::MsiMessage& message) override;
    void set_output(bool asserted) override;
    void arm(uint64_t deadline_ns) override;
    void irq0_edge() override;
    /// The I/O APIC's entries as KVM routes (after a guest write, a reset, a restore).
    Result<void> update_routes();

    hv::Machine& machine_;
    TimerFd timer_;
    devices::irqchip::MonotonicClock clock_;
    devices::irqchip::Ioapic ioapic_;
    devices::irqchip::Pic pic_;
    devices::irqchip::Pit pit_;
    std::vector<uint8_t> power_on_;  // save() of the fresh chips
    std::mutex routes_mu_;           // routes_, and the order of route updates
    std::array<std::optional<hv::MsiRoute>, devices::irqchip::Ioapic::kPins> routes_;
    bool routes_set_ = false;
    hv::Vcpu* bsp_ = nullptr;
    std::atomic<bool> extint_{false};        // the 8259s' output
    std::atomic<uint64_t> route_errors_{0};  // the first failed route update is logged
};

}  // namespace vireo::vmm
