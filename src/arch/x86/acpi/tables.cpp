#include "arch/x86/acpi/tables.hpp"

#include <cstring>
#include <string_view>

#include "arch/x86/acpi/aml.hpp"

namespace vireo::arch::x86::acpi {

namespace {

using Table = std::vector<uint8_t>;

void put(Table& t, size_t off, uint64_t v, int n) {
    if (t.size() < off + static_cast<size_t>(n)) t.resize(off + static_cast<size_t>(n));
    for (int i = 0; i < n; ++i)
        t[off + static_cast<size_t>(i)] = static_cast<uint8_t>(v >> (8 * i));
}

void append(Table& t, uint64_t v, int n) {
    put(t, t.size(), v, n);
}

void put_str(Table& t, size_t off, std::string_view s) {
    if (t.size() < off + s.size()) t.resize(off + s.size());
    std::memcpy(t.data() + off, s.data(), s.size());
}

// The 36-byte System Description Table header; length and checksum are filled by finish().
Table header(std::string_view sig, uint8_t revision) {
    Table t(36, 0);
    put_str(t, 0, sig);
    t[8] = revision;
    put_str(t, 10, "VIREO ");
    put_str(t, 16, "VIREOVM ");
    put(t, 24, 1, 4);
    put_str(t, 28, "VIRO");
    put(t, 32, 1, 4);
    return t;
}

Table finish(Table t) {
    put(t, 4, t.size(), 4);
    set_checksum(t, 9);
    return t;
}

// Generic Address Structure (12 bytes) for a byte-wide I/O port.
void put_gas_io8(Table& t, size_t off, uint16_t port) {
    put(t, off, 1, 1);      // system I/O space
    put(t, off + 1, 8, 1);  // bit width
    put(t, off + 2, 0, 1);  // bit offset
    put(t, off + 3, 1, 1);  // byte access
    put(t, off + 4, port, 8);
}

}  // namespace

void set_checksum(std::vector<uint8_t>& table, size_t offset) {
    table[offset] = 0;
    uint8_t sum = 0;
    for (uint8_t b : table)
        sum = static_cast<uint8_t>(sum + b);
    table[offset] = static_cast<uint8_t>(-sum);
}

std::vector<uint8_t> build_dsdt(const PlatformDesc& d) {
    using namespace aml;
    std::vector<Bytes> sb;
    sb.push_back(device(
        "COM1",
        {name("_HID", eisa_id("PNP0501")), name("_UID", integer(1)),
         name("_CRS", resource_template({io(d.serial_port, 8), irq_no_flags(d.serial_irq)}))}));
    sb.push_back(device("RTC_", {name("_HID", eisa_id("PNP0B00")),
                                 name("_CRS", resource_template({io(0x70, 2)}))}));
    if (d.pvpanic_base != 0) {
        sb.push_back(
            device("PEVT", {name("_HID", string("QEMU0001")),
                            name("_CRS", resource_template({memory32_fixed(
                                             static_cast<uint32_t>(d.pvpanic_base), 2)}))}));
    }
    if (d.ged_gsi != 0) {
        // The GED's interrupt runs _EVT(GSI); its one event is a press of PWRB (Notify 0x80:
        // "button pressed", ACPI 6.5, 4.8.2.2.1.1).
        sb.push_back(device("PWRB", {name("_HID", eisa_id("PNP0C0C")), name("_UID", integer(0))}));
        sb.push_back(device("GED_", {name("_HID", string("ACPI0013")), name("_UID", integer(0)),
                                     name("_CRS", resource_template({interrupt(d.ged_gsi, false)})),
                                     method("_EVT", 1, {notify("\\_SB_.PWRB", 0x80)})}));
    }
    if (d.vmgenid_addr != 0) {
        // VGEN: its ID's address in ADDR (a package of the low and high 32 bits); _HID matches
        // Linux's driver, _CID Windows' ("VM_Gen_Counter"). GED1's one event: the ID changed.
        sb.push_back(device(
            "VGEN", {name("_HID", string("VMGENCTR")), name("_CID", string("VM_Gen_Counter")),
                     name("_DDN", string("VM_Gen_Counter")),
                     name("ADDR", package({integer(d.vmgenid_addr & 0xffffffff),
                                           integer(d.vmgenid_addr >> 32)}))}));
        sb.push_back(
            device("GED1", {name("_HID", string("ACPI0013")), name("_UID", integer(1)),
                            name("_CRS", resource_template({interrupt(d.vmgenid_gsi, false)})),
                            method("_EVT", 1, {notify("\\_SB_.VGEN", 0x80)})}));
    }
    for (size_t i = 0; i < d.mmio_devices.size(); ++i) {
        const auto& m = d.mmio_devices[i];
        const std::string dev_name = fmt::format("V{:03}", i % 1000);  // at most 1000 devices
        sb.push_back(device(
            dev_name,
            {name("_HID", string(m.hid)), name("_UID", integer(i)),
             name("_CRS", resource_template({memory32_fixed(static_cast<uint32_t>(m.base), m.size),
                                             interrupt(m.gsi, false)}))}));
    }
    if (d.pci) {
        // PCI0: bus 0 only; its windows as _CRS (the bus number, the configuration ports, the
        // BAR windows); _PRT's entries are Package {device << 16 | 0xFFFF, pin, 0, GSI}: a
        // source of 0 names a GSI directly (ACPI 6.5, 6.2.13).
        const PciHostDesc& p = *d.pci;
        std::vector<Bytes> crs{word_space(Space::BusNumber, 0, 1), io(0xcf8, 8)};
        if (p.mmio32_size != 0)
            crs.push_back(dword_space(Space::Memory, p.mmio32_base, p.mmio32_size));
        if (p.mmio64_size != 0)
            crs.push_back(qword_space(Space::Memory, p.mmio64_base, p.mmio64_size));
        std::vector<Bytes> prt;
        for (const auto& r : p.routes)
            prt.push_back(package({integer((uint64_t{r.device} << 16) | 0xffff), integer(r.pin),
                                   integer(0), integer(r.gsi)}));
        sb.push_back(
            device("PCI0", {name("_HID", eisa_id("PNP0A03")), name("_UID", integer(0)),
                            name("_SEG", integer(0)), name("_BBN", integer(0)),
                            name("_CRS", resource_template(crs)), name("_PRT", package(prt))}));
    }
    Bytes body = join(
        {scope("\\_SB_", sb), name("\\_S5_", package({integer(d.s5_sleep_type), integer(0)}))});
    Table t = header("DSDT", 2);
    t.insert(t.end(), body.begin(), body.end());
    return finish(std::move(t));
}

std::vector<uint8_t> build_madt(const PlatformDesc& d) {
    Table t = header("APIC", 5);
    append(t, d.lapic_base, 4);
    append(t, 1, 4);  // PCAT_COMPAT: dual 8259s present
    for (uint32_t i = 0; i < d.num_cpus; ++i) {
        if (i < 255) {
            append(t, 0, 1);  // Processor Local APIC
            append(t, 8, 1);
            append(t, i, 1);  // ACPI processor UID
            append(t, i, 1);  // APIC id
            append(t, 1, 4);  // enabled
        } else {
            append(t, 9, 1);  // Processor Local x2APIC (APIC id 255 and up)
            append(t, 16, 1);
            append(t, 0, 2);
            append(t, i, 4);  // x2APIC id
            append(t, 1, 4);  // enabled
            append(t, i, 4);  // ACPI processor UID
        }
    }
    append(t, 1, 1);  // I/O APIC
    append(t, 12, 1);
    append(t, 0, 1);  // id (vCPU APIC ids start at 0 too; Linux does not mind)
    append(t, 0, 1);
    append(t, d.ioapic_base, 4);
    append(t, 0, 4);  // GSI base
    append(t, 2, 1);  // Interrupt source override: ISA IRQ 0 (PIT) -> GSI 2
    append(t, 10, 1);
    append(t, 0, 1);
    append(t, 0, 1);
    append(t, 2, 4);
    append(t, 0, 2);
    append(t, 4, 1);  // Local APIC NMI on LINT1 of every processor
    append(t, 6, 1);
    append(t, 0xff, 1);
    append(t, 0, 2);
    append(t, 1, 1);
    return finish(std::move(t));
}

std::vector<uint8_t> build_fadt(const PlatformDesc& d, uint64_t dsdt_addr) {
    Table t = header("FACP", 6);
    t.resize(276, 0);
    t[131] = 5;                // FADT minor version (ACPI 6.5)
    put(t, 40, dsdt_addr, 4);  // DSDT (32-bit)
    put(t, 108, 0x32, 1);      // CMOS century register
    put(t, 109, 1u << 2, 2);   // IAPC_BOOT_ARCH: no VGA (and no 8042 to probe)
    constexpr uint32_t kWbinvd = 1u << 0, kPwrButton = 1u << 4, kSlpButton = 1u << 5,
                       kResetRegSup = 1u << 10, kHwReduced = 1u << 20;
    put(t, 112, kWbinvd | kPwrButton | kSlpButton | kResetRegSup | kHwReduced, 4);
    put_gas_io8(t, 116, d.pm_port);    // RESET_REG
    put(t, 128, d.pm_reset_value, 1);  // RESET_VALUE
    put(t, 140, dsdt_addr, 8);         // X_DSDT
    put_gas_io8(t, 244, d.pm_port);    // SLEEP_CONTROL_REG
    put_gas_io8(t, 256, d.pm_port);    // SLEEP_STATUS_REG
    put_str(t, 268, "VIREO   ");       // hypervisor vendor identity
    return finish(std::move(t));
}

std::vector<uint8_t> build_xsdt(const std::vector<uint64_t>& tables) {
    Table t = header("XSDT", 1);
    for (uint64_t a : tables)
        append(t, a, 8);
    return finish(std::move(t));
}

std::vector<uint8_t> build_rsdp(uint64_t xsdt_addr) {
    Table t(36, 0);
    put_str(t, 0, "RSD PTR ");
    put_str(t, 9, "VIREO ");
    t[15] = 2;  // ACPI 2.0+
    put(t, 20, 36, 4);
    put(t, 24, xsdt_addr, 8);
    // Checksum over the first 20 bytes, extended checksum over all 36.
    uint8_t sum = 0;
    for (size_t i = 0; i < 20; ++i)
        sum = static_cast<uint8_t>(sum + t[i]);
    t[8] = static_cast<uint8_t>(-sum);
    set_checksum(t, 32);
    return t;
}

Result<memory::Gpa> write_tables(const memory::GuestMemory& mem, memory::Gpa base,
                                 uint64_t max_size, const PlatformDesc& desc) {
    // Layout: RSDP, XSDT, FADT, MADT, DSDT, each 16-byte aligned.
    auto align16 = [](uint64_t v) { return (v + 15) & ~uint64_t{15}; };
    const uint64_t rsdp = base.value();
    const uint64_t xsdt = align16(rsdp + 36);
    const uint64_t fadt = align16(xsdt + 36 + 2 * 8);
    const uint64_t madt = align16(fadt + 276);
    auto madt_bytes = build_madt(desc);
    const uint64_t dsdt = align16(madt + madt_bytes.size());
    auto dsdt_bytes = build_dsdt(desc);
    const uint64_t end = dsdt + dsdt_bytes.size();
    if (end - base.value() > max_size)
        return fail(ErrorCode::ResourceExhausted, "ACPI tables need {} bytes, {} are reserved",
                    end - base.value(), max_size);
    struct Piece {
        uint64_t at;
        std::vector<uint8_t> bytes;
    };
    const Piece pieces[] = {{rsdp, build_rsdp(xsdt)},
                            {xsdt, build_xsdt({fadt, madt})},
                            {fadt, build_fadt(desc, dsdt)},
                            {madt, std::move(madt_bytes)},
                            {dsdt, std::move(dsdt_bytes)}};
    for (const auto& p : pieces)
        VIREO_TRY(mem.write(memory::Gpa(p.at), std::as_bytes(std::span(p.bytes))));
    return memory::Gpa(rsdp);
}

}  // namespace vireo::arch::x86::acpi
