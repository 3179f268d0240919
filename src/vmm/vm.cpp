#include "vmm/vm.hpp"

#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#include <cstring>
#include <thread>
#include <utility>

#include "arch/x86/acpi/tables.hpp"
#include "arch/x86/boot/linux.hpp"
#include "arch/x86/boot/pvh.hpp"
#include "arch/x86/cpuid.hpp"
#include "arch/x86/long_mode.hpp"
#include "base/log.hpp"
#include "base/proc_stat.hpp"
#include "base/thread_class.hpp"
#include "devices/legacy/acpi_pm.hpp"
#include "devices/legacy/cmos.hpp"
#include "devices/legacy/i8042.hpp"
#include "devices/legacy/pvpanic.hpp"
#include "snapshot/machine.hpp"
#include "snapshot/state.hpp"
#include "snapshot/vcpu.hpp"
#include "virtio/balloon/device.hpp"
#include "virtio/rng/device.hpp"
#include "virtio/virtio.hpp"
#include "virtio/vsock/device.hpp"

namespace vireo::vmm {

using memory::Gpa;

namespace {

// Guest-physical memory map.
constexpr uint64_t kMmioHoleStart = 0xc0000000;  // RAM below 4 GiB ends here at the latest
constexpr uint64_t k4GiB = uint64_t{1} << 32;
constexpr uint64_t kAcpiBase = 0xe0000, kAcpiSize = 0x20000;  // tables live in the BIOS area
constexpr uint64_t kPvPanicBase = 0xfe000000;
constexpr uint16_t kCom1 = 0x3f8;
constexpr uint32_t kCom1Irq = 4;
// The Generic Event Device (power button): an ISA line no platform device uses (12 would be
// a PS/2 mouse, which this machine does not have). Edge-triggered, active high.
constexpr uint32_t kGedGsi = 12;
constexpr uint32_t kMsrTsc = 0x10;           // IA32_TIME_STAMP_COUNTER
constexpr uint32_t kMsrTscDeadline = 0x6e0;  // IA32_TSC_DEADLINE: the LAPIC timer's, in TSC ticks
// The VM Generation ID: its 16 bytes in the last page of the ACPI area (reserved in the E820
// map), and the GSI of the GED that tells the guest it changed.
constexpr uint64_t kVmgenidAddr = kAcpiBase + kAcpiSize - 0x1000;
constexpr uint32_t kVmgenidGsi = 9;
// One IOAPIC pin per device: the virtio devices' first, in order, then each PCI device's INTx.
constexpr uint32_t kDeviceGsis[] = {16, 17, 18, 19, 20, 21, 22, 23, 5, 6, 7, 10, 11, 14, 15};
static_assert(std::size(kDeviceGsis) == kMaxVirtioDevices);
// Each ivshmem device's 32-bit BARs: the MSI-X table (BAR1) and its registers (BAR0).
constexpr uint64_t kPciSlotStride = 0x2000;
constexpr uint64_t k1GiB = uint64_t{1} << 30;

constexpr uint64_t align_up(uint64_t v, uint64_t a) {
    return (v + a - 1) & ~(a - 1);
}

}  // namespace

// An interrupt line of a device vireo emulates (Vm::set_gsi).
class GsiLine final : public devices::IrqLine {
  public:
    GsiLine(Vm& vm, uint32_t gsi) : vm_(vm), gsi_(gsi) {}
    void set_level(bool asserted) override {
        if (auto r = vm_.set_gsi(gsi_, asserted); !r)
            log::warn("interrupt line {}: {}", gsi_, r.error().message());
    }

  private:
    Vm& vm_;
    uint32_t gsi_;
};

namespace {

// LINT0 as ExtINT (the 8259s in virtual-wire mode) and LINT1 as NMI, as firmware leaves them.
Result<void> set_lints(hv::Vcpu& vcpu) {
    hv::VcpuState st;
    VIREO_TRY(vcpu.get_state(hv::kStateLapic, st));
    auto set_lvt = [&](size_t off, uint32_t mode) {
        uint32_t v;
        std::memcpy(&v, st.lapic.regs.data() + off, 4);
        v = (v & ~0x700u & ~(1u << 16)) | mode;  // delivery mode, unmasked
        std::memcpy(st.lapic.regs.data() + off, &v, 4);
    };
    set_lvt(0x350, 0x700);  // LVT LINT0: ExtINT
    set_lvt(0x360, 0x400);  // LVT LINT1: NMI
    return vcpu.set_state(hv::kStateLapic, st);
}

// The userspace model: KVM's paravirtual features that need its own local APIC go (as QEMU
// drops them with kernel-irqchip=off): async page faults (their interrupt and its MSR), PV EOI,
// PV unhalt (a kick through KVM's APIC), PV IPIs and directed yield (hypercalls that name APIC
// IDs), and the extended destination ID of MSIs (vireo's messages carry 8 bits).
void drop_kernel_apic_features(std::vector<hv::CpuidEntry>& cpuid) {
    constexpr uint32_t kDrop =
        1u << 4 | 1u << 6 | 1u << 7 | 1u << 10 | 1u << 11 | 1u << 13 | 1u << 14 | 1u << 15;
    for (auto& e : cpuid)
        if (e.function == 0x40000001) e.eax &= ~kDrop;
}

// A thread's last host CPU and CPU time.
void thread_stat(pid_t tid, int& cpu, double& cpu_s) {
    const ProcStat st =
        tid == 0 ? ProcStat{} : read_proc_stat(fmt::format("/proc/self/task/{}/stat", tid));
    cpu = st.cpu;
    cpu_s = st.cpu_s;
}

cpu_set_t to_cpu_set(const std::vector<int>& cpus) {
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int c : cpus)
        CPU_SET(static_cast<size_t>(c), &set);
    return set;
}

}  // namespace

const char* to_string(VmConfig::Backing backing) noexcept {
    switch (backing) {
        case VmConfig::Backing::Anonymous:
            return "anonymous";
        case VmConfig::Backing::Prefault:
            return "prefault";
        case VmConfig::Backing::Locked:
            return "locked";
        case VmConfig::Backing::HugePages:
            return "hugepages";
    }
    return "?";
}

std::optional<hv::IrqchipMode> parse_irqchip(std::string_view name) noexcept {
    for (auto m : {hv::IrqchipMode::Kernel, hv::IrqchipMode::Split, hv::IrqchipMode::None})
        if (name == irqchip_name(m)) return m;
    return std::nullopt;
}

const char* irqchip_name(hv::IrqchipMode mode) noexcept {
    return mode == hv::IrqchipMode::None ? "userspace" : hv::to_string(mode);
}

std::optional<VmConfig::Backing> parse_backing(std::string_view name) noexcept {
    for (auto b : {VmConfig::Backing::Anonymous, VmConfig::Backing::Prefault,
                   VmConfig::Backing::Locked, VmConfig::Backing::HugePages})
        if (name == to_string(b)) return b;
    return std::nullopt;
}

const char* to_string(Fate fate) noexcept {
    switch (fate) {
        case Fate::PowerOff:
            return "powered off";
        case Fate::Reboot:
            return "rebooted";
        case Fate::Panic:
            return "guest kernel panic";
        case Fate::TripleFault:
            return "triple fault";
        case Fate::InternalError:
            return "KVM internal error";
        case Fate::HostError:
            return "host error";
        case Fate::Stopped:
            return "stopped";
    }
    return "?";
}

Vm::Vm(memory::GuestMemory mem, const VmConfig& config)
    : memory_(std::move(mem)),
      config_(config),
      pool_(std::make_shared<MemoryPool>(config.vmm_pool)) {}

Vm::~Vm() {
    stop(Fate::Stopped, "machine destroyed");
    if (loop_) loop_->stop();
}

Result<void> Vm::validate(const VmConfig& config, const BootImages& images, uint32_t max_vcpus) {
    if (config.memory_bytes < kMinMemory || config.memory_bytes > kMaxMemory ||
        config.memory_bytes % (uint64_t{1} << 20) != 0)
        return fail(ErrorCode::InvalidArgument,
                    "guest memory must be a whole number of MiB from 64 MiB to 1 TiB, not {} bytes",
                    config.memory_bytes);
    if (config.backing == VmConfig::Backing::HugePages) {
        if (config.memory_bytes % memory::GuestMemory::kHugePageSize != 0)
            return fail(ErrorCode::InvalidArgument,
                        "hugepages backing needs memory in whole 2 MiB pages, not {} MiB",
                        config.memory_bytes >> 20);
        if (config.balloon)
            return fail(
                ErrorCode::InvalidArgument,
                "a balloon cannot return memory of a hugepages-backed guest (it frees 4 KiB "
                "pages); use another memory backing or no balloon");
    }
    const uint32_t max_cpus = std::min(kMaxCpus, max_vcpus);
    if (config.cpus == 0 || config.cpus > max_cpus)
        return fail(ErrorCode::InvalidArgument, "{} vCPUs: must be 1 to {}", config.cpus, max_cpus);
    if (const auto* pvh_info = images.kernel.pvh()) {
        const auto& pvh = *pvh_info;
        const uint64_t low = std::min(config.memory_bytes, kMmioHoleStart);
        if (pvh.highest + images.initrd.size() > low)
            return fail(ErrorCode::ResourceExhausted,
                        "the kernel (up to {} MiB) and initrd ({} MiB) do not fit in {} MiB",
                        pvh.highest >> 20, images.initrd.size() >> 20, low >> 20);
        return ok();
    }
    const auto& info = *images.kernel.bzimage();
    if (config.cmdline.size() > info.cmdline_size)
        return fail(ErrorCode::InvalidArgument,
                    "kernel command line is {} bytes; this kernel accepts at most {}",
                    config.cmdline.size(), info.cmdline_size);
    VIREO_TRY(arch::x86::boot::place_linux(info, images.kernel.bytes().size() - info.setup_bytes,
                                           images.initrd.size(),
                                           std::min(config.memory_bytes, kMmioHoleStart)));
    return ok();
}

namespace {

// Guest RAM around the MMIO hole: below it from 0, the rest from 4 GiB. The one layout a
// machine has, booted or restored (the ACPI tables and e820 describe it).
std::vector<memory::RegionSpec> ram_layout(uint64_t memory_bytes) {
    const uint64_t low = std::min(memory_bytes, kMmioHoleStart);
    std::vector<memory::RegionSpec> layout{{Gpa(0), low}};
    if (memory_bytes > low) layout.push_back({Gpa(k4GiB), memory_bytes - low});
    return layout;
}

}  // namespace

