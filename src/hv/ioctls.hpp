// The KVM calls vireo makes, grouped by who makes them once a domain runs: the sandbox's
// seccomp allow-lists are built from these (sandbox/filters.cpp), and docs/security.md lists
// them per thread. A call not in a thread's groups kills the domain.
#pragma once

#include <span>

namespace vireo::hv {

/// A vCPU's own calls: KVM_RUN, its state (get/set registers, MSRs, events, LAPIC, MP state,
/// debug registers) and KVM_KVMCLOCK_CTRL. Made by the vCPU's thread.
std::span<const unsigned long> vcpu_requests() noexcept;

/// The same without KVM_RUN: a vCPU's state, read and set by the thread that resets the machine
/// at a guest reboot (and that builds it).
std::span<const unsigned long> vcpu_state_requests() noexcept;

/// Interrupts raised by devices: KVM_IRQ_LINE, KVM_SIGNAL_MSI, KVM_INTERRUPT, KVM_NMI.
std::span<const unsigned long> interrupt_requests() noexcept;
/// A guest's MSI-X programming, on the vCPU thread that made it (and at a reboot): the GSI
/// routing table and the irqfds of its vectors (KVM_SET_GSI_ROUTING, KVM_IRQFD).
std::span<const unsigned long> msi_routing_requests() noexcept;

/// Pausing and resuming the guest from outside its vCPU threads: the VM's clock read and set
/// (KVM_GET_CLOCK, KVM_SET_CLOCK), each vCPU's kvmclock told it was paused
/// (KVM_KVMCLOCK_CTRL).
std::span<const unsigned long> pause_requests() noexcept;

/// Putting the in-kernel interrupt controllers and PIT back to their power-on state at a guest
/// reboot (KVM_GET/SET_IRQCHIP, KVM_GET/SET_PIT2): the machine is reset in place.
std::span<const unsigned long> reset_requests() noexcept;

/// Saving a paused machine (a snapshot, from the control API's worker): reading every vCPU's
/// state (KVM_GET_REGS, SREGS, FPU, XSAVE, XCRS, LAPIC, VCPU_EVENTS, MP_STATE, MSRS) and the
/// in-kernel interrupt controllers and PIT (KVM_GET_IRQCHIP, KVM_GET_PIT2). Reads only.
std::span<const unsigned long> snapshot_requests() noexcept;

/// Live migration: the dirty-page log (on, off, read) of RAM slots.
std::span<const unsigned long> migration_requests() noexcept;

/// Building a machine: opening KVM, creating the VM, its memory slots, irqchip, PIT,
/// ioeventfds/irqfds, vCPUs and their CPUID, reading capabilities and statistics. Made once,
/// before a domain enters its sandbox; no thread of a jailed domain has them (but the API
/// worker's migration_requests()).
std::span<const unsigned long> build_requests() noexcept;

}  // namespace vireo::hv
