// A Linux-capable x86 machine: RAM (split around the 3-4 GiB MMIO hole), KVM's in-kernel
// irqchip and PIT, legacy platform devices (COM1, i8042 reset, CMOS RTC, ACPI power/reset,
// pvpanic), generated ACPI tables, a bzImage loaded per the Linux boot protocol, and one thread
// per vCPU. Devices are dispatched from vCPU threads through immutable buses (no VM-wide lock).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "arch/x86/acpi/tables.hpp"
#include "arch/x86/boot/kernel.hpp"
#include "arch/x86/cpu_template.hpp"
#include "arch/x86/msr_policy.hpp"
#include "base/event_loop.hpp"
#include "base/mem_pool.hpp"
#include "base/result.hpp"
#include "devices/bus.hpp"
#include "devices/legacy/cmos.hpp"
#include "devices/legacy/serial.hpp"
#include "devices/pci/bus.hpp"
#include "devices/pci/ivshmem.hpp"
#include "devices/platform_event.hpp"
#include "hv/hypervisor.hpp"
#include "hv/machine.hpp"
#include "hv/stats.hpp"
#include "hv/vcpu.hpp"
#include "memory/guest_memory.hpp"
#include "snapshot/format.hpp"
#include "snapshot/memory.hpp"
#include "virtio/balloon/device.hpp"
#include "virtio/blk/device.hpp"
#include "virtio/mmio.hpp"
#include "virtio/net/device.hpp"
#include "virtio/vsock/device.hpp"
#include "vmm/shm.hpp"
#include "vmm/split_irqchip.hpp"
#include "vmm/user_irqchip.hpp"