Result<std::unique_ptr<Vm>> Vm::create(const hv::Hypervisor& hv, const VmConfig& config,
                                       const BootImages& images) {
    VIREO_TRY(validate(config, images, hv.limits().max_vcpus));
    const auto layout = ram_layout(config.memory_bytes);
    VIREO_TRY_ASSIGN(auto mem,
                     memory::GuestMemory::create(layout, "vireo-guest-ram",
                                                 config.backing == VmConfig::Backing::HugePages));
    if (config.backing != VmConfig::Backing::Anonymous) {
        // Every page now, so nothing fails later for lack of memory.
        VIREO_TRY(mem.populate(config.backing == VmConfig::Backing::Locked));
    }
    std::unique_ptr<Vm> vm(new Vm(std::move(mem), config));
    VIREO_TRY(vm->build(hv, images));
    return vm;
}

Result<void> Vm::build(const hv::Hypervisor& hv, const BootImages& images, bool boot) {
    // The machine starts bare. Memory slots (guest RAM, the virtio register pages) are
    // registered before the interrupt controller exists: a slot update waits for an SRCU grace
    // period, which is immediate on a fresh VM but takes milliseconds once the irqchip and PIT
    // have been created (measured on kvm_pvm: 0.1 ms before, 4-8 ms after).
    VIREO_TRY_ASSIGN(machine_, hv.create_machine(hv::MachineConfig{}));
    ram_slots_.clear();
    for (const auto& r : memory_.regions()) {
        VIREO_TRY_ASSIGN(auto slot, machine_->map(r.start, r.host.ptr(), r.size));
        ram_slots_.push_back(slot);  // the memory lives as long as the Vm
    }
    VIREO_TRY(create_virtio_devices(hv));
    VIREO_TRY(create_pci_devices(hv));
    const auto mode = config_.irqchip;
    VIREO_TRY(machine_->enable_irqchip(mode, /*pit=*/mode == hv::IrqchipMode::Kernel));
    if (mode == hv::IrqchipMode::Split) {
        VIREO_TRY_ASSIGN(auto split, SplitIrqchip::create(*machine_));
        split_ = split.get();
        chips_ = std::move(split);
    } else if (mode == hv::IrqchipMode::None) {
        VIREO_TRY_ASSIGN(auto user, UserIrqchip::create(*machine_, config_.cpus));
        user_ = user.get();
        chips_ = std::move(user);
    }
    if (chips_) {
        // vireo's I/O APIC, 8259s and PIT (and local APICs); the timers on the device loop.
        VIREO_TRY(mmio_.attach(devices::irqchip::Ioapic::kBase, devices::irqchip::Ioapic::kSize,
                               chips_->ioapic_window()));
        VIREO_TRY(device_loop());
        VIREO_TRY(loop_->add(chips_->timer_fd(), [chips = chips_.get()] { chips->on_timer(); }));
        for (uint32_t id = 0; user_ != nullptr && id < config_.cpus; ++id)
            VIREO_TRY(loop_->add(user_->lapic_timer_fd(id),
                                 [user = user_, id] { user->on_lapic_timer(id); }));
    }

    // Devices.
    VIREO_TRY(attach_port_devices());
    VIREO_TRY(mmio_.attach(kPvPanicBase, devices::PvPanic::kSize,
                           std::make_shared<devices::PvPanic>(
                               [this](devices::PlatformEvent e) { on_platform_event(e); })));
    VIREO_TRY(connect_virtio_devices(platform_));
    platform_.num_cpus = config_.cpus;
    platform_.serial_port = kCom1;
    platform_.serial_irq = kCom1Irq;
    platform_.pm_port = devices::AcpiPm::kPort;
    platform_.pm_reset_value = devices::AcpiPm::kResetValue;
    platform_.s5_sleep_type = devices::AcpiPm::kS5SleepType;
    platform_.pvpanic_base = kPvPanicBase;
    platform_.ged_gsi = kGedGsi;
    platform_.vmgenid_addr = kVmgenidAddr;
    platform_.vmgenid_gsi = kVmgenidGsi;
    VIREO_TRY(new_generation_id());
    hv::VcpuState entry;
    if (boot) {
        VIREO_TRY_ASSIGN(entry, load_guest(images));
    }
    saved_msrs_ = hv.saved_msrs();

    VIREO_TRY_ASSIGN(const auto base_cpuid,
                     arch::x86::apply_cpu_template(config_.cpu, hv.supported_cpuid()));
    // The MSR allow-list, from what the guest's CPU shows (before any vCPU exists).
    if (config_.msrs.on) {
        if (!hv.has(hv::Feature::MsrFilter) || !hv.has(hv::Feature::UserSpaceMsr))
            return fail(ErrorCode::Unsupported,
                        "msr-filter: this host's KVM cannot filter a guest's MSR accesses "
                        "(KVM_CAP_X86_MSR_FILTER, Linux 5.10); use --msr-filter off");
        auto allowed = arch::x86::msr_allow_list(
            config_.msrs, arch::x86::guest_cpuid(base_cpuid, 0, config_.cpus));
        if (user_)  // the local APIC's are vireo's: they exit
            std::erase_if(allowed, [](uint32_t m) {
                return m == devices::irqchip::Lapic::kApicBaseMsr ||
                       m == devices::irqchip::Lapic::kTscDeadlineMsr;
            });
        if (auto r = machine_->restrict_msrs(allowed, /*refused_too=*/user_ != nullptr); !r)
            return fail(r.error().code(), "msr-filter: {}", r.error().message());
    } else if (user_) {
        // Only the local APIC's MSRs exit (and the x2APIC's, which KVM refuses without its own
        // APIC; so does any other it refuses: vireo refuses it the same way).
        if (!hv.has(hv::Feature::MsrFilter) || !hv.has(hv::Feature::UserSpaceMsr))
            return fail(ErrorCode::Unsupported,
                        "irqchip userspace: this host's KVM cannot hand the local APIC's MSRs to "
                        "vireo (KVM_CAP_X86_MSR_FILTER, Linux 5.10)");
        const uint32_t trapped[] = {devices::irqchip::Lapic::kApicBaseMsr,
                                    devices::irqchip::Lapic::kTscDeadlineMsr};
        if (auto r = machine_->trap_msrs(trapped, /*refused_too=*/true); !r)
            return fail(r.error().code(), "irqchip userspace: {}", r.error().message());
    }
    // vCPUs: all get CPUID and boot MSRs; the BSP gets the LAPIC's LINT0 (ExtINT) and LINT1
    // (NMI) wired as firmware leaves them, and enters the kernel in long mode. The APs keep
    // KVM's reset LAPIC (LINTs masked, as INIT leaves them) and wait for INIT/SIPI.
    const auto msrs = arch::x86::boot_msrs();
    slots_ = std::make_unique<VcpuSlot[]>(config_.cpus);
    for (uint32_t id = 0; id < config_.cpus; ++id) {
        VIREO_TRY_ASSIGN(auto vcpu, machine_->create_vcpu(id));
        auto cpuid = arch::x86::guest_cpuid(base_cpuid, id, config_.cpus);
        if (user_) drop_kernel_apic_features(cpuid);
        VIREO_TRY(vcpu->set_cpuid(cpuid));
        if (id == 0) cpuid0_ = std::move(cpuid);
        VIREO_TRY(vcpu->set_msrs(msrs));
        if (id == 0 && !user_) VIREO_TRY(set_lints(*vcpu));  // (the userspace model's: its own)
        if (user_) VIREO_TRY(user_->attach(*vcpu));
        if (id == 0 && boot) VIREO_TRY(vcpu->set_state(arch::x86::kLongModeStateFlags, entry));
        // KVM's statistics fd now: KVM_GET_STATS_FD is a vCPU ioctl and would wait for a vCPU
        // blocked in KVM_RUN; reading the fd later needs no lock.
        if (hv.has(hv::Feature::BinaryStats)) {
            auto st = vcpu->open_stats();
            kvm_stats_.push_back(st ? std::move(st).value() : hv::Stats());
        }
        vcpus_.push_back(std::move(vcpu));
    }
    if (split_) split_->set_bsp(*vcpus_[0]);

    // The machine's power-on state, put back at each guest reboot: the machine is reset in
    // place, never built again (a sandboxed domain cannot create VMs, vCPUs or memory slots).
    VIREO_TRY_ASSIGN(power_on_.chips, machine_->save_chips());
    power_on_.vcpus.resize(vcpus_.size());
    for (size_t i = 0; i < vcpus_.size(); ++i) {
        VIREO_TRY(vcpus_[i]->get_state(vcpu_state_flags(), power_on_.vcpus[i]));
        VIREO_TRY_ASSIGN(power_on_.vcpus[i].msrs, vcpus_[i]->read_msrs(hv.saved_msrs()));
    }
    return ok();
}

// The port I/O devices (a reboot makes them anew: power-on registers, empty FIFOs).
Result<void> Vm::attach_port_devices() {
    auto sink = [this](devices::PlatformEvent e) { on_platform_event(e); };
    serial_ = std::make_shared<devices::Serial>(std::make_shared<GsiLine>(*this, kCom1Irq),
                                                config_.console_out, config_.console_tap);
    VIREO_TRY(pio_.attach(kCom1, 8, serial_));
    // The i8042's data (0x60) and command (0x64) ports; 0x61 between them is the PIT's.
    i8042_ = std::make_shared<devices::I8042>(sink);
    VIREO_TRY(
        pio_.attach(0x60, 1, std::make_shared<devices::RangeView<devices::Device>>(*i8042_, 0)));
    VIREO_TRY(
        pio_.attach(0x64, 1, std::make_shared<devices::RangeView<devices::Device>>(*i8042_, 4)));
    cmos_ = std::make_shared<devices::Cmos>();
    VIREO_TRY(pio_.attach(0x70, 2, cmos_));
    VIREO_TRY(pio_.attach(devices::AcpiPm::kPort, 1, std::make_shared<devices::AcpiPm>(sink)));
    if (chips_) VIREO_TRY(chips_->attach_ports(pio_));
    if (pci_) {
        VIREO_TRY(pio_.attach(devices::pci::kConfigAddressPort, devices::pci::kConfigPortsSize,
                              std::make_shared<devices::pci::ConfigPorts>(pci_)));
    }
    return ok();
}

