// A virtual machine: guest-physical memory map, interrupt controller mode, doorbells, vCPUs.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "hv/hypervisor.hpp"
#include "memory/address.hpp"

namespace vireo::hv {

class Vcpu;

/// Which interrupt controllers live in the kernel. Nothing is on unless asked for.
enum class IrqchipMode {
    None,    ///< no in-kernel LAPIC/IOAPIC/PIC: the VMM injects interrupts itself
    Kernel,  ///< in-kernel LAPIC, IOAPIC and PIC (fast path for full guests)
    Split,   ///< in-kernel LAPIC only; IOAPIC/PIC in user space
};

/// "none", "kernel" or "split".
const char* to_string(IrqchipMode mode) noexcept;

/// A message-signalled interrupt as KVM routes it.
struct MsiRoute {
    uint64_t address = 0;
    uint32_t data = 0;
    friend bool operator==(const MsiRoute&, const MsiRoute&) = default;
};

struct MachineConfig {
    IrqchipMode irqchip = IrqchipMode::None;
    bool pit = false;                  ///< in-kernel i8254 PIT (needs IrqchipMode::Kernel)
    uint32_t split_irqchip_pins = 24;  ///< IOAPIC pins routed for IrqchipMode::Split
    /// Where KVM puts the real-mode TSS (VT-x only; three pages). Must be outside guest RAM.
    uint64_t tss_addr = 0xfffbd000;
};

/// Flags of a memory mapping.
enum MapFlags : uint32_t {
    kMapNone = 0,
    kMapReadOnly = 1u << 0,  ///< guest writes exit as MMIO
    kMapDirtyLog = 1u << 1,  ///< track written pages (fetch_dirty_log)
};

/// Handle of one guest-physical mapping.
struct SlotId {
    uint32_t value = 0;
    friend bool operator==(SlotId, SlotId) = default;
};

/// Address space of an ioeventfd.
enum class IoSpace { Pio, Mmio };

/// An ioeventfd registration: guest writes of `len` bytes at `addr` signal `fd` instead of
/// exiting to user space (optionally only when the written value equals `datamatch`).
struct IoEvent {
    IoSpace space = IoSpace::Mmio;
    uint64_t addr = 0;
    uint32_t len = 4;  ///< 0 (any length, MMIO only), 1, 2, 4 or 8
    int fd = -1;
    std::optional<uint64_t> datamatch;
};

/// Bitmap of dirty pages of one slot (bit i = page i from the slot's start).
struct DirtyBitmap {
    std::vector<uint64_t> words;
    uint64_t pages = 0;

    bool test(uint64_t page) const noexcept {
        return page < pages && (words[page / 64] >> (page % 64)) & 1;
    }
    uint64_t count() const noexcept;
};

/// The in-kernel interrupt controllers' and PIT's state (KVM's layouts, opaque here): what a
/// machine's power-on state holds of them, to be put back at a guest reboot.
struct ChipState {
    std::vector<uint8_t> pic_primary, pic_secondary, ioapic;  ///< KVM_GET_IRQCHIP each
    std::vector<uint8_t> pit;                                 ///< KVM_GET_PIT2; empty: no PIT
};

class Machine {
  public:
    Machine(const Machine&) = delete;
    Machine& operator=(const Machine&) = delete;
    ~Machine();

    IrqchipMode irqchip() const noexcept { return irqchip_.load(std::memory_order_acquire); }

    /// Switches on the in-kernel interrupt controller (and optionally the PIT, which needs
    /// IrqchipMode::Kernel). Once per machine, before any vCPU exists. create_machine() calls
    /// it for MachineConfig::irqchip; callers that want to overlap it with other set-up (such as
    /// registering guest RAM) create the machine without one and call this themselves.
    Result<void> enable_irqchip(IrqchipMode mode, bool pit = false, uint32_t split_pins = 24);
    const Limits& limits() const noexcept { return limits_; }

    /// Lets the guest read and write only the MSRs `allowed` lists (in any order; they must fall
    /// into at most 16 groups of 12288 consecutive indices; KVM always allows the x2APIC's,
    /// 0x800-0x8ff). Any other RDMSR or WRMSR, and one of an MSR KVM does not know, exits with
    /// ExitReason::Msr for the VMM to refuse (#GP) or complete. The VMM's own get/set_msrs are
    /// never filtered. Off unless called; once per machine, before any vCPU is created. Needs
    /// Feature::MsrFilter and Feature::UserSpaceMsr.
    /// `refused_too`: also an access KVM would refuse with #GP exits (the x2APIC's MSRs on a
    /// machine without KVM's local APIC: IrqchipMode::None), for the VMM to complete.
    Result<void> restrict_msrs(std::span<const uint32_t> allowed, bool refused_too = false);
    /// The other way round: a guest RDMSR or WRMSR of one of `trapped` (and of an MSR KVM does
    /// not know) exits with ExitReason::Msr, every other MSR is KVM's (IrqchipMode::None: the
    /// user-space local APIC's IA32_APIC_BASE and IA32_TSC_DEADLINE). Same conditions as
    /// restrict_msrs(); the last filter set before the first vCPU holds.
    Result<void> trap_msrs(std::span<const uint32_t> trapped, bool refused_too = false);
    /// Without a filter: a guest RDMSR or WRMSR of an MSR KVM does not know, or of a value KVM
    /// refuses, exits with ExitReason::Msr instead of raising #GP in the guest (libnvmm: NVMM
    /// hands such accesses to its client). Once per machine, before any vCPU; needs
    /// Feature::UserSpaceMsr. Not combined with restrict_msrs().
    Result<void> exit_on_unknown_msrs();

