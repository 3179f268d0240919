// The KVM calls vireo makes, grouped by who makes them once a domain runs: the sandbox's
// seccomp allow-lists are built from these (sandbox/filters.cpp), and docs/security.md lists
// them per thread. A call not in a thread's groups kills the domain.
#pragma once

#include <span>

namespace vireo::hv {

/// A vCPU's own calls: KVM_RUN, its state (get/set registers, MSRs, events, LAPIC, MP state)
/// and KVM_KVMCLOCK_CTRL. Made by the vCPU's thread (and by the thread that builds it).
std::span<const unsigned long> vcpu_requests() noexcept;

/// Interrupts raised by devices: KVM_IRQ_LINE, KVM_SIGNAL_MSI, KVM_INTERRUPT, KVM_NMI.
std::span<const unsigned long> interrupt_requests() noexcept;

/// Pausing and resuming the guest from outside its vCPU threads: the VM's clock read and set
/// (KVM_GET_CLOCK, KVM_SET_CLOCK), each vCPU's kvmclock told it was paused
/// (KVM_KVMCLOCK_CTRL).
std::span<const unsigned long> pause_requests() noexcept;

/// Building a machine: opening KVM, creating the VM, its memory slots, irqchip, PIT,
/// ioeventfds/irqfds, vCPUs and their CPUID, reading capabilities and statistics. Only the
/// thread that builds machines has them.
std::span<const unsigned long> build_requests() noexcept;

}  // namespace vireo::hv
