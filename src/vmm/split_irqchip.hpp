// The user-space interrupt models' chips (IrqchipMode::Split and the userspace model,
// IrqchipMode::None): vireo's I/O APIC, 8259A pair and 8254 PIT (devices/irqchip/) wired to one
// machine. PcChips holds what both models share; SplitIrqchip and UserIrqchip
// (vmm/user_irqchip.hpp) say where the chips' interrupts go.
//
// - I/O APIC: its MMIO window is a device on the machine's bus; lines that vireo's own devices
//   drive (set_irq: the UART, the GED, PCI INTx) are raised in the model.
// - 8254 PIT: channel 0's output edges come from a timerfd on the device loop and go to the
//   PIC's IRQ 0 and the I/O APIC's pin 2 (the MADT's interrupt source override).
//
// Split (KVM keeps the local APICs):
// - After each guest write of the I/O APIC, its redirection entries become KVM's routes for
//   GSIs 0-23 (a masked entry: no route), so an irqfd on a device's GSI delivers that entry's
//   message in the kernel with no vireo thread (the virtio devices' path), and KVM exits on the
//   EOI of a level-triggered entry's vector (ExitReason::IoapicEoi), which ends the entry's
//   remote IRR here. The model's own messages go out with KVM_SIGNAL_MSI.
// - 8259A pair: its INTR output is vCPU 0's ExtINT (LINT0): the vCPU's loop injects the
//   acknowledged vector with KVM_INTERRUPT when KVM says it can take one (before_run), and asks
//   for an interrupt-window exit otherwise; a rising output kicks vCPU 0 out of KVM_RUN.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

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

class PcChips : devices::irqchip::MsiSink,
                devices::irqchip::OutputSink,
                devices::irqchip::TimerSink {
  public:
    ~PcChips() override;
    PcChips(const PcChips&) = delete;
    PcChips& operator=(const PcChips&) = delete;

    /// The I/O APIC's MMIO window (at devices::irqchip::Ioapic::kBase) as a bus device.
    std::shared_ptr<devices::Device> ioapic_window();
    /// Attaches the PIC's and the PIT's port ranges to `pio` (each new port bus).
    Result<void> attach_ports(devices::Bus& pio);
    /// The timerfd of the PIT's channel 0: the device loop calls on_timer() when readable.
    int timer_fd() const noexcept { return timer_.fd(); }
    void on_timer();

    /// Drives interrupt line `gsi`: its I/O APIC pin and, for 0-15, the PIC's IRQ (ISA lines
    /// are wired to both, as on a PC; IRQ 0 is the PIT's and comes in on pin 2).
    void set_irq(uint32_t gsi, bool level);
    /// Up and down again as one operation (an irqfd's signal): see Ioapic::pulse.
    void pulse(uint32_t gsi);
    /// The local APICs ended level-triggered `vector`: the I/O APIC's remote IRR.
    void end_of_interrupt(uint8_t vector) { ioapic_.end_of_interrupt(vector); }
    /// On a vCPU's thread before each of its runs: the interrupt it should take, if any.
    virtual Result<void> before_run(hv::Vcpu& vcpu) = 0;

    /// Back to the power-on state (a guest reboot), with no timer armed.
    Result<void> reset();
    /// The chips' state in a snapshot. restore() reads it back (and re-arms the timers); once
    /// the decoder finished without error, sync() hands the rest of the machine what changed.
    virtual void save(snapshot::Encoder& e) const;
    virtual void restore(snapshot::Decoder& d);
    virtual Result<void> sync() = 0;

  protected:
    explicit PcChips(TimerFd timer);
    /// Takes the power-on state that reset() puts back (once the derived chips exist).
    void keep_power_on();
    /// A guest wrote an I/O APIC register (its entries may have changed).
    virtual void entries_written() {}

    TimerFd timer_;
    devices::irqchip::MonotonicClock clock_;
    devices::irqchip::Ioapic ioapic_;
    devices::irqchip::Pic pic_;
    devices::irqchip::Pit pit_;

  private:
    class Window;
    void arm(uint64_t deadline_ns) override;
    void irq0_edge() override;

    std::vector<uint8_t> power_on_;  // save() of the fresh chips
};

class SplitIrqchip final : public PcChips {
  public:
    /// `machine` (enabled with IrqchipMode::Split) must outlive the chips.
    static Result<std::unique_ptr<SplitIrqchip>> create(hv::Machine& machine);

    /// vCPU 0, the one the 8259s interrupt (set once, before it runs).
    void set_bsp(hv::Vcpu& bsp) noexcept { bsp_ = &bsp; }
    /// The 8259s' pending interrupt on vCPU 0 (other vCPUs: nothing to do).
    Result<void> before_run(hv::Vcpu& vcpu) override;
    /// Hands KVM the restored routes.
    Result<void> sync() override;

  private:
    SplitIrqchip(hv::Machine& machine, TimerFd timer);
    void deliver(const devices::irqchip::MsiMessage& message) override;
    void set_output(bool asserted) override;
    void entries_written() override { (void)update_routes(); }  // logged there
    /// The I/O APIC's entries as KVM routes (after a guest write, a reset, a restore).
    Result<void> update_routes();

    hv::Machine& machine_;
    std::mutex routes_mu_;  // routes_, and the order of route updates
    std::array<std::optional<hv::MsiRoute>, devices::irqchip::Ioapic::kPins> routes_;
    bool routes_set_ = false;
    hv::Vcpu* bsp_ = nullptr;
    std::atomic<bool> extint_{false};        // the 8259s' output
    std::atomic<uint64_t> route_errors_{0};  // the first failed route update is logged
};

}  // namespace vireo::vmm
