// The userspace interrupt model (`--irqchip userspace`; the machine's IrqchipMode::None): KVM
// creates no interrupt controller and no PIT, as NVMM's kernel part has none. vireo emulates a
// local APIC per vCPU (devices/irqchip/lapic.hpp) besides the I/O APIC, 8259s and PIT that it
// shares with the split model (PcChips), and delivers every interrupt itself:
//
// - The vCPU's loop asks before each run (before_run) which vector its CPU takes now: an NMI,
//   the 8259s' ExtINT on the BSP (when its LINT0 takes it), or the local APIC's highest request
//   above the task priority. It injects it with KVM_INTERRUPT when KVM says the guest can take
//   one (the run page's ready_for_interrupt_injection), and asks for an interrupt-window exit
//   otherwise. CR8 moves between the run page and the local APIC's TPR on every exit and entry;
//   KVM exits when the guest lowers it (ExitReason::SetTpr) so what it unmasked is delivered.
// - The xAPIC page (0xfee00000) is MMIO of the vCPU that touches it (mmio()); IA32_APIC_BASE and
//   IA32_TSC_DEADLINE exit by the machine's MSR filter, the x2APIC MSRs as MSRs KVM does not
//   know without its own APIC (msr()).
// - HLT exits to vireo: the vCPU's thread sleeps (halt()) until its CPU has something to take,
//   or an NMI, INIT or startup IPI, or the VMM asks it to stop. Whoever makes an interrupt
//   deliverable kicks the vCPU: a sleeping one is woken, a running one leaves KVM_RUN.
// - Each local APIC's timer is a timerfd on the device loop (on_lapic_timer). The I/O APIC's
//   messages, and MSIs, go to the local APICs they name; IPIs the same way.
// - The application processors start waiting for INIT and a startup IPI (wait_for_startup),
//   as after power-on; an INIT to a running vCPU sends it back there.
//
// Every interrupt crosses user space, so each costs exits that the kernel model saves; virtio
// devices' eventfds are watched on the device loop (no vCPU thread involved).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "devices/irqchip/lapic.hpp"
#include "vmm/split_irqchip.hpp"

namespace vireo::vmm {

class UserIrqchip final : public PcChips {
  public:
    /// For a machine without in-kernel chips and `cpus` vCPUs (IDs 0..cpus-1, vCPU 0 the BSP,
    /// its LINT0 and LINT1 wired as firmware leaves them: ExtINT and NMI).
    static Result<std::unique_ptr<UserIrqchip>> create(const hv::Machine& machine, uint32_t cpus);
    ~UserIrqchip() override;

    /// Each vCPU, once, before any runs (its TSC rate for the TSC-deadline timer).
    Result<void> attach(hv::Vcpu& vcpu);
    /// vCPU `id`'s local APIC timer: the device loop calls on_lapic_timer(id) when readable.
    int lapic_timer_fd(uint32_t id) const noexcept;
    void on_lapic_timer(uint32_t id);

    /// The vCPU's pending interrupt (see above), and its TPR into CR8.
    Result<void> before_run(hv::Vcpu& vcpu) override;
    /// After each exit, before it is handled: CR8 (the guest may have moved it) into the TPR.
    void after_exit(hv::Vcpu& vcpu);
    /// A guest access of the local APIC's page: handled (true), or not the APIC's (false).
    bool mmio(hv::Vcpu& vcpu, const hv::MmioExit& exit);
    /// An MSR exit: the local APIC's MSRs are completed (or refused with #GP) here (true).
    bool msr(hv::Vcpu& vcpu, const hv::MsrExit& exit);
    /// ExitReason::Halt: sleeps until the vCPU has an interrupt it can take (with `if_flag`,
    /// RFLAGS.IF at the HLT), an NMI, an INIT or startup IPI, or `stop()` holds after a wake().
    void halt(hv::Vcpu& vcpu, const std::function<bool()>& stop);
    /// Whether the vCPU waits for a startup IPI (an AP after power-on or INIT, which reset its
    /// local APIC).
    bool waits_for_startup(const hv::Vcpu& vcpu) const;
    /// Sleeps until a startup IPI arrives (its vector: the CPU starts in real mode at vector
    /// * 4096) or `stop()` holds after a wake().
    std::optional<uint8_t> wait_for_startup(const hv::Vcpu& vcpu,
                                            const std::function<bool()>& stop);
    /// A device's message-signalled interrupt, to the local APICs it names.
    void signal_msi(const devices::irqchip::MsiMessage& message) { deliver(message); }
    /// Wakes every sleeping vCPU thread (to look at its stop condition).
    void wake_all();

    void save(snapshot::Encoder& e) const override;
    void restore(snapshot::Decoder& d) override;
    Result<void> sync() override;

    /// Interrupts injected with KVM_INTERRUPT (all vCPUs), for `vireo info`-style figures.
    uint64_t injected() const noexcept { return injected_.load(std::memory_order_relaxed); }

  private:
    struct Cpu;
    UserIrqchip(TimerFd timer, uint32_t cpus);
    void deliver(const devices::irqchip::MsiMessage& message) override;
    void set_output(bool asserted) override;
    /// An IPI or a message: to every local APIC it names.
    void route(const devices::irqchip::Ipi& ipi);
    void kick(Cpu& cpu);
    /// Whether `cpu` has something to take now (with interrupts enabled or not).
    bool deliverable(Cpu& cpu, bool if_flag) const;
    bool extint_for(Cpu& cpu) const;

    std::vector<std::unique_ptr<Cpu>> cpus_;
    std::atomic<bool> extint_{false};  // the 8259s' output
    std::atomic<uint64_t> injected_{0};
};

}  // namespace vireo::vmm