namespace vireo::vmm {

/// A virtio-net device: its back-end (opened by the caller, kept across reboots) and identity.
struct NetConfig {
    std::shared_ptr<virtio::NetBackend> backend;
    virtio::MacAddress mac{};
    uint16_t mtu = 1500;
    uint16_t queue_size = 256;
    IoLimits rx_limits, tx_limits;  ///< frames to and from the guest
};

struct VmConfig {
    uint64_t memory_bytes = uint64_t{256} << 20;
    uint32_t cpus = 1;
    std::string cmdline;
    /// Where COM1 output goes (a console log file or standard output; nullptr: discarded),
    /// kept across reboots.
    std::shared_ptr<devices::OutputTap> console_out;
    /// virtio-blk disks, in order (/dev/vda, /dev/vdb, ...): opened and checked by the caller,
    /// reused across reboots.
    std::vector<std::shared_ptr<virtio::DiskImage>> disks;
    std::vector<NetConfig> nets;  ///< virtio-net devices (eth0, eth1, ... in order)
    bool rng = false;             ///< a virtio-rng device
    /// A virtio-vsock device around this host-side listener (kept across reboots).
    std::shared_ptr<virtio::VsockListener> vsock;
    /// The VMM-side memory a guest can make this domain allocate (base/mem_pool.hpp): vsock
    /// connections and the payload they hold so far, user networking's host sockets.
    uint64_t vmm_pool = kDefaultVmmPool;
    bool balloon = false;  ///< a virtio-balloon device
    /// How guest RAM is backed: Anonymous (pages on first touch), Prefault (every page
    /// allocated before the guest runs), Locked (prefaulted and mlocked: never swapped),
    /// HugePages (2 MiB hugetlbfs pages, reserved and prefaulted before the guest runs;
    /// never swapped; memory a multiple of 2 MiB; no balloon, which frees 4 KiB pages).
    enum class Backing { Anonymous, Prefault, Locked, HugePages } backing = Backing::Anonymous;
    /// Host CPUs of each vCPU thread (pinned pools, vcpu-pin): empty, or one list per vCPU; an
    /// empty list lets that vCPU float within the process affinity.
    std::vector<std::vector<int>> vcpu_affinity;
    /// Also gets the guest's console output (a console socket).
    std::shared_ptr<devices::OutputTap> console_tap;
    /// Shared memory regions, each an ivshmem device on the guest's PCI bus (which exists
    /// only when there is one): mapped by the caller, kept across reboots.
    std::vector<ShmConfig> shm;
    /// The CPU features the guest sees (arch/x86/cpu_template.hpp): KVM's, or a baseline.
    arch::x86::CpuTemplate cpu;
    /// The MSRs the guest may touch (arch/x86/msr_policy.hpp): those its CPU needs, or all.
    arch::x86::MsrPolicy msrs;
    /// Where the interrupt controllers and the PIT live: Kernel (KVM's local APICs, I/O APIC,
    /// 8259s and PIT), Split (KVM's local APICs; vireo's I/O APIC, 8259s and PIT) or None (the
    /// userspace model: all of them vireo's, KVM has none).
    hv::IrqchipMode irqchip = hv::IrqchipMode::Kernel;
};

/// The interrupt model `name` spells (kernel, split, userspace), or nothing.
std::optional<hv::IrqchipMode> parse_irqchip(std::string_view name) noexcept;
/// The model's name as users spell it: "kernel", "split" or "userspace" (IrqchipMode::None).
const char* irqchip_name(hv::IrqchipMode mode) noexcept;

/// A memory backing's name, as `--memory-backing` and a host config's `memory_backing` spell it.
const char* to_string(VmConfig::Backing backing) noexcept;
/// The backing `name` spells (anonymous, prefault, locked, hugepages), or nothing.
std::optional<VmConfig::Backing> parse_backing(std::string_view name) noexcept;

/// Exits to user space by reason (hv::ExitReason), one slot each.
inline constexpr size_t kExitReasons = static_cast<size_t>(hv::ExitReason::Unknown) + 1;

/// A vCPU as `vcpu-list` shows it.
struct VcpuInfo {
    uint32_t id = 0;
    pid_t tid = 0;      ///< host thread (0 before it ran)
    int host_cpu = -1;  ///< host CPU it last ran on
    std::vector<int> affinity;
    double cpu_s = 0;  ///< host CPU time of the thread (guest + exits)
    bool paused = false;
};

/// Counters of one vCPU: exits to vireo by reason, and KVM's own statistics when the kernel
/// has them (exits handled in the kernel, halt wait time, injections, ...).
struct VcpuMetrics {
    uint32_t id = 0;
    std::array<uint64_t, kExitReasons> exits{};
    double cpu_s = 0;
    std::vector<std::pair<std::string, uint64_t>> kvm;
};

/// Counters of one virtio device.
struct DeviceMetrics {
    std::string name;  ///< "virtio-blk@0xd0000000"
    uint64_t driver_errors = 0;
    std::vector<virtio::Counter> counters;
};

/// A shared memory region as `vireo info` shows it.
struct ShmInfo {
    std::string name;
    uint64_t size = 0;
    bool readonly = false;
    bool doorbells = false;
    uint16_t peer = 0, peers = 1, vectors = 1;
    std::vector<std::string> peer_names;
    uint32_t pci_device = 0;         ///< 0000:00:NN.0
    uint64_t address = 0;            ///< where its BAR2 is now (0: not decoded)
    uint64_t doorbells_in = 0;       ///< doorbells this guest got (through vireo: INTx)
    uint64_t doorbells_dropped = 0;  ///< the guest's doorbell writes to no such peer or vector
};

/// The kernel (parsed once) and initrd bytes (owned by the caller; reused across reboots).
struct BootImages {
    arch::x86::boot::KernelImage kernel;
    std::span<const uint8_t> initrd;
    /// True when both are read-only file mappings (MappedFile): their pages are then dropped
    /// from vireo's RSS as they are copied into the guest.
    bool file_mappings = false;
};

/// Why a guest stopped.
enum class Fate {
    PowerOff,       ///< ACPI S5 (poweroff)
    Reboot,         ///< i8042 or ACPI reset
    Panic,          ///< pvpanic: the guest kernel panicked
    TripleFault,    ///< the CPU shut down (triple fault)
    InternalError,  ///< KVM could not run the guest (emulation failure, entry failure)
    HostError,      ///< a host-side failure in vireo
    Stopped,        ///< stopped from the host (console escape, signal)
};
const char* to_string(Fate fate) noexcept;

struct Outcome {
    Fate fate = Fate::HostError;
    std::string detail;
};

/// Limits `vireo run` enforces.
inline constexpr uint64_t kMinMemory = uint64_t{64} << 20;
inline constexpr uint64_t kMaxMemory = uint64_t{1} << 40;
inline constexpr uint32_t kMaxCpus = 1024;  // MADT: x2APIC entries from APIC id 255 on
/// virtio-mmio devices: one 4 KiB window each from kVirtioMmioBase and one IOAPIC pin each
/// (GSIs 16-23, then the ISA lines no platform device uses: 5-7, 10, 11, 14, 15).
inline constexpr uint64_t kVirtioMmioBase = 0xd0000000;
inline constexpr uint32_t kMaxVirtioDevices = 15;
/// The PCI bus's 32-bit window (BAR0 and the MSI-X BAR of each device), below the virtio
/// devices; 64-bit BARs (the shared regions) go above RAM.
inline constexpr uint64_t kPciMmio32Base = 0xc0000000;
inline constexpr uint64_t kPciMmio32Size = 0x10000000;
/// Shared memory regions per machine (interrupt lines are shared with the virtio devices).
inline constexpr uint32_t kMaxShmRegions = 8;
/// How long a guest that reported a panic (pvpanic) may still run to flush its console.
inline constexpr auto kPanicLastWords = std::chrono::seconds(3);

class Vm {
  public:
    /// Checks a configuration and boot images without touching KVM: memory and vCPU bounds,
    /// the kernel's format and protocol, command line length, and that kernel and initrd fit.
    static Result<void> validate(const VmConfig& config, const BootImages& images,
                                 uint32_t max_vcpus = kMaxCpus);
    /// Builds the machine and loads the guest. Nothing runs until run().
    static Result<std::unique_ptr<Vm>> create(const hv::Hypervisor& hv, const VmConfig& config,
                                              const BootImages& images);
    /// Builds the machine a snapshot holds instead of booting one (docs/snapshot.md): `config`
    /// must describe the same machine — memory size, vCPU count, the virtio devices in the
    /// same order — which is checked against the snapshot with a one-line reason; guest RAM
    /// is mapped from `fd` copy-on-write (read as the guest touches it; `fd` is never written
    /// and must stay unchanged while the machine runs); then the clock, the interrupt
    /// controllers, every vCPU, the UART, the CMOS and every virtio device are put back.
    /// `images` are loaded only if the guest later reboots. Nothing runs until run().
    static Result<std::unique_ptr<Vm>> restore(const hv::Hypervisor& hv, const VmConfig& config,
                                               const BootImages& images, int fd);
    ~Vm();

