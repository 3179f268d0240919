// ACPI tables vireo generates for a guest: RSDP -> XSDT -> {FADT -> DSDT, MADT}.
//
// The platform is hardware-reduced ACPI (no PM timer, SCI or GPE blocks): power off and reset
// go through the FADT's sleep control and reset registers (one I/O port, devices::AcpiPm), SMP
// comes from the MADT, and devices are declared in the DSDT. The power button is a control
// method button (PNP0C0C) notified by a Generic Event Device (ACPI0013), the hardware-reduced
// way to signal events (ACPI 6.5, 5.6.9).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "base/result.hpp"
#include "memory/guest_memory.hpp"

namespace vireo::arch::x86::acpi {

/// A virtio-mmio (or other simple MMIO) device to declare in the DSDT.
struct MmioDeviceDesc {
    const char* hid;  ///< e.g. "LNRO0005"
    uint64_t base;
    uint32_t size;
    uint32_t gsi;
};

/// A PCI host bridge (PNP0A03) for bus 0, its configuration space at ports 0xCF8..0xCFF
/// (devices/pci/bus.hpp), the windows BARs are placed in, and _PRT: each device's INTx pin
/// routed to an IOAPIC input (level, active high).
struct PciHostDesc {
    uint32_t mmio32_base = 0;
    uint32_t mmio32_size = 0;
    uint64_t mmio64_base = 0;  ///< 64-bit prefetchable BARs; size 0: no such window
    uint64_t mmio64_size = 0;
    struct Route {
        uint8_t device = 0;  ///< 1 to 31
        uint8_t pin = 0;     ///< 0 = INTA# .. 3 = INTD#
        uint32_t gsi = 0;
    };
    std::vector<Route> routes;
};

struct PlatformDesc {
    uint32_t num_cpus = 1;
    uint16_t serial_port = 0x3f8;  ///< COM1
    uint8_t serial_irq = 4;
    uint16_t pm_port = 0x3c0;  ///< sleep control/status and reset register
    uint8_t pm_reset_value = 0x01;
    uint8_t s5_sleep_type = 5;
    uint64_t pvpanic_base = 0;  ///< 0: no pvpanic device
    /// GSI of the Generic Event Device (ACPI0013) whose event is the power button (PNP0C0C);
    /// 0: neither is declared. An edge on this GSI makes the guest see a button press.
    uint32_t ged_gsi = 0;
    /// A VM Generation ID device (Microsoft's "Virtual Machine Generation ID" spec, as Linux's
    /// vmgenid driver and Windows read it): the guest-physical address of its 16-byte ID and the
    /// GSI of a second GED whose event notifies it (0x80) when the ID changed. 0: none.
    uint64_t vmgenid_addr = 0;
    uint32_t vmgenid_gsi = 0;
    uint64_t ioapic_base = 0xfec00000;
    uint64_t lapic_base = 0xfee00000;
    std::vector<MmioDeviceDesc> mmio_devices;
    std::optional<PciHostDesc> pci;  ///< none: the guest has no PCI bus
};

/// Sets the checksum byte at `offset` so that all bytes of `table` sum to 0 (mod 256).
void set_checksum(std::vector<uint8_t>& table, size_t offset);

std::vector<uint8_t> build_dsdt(const PlatformDesc& desc);
std::vector<uint8_t> build_madt(const PlatformDesc& desc);
std::vector<uint8_t> build_fadt(const PlatformDesc& desc, uint64_t dsdt_addr);
std::vector<uint8_t> build_xsdt(const std::vector<uint64_t>& tables);
std::vector<uint8_t> build_rsdp(uint64_t xsdt_addr);

/// Writes all tables into guest memory from `base` (RSDP first, 16-byte aligned each) within
/// [base, base + max_size). Returns the RSDP's address.
Result<memory::Gpa> write_tables(const memory::GuestMemory& mem, memory::Gpa base,
                                 uint64_t max_size, const PlatformDesc& desc);

}  // namespace vireo::arch::x86::acpi