// What the guest finds in memory at power-on: ACPI tables, page tables, the kernel, its
// initrd and boot parameters. Returns the BSP's entry state.
Result<hv::VcpuState> Vm::load_guest(const BootImages& images) {
    VIREO_TRY_ASSIGN(Gpa rsdp, arch::x86::acpi::write_tables(memory_, Gpa(kAcpiBase),
                                                             kVmgenidAddr - kAcpiBase, platform_));
    VIREO_TRY(write_generation_id());
    using arch::x86::boot::E820Type;
    const uint64_t low_end = memory_.regions()[0].end();
    std::vector<arch::x86::boot::E820Entry> e820{{0, 0xa0000, E820Type::Ram},
                                                 {kAcpiBase, kAcpiSize, E820Type::Reserved},
                                                 {0x100000, low_end - 0x100000, E820Type::Ram}};
    if (memory_.regions().size() > 1)
        e820.push_back({k4GiB, memory_.regions()[1].size, E820Type::Ram});
    arch::x86::boot::BootLayout bl;
    bl.low_ram_end = low_end;
    bl.acpi_rsdp = rsdp.value();
    bl.images_are_file_mappings = images.file_mappings;
    arch::x86::LongModeLayout lm;
    VIREO_TRY(arch::x86::write_long_mode_tables(memory_, lm));
    // The BSP's entry state: PVH for ELF images, the 64-bit Linux boot protocol for bzImages.
    if (const auto* pvh = images.kernel.pvh()) {
        VIREO_TRY_ASSIGN(auto loaded,
                         arch::x86::boot::load_pvh(memory_, images.kernel.bytes(), *pvh,
                                                   images.initrd, config_.cmdline, e820, bl));
        return arch::x86::boot::pvh_entry_state(loaded, lm.gdt.value());
    }
    VIREO_TRY_ASSIGN(auto loaded, arch::x86::boot::load_linux(
                                      memory_, images.kernel.bytes(), *images.kernel.bzimage(),
                                      images.initrd, config_.cmdline, e820, bl));
    hv::VcpuState entry = arch::x86::long_mode_state(lm, loaded.entry, 0);
    entry.gprs.rsi = loaded.zero_page;
    return entry;
}

Result<void> Vm::reboot(const BootImages& images, std::vector<std::vector<int>> vcpu_affinity) {
    // run() returned: no vCPU thread runs and the device loop is stopped. Devices first: what
    // a back-end still has in flight lands before memory is cleared.
    for (const auto& t : virtio_)
        t->reset_for_reboot();
    const bool keep_pages = config_.backing != VmConfig::Backing::Anonymous;
    VIREO_TRY(memory_.clear(keep_pages));
    VIREO_TRY(machine_->restore_chips(power_on_.chips));
    if (chips_) VIREO_TRY(chips_->reset());
    for (const auto& d : shm_)
        d->device->reset();  // the regions keep their contents (they are not this guest's RAM)
    pio_ = devices::Bus("port I/O");
    VIREO_TRY(attach_port_devices());
    VIREO_TRY_ASSIGN(const hv::VcpuState entry, load_guest(images));
    for (size_t i = 0; i < vcpus_.size(); ++i) {
        auto& v = *vcpus_[i];
        VIREO_TRY(v.set_state(vcpu_state_flags(), power_on_.vcpus[i]));
        VIREO_TRY_ASSIGN(const size_t refused, v.write_msrs(power_on_.vcpus[i].msrs));
        if (refused != 0) log::debug("reboot: vCPU {}: KVM refused {} MSR(s)", i, refused);
        VIREO_TRY(v.clear_debug_registers());
    }
    // The BSP's entry state (a booted machine's power-on state has it already; a restored
    // one's was taken before any was set).
    VIREO_TRY(vcpus_[0]->set_state(arch::x86::kLongModeStateFlags, entry));
    config_.vcpu_affinity = std::move(vcpu_affinity);
    for (uint32_t i = 0; i < config_.cpus; ++i) {
        slots_[i].tid.store(0, std::memory_order_relaxed);
        for (auto& n : slots_[i].exits)
            n.store(0, std::memory_order_relaxed);
    }
    {
        std::lock_guard lock(fate_mu_);
        fate_set_ = false;
        stop_called_ = false;
        last_words_until_.reset();
        outcome_ = Outcome{};
    }
    {
        // A machine reset while paused (the host's `reboot` of a paused domain) boots running,
        // as a new machine would.
        std::lock_guard op(pause_op_mu_);
        std::lock_guard lock(pause_mu_);
        pause_requested_.store(false, std::memory_order_release);
        paused_.store(false, std::memory_order_release);
        parked_ = 0;
        paused_clock_ = 0;
        paused_tsc_.clear();
        restored_deadline_.clear();
        time_on_run_ = false;
    }
    stopping_.store(false, std::memory_order_release);
    return ok();
}

// --- snapshots (docs/snapshot.md) ------------------------------------------------------------

namespace {

constexpr uint32_t kConfigTag = snapshot::tag("CONF");
constexpr uint32_t kUartTag = snapshot::tag("UART");
constexpr uint32_t kCmosTag = snapshot::tag("CMOS");
constexpr uint32_t kIrqchipTag = snapshot::tag("UIRQ");      // the split model's chips
constexpr uint32_t kUserIrqchipTag = snapshot::tag("UAPC");  // the userspace model's
constexpr uint32_t kDomainTag = snapshot::tag("DOMN");
constexpr size_t kMaxDomainText = size_t{256} << 10;
constexpr uint32_t kStateVersion = 1;
// Virtio transport `i`'s section.
constexpr uint32_t virtio_tag(uint32_t i) {
    return static_cast<uint32_t>('v') | i << 8;
}

// What must match between a snapshot's machine and the one it is restored into.
struct MachineShape {
    uint64_t memory_bytes = 0;
    uint32_t cpus = 0;
    std::vector<uint32_t> devices;  // virtio device ids, in order
};

MachineShape shape_of(const VmConfig& c) {
    MachineShape s{c.memory_bytes, c.cpus, {}};
    for (size_t i = 0; i < c.disks.size(); ++i)
        s.devices.push_back(virtio::kDeviceBlock);
    for (size_t i = 0; i < c.nets.size(); ++i)
        s.devices.push_back(virtio::kDeviceNet);
    if (c.rng) s.devices.push_back(virtio::kDeviceEntropy);
    if (c.vsock) s.devices.push_back(virtio::kDeviceVsock);
    if (c.balloon) s.devices.push_back(virtio::kDeviceBalloon);
    return s;
}

std::string device_list(const std::vector<uint32_t>& ids) {
    auto name = [](uint32_t id) -> std::string {
        switch (id) {
            case virtio::kDeviceBlock:
                return "blk";
            case virtio::kDeviceNet:
                return "net";
            case virtio::kDeviceEntropy:
                return "rng";
            case virtio::kDeviceVsock:
                return "vsock";
            case virtio::kDeviceBalloon:
                return "balloon";
            default:
                return fmt::format("device {}", id);
        }
    };
    std::string out;
    for (uint32_t id : ids)
        out += fmt::format("{}{}", out.empty() ? "" : ", ", name(id));
    return out.empty() ? "none" : out;
}

// A section's bytes, or an error naming what is missing or of another version than `version`
// (the one its writer in this vireo writes).
Result<std::span<const uint8_t>> section(const snapshot::Reader& r, uint32_t t, uint32_t version,
                                         const char* what) {
    const snapshot::SectionInfo* s = r.find(t);
    if (s == nullptr || (s->flags & snapshot::kSectionMapped) != 0)
        return fail(ErrorCode::InvalidArgument, "snapshot: no {} state (section {})", what,
                    snapshot::tag_name(t));
    if (s->version != version)
        return fail(ErrorCode::Unsupported,
                    "snapshot: {} state version {}; this vireo reads version {}", what, s->version,
                    version);
    return r.bytes(*s);
}

// Decodes a device's section into it with `restore`, or says why it was malformed.
template <class Fn>
Result<void> load_section(const snapshot::Reader& r, uint32_t t, uint32_t version, const char* what,
                          Fn&& restore) {
    VIREO_TRY_ASSIGN(auto bytes, section(r, t, version, what));
    snapshot::Decoder d(bytes, what);
    restore(d);
    return d.finish();
}

}  // namespace

Vm::DeviceHold::DeviceHold(EventLoop* loop) : loop_(loop) {
    if (loop_ != nullptr) loop_->hold();
}

Vm::DeviceHold::~DeviceHold() {
    if (loop_ != nullptr) loop_->release();
}

namespace {
// A shared region is other domains' memory too: it cannot go into one domain's snapshot, nor
// move with one domain to another host.
Result<void> no_shared_memory(const VmConfig& config, const char* what) {
    if (config.shm.empty()) return ok();
    return fail(ErrorCode::Unsupported,
                "{}: the domain has shared memory ({}), which belongs to other domains too; "
                "a domain with shared memory cannot be saved, restored or migrated",
                what, config.shm.front().name);
}
}  // namespace

Result<void> Vm::movable(const char* what) const {
    return no_shared_memory(config_, what);
}

Result<std::unique_ptr<Vm::DeviceHold>> Vm::quiesce_devices() {
    if (!paused()) return fail(ErrorCode::BadState, "the domain must be paused first");
    // The device loop holds still while the state is written: nothing reaches guest memory
    // or the rings between the devices' state and the RAM.
    auto hold = std::make_unique<DeviceHold>(loop_.get());
    for (const auto& t : virtio_)
        VIREO_TRY(t->prepare_save());
    return hold;
}

Result<snapshot::MemorySaveStats> Vm::save(int fd, std::string_view domain) {
    VIREO_TRY(no_shared_memory(config_, "save"));
    if (!paused()) return fail(ErrorCode::BadState, "save: the domain must be paused first");
    VIREO_TRY_ASSIGN(auto hold, quiesce_devices());
    snapshot::Writer w(fd);
    VIREO_TRY(write_state(w, domain));
    VIREO_TRY_ASSIGN(auto stats, snapshot::save_memory(w, fd, memory_));
    VIREO_TRY(w.finish());
    return stats;
}