    /// Runs every vCPU on its own thread until the guest powers off, resets, panics or fails,
    /// or stop() is called. Returns why it stopped.
    Outcome run();
    /// Stops the guest (first reason wins). Any thread.
    void stop(Fate fate, std::string detail);

    /// Stops every vCPU and keeps them stopped until resume(); devices finish the I/O already
    /// in flight (its completions wait in the rings). The guest's kvm-clock is saved and each
    /// vCPU is told it was paused (no soft-lockup reports); resume() restores the clock, so
    /// guest time does not advance while paused. Fails if already paused or stopping.
    Result<void> pause();
    Result<void> resume();
    bool paused() const noexcept { return paused_.load(std::memory_order_acquire); }
    /// Presses the ACPI power button (the guest decides what to do: normally power off).
    Result<void> press_power_button();
    /// Writes the paused machine (pause() first; it stays paused) to `fd`, a new empty
    /// regular file the caller opened: the devices drain and give back the buffers they hold,
    /// the event loop is held still while the state and guest RAM (only its non-zero pages)
    /// are written. `domain` (if not empty) is the domain's configuration as text, kept in the
    /// file for `vireo restore` (saved_domain() reads it back; the machine ignores it).
    /// Returns the RAM figures.
    Result<snapshot::MemorySaveStats> save(int fd, std::string_view domain = {});
    /// The device loop held still (released when destroyed): what quiesce_devices() returns.
    class DeviceHold {
      public:
        explicit DeviceHold(EventLoop* loop);
        ~DeviceHold();
        DeviceHold(const DeviceHold&) = delete;
        DeviceHold& operator=(const DeviceHold&) = delete;

      private:
        EventLoop* loop_;
    };
    /// For a paused machine: holds the device loop still and has every virtio device finish
    /// the requests in flight and give back the buffers it holds, so that nothing writes guest
    /// memory or the rings until the hold ends. save() and a migration's last pass.
    Result<std::unique_ptr<DeviceHold>> quiesce_devices();
    /// Writes every section but guest RAM into `w` (paused and quiesced; `domain` as save's).
    Result<void> write_state(snapshot::Writer& w, std::string_view domain = {});

