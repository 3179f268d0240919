// Entry point of the hv layer: one open /dev/kvm, its capabilities and limits.
//
// Like NetBSD's libnvmm, the hv layer is small and explicit: a Machine starts with no devices,
// no interrupt controller and no optional exits; the caller switches on what it needs.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "hv/vcpu_state.hpp"

namespace vireo::hv {

class Machine;
struct MachineConfig;

/// Limits of this host's KVM.
struct Limits {
    uint32_t max_vcpus = 0;          ///< vCPUs per machine (KVM_CAP_MAX_VCPUS)
    uint32_t recommended_vcpus = 0;  ///< KVM_CAP_NR_VCPUS (usually the host CPU count)
    uint32_t max_vcpu_id = 0;        ///< ids must be below this (KVM_CAP_MAX_VCPU_ID)
    uint32_t max_memslots = 0;       ///< memory slots per machine
    uint8_t phys_addr_bits = 0;      ///< guest-physical address width (CPUID 0x80000008)
};

/// Optional KVM features a caller may ask about.
enum class Feature {
    KernelIrqchip,  ///< in-kernel LAPIC + IOAPIC + PIC
    SplitIrqchip,   ///< in-kernel LAPIC only
    Ioeventfd,
    Irqfd,
    ReadonlyMemory,
    Xsave,
    Xcrs,
    Pit,
    UserSpaceMsr,
    ManualDirtyLogProtect,
    BinaryStats,   ///< KVM_GET_STATS_FD: the kernel's per-vCPU and per-machine counters
    KvmclockCtrl,  ///< KVM_KVMCLOCK_CTRL: tell a paused guest it was stopped
    MsrFilter,     ///< KVM_X86_SET_MSR_FILTER (Machine::restrict_msrs; with UserSpaceMsr)
};

/// An open /dev/kvm. Cheap to share (const after open); machines do not depend on its lifetime.
class Hypervisor {
  public:
    /// Opens the KVM device at `path` and checks it is usable: the API version is 12 and the
    /// capabilities vireo cannot do without are present. Errors say what is wrong and what to do.
    static Result<Hypervisor> open(const std::string& path = "/dev/kvm");

    const Limits& limits() const noexcept { return limits_; }
    bool has(Feature feature) const noexcept;
    /// CPUID leaves KVM can expose to a guest (KVM_GET_SUPPORTED_CPUID), read once at open(),
    /// plus the TSC-deadline timer (1.ECX[24]) where KVM_CAP_TSC_DEADLINE_TIMER says its
    /// in-kernel LAPIC has it.
    const std::vector<CpuidEntry>& supported_cpuid() const noexcept { return cpuid_; }
    /// The MSRs KVM saves and restores for a vCPU (KVM_GET_MSR_INDEX_LIST), read once at
    /// open(): what a vCPU's complete state holds of its MSRs.
    const std::vector<uint32_t>& saved_msrs() const noexcept { return msrs_; }
    /// Name of the KVM implementation module if known ("kvm_intel", "kvm_amd", "kvm_pvm", "").
    const std::string& flavor() const noexcept { return flavor_; }
    /// True if this host's KVM runs guest ring 0 on hardware (VT-x/AMD-V), so a full OS kernel
    /// can run; false for software implementations like kvm_pvm.
    bool hardware_assisted() const noexcept;

    /// Creates an empty machine configured as asked.
    Result<std::unique_ptr<Machine>> create_machine(const MachineConfig& config) const;

    /// Size of each vCPU's shared run page area.
    uint32_t vcpu_mmap_size() const noexcept { return mmap_size_; }

  private:
    Hypervisor() = default;

    UniqueFd fd_;
    std::string path_;
    Limits limits_;
    std::vector<CpuidEntry> cpuid_;
    std::vector<uint32_t> msrs_;
    std::string flavor_;
    uint32_t mmap_size_ = 0;
    uint32_t features_ = 0;
};

}  // namespace vireo::hv
