// The guest's PCI bus: one bus (0) of up to 32 single-function devices, its host bridge at
// device 0, configuration space reached through configuration mechanism #1 (ports 0xCF8 and
// 0xCFC, ConfigPorts), and the memory and I/O BARs the guest programs, dispatched through a
// window (BarWindow) attached once to the MMIO or port bus over the range the BARs live in.
//
// Why mechanism #1 and not ECAM (MCFG): every x86 kernel probes it without an ACPI table, it
// needs no 256 MiB-per-bus window in the guest's address space, and the first 256 bytes of
// configuration space hold everything ivshmem and virtio-pci use. Extended (PCIe) capabilities,
// which need ECAM, wait for device passthrough. ECAM would not make configuration accesses
// cheaper for Linux guests either (one exit instead of two): as long as mechanism #1 works,
// Linux on x86 uses it for the first 256 bytes even when MCFG declares an ECAM window
// (arch/x86/pci/common.c, raw_pci_read), and uses ECAM only for extended space.
//
// The guest moves BARs (sizing writes all ones; a kernel may re-place them): each function
// keeps its BARs' decoded addresses in atomics, updated under its configuration lock, so a
// vCPU dispatching a BAR access takes no lock.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "devices/device.hpp"
#include "devices/pci/config.hpp"

namespace vireo::devices::pci {

inline constexpr uint32_t kMaxDevices = 32;
inline constexpr uint16_t kConfigAddressPort = 0xcf8;
inline constexpr uint16_t kConfigPortsSize = 8;  // 0xCF8..0xCFF

/// One PCI function. Subclasses declare BARs and capabilities on `config_` before the function
/// is added to a bus, and handle their BARs' accesses.
class PciFunction {
  public:
    explicit PciFunction(const Identity& id) : config_(id) {
        for (auto& d : decoded_)
            d.store(kNotDecoded, std::memory_order_relaxed);
    }
    virtual ~PciFunction() = default;
    virtual const char* name() const noexcept = 0;

    /// Guest accesses to BAR `bar` at `offset` within it (1 to 8 bytes, inside the BAR).
    virtual void bar_read(uint32_t bar, uint64_t offset, std::span<uint8_t> data) = 0;
    virtual void bar_write(uint32_t bar, uint64_t offset, std::span<const uint8_t> data) = 0;

    /// Configuration space as the guest reaches it (locked; a write updates the decoded BARs
    /// and then calls config_changed).
    void config_read(uint32_t offset, std::span<uint8_t> data) const;
    void config_write(uint32_t offset, std::span<const uint8_t> data);

    /// Where BAR `bar` decodes now (kNotDecoded: it does not), and its size.
    static constexpr uint64_t kNotDecoded = ~uint64_t{0};
    uint64_t decoded(uint32_t bar) const noexcept {
        return bar < kMaxBars ? decoded_[bar].load(std::memory_order_acquire) : kNotDecoded;
    }
    /// A BAR's declaration: fixed before the function is on a bus, so read without the lock.
    uint64_t bar_size(uint32_t bar) const noexcept { return config_.bar_size(bar); }
    BarKind bar_kind(uint32_t bar) const noexcept { return config_.bar_kind(bar); }

    /// Puts the BARs in place (the VMM's layout, before the guest runs).
    Result<void> place_bar(uint32_t bar, uint64_t address);
    /// Keeps the configuration space as it is now (BARs placed) as the function's power-on
    /// state, which reset() puts back.
    void mark_power_on();
    /// Back to the power-on state (a guest reboot): the configuration space as
    /// mark_power_on() kept it, and the function's own registers (reset_function).
    void reset();

    /// The configuration space and the function's own state, for a snapshot.
    void save(snapshot::Encoder& e) const;
    void restore(snapshot::Decoder& d);

  protected:
    /// After a guest write (under the configuration lock; `config_` may be read).
    virtual void config_changed(const Change&) {}
    /// The function's own registers to their power-on values (under the configuration lock).
    virtual void reset_function() {}
    virtual void save_function(snapshot::Encoder&) const {}
    virtual void restore_function(snapshot::Decoder&) {}
    /// Declares a BAR (before the function is on a bus).
    Result<void> add_bar(uint32_t bar, BarKind kind, uint64_t size, bool prefetchable = false);

    mutable std::mutex config_mu_;
    Config config_;

  private:
    void decode_locked() noexcept;
    std::array<std::atomic<uint64_t>, kMaxBars> decoded_{};
    std::optional<Config> power_on_;  // mark_power_on()'s copy
};

/// Bus 0. Built before the guest runs (functions added then), immutable afterwards.
class PciBus {
  public:
    PciBus();
    /// Adds `function` at the next free device number (1 to 31; 0 is the host bridge).
    Result<uint32_t> add(std::shared_ptr<PciFunction> function);
    PciFunction* function(uint32_t device) const noexcept {
        return device < kMaxDevices ? functions_[device].get() : nullptr;
    }

    /// Configuration access to device `device`, function `fn` (absent: reads all ones).
    void config_read(uint32_t device, uint32_t fn, uint32_t offset, std::span<uint8_t> data) const;
    void config_write(uint32_t device, uint32_t fn, uint32_t offset,
                      std::span<const uint8_t> data) const;

    /// A guest access at `address` of memory (or I/O) space: the BAR decoding it gets it.
    /// False when none does.
    bool bar_read(bool io, uint64_t address, std::span<uint8_t> data) const;
    bool bar_write(bool io, uint64_t address, std::span<const uint8_t> data) const;

  private:
    struct Hit {
        PciFunction* function = nullptr;
        uint32_t bar = 0;
        uint64_t offset = 0;
    };
    Hit find(bool io, uint64_t address, size_t size) const noexcept;
    std::array<std::shared_ptr<PciFunction>, kMaxDevices> functions_{};
};

/// Ports 0xCF8..0xCFF: CONFIG_ADDRESS (a dword at 0xCF8: enable, bus, device, function,
/// register) and CONFIG_DATA (0xCFC..0xCFF, any width inside the dword).
class ConfigPorts : public Device {
  public:
    explicit ConfigPorts(std::shared_ptr<const PciBus> bus) : bus_(std::move(bus)) {}
    const char* name() const noexcept override { return "pci-config"; }
    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;
    void save(snapshot::Encoder& e) const override;
    void restore(snapshot::Decoder& d) override;

  private:
    struct Target {
        uint32_t device, function, offset;
    };
    /// What a CONFIG_DATA access of `size` bytes at port offset `offset` reaches (none: the
    /// address is off, on another bus, or the access runs past 0xCFF).
    std::optional<Target> target(uint64_t offset, size_t size) const;

    std::shared_ptr<const PciBus> bus_;
    std::atomic<uint32_t> address_{0};
};

/// The window BARs are placed in (memory or I/O), attached once to the machine's bus.
class BarWindow : public Device {
  public:
    BarWindow(std::shared_ptr<const PciBus> bus, uint64_t base, bool io)
        : bus_(std::move(bus)), base_(base), io_(io) {}
    const char* name() const noexcept override { return io_ ? "pci-io" : "pci-mmio"; }
    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;

  private:
    std::shared_ptr<const PciBus> bus_;
    uint64_t base_;
    bool io_;
};

}  // namespace vireo::devices::pci