    // Live migration (docs/migration.md).
    /// Logs the pages written from now on: by the guest (KVM's dirty log on every RAM slot)
    /// and by vireo's devices (GuestMemory::mark_dirty).
    Result<void> start_dirty_log();
    void stop_dirty_log() noexcept;
    /// ORs into `bitmaps` (per RAM region, memory().regions() order, one bit per 4 KiB page)
    /// the pages written since the last call or the start, both logs; clears the logs. The
    /// caller clears `bitmaps` once it has sent those pages (a page taken is logged no more).
    Result<void> take_dirty(std::vector<std::vector<uint64_t>>& bitmaps);
    /// Holds every vCPU out of the guest for `d` (auto-converge): each sleeps on its next exit,
    /// which a kick forces now. Guest time goes on.
    void throttle(std::chrono::microseconds d);
    /// Builds the machine an incoming migration fills (memory allocated as the backing says,
    /// the vCPUs created, nothing loaded; the CPU this host offers noted for the check):
    /// write the pages into memory(), then finish_incoming() with the state.
    static Result<std::unique_ptr<Vm>> prepare_incoming(const hv::Hypervisor& hv,
                                                        const VmConfig& config,
                                                        const BootImages& images);
    /// Checks the sent state as a restore checks a snapshot (the machine's shape, the CPU) and
    /// puts it back. The guest keeps its VM Generation ID (a migration is no clone).
    Result<void> finish_incoming(const snapshot::Reader& state);

    /// The domain configuration a snapshot holds (save's `domain`), checked like every section
    /// (at most 256 KiB); an error if the file is no snapshot or holds none.
    static Result<std::string> saved_domain(int fd);
    /// The VM Generation ID the guest reads (ACPI VGEN): random at build, new at each restore
    /// (so clones of one snapshot differ), the same across guest reboots.
    const std::array<uint8_t, 16>& generation_id() const noexcept { return generation_id_; }
    /// Resets the machine from the host (as if the guest had rebooted).
    void reset() { stop(Fate::Reboot, "reset by the host"); }
    /// After run() returned: puts the machine back to its power-on state in place — devices
    /// drained and reset, guest RAM zeroed, the interrupt controllers, PIT and every vCPU's
    /// registers, MSRs and LAPIC as they were before the first run, the guest loaded again —
    /// so run() boots it anew. Creates no VM, vCPU or memory slot (a sandboxed domain may
    /// not). `vcpu_affinity` replaces the configuration's (vcpu-pin changes).
    Result<void> reboot(const BootImages& images, std::vector<std::vector<int>> vcpu_affinity);
    /// Restricts vCPU `id`'s thread to `cpus` (empty: the process affinity).
    Result<void> pin_vcpu(uint32_t id, const std::vector<int>& cpus);
    std::vector<VcpuInfo> vcpu_info() const;
    std::vector<VcpuMetrics> vcpu_metrics() const;
    std::vector<DeviceMetrics> device_metrics() const;
    uint32_t num_vcpus() const noexcept { return config_.cpus; }
    /// vCPU 0's CPUID as the guest sees it (template, overrides and spec_ctrl applied).
    const std::vector<hv::CpuidEntry>& guest_cpuid() const noexcept { return cpuid0_; }
    /// Guest RDMSR/WRMSR refused with #GP (outside the MSR allow-list, or unknown to KVM).
    uint64_t msrs_refused() const noexcept { return msrs_refused_.load(std::memory_order_relaxed); }
    std::vector<ShmInfo> shm_info() const;
    /// The domain's VMM pool: its limit, what is used, its high-water mark, takes refused.
    const MemoryPool& vmm_pool() const noexcept { return *pool_; }
    /// I/O rate limits at run time (from any thread), by index among the disks (vda: 0) or
    /// among the network devices; they last until changed again (a guest reboot keeps them).
    Result<void> set_disk_limits(size_t disk, const IoLimits& limits);
    Result<void> set_net_limits(size_t net, const IoLimits& rx, const IoLimits& tx);
    /// The limits now: one entry per disk, then one {rx, tx} per network device.
    std::vector<IoLimits> disk_limits() const;
    std::vector<std::pair<IoLimits, IoLimits>> net_limits() const;
    /// Whether the machine can be saved or moved (`what` starts the error): not with shared
    /// memory, which is other domains' memory too.
    Result<void> movable(const char* what) const;