    /// Maps `size` bytes of host memory at `host` to guest-physical `gpa`. All of gpa, size and
    /// host must be 4 KiB-aligned; the range must not overlap another mapping and must lie within
    /// the guest's physical address width. The memory must stay mapped until unmap().
    Result<SlotId> map(memory::Gpa gpa, void* host, uint64_t size, uint32_t flags = kMapNone);
    /// Removes a mapping; guest accesses there become MMIO exits.
    Result<void> unmap(SlotId slot);
    /// Turns dirty-page logging of a mapping on or off.
    Result<void> set_dirty_logging(SlotId slot, bool enabled);
    /// Returns the pages written since the last call (or since logging was enabled) and
    /// clears the log.
    Result<DirtyBitmap> fetch_dirty_log(SlotId slot);
    /// Number of mappings.
    size_t mapping_count() const;

    /// Creates vCPU `id` (0 <= id < limits().max_vcpu_id; at most limits().max_vcpus).
    Result<std::unique_ptr<Vcpu>> create_vcpu(uint32_t id);
    uint32_t vcpu_count() const noexcept { return vcpu_count_.load(std::memory_order_relaxed); }

    /// Registers / removes an ioeventfd.
    Result<void> add_ioevent(const IoEvent& event);
    Result<void> remove_ioevent(const IoEvent& event);
    /// Connects eventfd `fd` to interrupt line `gsi`: signalling it raises the interrupt.
    /// With `resample_fd` the line is level-triggered and `resample_fd` is signalled on EOI.
    Result<void> add_irqfd(int fd, uint32_t gsi, int resample_fd = -1);
    Result<void> remove_irqfd(int fd, uint32_t gsi);
    /// Sets interrupt line `gsi` (needs an in-kernel irqchip).
    Result<void> set_irq_line(uint32_t gsi, bool level);
    /// Delivers a message-signalled interrupt (needs an in-kernel LAPIC).
    Result<void> signal_msi(uint64_t address, uint32_t data);
    /// Routes `gsi` (kFirstMsiGsi or above) to a message-signalled interrupt, so that an irqfd
    /// on it delivers that message in the kernel; the routing table keeps KVM's default
    /// IOAPIC and PIC routes for GSIs 0-23 (needs IrqchipMode::Kernel). Any thread.
    Result<void> set_msi_route(uint32_t gsi, uint64_t address, uint32_t data);
    static constexpr uint32_t kFirstMsiGsi = 24;
    /// IrqchipMode::Split: the user-space I/O APIC's pins as routes of GSIs 0 to pins-1 (one
    /// entry per pin; none: the pin is masked). An irqfd on such a GSI then delivers the pin's
    /// message in the kernel, and the local APICs' EOI of a level-triggered route's vector
    /// exits (ExitReason::IoapicEoi). Replaces every pin's route; any thread.
    Result<void> set_pin_routes(std::span<const std::optional<MsiRoute>> pins);

    /// The guest's kvm-clock in nanoseconds (KVM_GET_CLOCK) and setting it (KVM_SET_CLOCK):
    /// saved when a machine is paused and restored on resume, so guest time does not jump.
    Result<uint64_t> get_clock() const;
    Result<void> set_clock(uint64_t ns);

    /// The in-kernel PIC, IOAPIC and PIT state, and putting it back: a guest reboot returns
    /// the chips to their power-on state without a new machine. Without IrqchipMode::Kernel
    /// the kernel holds none: the state is empty, and only an empty one is put back.
    Result<ChipState> save_chips() const;
    Result<void> restore_chips(const ChipState& state);

  private:
    friend class Hypervisor;
    Machine(UniqueFd fd, const Hypervisor& hv, const MachineConfig& config);
    Result<void> setup();

    struct Mapping {
        uint64_t gpa = 0;
        uint64_t size = 0;
        uint64_t host = 0;
        uint32_t flags = 0;
        bool used = false;
    };
    Result<void> apply(uint32_t slot, const Mapping& m);
    Result<void> check_slot(SlotId slot) const;
    Result<void> ioevent(const IoEvent& event, bool remove);
    Result<void> need_irqchip(const char* what) const;
    /// With vcpu_lock_ held: KVM hands the guest MSR accesses `reasons` names to user space.
    Result<void> msr_exits_locked(uint64_t reasons, const char* what);
    Result<void> set_msr_filter(std::span<const uint32_t> listed, bool allow_list,
                                bool refused_too);
    /// With routes_mu_ held: hands KVM the whole routing table.
    Result<void> commit_routes_locked();

    UniqueFd fd_;
    MachineConfig config_;
    std::atomic<IrqchipMode> irqchip_{IrqchipMode::None};
    bool pit_ = false;  // written once by enable_irqchip(), before any vCPU
    Limits limits_;
    uint32_t mmap_size_;
    uint32_t features_;
    uint32_t split_pins_ = 0;  // written once by enable_irqchip(), before any vCPU
    // The routes (guest MSI-X and I/O APIC programming: rare, never on the run path).
    std::mutex routes_mu_;
    std::vector<std::pair<uint32_t, MsiRoute>> msi_routes_;
    std::vector<std::optional<MsiRoute>> pin_routes_;  // IrqchipMode::Split
    mutable std::mutex map_lock_;  // guards slots_ (map/unmap are rare; never on the run path)
    std::vector<Mapping> slots_;
    std::atomic<uint32_t> vcpu_count_{0};
    std::mutex vcpu_lock_;  // serializes create_vcpu and enable_irqchip (count checks + ioctls)
};

}  // namespace vireo::hv