Result<void> Vm::write_state(snapshot::Writer& w, std::string_view domain) {
    VIREO_TRY(no_shared_memory(config_, "save"));
    const MachineShape shape = shape_of(config_);
    snapshot::Encoder conf;
    conf.u64(shape.memory_bytes);
    conf.u32(shape.cpus);
    conf.u32(static_cast<uint32_t>(shape.devices.size()));
    for (uint32_t id : shape.devices)
        conf.u32(id);
    VIREO_TRY(w.add(kConfigTag, kStateVersion, conf.data()));
    if (domain.size() > kMaxDomainText)
        return fail(ErrorCode::OutOfRange, "save: the domain's configuration is over {} bytes",
                    kMaxDomainText);
    if (!domain.empty())
        VIREO_TRY(w.add(kDomainTag, kStateVersion,
                        std::span(reinterpret_cast<const uint8_t*>(domain.data()), domain.size())));
    snapshot::Encoder cpuid;  // what the guest saw: a restore checks the host still offers it
    snapshot::encode(cpuid, cpuid0_);
    VIREO_TRY(w.add(snapshot::kCpuidTag, snapshot::kCpuidVersion, cpuid.data()));

    snapshot::MachineState machine;
    machine.clock_ns = paused_clock_;
    VIREO_TRY_ASSIGN(machine.chips, machine_->save_chips());
    snapshot::Encoder mach;
    snapshot::encode(mach, machine);
    VIREO_TRY(w.add(snapshot::kMachineTag, snapshot::kMachineVersion, mach.data()));

    for (const auto& v : vcpus_) {
        hv::VcpuState st;
        VIREO_TRY(v->get_state(vcpu_state_flags(), st));
        VIREO_TRY_ASSIGN(st.msrs, v->read_msrs(saved_msrs_));
        // The TSC as it was when the clock was frozen (pause()), not as it ticked on since.
        for (auto& m : st.msrs)
            if (m.index == kMsrTsc && v->id() < paused_tsc_.size() && paused_tsc_[v->id()] != 0)
                m.value = paused_tsc_[v->id()];
        snapshot::Encoder e;
        snapshot::encode(e, st);
        VIREO_TRY(w.add(snapshot::vcpu_tag(v->id()), snapshot::kVcpuVersion, e.data()));
    }
    if (chips_) {
        snapshot::Encoder e;
        chips_->save(e);
        VIREO_TRY(w.add(user_ ? kUserIrqchipTag : kIrqchipTag, kStateVersion, e.data()));
    }
    snapshot::Encoder uart, cmos;
    serial_->save(uart);
    cmos_->save(cmos);
    VIREO_TRY(w.add(kUartTag, kStateVersion, uart.data()));
    VIREO_TRY(w.add(kCmosTag, kStateVersion, cmos.data()));
    for (uint32_t i = 0; i < virtio_.size(); ++i) {
        snapshot::Encoder e;
        virtio_[i]->save(e);
        VIREO_TRY(w.add(virtio_tag(i), kStateVersion, e.data()));
    }
    return ok();
}