    /// Asks the guest (through its balloon) to give up memory until it has `guest_bytes` left;
    /// returns the balloon's new target in bytes. Fails without a balloon device.
    Result<uint64_t> set_guest_memory(uint64_t guest_bytes);
    /// The balloon's state; with `refresh`, first asks the guest for fresh statistics and
    /// waits briefly for them.
    Result<virtio::BalloonInfo> balloon_info(bool refresh);
    uint64_t memory_bytes() const noexcept { return config_.memory_bytes; }
    /// The disks (a migration hands their locks over).
    const std::vector<std::shared_ptr<virtio::DiskImage>>& disks() const noexcept {
        return config_.disks;
    }

    /// Where its interrupt controllers live (VmConfig::irqchip).
    hv::IrqchipMode irqchip() const noexcept { return config_.irqchip; }
    /// Drives interrupt line `gsi` (an I/O APIC pin; 0-15 also the PIC's IRQ): KVM's chips,
    /// or vireo's in the split model. Any thread.
    Result<void> set_gsi(uint32_t gsi, bool level);

    /// COM1, for console input.
    const std::shared_ptr<devices::Serial>& serial() const noexcept { return serial_; }
    const memory::GuestMemory& memory() const noexcept { return memory_; }

  private:
    Vm(memory::GuestMemory mem, const VmConfig& config);
    /// `boot`: load the guest and set the BSP's entry state (false: a restore fills them in).
    Result<void> build(const hv::Hypervisor& hv, const BootImages& images, bool boot = true);
    Result<void> restore_state(const snapshot::Reader& r);
    Result<void> new_generation_id();
    void put_back_tsc(hv::Vcpu& vcpu);
    Result<void> write_generation_id();
    Result<void> create_virtio_devices(const hv::Hypervisor& hv);              // before the irqchip
    Result<void> connect_virtio_devices(arch::x86::acpi::PlatformDesc& desc);  // after it
    Result<void> attach_port_devices();
    /// The device loop, made the first time a device needs one (nothing is on unless asked).
    Result<void> device_loop();
    Result<void> create_pci_devices(const hv::Hypervisor& hv);  // after the virtio devices
    Result<hv::VcpuState> load_guest(const BootImages& images);
    struct alignas(64) VcpuSlot {  // written by its vCPU thread only
        std::atomic<pid_t> tid{0};
        std::array<std::atomic<uint64_t>, kExitReasons> exits{};
    };
    void vcpu_loop(hv::Vcpu& vcpu, VcpuSlot& slot);
    /// The userspace model: an AP that waits for its startup IPI (after power-on or INIT)
    /// sleeps until it comes, then starts in real mode at its page.
    Result<void> start_ap(hv::Vcpu& vcpu);
    /// Every vCPU out of KVM_RUN (and, in the userspace model, out of its sleep).
    void kick_vcpus();
    /// The parts of a vCPU's state a reset or snapshot carries (the MSRs aside): the local
    /// APIC's only where KVM has it.
    uint32_t vcpu_state_flags() const noexcept {
        return hv::kStateAll & ~hv::kStateMsrs & (user_ ? ~uint32_t{hv::kStateLapic} : ~0u);
    }
    void park();
    void handle_io(const hv::IoExit& io);
    void refuse_msr(uint32_t vcpu, const hv::MsrExit& msr);
    void on_platform_event(devices::PlatformEvent event);

