#include "hv/ioctls.hpp"

#include "hv/kvm_uapi.hpp"

namespace vireo::hv {

namespace {

constexpr unsigned long kVcpu[] = {
    KVM_RUN,           KVM_GET_REGS,     KVM_SET_REGS,  KVM_GET_SREGS,       KVM_SET_SREGS,
    KVM_GET_FPU,       KVM_SET_FPU,      KVM_GET_XSAVE, KVM_SET_XSAVE,       KVM_GET_XCRS,
    KVM_SET_XCRS,      KVM_GET_LAPIC,    KVM_SET_LAPIC, KVM_GET_VCPU_EVENTS, KVM_SET_VCPU_EVENTS,
    KVM_GET_MP_STATE,  KVM_SET_MP_STATE, KVM_GET_MSRS,  KVM_SET_MSRS,        KVM_KVMCLOCK_CTRL,
    KVM_SET_DEBUGREGS,
};
constexpr unsigned long kInterrupt[] = {KVM_IRQ_LINE, KVM_SIGNAL_MSI, KVM_INTERRUPT, KVM_NMI};
// Guest MSI-X programming: a vector's route, and its eventfd moved between the device loop
// and an irqfd (hv::Machine::set_msi_route; vmm/vm.cpp). Only this VM's own interrupts.
constexpr unsigned long kMsiRouting[] = {KVM_SET_GSI_ROUTING, KVM_IRQFD};
constexpr unsigned long kPause[] = {KVM_GET_CLOCK, KVM_SET_CLOCK, KVM_KVMCLOCK_CTRL};
constexpr unsigned long kReset[] = {KVM_GET_IRQCHIP, KVM_SET_IRQCHIP, KVM_GET_PIT2, KVM_SET_PIT2};
constexpr unsigned long kSnapshot[] = {
    KVM_GET_REGS, KVM_GET_SREGS,   KVM_GET_FPU,         KVM_GET_XSAVE,
    KVM_GET_XCRS, KVM_GET_LAPIC,   KVM_GET_VCPU_EVENTS, KVM_GET_MP_STATE,
    KVM_GET_MSRS, KVM_GET_IRQCHIP, KVM_GET_PIT2,
};
// Live migration's dirty-page log: switched on and off per RAM slot (a slot's flags are set
// again through KVM_SET_USER_MEMORY_REGION, which therefore a migrating thread may call: it can
// map only this process's own memory into its own guest) and read.
constexpr unsigned long kMigration[] = {KVM_SET_USER_MEMORY_REGION, KVM_GET_DIRTY_LOG};
constexpr unsigned long kBuild[] = {
    KVM_GET_API_VERSION,
    KVM_CHECK_EXTENSION,
    KVM_GET_VCPU_MMAP_SIZE,
    KVM_GET_SUPPORTED_CPUID,
    KVM_GET_MSR_INDEX_LIST,
    KVM_CREATE_VM,
    KVM_SET_TSS_ADDR,
    KVM_CREATE_IRQCHIP,
    KVM_ENABLE_CAP,
    KVM_X86_SET_MSR_FILTER,
    KVM_CREATE_PIT2,
    KVM_SET_USER_MEMORY_REGION,
    KVM_GET_DIRTY_LOG,
    KVM_CREATE_VCPU,
    KVM_SET_CPUID2,
    KVM_IOEVENTFD,
    KVM_IRQFD,
    KVM_GET_STATS_FD,
    KVM_GET_TSC_KHZ,  // the userspace model's TSC-deadline timer
};

}  // namespace

std::span<const unsigned long> vcpu_requests() noexcept {
    return kVcpu;
}
std::span<const unsigned long> vcpu_state_requests() noexcept {
    static_assert(kVcpu[0] == KVM_RUN);
    return std::span<const unsigned long>(kVcpu).subspan(1);
}
std::span<const unsigned long> interrupt_requests() noexcept {
    return kInterrupt;
}
std::span<const unsigned long> msi_routing_requests() noexcept {
    return kMsiRouting;
}
std::span<const unsigned long> pause_requests() noexcept {
    return kPause;
}
std::span<const unsigned long> reset_requests() noexcept {
    return kReset;
}
std::span<const unsigned long> snapshot_requests() noexcept {
    return kSnapshot;
}
std::span<const unsigned long> migration_requests() noexcept {
    return kMigration;
}
std::span<const unsigned long> build_requests() noexcept {
    return kBuild;
}

}  // namespace vireo::hv
