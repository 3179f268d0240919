// One virtual CPU. A Vcpu is used by one thread at a time; request_stop() is the only call that
// may come from another thread.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <optional>
#include <span>

#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "hv/exit.hpp"
#include "hv/stats.hpp"
#include "hv/vcpu_state.hpp"

namespace vireo::hv {

/// What KVM tells of the interrupt state with every exit, at no cost (the run page).
struct ExitFlags {
    bool if_flag = false;  ///< RFLAGS.IF
    /// KVM would take an external interrupt now (KVM_INTERRUPT; the split irqchip's 8259s).
    bool ready = false;
    uint64_t cr8 = 0;  ///< the task priority
};

class Vcpu {
  public:
    Vcpu(const Vcpu&) = delete;
    Vcpu& operator=(const Vcpu&) = delete;
    ~Vcpu();

    uint32_t id() const noexcept { return id_; }

    /// Runs the guest until it needs the VMM. Complete an Io/Mmio read by filling the exit's
    /// data before calling run() again. Returns an error only for host-side failures.
    Result<Exit> run();

    /// Makes a run() in progress (or the next one) return ExitReason::Interrupted promptly.
    /// Safe from any thread and from signal handlers.
    void request_stop() noexcept;
    /// Finishes the instruction of the last Io/Mmio exit (KVM moves RIP past it, or stores a
    /// read's data, only when KVM_RUN is entered again) without running any further guest
    /// instruction: KVM_RUN with immediate_exit set. Before the state is read for a snapshot,
    /// or the saved state would repeat the instruction (KVM's API documentation, KVM_RUN).
    Result<void> complete_pending();

    /// Reads the parts of the state selected by `flags` into `state`.
    Result<void> get_state(uint32_t flags, VcpuState& state) const;
    /// Writes the parts of the state selected by `flags`.
    Result<void> set_state(uint32_t flags, const VcpuState& state);

    /// Reads the MSRs whose indices are given in `msrs`.
    Result<void> get_msrs(std::span<MsrEntry> msrs) const;
    /// Writes MSRs; fails naming the first MSR KVM refused.
    Result<void> set_msrs(std::span<const MsrEntry> msrs);
    /// Reads every MSR of `indices` that KVM can read for this vCPU, leaving out those it
    /// cannot (which depend on the CPUID set): a vCPU's MSR state.
    Result<std::vector<MsrEntry>> read_msrs(std::span<const uint32_t> indices) const;
    /// Writes `msrs`, going on past any KVM refuses; returns how many it refused.
    Result<size_t> write_msrs(std::span<const MsrEntry> msrs);
    /// Debug registers back to their reset values (DR0-3 0, DR6 0xffff0ff0, DR7 0x400).
    Result<void> clear_debug_registers();

    /// Sets the CPUID leaves the guest sees.
    Result<void> set_cpuid(std::span<const CpuidEntry> entries);

    /// Injects external interrupt `vector`: with IrqchipMode::None (the guest must have
    /// interrupts enabled), or with IrqchipMode::Split as the 8259s' ExtINT through LINT0 (when
    /// exit_flags().ready; one at a time).
    Result<void> inject_interrupt(uint8_t vector);
    /// The guest TSC's rate in kHz (KVM_GET_TSC_KHZ).
    Result<uint32_t> tsc_khz() const;
    /// Injects an NMI.
    Result<void> inject_nmi();
    /// Injects exception `vector` (0..31) with an optional error code.
    Result<void> inject_exception(uint8_t vector, std::optional<uint32_t> error_code = {});

    /// The interrupt state KVM reported with the last exit.
    ExitFlags exit_flags() const noexcept;

    /// IrqchipMode::None: the CR8 the guest gets at the next run() (KVM takes it from the run
    /// page; a user-space local APIC's TPR written through its registers).
    void set_cr8(uint64_t cr8) noexcept;
    /// Asks for an IrqWindowOpen exit as soon as the guest can take an interrupt.
    void request_interrupt_window(bool enable) noexcept;

    /// Tells a kvm-clock guest that the host stopped this vCPU (KVM_KVMCLOCK_CTRL), so its
    /// soft-lockup watchdog does not fire for the time it was paused. A no-op for guests that
    /// do not use kvm-clock. Call while the vCPU is not running.
    Result<void> notify_paused();

    /// Opens KVM's binary statistics of this vCPU (Feature::BinaryStats). A vCPU ioctl: call it
    /// before the vCPU runs (it waits while another thread is in run()); reading the returned
    /// Stats takes no vCPU lock.
    Result<Stats> open_stats() const;

    /// Thread id of the thread that last called run() (0 before the first run()).
    pid_t runner_tid() const noexcept { return runner_tid_.load(std::memory_order_acquire); }

  private:
    friend class Machine;
    Vcpu(UniqueFd fd, uint32_t id, void* run, size_t run_size);
    Result<void> set_debug_registers(const DebugRegs& regs);

    UniqueFd fd_;
    uint32_t id_;
    void* run_;  // struct kvm_run, shared with the kernel
    size_t run_size_;
    std::atomic<pid_t> runner_tid_{0};
};

}  // namespace vireo::hv