Result<std::string> Vm::saved_domain(int fd) {
    VIREO_TRY_ASSIGN(auto source, snapshot::file_source(fd));
    VIREO_TRY_ASSIGN(auto reader, snapshot::Reader::open(std::move(source)));
    if (reader.find(kDomainTag) == nullptr)
        return fail(ErrorCode::NotFound,
                    "the snapshot holds no domain configuration (it was saved without one): "
                    "use vireo run --restore with the machine's options");
    VIREO_TRY_ASSIGN(auto bytes, section(reader, kDomainTag, kStateVersion, "domain"));
    if (bytes.size() > kMaxDomainText)
        return fail(ErrorCode::InvalidArgument,
                    "snapshot: the domain's configuration is over {} bytes", kMaxDomainText);
    return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

namespace {

// The saved machine's shape against `config`'s, and the CPU the guest saw against what this
// host offers (`host_cpuid`: the guest CPUID this host's KVM would give vCPU 0).
Result<void> check_saved_machine(const snapshot::Reader& reader, const VmConfig& config,
                                 const std::vector<hv::CpuidEntry>& host_cpuid) {
    VIREO_TRY_ASSIGN(auto conf,
                     section(reader, kConfigTag, kStateVersion, "machine configuration"));
    snapshot::Decoder d(conf, "machine configuration");
    MachineShape saved;
    saved.memory_bytes = d.u64();
    saved.cpus = d.u32();
    const uint32_t n = d.u32();
    if (n > kMaxVirtioDevices) d.invalid("device count");
    for (uint32_t i = 0; i < n && d.ok(); ++i)
        saved.devices.push_back(d.u32());
    VIREO_TRY(d.finish());
    const MachineShape want = shape_of(config);
    if (saved.memory_bytes != want.memory_bytes)
        return fail(
            ErrorCode::InvalidArgument,
            "snapshot: the saved machine has {} MiB of memory; this one is asked for {} MiB",
            saved.memory_bytes >> 20, want.memory_bytes >> 20);
    if (saved.cpus != want.cpus)
        return fail(ErrorCode::InvalidArgument,
                    "snapshot: the saved machine has {} vCPUs; this one is asked for {}",
                    saved.cpus, want.cpus);
    if (saved.devices != want.devices)
        return fail(ErrorCode::InvalidArgument,
                    "snapshot: the saved machine's virtio devices are [{}]; this one's [{}]",
                    device_list(saved.devices), device_list(want.devices));
    const auto saved_irqchip = reader.find(kIrqchipTag) != nullptr       ? hv::IrqchipMode::Split
                               : reader.find(kUserIrqchipTag) != nullptr ? hv::IrqchipMode::None
                                                                         : hv::IrqchipMode::Kernel;
    if (saved_irqchip != config.irqchip)
        return fail(ErrorCode::InvalidArgument,
                    "snapshot: the saved machine's interrupt controllers are {}; this one's {} "
                    "(--irqchip)",
                    irqchip_name(saved_irqchip), irqchip_name(config.irqchip));
    // The CPU the guest saw: every feature it may have detected must be offered here too.
    std::vector<hv::CpuidEntry> saved_cpuid;
    VIREO_TRY(load_section(reader, snapshot::kCpuidTag, snapshot::kCpuidVersion, "CPUID",
                           [&](snapshot::Decoder& c) { snapshot::decode(c, saved_cpuid); }));
    if (auto why = arch::x86::cpuid_cannot_continue(saved_cpuid, host_cpuid))
        return fail(ErrorCode::Unsupported, "snapshot: {}", *why);
    return ok();
}

}  // namespace

Result<std::unique_ptr<Vm>> Vm::restore(const hv::Hypervisor& hv, const VmConfig& config,
                                        const BootImages& images, int fd) {
    VIREO_TRY(no_shared_memory(config, "restore"));
    VIREO_TRY_ASSIGN(auto source, snapshot::file_source(fd));
    VIREO_TRY_ASSIGN(auto reader, snapshot::Reader::open(std::move(source)));
    // The machine's shape first: a snapshot of another machine is refused before anything is
    // built.
    if (config.backing == VmConfig::Backing::HugePages)
        return fail(ErrorCode::Unsupported,
                    "snapshot: a restore maps guest memory from the file; huge-page backing "
                    "cannot (use anonymous, prefault or locked)");
    VIREO_TRY(validate(config, images, hv.limits().max_vcpus));
    VIREO_TRY_ASSIGN(const auto base_cpuid,
                     arch::x86::apply_cpu_template(config.cpu, hv.supported_cpuid()));
    VIREO_TRY(
        check_saved_machine(reader, config, arch::x86::guest_cpuid(base_cpuid, 0, config.cpus)));

    VIREO_TRY_ASSIGN(auto layout, snapshot::memory_layout(reader));
    // Exactly the regions a boot of this machine has (a file's own layout could put RAM over
    // the MMIO hole, where the devices are).
    const auto want_layout = ram_layout(config.memory_bytes);
    bool same = layout.size() == want_layout.size();
    for (size_t i = 0; same && i < layout.size(); ++i)
        same = layout[i].spec.start == want_layout[i].start &&
               layout[i].spec.size == want_layout[i].size;
    if (!same)
        return fail(ErrorCode::InvalidArgument,
                    "snapshot: its RAM regions are not those of a {} MiB machine",
                    config.memory_bytes >> 20);
    VIREO_TRY_ASSIGN(auto mem, memory::GuestMemory::map_file(layout, fd));
    if (config.backing != VmConfig::Backing::Anonymous)
        VIREO_TRY(mem.populate(config.backing == VmConfig::Backing::Locked));
    std::unique_ptr<Vm> vm(new Vm(std::move(mem), config));
    VIREO_TRY(vm->build(hv, images, /*boot=*/false));
    VIREO_TRY(vm->restore_state(reader));
    // A restored machine is a new generation (a clone, or the same machine later): the guest
    // gets a new VM Generation ID and is told (a GED edge; its kernel reseeds its random number
    // generator, if it has the driver).
    VIREO_TRY(vm->write_generation_id());
    VIREO_TRY(vm->set_gsi(kVmgenidGsi, true));
    VIREO_TRY(vm->set_gsi(kVmgenidGsi, false));
    return vm;
}

Result<void> Vm::start_dirty_log() {
    for (size_t i = 0; i < ram_slots_.size(); ++i) {
        if (auto r = machine_->set_dirty_logging(ram_slots_[i], true); !r) {
            for (size_t j = 0; j < i; ++j)
                (void)machine_->set_dirty_logging(ram_slots_[j], false);
            return r;
        }
    }
    return memory_.start_dirty_log();
}

void Vm::stop_dirty_log() noexcept {
    memory_.stop_dirty_log();
    for (auto slot : ram_slots_)
        if (auto r = machine_->set_dirty_logging(slot, false); !r)
            log::warn("dirty log: {}", r.error().message());
}

Result<void> Vm::take_dirty(std::vector<std::vector<uint64_t>>& bitmaps) {
    bitmaps.resize(ram_slots_.size());
    for (size_t i = 0; i < ram_slots_.size(); ++i) {
        VIREO_TRY_ASSIGN(auto kvm, machine_->fetch_dirty_log(ram_slots_[i]));
        auto& b = bitmaps[i];
        if (b.size() < kvm.words.size()) b.resize(kvm.words.size(), 0);
        for (size_t w = 0; w < kvm.words.size(); ++w)
            b[w] |= kvm.words[w];
        memory_.take_dirty(i, b);
    }
    return ok();
}

void Vm::throttle(std::chrono::microseconds d) {
    if (d.count() <= 0) {
        {
            std::lock_guard lock(pause_mu_);
            throttle_until_ns_.store(0, std::memory_order_release);
        }
        pause_cv_.notify_all();
        return;
    }
    const auto until = std::chrono::steady_clock::now() + d;
    throttle_until_ns_.store(
        std::chrono::duration_cast<std::chrono::nanoseconds>(until.time_since_epoch()).count(),
        std::memory_order_release);
    kick_vcpus();
}

Result<std::unique_ptr<Vm>> Vm::prepare_incoming(const hv::Hypervisor& hv, const VmConfig& config,
                                                 const BootImages& images) {
    VIREO_TRY(no_shared_memory(config, "incoming migration"));
    VIREO_TRY(validate(config, images, hv.limits().max_vcpus));
    VIREO_TRY_ASSIGN(auto mem,
                     memory::GuestMemory::create(ram_layout(config.memory_bytes), "vireo-guest-ram",
                                                 config.backing == VmConfig::Backing::HugePages));
    if (config.backing != VmConfig::Backing::Anonymous)
        VIREO_TRY(mem.populate(config.backing == VmConfig::Backing::Locked));
    std::unique_ptr<Vm> vm(new Vm(std::move(mem), config));
    VIREO_TRY(vm->build(hv, images, /*boot=*/false));
    VIREO_TRY_ASSIGN(const auto base_cpuid,
                     arch::x86::apply_cpu_template(config.cpu, hv.supported_cpuid()));
    vm->host_cpuid_ = arch::x86::guest_cpuid(base_cpuid, 0, config.cpus);
    return vm;
}

Result<void> Vm::finish_incoming(const snapshot::Reader& state) {
    VIREO_TRY(check_saved_machine(state, config_, host_cpuid_));
    VIREO_TRY(restore_state(state));
    // The guest's generation ID came with its memory: kept for a reboot to write again.
    return memory_.read(Gpa(kVmgenidAddr), std::as_writable_bytes(std::span(generation_id_)));
}

Result<void> Vm::restore_state(const snapshot::Reader& r) {
    snapshot::MachineState machine;
    VIREO_TRY(load_section(r, snapshot::kMachineTag, snapshot::kMachineVersion, "machine",
                           [&](snapshot::Decoder& d) { snapshot::decode(d, machine); }));
    VIREO_TRY(machine_->restore_chips(machine.chips));
    // The vCPUs; their TSCs and the clock are kept for run(): each vCPU's TSC (an MSR) and the
    // kvm-clock must start again from their saved values at about the same moment (a gap
    // between them is a skew the guest's clocksource watchdog sees: it stops trusting the TSC).
    paused_tsc_.assign(vcpus_.size(), 0);
    restored_deadline_.assign(vcpus_.size(), 0);
    for (const auto& v : vcpus_) {
        hv::VcpuState st;
        const std::string what = fmt::format("vCPU {}", v->id());
        VIREO_TRY(load_section(r, snapshot::vcpu_tag(v->id()), snapshot::kVcpuVersion, what.c_str(),
                               [&](snapshot::Decoder& d) { snapshot::decode(d, st); }));
        // An MSR the guest had set that this host's KVM does not keep would be lost.
        for (const auto& m : st.msrs)
            if (m.value != 0 &&
                std::find(saved_msrs_.begin(), saved_msrs_.end(), m.index) == saved_msrs_.end())
                return fail(ErrorCode::Unsupported,
                            "snapshot: the saved {} has MSR {:#x} set, which this host's KVM does "
                            "not save or restore",
                            what, m.index);
        VIREO_TRY(v->set_state(vcpu_state_flags(), st));
        // Taken out of the list (0 when absent) for run() to set with the clock: the TSC, and
        // the LAPIC timer's deadline after it — KVM arms the timer against the TSC at the
        // write, and this new vCPU's TSC is near 0, so written now it would fire as late as
        // the guest's uptime at the save.
        auto take = [&st](uint32_t index) -> uint64_t {
            auto m = std::find_if(st.msrs.begin(), st.msrs.end(),
                                  [index](const hv::MsrEntry& e) { return e.index == index; });
            if (m == st.msrs.end()) return 0;
            const uint64_t value = m->value;
            st.msrs.erase(m);
            return value;
        };
        paused_tsc_[v->id()] = take(kMsrTsc);
        restored_deadline_[v->id()] = take(kMsrTscDeadline);
        VIREO_TRY_ASSIGN(const size_t refused, v->write_msrs(st.msrs));
        // As at a reboot: KVM lists some MSRs it reads but will not take back (read-only or
        // locked ones); the rest are set.
        if (refused != 0)
            log::debug("restore: vCPU {}: KVM refused {} of {} MSRs", v->id(), refused,
                       st.msrs.size());
    }
    // Guest time goes on from the moment of the save: run() sets each TSC and the clock just
    // before the vCPUs start.
    paused_clock_ = machine.clock_ns;
    time_on_run_ = true;
    // The devices after the vCPUs: an interrupt one raises as it is restored lands in a
    // restored local APIC (setting a LAPIC's state would drop it); the split model's I/O APIC
    // and 8259s before the devices whose lines they take.
    if (chips_) {
        VIREO_TRY(load_section(r, user_ ? kUserIrqchipTag : kIrqchipTag, kStateVersion,
                               "interrupt controller",
                               [&](snapshot::Decoder& d) { chips_->restore(d); }));
        VIREO_TRY(chips_->sync());
    }
    VIREO_TRY(load_section(r, kUartTag, kStateVersion, "UART",
                           [&](snapshot::Decoder& d) { serial_->restore(d); }));
    VIREO_TRY(load_section(r, kCmosTag, kStateVersion, "CMOS",
                           [&](snapshot::Decoder& d) { cmos_->restore(d); }));
    for (uint32_t i = 0; i < virtio_.size(); ++i) {
        const std::string what = virtio_[i]->name();
        VIREO_TRY(load_section(r, virtio_tag(i), kStateVersion, what.c_str(),
                               [&](snapshot::Decoder& d) { virtio_[i]->restore(d); }));
    }
    return ok();
}

Result<void> Vm::device_loop() {
    if (!loop_) {
        VIREO_TRY_ASSIGN(loop_, EventLoop::create("vireo-io"));
    }
    return ok();
}

Result<void> Vm::create_virtio_devices(const hv::Hypervisor& hv) {
    std::vector<std::shared_ptr<virtio::Device>> devices;
    for (const auto& disk : config_.disks) {
        VIREO_TRY_ASSIGN(auto blk, virtio::BlockDevice::create(disk));
        devices.push_back(std::move(blk));
    }
    for (const auto& net : config_.nets) {
        net.backend->attach_pool(pool_);
        VIREO_TRY_ASSIGN(auto nd,
                         virtio::NetDevice::create(net.backend, net.mac, net.mtu, net.queue_size,
                                                   net.rx_limits, net.tx_limits));
        devices.push_back(std::move(nd));
    }
    if (config_.rng) devices.push_back(std::make_shared<virtio::EntropyDevice>());
    if (config_.vsock)
        devices.push_back(std::make_shared<virtio::VsockDevice>(config_.vsock, pool_));
    if (config_.balloon) {
        balloon_ = std::make_shared<virtio::BalloonDevice>();
        devices.push_back(balloon_);
    }
    if (devices.empty()) return ok();
    if (devices.size() > kMaxVirtioDevices)
        return fail(ErrorCode::ResourceExhausted,
                    "{} virtio devices requested; at most {} (one interrupt line each)",
                    devices.size(), kMaxVirtioDevices);
    VIREO_TRY(device_loop());
    for (size_t i = 0; i < devices.size(); ++i) {
        const uint64_t base = kVirtioMmioBase + i * virtio::MmioTransport::kSize;
        VIREO_TRY_ASSIGN(auto t, virtio::MmioTransport::create(memory_, devices[i], base));
        VIREO_TRY(mmio_.attach(base, virtio::MmioTransport::kSize, t));
        // Register reads from a read-only memslot (no exit); writes still exit to the bus.
        if (hv.has(hv::Feature::ReadonlyMemory)) {
            VIREO_TRY(t->enable_register_page());
            VIREO_TRY(machine_->map(Gpa(base), t->register_page(), virtio::MmioTransport::kSize,
                                    hv::kMapReadOnly));
        }
        // Notifications: one ioeventfd per queue (datamatch = queue index), so a kick is an
        // eventfd signal in the kernel, not an exit to this process.
        for (size_t q = 0; q < t->num_queues(); ++q) {
            VIREO_TRY(machine_->add_ioevent(hv::IoEvent{hv::IoSpace::Mmio,
                                                        base + virtio::MmioTransport::kNotifyOffset,
                                                        4, t->notify_fd(q), q}));
        }
        // The interrupt handler's InterruptACK of used buffers (value 1) likewise.
        VIREO_TRY(machine_->add_ioevent(
            hv::IoEvent{hv::IoSpace::Mmio, base + virtio::MmioTransport::kInterruptAckOffset, 4,
                        t->ack_fd(), uint64_t{1}}));
        VIREO_TRY(t->attach_loop(*loop_));
        if (devices[i] == balloon_) balloon_transport_ = t;
        virtio_.push_back(std::move(t));
    }
    return ok();
}

// The PCI bus, when a device needs one: each shared region an ivshmem device. Its BARs are
// placed as firmware would (BAR0 and BAR1 in the 32-bit window, BAR2 above RAM, aligned to its
// size) and the region is mapped into the guest at BAR2 (no exit to reach it); the Doorbell
// register's values are ioeventfds on the peers' eventfds; this guest's own eventfds are
// watched by the device loop, which raises INTx (or sends a vector's message), except while an
// MSI-X vector is deliverable: then its eventfd is an irqfd (route_vector). A guest that moves
// a BAR still works, through the bus (slower: every access of a moved region exits).
Result<void> Vm::create_pci_devices(const hv::Hypervisor& hv) {
    if (config_.shm.empty()) return ok();
    if (config_.shm.size() > kMaxShmRegions)
        return fail(ErrorCode::ResourceExhausted, "{} shared memory regions; at most {}",
                    config_.shm.size(), kMaxShmRegions);
    if (virtio_.size() + config_.shm.size() > std::size(kDeviceGsis))
        return fail(ErrorCode::ResourceExhausted,
                    "{} virtio devices and {} shared memory regions: at most {} devices in all "
                    "(one interrupt line each)",
                    virtio_.size(), config_.shm.size(), std::size(kDeviceGsis));
    auto bus = std::make_shared<devices::pci::PciBus>();
    arch::x86::acpi::PciHostDesc desc;
    desc.mmio32_base = static_cast<uint32_t>(kPciMmio32Base);
    desc.mmio32_size = static_cast<uint32_t>(kPciMmio32Size);
    uint64_t largest = 0;
    for (const auto& c : config_.shm)
        if (c.region) largest = std::max(largest, c.region->size());
    const uint64_t ram_top = std::max(memory_.regions().back().end(), k4GiB);
    uint64_t next = align_up(ram_top, std::max(largest, k1GiB));
    desc.mmio64_base = next;
    uint32_t next_msi_gsi = hv::Machine::kFirstMsiGsi;
    for (size_t i = 0; i < config_.shm.size(); ++i) {
        const ShmConfig& c = config_.shm[i];
        if (!c.region)
            return fail(ErrorCode::InvalidArgument, "shared memory {}: no region", c.name);
        if (c.doorbells && (c.peers == 0 || c.peer >= c.peers ||
                            c.doorbell_fds.size() != size_t{c.peers} * c.vectors))
            return fail(
                ErrorCode::InvalidArgument,
                "shared memory {}: peer {} of {} with {} vectors needs {} doorbells, not {}",
                c.name, c.peer, c.peers, c.vectors, size_t{c.peers} * c.vectors,
                c.doorbell_fds.size());
        if (c.region->readonly() && !hv.has(hv::Feature::ReadonlyMemory))
            return fail(ErrorCode::Unsupported,
                        "shared memory {}: this KVM cannot map memory read-only for a read-only "
                        "borrower",
                        c.name);
        auto d = std::make_unique<ShmDevice>();
        d->config = c;
        ShmDevice* raw = d.get();
        if (c.doorbells) {
            for (uint16_t v = 0; v < c.vectors; ++v)
                d->vectors.push_back(
                    {c.doorbell_fds[size_t{c.peer} * c.vectors + v], next_msi_gsi++, false});
        }
        const uint32_t gsi = kDeviceGsis[virtio_.size() + i];
        devices::pci::IvshmemConfig ic;
        ic.region_size = c.region->size();
        ic.doorbells = c.doorbells;
        ic.peer = c.peer;
        ic.vectors = c.vectors;
        ic.region = static_cast<uint8_t*>(c.region->host());
        ic.region_readonly = c.region->readonly();
        VIREO_TRY_ASSIGN(d->device,
                         devices::pci::Ivshmem::create(
                             ic, std::make_shared<GsiLine>(*this, gsi),
                             [raw](uint16_t peer, uint16_t vector) { raw->ring(peer, vector); },
                             [this](uint16_t, const devices::pci::MsiMessage& msg) {
                                 if (user_ != nullptr) return user_->signal_msi(msg);
                                 if (auto r = machine_->signal_msi(msg.address, msg.data); !r)
                                     log::warn("ivshmem: MSI: {}", r.error().message());
                             },
                             [this, raw](uint16_t v) { route_vector(*raw, v); }));
        const uint64_t bars = kPciMmio32Base + i * kPciSlotStride;
        if (c.doorbells) {
            VIREO_TRY(d->device->place_bar(1, bars));
        }
        VIREO_TRY(d->device->place_bar(0, bars + 0x1000));
        next = align_up(next, c.region->size());
        VIREO_TRY(d->device->place_bar(2, next));
        VIREO_TRY(machine_->map(Gpa(next), c.region->host(), c.region->size(),
                                c.region->readonly() ? hv::kMapReadOnly : hv::kMapNone));
        next += c.region->size();
        d->device->mark_power_on();
        VIREO_TRY_ASSIGN(d->pci_device, bus->add(d->device));
        desc.routes.push_back({static_cast<uint8_t>(d->pci_device), 0, gsi});
        if (c.doorbells) {
            // This guest's writes of (peer, vector) to its Doorbell register: straight to that
            // peer's eventfd, in the kernel.
            const uint64_t doorbell = bars + 0x1000 + devices::pci::kIvshmemDoorbell;
            for (uint32_t p = 0; p < c.peers; ++p) {
                for (uint32_t v = 0; v < c.vectors; ++v) {
                    VIREO_TRY(machine_->add_ioevent(hv::IoEvent{
                        hv::IoSpace::Mmio, doorbell, 4, c.doorbell_fds[size_t{p} * c.vectors + v],
                        uint64_t{p} << 16 | v}));
                }
            }
            VIREO_TRY(device_loop());
            for (uint16_t v = 0; v < c.vectors; ++v) {
                const int fd = c.doorbell_fds[size_t{c.peer} * c.vectors + v];
                VIREO_TRY(loop_->add(fd, [raw, fd, v] {
                    uint64_t n;
                    if (::read(fd, &n, sizeof n) != sizeof n) return;
                    raw->doorbells_in.fetch_add(1, std::memory_order_relaxed);
                    raw->device->notify(v);
                }));
            }
        }
        log::debug("shared memory {}: ivshmem at 00:{:02x}.0, region at {:#x}, GSI {}", c.name,
                   d->pci_device, next - c.region->size(), gsi);
        shm_.push_back(std::move(d));
    }
    desc.mmio64_size = next - desc.mmio64_base;
    VIREO_TRY(mmio_.attach(kPciMmio32Base, kPciMmio32Size,
                           std::make_shared<devices::pci::BarWindow>(bus, kPciMmio32Base, false)));
    VIREO_TRY(
        mmio_.attach(desc.mmio64_base, desc.mmio64_size,
                     std::make_shared<devices::pci::BarWindow>(bus, desc.mmio64_base, false)));
    pci_ = std::move(bus);
    platform_.pci = std::move(desc);
    return ok();
}

void Vm::route_vector(ShmDevice& d, uint16_t vector) {
    if (vector >= d.vectors.size() || user_) return;  // (userspace model: no irqfds)
    auto* msix = d.device->msix();
    std::lock_guard lock(d.route_mu);
    ShmDevice::Vector& x = d.vectors[vector];
    if (msix->deliverable(vector)) {
        // The route first (a new message for a vector in the kernel already takes effect
        // there), then the eventfd out of the loop and into KVM, which delivers a count
        // already there at once.
        const auto m = msix->message(vector);
        if (auto r = machine_->set_msi_route(x.gsi, m.address, m.data); !r) {
            log::warn("shared memory {}: vector {}: {}; its doorbells go through vireo",
                      d.config.name, vector, r.error().message());
            return;
        }
        if (x.in_kernel) return;
        if (auto r = loop_->watch(x.fd, false); !r) return;
        if (auto r = machine_->add_irqfd(x.fd, x.gsi); !r) {
            log::warn("shared memory {}: vector {}: {}; its doorbells go through vireo",
                      d.config.name, vector, r.error().message());
            (void)loop_->watch(x.fd, true);
            return;
        }
        x.in_kernel = true;
    } else if (x.in_kernel) {
        // Masked or MSI-X off: back to the loop, which sets the vector pending (or raises INTx).
        if (auto r = machine_->remove_irqfd(x.fd, x.gsi); !r)
            log::warn("shared memory {}: vector {}: {}", d.config.name, vector,
                      r.error().message());
        x.in_kernel = false;
        (void)loop_->watch(x.fd, true);
    }
}

// A doorbell write no ioeventfd took (the guest moved BAR0, or named no such peer or vector).
void Vm::ShmDevice::ring(uint16_t peer, uint16_t vector) {
    if (!config.doorbells || peer >= config.peers || vector >= config.vectors) {
        doorbells_dropped.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    const uint64_t one = 1;
    (void)!::write(config.doorbell_fds[size_t{peer} * config.vectors + vector], &one, sizeof one);
}

std::vector<ShmInfo> Vm::shm_info() const {
    std::vector<ShmInfo> out;
    for (const auto& d : shm_) {
        const ShmConfig& c = d->config;
        const uint64_t at = d->device->decoded(2);
        out.push_back({c.name, c.region->size(), c.region->readonly(), c.doorbells, c.peer, c.peers,
                       c.vectors, c.peer_names, d->pci_device,
                       at == devices::pci::PciFunction::kNotDecoded ? 0 : at,
                       d->doorbells_in.load(std::memory_order_relaxed),
                       d->doorbells_dropped.load(std::memory_order_relaxed)});
    }
    return out;
}

Result<uint64_t> Vm::set_guest_memory(uint64_t guest_bytes) {
    if (!balloon_)
        return fail(ErrorCode::Unsupported, "the domain has no balloon device (--balloon)");
    if (guest_bytes > config_.memory_bytes)
        return fail(ErrorCode::OutOfRange, "{} MiB is more than the domain's {} MiB",
                    guest_bytes >> 20, config_.memory_bytes >> 20);
    const uint64_t pages = balloon_->set_target_bytes(config_.memory_bytes - guest_bytes);
    balloon_transport_->config_changed();
    return pages * virtio::BalloonDevice::kPageSize;
}

Result<virtio::BalloonInfo> Vm::balloon_info(bool refresh) {
    if (!balloon_)
        return fail(ErrorCode::Unsupported, "the domain has no balloon device (--balloon)");
    if (!refresh) return balloon_->info();
    // The guest answers a stats request at once; wait for it (bounded) so the figures are new.
    const uint64_t before = balloon_->info().stats_updates;
    if (!balloon_->request_stats()) return balloon_->info();
    for (int i = 0; i < 100; ++i) {
        auto info = balloon_->info();
        if (info.stats_updates != before) return info;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return balloon_->info();
}

Result<void> Vm::connect_virtio_devices(arch::x86::acpi::PlatformDesc& desc) {
    for (size_t i = 0; i < virtio_.size(); ++i) {
        const auto& t = virtio_[i];
        const uint32_t gsi = kDeviceGsis[i];
        if (user_) {
            // No irqchip in KVM to take an irqfd: the device loop pulses the line.
            VIREO_TRY(loop_->add(t->irq_fd(), [chips = user_, fd = t->irq_fd(), gsi] {
                uint64_t n;
                if (::read(fd, &n, sizeof n) == sizeof n) chips->pulse(gsi);
            }));
        } else {
            VIREO_TRY(machine_->add_irqfd(t->irq_fd(), gsi));  // needs the irqchip
        }
        desc.mmio_devices.push_back(
            {"LNRO0005", t->base(), static_cast<uint32_t>(virtio::MmioTransport::kSize), gsi});
        log::debug("{}: GSI {}", t->name(), gsi);
    }
    return ok();
}

void Vm::on_platform_event(devices::PlatformEvent event) {
    switch (event) {
        case devices::PlatformEvent::PowerOff:
            stop(Fate::PowerOff, "the guest powered off (ACPI S5)");
            break;
        case devices::PlatformEvent::Reset:
            stop(Fate::Reboot, "the guest reset the machine");
            break;
        case devices::PlatformEvent::Panic: {
            // Linux writes pvpanic from its panic notifiers, before it flushes the console
            // ("Kernel panic - not syncing" and the trace are still in its buffer): the machine
            // runs on until the guest resets or powers off (panic=N), or for kPanicLastWords,
            // whatever comes first. The fate is the panic either way.
            std::lock_guard lock(fate_mu_);
            if (!fate_set_) {
                fate_set_ = true;
                outcome_ = Outcome{Fate::Panic, "the guest kernel panicked (pvpanic)"};
                last_words_until_ = std::chrono::steady_clock::now() + kPanicLastWords;
            }
            fate_cv_.notify_all();
            break;
        }
    }
}

void Vm::stop(Fate fate, std::string detail) {
    {
        std::lock_guard lock(fate_mu_);
        if (!fate_set_) {
            fate_set_ = true;
            outcome_ = Outcome{fate, std::move(detail)};
        }
        stop_called_ = true;
    }
    stopping_.store(true, std::memory_order_release);
    kick_vcpus();
    if (serial_) serial_->stop_waiting();
    {
        std::lock_guard lock(pause_mu_);  // parked vCPUs see stopping_ under this lock
    }
    pause_cv_.notify_all();
    fate_cv_.notify_all();
}

// The TSC `vcpu` had when the clock was frozen (pause(), or the snapshot's), put back as it
// runs again.
void Vm::put_back_tsc(hv::Vcpu& vcpu) {
    const uint32_t id = vcpu.id();
    if (id >= paused_tsc_.size() || paused_tsc_[id] == 0) return;
    const hv::MsrEntry tsc[] = {{kMsrTsc, paused_tsc_[id]}};
    if (auto r = vcpu.write_msrs(tsc); !r) log::debug("vCPU {}: TSC: {}", id, r.error().message());
}

void Vm::park() {
    std::unique_lock lock(pause_mu_);
    ++parked_;
    pause_cv_.notify_all();
    pause_cv_.wait(lock, [&] {
        return !pause_requested_.load(std::memory_order_acquire) ||
               stopping_.load(std::memory_order_acquire);
    });
    --parked_;
}

Result<void> Vm::pause() {
    std::lock_guard op(pause_op_mu_);
    if (paused_.load(std::memory_order_acquire))
        return fail(ErrorCode::BadState, "the domain is already paused");
    if (stopping_.load(std::memory_order_acquire))
        return fail(ErrorCode::BadState, "the domain is stopping");
    {
        std::lock_guard lock(pause_mu_);  // a vCPU sitting out a throttle wakes for it
        pause_requested_.store(true, std::memory_order_release);
    }
    pause_cv_.notify_all();
    kick_vcpus();
    {
        std::unique_lock lock(pause_mu_);
        const bool all = pause_cv_.wait_for(lock, std::chrono::seconds(5), [&] {
            return parked_ == vcpus_.size() || stopping_.load(std::memory_order_acquire);
        });
        const bool stopping = stopping_.load(std::memory_order_acquire);
        if (!all || stopping) {
            pause_requested_.store(false, std::memory_order_release);
            lock.unlock();
            pause_cv_.notify_all();
            if (stopping) return fail(ErrorCode::BadState, "the domain is stopping");
            return fail(ErrorCode::BadState, "the vCPUs did not stop within 5 s");
        }
    }
    // Every vCPU is out of KVM_RUN: freeze guest time and tell the guest it was stopped.
    // Each vCPU's TSC goes on ticking while it is parked, so it is put back when the vCPUs
    // resume (and saved), in step with the frozen kvm-clock (a skew between them makes the
    // guest stop trusting its TSC). The TSC at the clock's moment: the middle of a read before
    // and one after it (in mirrored order, so the middle is the clock's moment for each).
    static constexpr uint32_t kTsc[] = {kMsrTsc};
    auto read_tsc = [&](size_t i) -> uint64_t {
        auto m = vcpus_[i]->read_msrs(kTsc);
        return m && m->size() == 1 ? (*m)[0].value : 0;
    };
    std::vector<uint64_t> before(vcpus_.size());
    for (size_t i = 0; i < vcpus_.size(); ++i)
        before[i] = read_tsc(i);
    auto clock = machine_->get_clock();
    paused_clock_ = clock ? *clock : 0;
    paused_tsc_.assign(vcpus_.size(), 0);
    for (size_t i = vcpus_.size(); i-- > 0;) {
        const uint64_t after = read_tsc(i);
        if (before[i] != 0 && after >= before[i])
            paused_tsc_[i] = before[i] + (after - before[i]) / 2;
    }
    for (auto& v : vcpus_)
        if (auto r = v->notify_paused(); !r) log::debug("{}", r.error().message());
    paused_.store(true, std::memory_order_release);
    return ok();
}

Result<void> Vm::resume() {
    std::lock_guard op(pause_op_mu_);
    if (!paused_.load(std::memory_order_acquire))
        return fail(ErrorCode::BadState, "the domain is not paused");
    if (paused_clock_ != 0)
        if (auto r = machine_->set_clock(paused_clock_); !r)
            log::warn("resume: {} (guest time jumps)", r.error().message());
    {
        std::lock_guard lock(pause_mu_);
        pause_requested_.store(false, std::memory_order_release);
        paused_.store(false, std::memory_order_release);
    }
    pause_cv_.notify_all();
    return ok();
}

Result<void> Vm::set_disk_limits(size_t disk, const IoLimits& limits) {
    if (disk >= config_.disks.size() || disk >= virtio_.size())
        return fail(ErrorCode::NotFound, "disk {}: the domain has {} disk(s)", disk,
                    config_.disks.size());
    static_cast<virtio::BlockDevice&>(virtio_[disk]->device()).set_limits(limits);
    return ok();
}

Result<void> Vm::set_net_limits(size_t net, const IoLimits& rx, const IoLimits& tx) {
    const size_t i = config_.disks.size() + net;
    if (net >= config_.nets.size() || i >= virtio_.size())
        return fail(ErrorCode::NotFound, "network device {}: the domain has {}", net,
                    config_.nets.size());
    static_cast<virtio::NetDevice&>(virtio_[i]->device()).set_limits(rx, tx);
    return ok();
}

std::vector<IoLimits> Vm::disk_limits() const {
    std::vector<IoLimits> out;
    for (size_t i = 0; i < config_.disks.size() && i < virtio_.size(); ++i)
        out.push_back(static_cast<virtio::BlockDevice&>(virtio_[i]->device()).limits());
    return out;
}

std::vector<std::pair<IoLimits, IoLimits>> Vm::net_limits() const {
    std::vector<std::pair<IoLimits, IoLimits>> out;
    for (size_t n = 0; n < config_.nets.size(); ++n) {
        const size_t i = config_.disks.size() + n;
        if (i >= virtio_.size()) break;
        out.push_back(static_cast<virtio::NetDevice&>(virtio_[i]->device()).limits());
    }
    return out;
}

Result<void> Vm::new_generation_id() {
    size_t got = 0;
    while (got < generation_id_.size()) {
        const ssize_t n = ::getrandom(generation_id_.data() + got, generation_id_.size() - got, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail_errno(errno, "VM generation ID: getrandom");
        got += static_cast<size_t>(n);
    }
    return ok();
}

Result<void> Vm::write_generation_id() {
    return memory_.write(Gpa(kVmgenidAddr), std::as_bytes(std::span(generation_id_)));
}

Result<void> Vm::press_power_button() {
    if (stopping_.load(std::memory_order_acquire))
        return fail(ErrorCode::BadState, "the domain is stopping");
    VIREO_TRY(set_gsi(kGedGsi, true));  // a rising edge runs the GED's _EVT
    return set_gsi(kGedGsi, false);
}

Result<void> Vm::set_gsi(uint32_t gsi, bool level) {
    if (chips_) {
        chips_->set_irq(gsi, level);
        return ok();
    }
    return machine_->set_irq_line(gsi, level);
}

Result<void> Vm::pin_vcpu(uint32_t id, const std::vector<int>& cpus) {
    if (id >= config_.cpus)
        return fail(ErrorCode::OutOfRange, "vCPU {}: the domain has vCPUs 0 to {}", id,
                    config_.cpus - 1);
    // The domain's CPUs (its pool): the process affinity, which every thread inherited.
    cpu_set_t pool;
    if (::sched_getaffinity(::getpid(), sizeof pool, &pool) != 0)
        return fail_errno(errno, "sched_getaffinity");
    cpu_set_t set = pool;
    if (!cpus.empty()) {
        set = to_cpu_set(cpus);
        std::string outside, allowed;
        for (int c = 0; c < CPU_SETSIZE; ++c) {
            const auto u = static_cast<size_t>(c);
            if (CPU_ISSET(u, &set) && !CPU_ISSET(u, &pool))
                outside += (outside.empty() ? "" : ",") + std::to_string(c);
            if (CPU_ISSET(u, &pool)) allowed += (allowed.empty() ? "" : ",") + std::to_string(c);
        }
        if (!outside.empty())
            return fail(ErrorCode::OutOfRange,
                        "CPU {} is outside the domain's CPUs ({}: its pool); move it to another "
                        "pool first (cpupool-migrate)",
                        outside, allowed);
    }
    const pid_t tid = slots_[id].tid.load(std::memory_order_acquire);
    if (tid == 0) return fail(ErrorCode::BadState, "vCPU {} has not started yet", id);
    if (::sched_setaffinity(tid, sizeof set, &set) != 0)
        return fail_errno(errno, "pinning vCPU {}", id);
    return ok();
}

std::vector<VcpuInfo> Vm::vcpu_info() const {
    std::vector<VcpuInfo> out(config_.cpus);
    for (uint32_t i = 0; i < config_.cpus; ++i) {
        VcpuInfo& v = out[i];
        v.id = i;
        v.tid = slots_[i].tid.load(std::memory_order_acquire);
        v.paused = paused();
        thread_stat(v.tid, v.host_cpu, v.cpu_s);
        cpu_set_t set;
        if (v.tid != 0 && ::sched_getaffinity(v.tid, sizeof set, &set) == 0)
            for (int c = 0; c < CPU_SETSIZE; ++c)
                if (CPU_ISSET(static_cast<size_t>(c), &set)) v.affinity.push_back(c);
    }
    return out;
}

std::vector<VcpuMetrics> Vm::vcpu_metrics() const {
    std::vector<VcpuMetrics> out(config_.cpus);
    std::lock_guard lock(stats_mu_);
    std::vector<uint64_t> values;
    for (uint32_t i = 0; i < config_.cpus; ++i) {
        VcpuMetrics& m = out[i];
        m.id = i;
        for (size_t r = 0; r < kExitReasons; ++r)
            m.exits[r] = slots_[i].exits[r].load(std::memory_order_relaxed);
        int cpu;
        thread_stat(slots_[i].tid.load(std::memory_order_acquire), cpu, m.cpu_s);
        if (i >= kvm_stats_.size()) continue;
        const hv::Stats& s = kvm_stats_[i];
        values.assign(s.names().size(), 0);
        if (s.valid() && s.read(values))
            for (size_t k = 0; k < values.size(); ++k)
                m.kvm.emplace_back(s.names()[k], values[k]);
    }
    return out;
}

std::vector<DeviceMetrics> Vm::device_metrics() const {
    std::vector<DeviceMetrics> out;
    for (const auto& t : virtio_)
        out.push_back({t->name(), t->driver_errors(), t->device().counters()});
    return out;
}

void Vm::handle_io(const hv::IoExit& io) {
    // REP INS/OUTS carry `count` elements of `size` bytes; each goes to the device in turn.
    auto data = io.data();
    for (uint32_t i = 0; i < io.count; ++i) {
        auto elem = data.subspan(size_t{i} * io.size, io.size);
        if (io.write)
            pio_.write(io.port, elem);
        else
            pio_.read(io.port, elem);
    }
}

// A guest RDMSR/WRMSR outside the allow-list (or of an MSR KVM does not know): #GP, counted, and
// logged at most once a second, naming the MSR, so a guest probing in a loop cannot flood the
// domain's log.
void Vm::refuse_msr(uint32_t vcpu, const hv::MsrExit& msr) {
    msr.fail();
    const uint64_t n = msrs_refused_.fetch_add(1, std::memory_order_relaxed) + 1;
    const int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                            std::chrono::steady_clock::now().time_since_epoch())
                            .count();
    int64_t after = msr_log_after_ns_.load(std::memory_order_relaxed);
    if (now < after || !msr_log_after_ns_.compare_exchange_strong(after, now + 1'000'000'000,
                                                                  std::memory_order_relaxed)) {
        msrs_unlogged_.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    const uint64_t quiet = msrs_unlogged_.exchange(0, std::memory_order_relaxed);
    log::warn("vCPU {}: {} {} refused with #GP: {} ({} refused so far{})", vcpu,
              msr.write ? "WRMSR" : "RDMSR", arch::x86::describe_msr(msr.index),
              msr.unknown   ? "KVM does not know it"
              : msr.refused ? "KVM refuses it"
                            : "not in the domain's MSR allow-list",
              n, quiet ? fmt::format(", {} not logged", quiet) : std::string());
}

Result<void> Vm::start_ap(hv::Vcpu& vcpu) {
    const auto vector = user_->wait_for_startup(vcpu, [this] {
        return stopping_.load(std::memory_order_acquire) ||
               pause_requested_.load(std::memory_order_acquire);
    });
    if (!vector) return ok();
    // The power-on state (real mode), from the startup page: CS = vector << 8, IP 0.
    hv::VcpuState st = power_on_.vcpus[vcpu.id()];
    st.segments.cs.selector = static_cast<uint16_t>(*vector << 8);
    st.segments.cs.base = uint64_t{*vector} << 12;
    st.gprs.rip = 0;
    return vcpu.set_state(vcpu_state_flags(), st);
}

void Vm::kick_vcpus() {
    for (auto& v : vcpus_)
        v->request_stop();
    if (user_) user_->wake_all();
}

void Vm::vcpu_loop(hv::Vcpu& vcpu, VcpuSlot& slot) {
    slot.tid.store(static_cast<pid_t>(::gettid()), std::memory_order_release);
    char name[16];
    std::snprintf(name, sizeof name, "vireo-vcpu%u", vcpu.id());
    ::pthread_setname_np(::pthread_self(), name);
    confine_thread(ThreadClass::Vcpu);
    while (!stopping_.load(std::memory_order_acquire)) {
        if (const int64_t until = throttle_until_ns_.load(std::memory_order_relaxed); until != 0) {
            // Auto-converge: out of the guest until then (one load when not throttled), or
            // until the throttle changes or a pause or stop is asked for (which so wait for no
            // throttle).
            const std::chrono::steady_clock::time_point t{std::chrono::nanoseconds(until)};
            std::unique_lock lock(pause_mu_);
            pause_cv_.wait_until(lock, t, [&] {
                return throttle_until_ns_.load(std::memory_order_acquire) != until ||
                       pause_requested_.load(std::memory_order_acquire) ||
                       stopping_.load(std::memory_order_acquire);
            });
        }
        if (pause_requested_.load(std::memory_order_acquire)) {
            // The last exit's instruction is finished first, so the paused state (which a
            // snapshot saves) does not repeat it.
            if (auto r = vcpu.complete_pending(); !r) {
                stop(Fate::HostError, r.error().message());
                return;
            }
            park();
            if (!stopping_.load(std::memory_order_acquire)) put_back_tsc(vcpu);
            continue;
        }
        if (user_ && user_->waits_for_startup(vcpu)) {
            if (auto r = start_ap(vcpu); !r) {
                stop(Fate::HostError, r.error().message());
                return;
            }
            continue;  // (to look at stop and pause again)
        }
        if (chips_) {
            if (auto r = chips_->before_run(vcpu); !r) {
                stop(Fate::HostError, r.error().message());
                return;
            }
        }
        auto exit = vcpu.run();
        if (!exit) {
            stop(Fate::HostError, exit.error().message());
            return;
        }
        if (user_) user_->after_exit(vcpu);
        // One writer per slot: a plain load + store, no locked instruction on the exit path.
        auto& n = slot.exits[static_cast<size_t>(exit->reason)];
        n.store(n.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        switch (exit->reason) {
            case hv::ExitReason::Io:
                handle_io(exit->io);
                break;
            case hv::ExitReason::Mmio:
                if (user_ && user_->mmio(vcpu, exit->mmio)) break;
                if (exit->mmio.write)
                    mmio_.write(exit->mmio.gpa, exit->mmio.data());
                else
                    mmio_.read(exit->mmio.gpa, exit->mmio.data());
                break;
            case hv::ExitReason::Halt:  // (only without KVM's local APIC)
                if (user_)
                    user_->halt(vcpu, [this] {
                        return stopping_.load(std::memory_order_acquire) ||
                               pause_requested_.load(std::memory_order_acquire) ||
                               throttle_until_ns_.load(std::memory_order_acquire) != 0;
                    });
                break;
            case hv::ExitReason::Interrupted:
            case hv::ExitReason::IrqWindowOpen:
            case hv::ExitReason::SetTpr:  // before_run delivers what the new priority unmasked
                break;
            case hv::ExitReason::Msr:
                if (user_ && user_->msr(vcpu, exit->msr)) break;
                refuse_msr(vcpu.id(), exit->msr);
                break;
            case hv::ExitReason::IoapicEoi:
                if (split_) split_->end_of_interrupt(exit->eoi.vector);
                break;
            case hv::ExitReason::Shutdown: {
                // Where it was, for the report (the state KVM left: after the fault).
                hv::VcpuState st;
                std::string where;
                if (!vcpu.get_state(hv::kStateGprs | hv::kStateSegments | hv::kStateCrs, st)) {
                    // no registers to add
                } else if (st.gprs.rip == 0xfff0 && st.segments.cs.selector == 0xf000) {
                    where =
                        " (KVM reset the vCPU at the shutdown, as on AMD: no registers to show)";
                } else {
                    where = fmt::format(
                        " (rip {:#x} rsp {:#x} cs {:#x} cr0 {:#x} cr3 {:#x} cr4 {:#x} efer {:#x} "
                        "idt {:#x}/{:#x})",
                        st.gprs.rip, st.gprs.rsp, st.segments.cs.selector, st.crs.cr0, st.crs.cr3,
                        st.crs.cr4, st.crs.efer, st.segments.idt.base, st.segments.idt.limit);
                }
                stop(Fate::TripleFault, fmt::format("vCPU {} triple-faulted{}", vcpu.id(), where));
                return;
            }
            case hv::ExitReason::SystemEvent:
                switch (exit->system_event.type) {
                    case hv::SystemEventExit::Shutdown:
                        stop(Fate::PowerOff, "KVM reported a shutdown event");
                        break;
                    case hv::SystemEventExit::Reset:
                        stop(Fate::Reboot, "KVM reported a reset event");
                        break;
                    case hv::SystemEventExit::Crash:
                        stop(Fate::Panic, "KVM reported a guest crash");
                        break;
                    default:
                        break;
                }
                break;
            case hv::ExitReason::InternalError:
                stop(Fate::InternalError,
                     fmt::format("vCPU {}: KVM internal error {} (data {:#x} {:#x})", vcpu.id(),
                                 exit->internal.suberror, exit->internal.data[0],
                                 exit->internal.data[1]));
                return;
            case hv::ExitReason::FailEntry:
                stop(Fate::InternalError,
                     fmt::format("vCPU {}: KVM could not enter the guest (reason {:#x})", vcpu.id(),
                                 exit->fail_entry.hardware_reason));
                return;
            default:
                stop(Fate::InternalError, fmt::format("vCPU {}: unexpected {} exit", vcpu.id(),
                                                      hv::to_string(exit->reason)));
                return;
        }
    }
}

Outcome Vm::run() {
    if (loop_) {
        if (auto r = loop_->start(); !r) return Outcome{Fate::HostError, r.error().message()};
    }
    // A restored machine's time, set just before its vCPUs start: each TSC, then the clock,
    // back to back.
    if (std::exchange(time_on_run_, false)) {
        for (auto& v : vcpus_) {
            put_back_tsc(*v);
            // The timer's deadline after the TSC it counts against (restore_state).
            if (v->id() < restored_deadline_.size() && restored_deadline_[v->id()] != 0) {
                const hv::MsrEntry d[] = {{kMsrTscDeadline, restored_deadline_[v->id()]}};
                if (auto r = v->write_msrs(d); !r || *r != 0)
                    log::warn("vCPU {}: the LAPIC timer's deadline was not restored", v->id());
            }
        }
        restored_deadline_.clear();
        if (paused_clock_ != 0) {
            if (auto r = machine_->set_clock(paused_clock_); !r) {
                if (loop_) loop_->stop();
                return Outcome{Fate::HostError, r.error().message()};
            }
        }
    }
    // A vCPU thread not pinned by the configuration gets the domain's CPUs, as a new thread
    // inherits them: a parked vCPU worker (a sandboxed domain's) keeps what it had last boot.
    cpu_set_t domain_cpus;
    const bool have_domain_cpus = ::sched_getaffinity(0, sizeof domain_cpus, &domain_cpus) == 0;
    std::vector<ClassThread> threads;
    threads.reserve(vcpus_.size());
    for (size_t i = 0; i < vcpus_.size(); ++i) {
        threads.push_back(start_thread(
            ThreadClass::Vcpu,
            [this, vcpu = vcpus_[i].get(), slot = &slots_[i]] { vcpu_loop(*vcpu, *slot); }));
        const bool pinned = i < config_.vcpu_affinity.size() && !config_.vcpu_affinity[i].empty();
        const cpu_set_t set = pinned ? to_cpu_set(config_.vcpu_affinity[i]) : domain_cpus;
        if ((pinned || have_domain_cpus) &&
            ::pthread_setaffinity_np(threads.back().native_handle(), sizeof set, &set) != 0)
            log::warn("vCPU {}: cannot pin it to the CPUs asked for", i);
    }
    {
        std::unique_lock lock(fate_mu_);
        fate_cv_.wait(lock, [&] { return stop_called_ || last_words_until_.has_value(); });
        if (!stop_called_)  // a panic: the guest's last words, for a while
            fate_cv_.wait_until(lock, *last_words_until_, [&] { return stop_called_; });
    }
    stop(Fate::Panic, "");  // the fate is set already; this kicks every vCPU out of KVM_RUN
    for (auto& t : threads)
        t.join();
    if (loop_) loop_->stop();
    std::lock_guard lock(fate_mu_);
    return outcome_;
}

}  // namespace vireo::vmm
