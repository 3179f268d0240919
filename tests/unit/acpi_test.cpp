#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "arch/x86/acpi/aml.hpp"
#include "arch/x86/acpi/tables.hpp"

namespace vireo::arch::x86::acpi {
namespace {

uint8_t sum(const std::vector<uint8_t>& t, size_t len) {
    uint8_t s = 0;
    for (size_t i = 0; i < len; ++i)
        s = static_cast<uint8_t>(s + t[i]);
    return s;
}

uint32_t u32(const std::vector<uint8_t>& t, size_t off) {
    return static_cast<uint32_t>(t[off]) | static_cast<uint32_t>(t[off + 1]) << 8 |
           static_cast<uint32_t>(t[off + 2]) << 16 | static_cast<uint32_t>(t[off + 3]) << 24;
}

void expect_valid_table(const std::vector<uint8_t>& t, const char* sig) {
    ASSERT_GE(t.size(), 36u);
    EXPECT_EQ(std::string(t.begin(), t.begin() + 4), sig);
    EXPECT_EQ(u32(t, 4), t.size()) << sig << ": length field";
    EXPECT_EQ(sum(t, t.size()), 0) << sig << ": checksum";
}

TEST(Aml, PkgLengthEncodings) {
    EXPECT_EQ(aml::pkg_length(0), aml::Bytes({0x01}));
    EXPECT_EQ(aml::pkg_length(0x3e), aml::Bytes({0x3f}));
    // 0x3f content bytes need two length bytes: total 0x41 -> 0x41 = 0b01 0001 | 0x04 << 4.
    EXPECT_EQ(aml::pkg_length(0x3f), aml::Bytes({0x41, 0x04}));
    EXPECT_EQ(aml::pkg_length(0x1000), aml::Bytes({0x83, 0x00, 0x01}));
}

TEST(Aml, NamesIntegersStrings) {
    EXPECT_EQ(aml::name_string("_SB_"), aml::Bytes({'_', 'S', 'B', '_'}));
    EXPECT_EQ(aml::name_string("\\_S5"), aml::Bytes({'\\', '_', 'S', '5', '_'}));
    EXPECT_EQ(aml::name_string("_SB_.COM1"),
              aml::Bytes({0x2e, '_', 'S', 'B', '_', 'C', 'O', 'M', '1'}));
    EXPECT_EQ(aml::integer(0), aml::Bytes({0x00}));
    EXPECT_EQ(aml::integer(1), aml::Bytes({0x01}));
    EXPECT_EQ(aml::integer(0x12), aml::Bytes({0x0a, 0x12}));
    EXPECT_EQ(aml::integer(0x1234), aml::Bytes({0x0b, 0x34, 0x12}));
    EXPECT_EQ(aml::integer(0x12345678), aml::Bytes({0x0c, 0x78, 0x56, 0x34, 0x12}));
    EXPECT_EQ(aml::string("ab"), aml::Bytes({0x0d, 'a', 'b', 0}));
    // PNP0501 is the well-known 0x0105d041.
    EXPECT_EQ(aml::eisa_id("PNP0501"), aml::Bytes({0x0c, 0x41, 0xd0, 0x05, 0x01}));
}

TEST(Aml, MethodAndNotify) {
    // Method(_EVT, 1) { Notify(PWRB, 0x80) }: MethodOp, PkgLength, name, flags, NotifyOp, ...
    const aml::Bytes m = aml::method("_EVT", 1, {aml::notify("PWRB", 0x80)});
    const aml::Bytes want{0x14, 0x0d, '_', 'E', 'V', 'T',  0x01,
                          0x86, 'P',  'W', 'R', 'B', 0x0a, 0x80};
    EXPECT_EQ(m, want);
}

TEST(Aml, AddressSpaceDescriptors) {
    // WordBusNumber (producer, min/max fixed) for bus 0 only.
    EXPECT_EQ(aml::word_space(aml::Space::BusNumber, 0, 1),
              (aml::Bytes{0x88, 0x0d, 0x00, 0x02, 0x0c, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00}));
    const aml::Bytes d = aml::dword_space(aml::Space::Memory, 0xc000'0000, 0x1000'0000);
    ASSERT_EQ(d.size(), 3u + 23u);
    EXPECT_EQ(d[0], 0x87);
    EXPECT_EQ(d[1], 23);
    EXPECT_EQ(d[5], 0x01);  // read-write
    EXPECT_EQ((aml::Bytes{d.begin() + 14, d.begin() + 18}),
              (aml::Bytes{0xff, 0xff, 0xff, 0xcf}));  // max
    const aml::Bytes q = aml::qword_space(aml::Space::Memory, 0x80'0000'0000, 0x40'0000'0000);
    ASSERT_EQ(q.size(), 3u + 43u);
    EXPECT_EQ(q[0], 0x8a);
    EXPECT_EQ(q[1], 43);
}

TEST(AcpiTables, ChecksumsAndLengths) {
    PlatformDesc d;
    d.num_cpus = 4;
    d.pvpanic_base = 0xfe000000;
    d.mmio_devices.push_back({"LNRO0005", 0xd0000000, 0x200, 5});
    expect_valid_table(build_dsdt(d), "DSDT");
    expect_valid_table(build_madt(d), "APIC");
    auto fadt = build_fadt(d, 0x1234);
    expect_valid_table(fadt, "FACP");
    EXPECT_EQ(fadt.size(), 276u);
    EXPECT_EQ(fadt[8], 6);                     // revision
    EXPECT_TRUE(u32(fadt, 112) & (1u << 20));  // HW_REDUCED_ACPI
    EXPECT_EQ(fadt[244], 1);                   // sleep control register: system I/O
    EXPECT_EQ(u32(fadt, 248), d.pm_port);
    expect_valid_table(build_xsdt({0x1000, 0x2000}), "XSDT");
    auto rsdp = build_rsdp(0xe0030);
    EXPECT_EQ(std::string(rsdp.begin(), rsdp.begin() + 8), "RSD PTR ");
    EXPECT_EQ(sum(rsdp, 20), 0);
    EXPECT_EQ(sum(rsdp, 36), 0);
}

TEST(AcpiTables, MadtListsEveryCpu) {
    for (uint32_t n : {1u, 4u, 255u, 256u}) {
        PlatformDesc d;
        d.num_cpus = n;
        auto madt = build_madt(d);
        expect_valid_table(madt, "APIC");
        uint32_t lapics = 0, x2apics = 0, ioapics = 0, overrides = 0;
        std::vector<bool> seen(n, false);
        for (size_t off = 44; off < madt.size();) {
            uint8_t type = madt[off], len = madt[off + 1];
            ASSERT_GE(len, 2);
            if (type == 0) {
                ++lapics;
                seen.at(madt[off + 3]) = true;
                EXPECT_EQ(u32(madt, off + 4) & 1, 1u);
            } else if (type == 9) {
                ++x2apics;
                seen.at(u32(madt, off + 4)) = true;
            } else if (type == 1) {
                ++ioapics;
                EXPECT_EQ(u32(madt, off + 4), 0xfec00000u);
            } else if (type == 2) {
                ++overrides;
            }
            off += len;
        }
        EXPECT_EQ(lapics + x2apics, n);
        EXPECT_EQ(x2apics, n > 255 ? n - 255 : 0);
        EXPECT_EQ(ioapics, 1u);
        EXPECT_EQ(overrides, 1u);
        for (uint32_t i = 0; i < n; ++i)
            EXPECT_TRUE(seen[i]) << "cpu " << i;
    }
}

TEST(AcpiTables, WrittenIntoGuestMemory) {
    auto mem = memory::GuestMemory::create_flat(1 << 20);
    ASSERT_TRUE(mem);
    PlatformDesc d;
    auto rsdp = write_tables(*mem, memory::Gpa(0xe0000), 0x20000, d);
    ASSERT_TRUE(rsdp) << rsdp.error().message();
    EXPECT_EQ(rsdp->value(), 0xe0000u);
    auto too_small = write_tables(*mem, memory::Gpa(0xe0000), 64, d);
    EXPECT_FALSE(too_small);
}

// The DSDT decodes with ACPICA's disassembler (iasl), when it is installed.
TEST(AcpiTables, DsdtDisassembles) {
    if (std::system("command -v iasl >/dev/null 2>&1") != 0) GTEST_SKIP() << "iasl not installed";
    PlatformDesc d;
    d.num_cpus = 2;
    d.pvpanic_base = 0xfe000000;
    d.mmio_devices.push_back({"LNRO0005", 0xd0000000, 0x200, 5});
    d.ged_gsi = 12;
    d.vmgenid_addr = 0xff000;
    d.vmgenid_gsi = 9;
    PciHostDesc pci;
    pci.mmio32_base = 0xc0000000;
    pci.mmio32_size = 0x10000000;
    pci.mmio64_base = 0x80'0000'0000;
    pci.mmio64_size = 0x40'0000'0000;
    pci.routes = {{1, 0, 16}, {2, 0, 17}};
    d.pci = pci;
    auto dsdt = build_dsdt(d);
    char dir[] = "/tmp/vireo-acpi-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    std::string base = std::string(dir) + "/dsdt";
    std::ofstream(base + ".dat", std::ios::binary)
        .write(reinterpret_cast<const char*>(dsdt.data()),
               static_cast<std::streamsize>(dsdt.size()));
    std::string cmd = "iasl -d " + base + ".dat >" + base + ".log 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << "iasl failed; see " << base << ".log";
    std::ifstream dsl(base + ".dsl");
    std::string text((std::istreambuf_iterator<char>(dsl)), std::istreambuf_iterator<char>());
    for (const char* needle :
         {"PNP0501",
          "PNP0B00",
          "QEMU0001",
          "LNRO0005",
          "_S5_",
          "0xFE000000",
          "0xD0000000",
          "IO (Decode16",
          "ACPI0013",
          "PNP0C0C",
          "Method (_EVT, 1",
          "Notify (\\_SB.PWRB, 0x80)",
          "Device (VGEN)",
          "\"VMGENCTR\"",
          "\"VM_Gen_Counter\"",
          "Name (ADDR, Package",
          "0x000FF000",
          "Notify (\\_SB.VGEN, 0x80)",
          "Device (PCI0)",
          "PNP0A03",
          "WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode",
          "0x0CF8,             // Range Minimum",
          "DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite",
          "0xCFFFFFFF",
          "QWordMemory (ResourceProducer",
          "0x000000BFFFFFFFFF",
          "Name (_PRT, Package (0x02)",
          "0x0001FFFF",
          "0x0002FFFF",
          "0x11"}) {
        EXPECT_NE(text.find(needle), std::string::npos) << needle << " missing in:\n" << text;
    }
    std::system(("rm -rf " + std::string(dir)).c_str());
}

}  // namespace
}  // namespace vireo::arch::x86::acpi