    memory::GuestMemory memory_;
    VmConfig config_;
    std::unique_ptr<hv::Machine> machine_;
    std::vector<std::unique_ptr<hv::Vcpu>> vcpus_;
    devices::Bus pio_{"port I/O"};
    devices::Bus mmio_{"MMIO"};
    std::shared_ptr<devices::Serial> serial_;
    std::shared_ptr<devices::Cmos> cmos_;
    std::shared_ptr<devices::Device> i8042_;     // its port views refer to it
    std::unique_ptr<PcChips> chips_;             // the user-space models' I/O APIC, 8259s, PIT
    SplitIrqchip* split_ = nullptr;              // chips_ in the split model
    UserIrqchip* user_ = nullptr;                // chips_ in the userspace model (+ local APICs)
    std::vector<uint32_t> saved_msrs_;           // the MSRs a vCPU's state holds (KVM's list)
    std::vector<hv::CpuidEntry> cpuid0_;         // vCPU 0's CPUID, as the guest sees it
    std::vector<hv::CpuidEntry> host_cpuid_;     // what this host offers (an incoming check)
    std::vector<hv::SlotId> ram_slots_;          // one per memory_ region, in order
    std::atomic<int64_t> throttle_until_ns_{0};  // steady clock; vCPUs sleep until then
    std::atomic<uint64_t> msrs_refused_{0};      // guest MSR accesses refused with #GP
    std::atomic<int64_t> msr_log_after_ns_{0};   // steady clock: the next refusal logged
    std::atomic<uint64_t> msrs_unlogged_{0};     // refusals since the last logged one
    std::vector<uint64_t> paused_tsc_;           // each vCPU's TSC when pause() froze the clock
    std::vector<uint64_t> restored_deadline_;    // each vCPU's saved TSC deadline, for run()
    bool time_on_run_ = false;  // restored: run() sets the clock, the vCPUs their TSCs
    std::array<uint8_t, 16> generation_id_{};  // the VM Generation ID (new at each restore)
    std::vector<std::shared_ptr<virtio::MmioTransport>> virtio_;
    std::unique_ptr<EventLoop> loop_;  // device back-ends; stopped before the devices go
    std::shared_ptr<virtio::BalloonDevice> balloon_;
    std::shared_ptr<MemoryPool> pool_;  // the VMM pool the devices draw from
    std::shared_ptr<virtio::MmioTransport> balloon_transport_;
    // The PCI bus (only with a PCI device) and its ivshmem devices.
    struct ShmDevice {
        ShmConfig config;
        std::shared_ptr<devices::pci::Ivshmem> device;
        uint32_t pci_device = 0;
        std::atomic<uint64_t> doorbells_in{0}, doorbells_dropped{0};
        // This machine's own vectors: each eventfd is read by the device loop, or, while its
        // MSI-X vector is deliverable, an irqfd on its own MSI route (no vireo thread).
        struct Vector {
            int fd = -1;
            uint32_t gsi = 0;
            bool in_kernel = false;
        };
        std::vector<Vector> vectors;
        std::mutex route_mu;  // vectors' in_kernel, against concurrent MSI-X writes
        void ring(uint16_t peer, uint16_t vector);
    };
    /// A vector's MSI-X state changed (a guest write, a reset): its eventfd goes to an irqfd on
    /// the vector's route when deliverable, back to the device loop otherwise.
    void route_vector(ShmDevice& d, uint16_t vector);
    std::shared_ptr<devices::pci::PciBus> pci_;
    std::vector<std::unique_ptr<ShmDevice>> shm_;

    arch::x86::acpi::PlatformDesc platform_;  // what the ACPI tables describe
    struct PowerOn {
        hv::ChipState chips;
        std::vector<hv::VcpuState> vcpus;  // every part, MSRs included
    } power_on_;

    std::unique_ptr<VcpuSlot[]> slots_;
    // Pause: vCPU threads park on pause_cv_ while pause_requested_; pause() waits for all.
    std::mutex pause_op_mu_;  // one pause()/resume() at a time; taken before pause_mu_
    std::mutex pause_mu_;
    std::condition_variable pause_cv_;
    std::atomic<bool> pause_requested_{false};
    std::atomic<bool> paused_{false};
    uint32_t parked_ = 0;
    uint64_t paused_clock_ = 0;
    mutable std::mutex stats_mu_;       // one scrape at a time (the values buffer)
    std::vector<hv::Stats> kvm_stats_;  // per vCPU, opened at build (empty without the feature)

    std::atomic<bool> stopping_{false};
    std::mutex fate_mu_;
    std::condition_variable fate_cv_;
    bool fate_set_ = false;
    bool stop_called_ = false;  // stop() was called: run() stops the vCPUs
    // After a pvpanic the guest runs on until stop() or this time (its console flush).
    std::optional<std::chrono::steady_clock::time_point> last_words_until_;
    Outcome outcome_;
};

}  // namespace vireo::vmm
