// The snapshot container (snapshot/format.hpp) and the state encoding (snapshot/state.hpp):
// what is written reads back; a truncated, corrupted, wrong-version or hostile file is refused
// with one line saying why.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "base/unique_fd.hpp"
#include "snapshot/format.hpp"
#include "snapshot/machine.hpp"
#include "snapshot/state.hpp"
#include "snapshot/vcpu.hpp"

namespace vireo::snapshot {
namespace {

constexpr uint32_t kCpu = tag("CPU0");
constexpr uint32_t kUart = tag("UART");
constexpr uint32_t kMem = tag("MEM0");

UniqueFd memfile() {
    return UniqueFd(::memfd_create("snapshot-test", MFD_CLOEXEC));
}

std::vector<uint8_t> contents(int fd) {
    struct stat st {};
    EXPECT_EQ(::fstat(fd, &st), 0);
    std::vector<uint8_t> out(static_cast<size_t>(st.st_size));
    EXPECT_EQ(::pread(fd, out.data(), out.size(), 0), static_cast<ssize_t>(out.size()));
    return out;
}

// A file with two small sections and 4 MiB of "guest memory" of which two pages are written.
std::vector<uint8_t> sample(uint64_t* mem_offset = nullptr) {
    UniqueFd fd = memfile();
    Writer w(fd.get());
    Encoder cpu;
    cpu.u64(0xfff0);
    cpu.u32(7);
    cpu.boolean(true);
    const uint8_t fifo[] = {'h', 'i'};
    Encoder uart;
    uart.u8(0x3);
    uart.bytes(fifo);
    EXPECT_TRUE(w.add(kCpu, 1, cpu.data()));
    auto off = w.add_mapped(kMem, 1, 4u << 20);
    EXPECT_TRUE(off);
    EXPECT_TRUE(w.add(kUart, 2, uart.data()));
    const char page[] = "guest page";
    EXPECT_EQ(::pwrite(fd.get(), page, sizeof page, static_cast<off_t>(*off + 8192)),
              static_cast<ssize_t>(sizeof page));
    EXPECT_TRUE(w.finish());
    if (mem_offset != nullptr) *mem_offset = *off;
    return contents(fd.get());
}

std::string open_error(std::span<const uint8_t> bytes) {
    auto r = Reader::open(memory_source(bytes));
    return r ? std::string() : r.error().message();
}

TEST(SnapshotFormat, WhatIsWrittenReadsBack) {
    uint64_t mem_offset = 0;
    const auto file = sample(&mem_offset);
    auto r = Reader::open(memory_source(file));
    ASSERT_TRUE(r) << r.error().message();
    ASSERT_EQ(r->sections().size(), 4u);  // CPU0, MEM0, UART, END
    const SectionInfo* mem = r->find(kMem);
    ASSERT_NE(mem, nullptr);
    EXPECT_EQ(mem->offset, mem_offset);
    EXPECT_EQ(mem->offset % kMappedAlign, 0u);
    EXPECT_EQ(mem->length, 4u << 20);
    EXPECT_TRUE(r->bytes(*mem).empty());  // mapped: never read by the parser
    EXPECT_EQ(std::memcmp(file.data() + mem_offset + 8192, "guest page", 10), 0);

    Decoder cpu(r->bytes(*r->find(kCpu)), "vCPU 0");
    EXPECT_EQ(cpu.u64(), 0xfff0u);
    EXPECT_EQ(cpu.u32(), 7u);
    EXPECT_TRUE(cpu.boolean());
    EXPECT_TRUE(cpu.finish());
    const SectionInfo* uart_info = r->find(kUart);
    EXPECT_EQ(uart_info->version, 2u);
    Decoder uart(r->bytes(*uart_info), "UART");
    EXPECT_EQ(uart.u8(), 3u);
    const auto fifo = uart.bytes(16);
    EXPECT_EQ(std::string(fifo.begin(), fifo.end()), "hi");
    EXPECT_TRUE(uart.finish());
}

TEST(SnapshotFormat, TheMemorySectionStaysSparse) {
    UniqueFd fd = memfile();
    Writer w(fd.get());
    auto off = w.add_mapped(kMem, 1, 1ull << 30);  // 1 GiB of guest memory, nothing written
    ASSERT_TRUE(off);
    ASSERT_TRUE(w.finish());
    struct stat st {};
    ASSERT_EQ(::fstat(fd.get(), &st), 0);
    EXPECT_GE(static_cast<uint64_t>(st.st_size), *off + (1ull << 30));
    EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, 1u << 20);
    auto src = file_source(fd.get());
    ASSERT_TRUE(src);
    EXPECT_TRUE(Reader::open(*src));
}

TEST(SnapshotFormat, EveryTruncationIsRefused) {
    const auto file = sample();
    // Every cut inside the header and the small sections, and a few inside the memory.
    for (size_t cut = 0; cut < file.size(); cut += cut < 4096 ? 1 : 65536) {
        const std::string e = open_error(std::span(file).first(cut));
        EXPECT_FALSE(e.empty()) << "cut at " << cut;
        if (cut >= kHeaderBytes) {
            EXPECT_NE(e.find("truncated"), std::string::npos) << cut << ": " << e;
        }
    }
}

TEST(SnapshotFormat, CorruptionNamesTheSection) {
    auto file = sample();
    auto r = Reader::open(memory_source(file));
    ASSERT_TRUE(r);
    auto corrupt = file;
    corrupt[r->find(kUart)->offset] ^= 0x40;
    EXPECT_NE(open_error(corrupt).find("section UART is corrupted"), std::string::npos);
    corrupt = file;
    corrupt[20] ^= 1;  // the header's flags
    EXPECT_FALSE(open_error(corrupt).empty());
    corrupt = file;
    corrupt[16] ^= 1;  // the section count: the header's checksum catches it
    EXPECT_NE(open_error(corrupt).find("header's checksum"), std::string::npos);
}

TEST(SnapshotFormat, OtherVersionsAndFilesAreRefused) {
    auto file = sample();
    file[8] = 2;  // format version 2
    EXPECT_NE(open_error(file).find("format version 2; this vireo reads version 1"),
              std::string::npos);
    const std::string text = "#!/bin/sh\necho not a snapshot\n" + std::string(64, ' ');
    EXPECT_NE(open_error(std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()))
                  .find("not a vireo snapshot"),
              std::string::npos);
    EXPECT_NE(open_error({}).find("shorter than"), std::string::npos);
}

// A header and section headers crafted to overflow or point anywhere: each refused.
TEST(SnapshotFormat, HostileLengthsAreRefused) {
    const auto file = sample();
    auto r = Reader::open(memory_source(file));
    ASSERT_TRUE(r);
    const size_t first = kHeaderBytes;  // the CPU0 section's header
    auto with = [&](size_t at, uint64_t v, int n) {
        auto f = file;
        for (int i = 0; i < n; ++i)
            f[at + static_cast<size_t>(i)] = static_cast<uint8_t>(v >> (8 * i));
        return open_error(f);
    };
    EXPECT_FALSE(with(first + 24, UINT64_MAX, 8).empty());        // length
    EXPECT_FALSE(with(first + 24, UINT64_MAX - 100, 8).empty());  // length wraps
    EXPECT_FALSE(with(first + 16, 1ull << 40, 8).empty());        // offset
    EXPECT_FALSE(with(first + 8, 0x80, 4).empty());               // unknown flags
    EXPECT_FALSE(with(first + 8, kSectionMapped, 4).empty());     // mapped, misplaced
}

// Header fields with a valid checksum: too many sections, more than the file has, fewer.
TEST(SnapshotFormat, SectionCountsAreChecked) {
    const auto file = sample();
    auto with_count = [&](uint32_t n) {
        auto f = file;
        for (int i = 0; i < 4; ++i) {
            f[16 + static_cast<size_t>(i)] = static_cast<uint8_t>(n >> (8 * i));
            f[24 + static_cast<size_t>(i)] = 0;
        }
        const uint32_t crc = crc32(std::span(f).first(kHeaderBytes));
        for (int i = 0; i < 4; ++i)
            f[24 + static_cast<size_t>(i)] = static_cast<uint8_t>(crc >> (8 * i));
        return open_error(f);
    };
    EXPECT_TRUE(with_count(4).empty());
    EXPECT_NE(with_count(kMaxSections + 1).find("sections (1 to 4096 allowed)"), std::string::npos);
    EXPECT_NE(with_count(0).find("0 sections"), std::string::npos);
    EXPECT_NE(with_count(5).find("end marker comes before"), std::string::npos);
    EXPECT_NE(with_count(3).find("no end marker"), std::string::npos);
}

TEST(SnapshotState, ShortLongAndInvalidFieldsAreMalformed) {
    Encoder e;
    e.u32(5);
    e.u8(2);
    {
        Decoder d(e.data(), "CMOS");
        d.u32();
        d.u8();
        d.u8();  // one too many
        const auto r = d.finish();
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error().message(), "snapshot: CMOS state is malformed: truncated");
    }
    {
        Decoder d(e.data(), "CMOS");
        d.u32();
        const auto r = d.finish();
        ASSERT_FALSE(r);
        EXPECT_NE(r.error().message().find("1 bytes left over"), std::string::npos);
    }
    {
        Decoder d(e.data(), "CMOS");
        d.u32();
        d.boolean();  // 2 is no flag
        EXPECT_FALSE(d.finish());
    }
    {
        Encoder big;
        const std::vector<uint8_t> fifo(100, 'x');
        big.bytes(fifo);
        Decoder d(big.data(), "UART");
        EXPECT_TRUE(d.bytes(16).empty());
        EXPECT_NE(d.finish().error().message().find("a field of 100 bytes (at most 16)"),
                  std::string::npos);
    }
    {
        Encoder lying;
        lying.u32(1000);  // a length past the end
        Decoder d(lying.data(), "UART");
        EXPECT_TRUE(d.bytes(4096).empty());
        EXPECT_FALSE(d.finish());
    }
}

// A vCPU in long mode with a pending interrupt, MSRs, FPU, XSAVE and LAPIC contents.
hv::VcpuState busy_vcpu() {
    hv::VcpuState s;
    s.gprs.rax = 0x1122334455667788;
    s.gprs.r15 = 15;
    s.gprs.rip = 0xffffffff81000000;
    s.gprs.rflags = 0x246;
    s.segments.cs = {0, 0xffffffff, 0x10, 11, true, 0, false, true, true, true, false, false};
    s.segments.tr.type = 11;
    s.segments.ldt.unusable = true;
    s.segments.gdt = {0xfffffe0000001000, 0x7f};
    s.crs = {0x80050033, 0x7f0000001000, 0x1000, 0x3606f0, 0, 0xd01, 0xfee00900};
    s.msrs = {{0xc0000080, 0xd01}, {0x10, 123456789}, {0x4b564d01, 0x2001}};
    s.fpu.fpr[3][7] = 0x42;
    s.fpu.xmm[15][0] = 0x99;
    s.fpu.mxcsr = 0x1fa0;
    for (size_t i = 0; i < s.xsave.region.size(); ++i)
        s.xsave.region[i] = static_cast<uint32_t>(i * 2654435761u);
    s.xcr0 = 7;
    s.lapic.regs[0x20] = 1;
    s.lapic.regs[0x3f0] = 0xfe;
    s.events.interrupt = {true, 0xec, false, 1};
    s.events.nmi.masked = true;
    s.events.sipi_vector = 9;
    s.mp_state = hv::MpState::Halted;
    return s;
}

TEST(SnapshotVcpu, EveryPartRoundTrips) {
    const hv::VcpuState in = busy_vcpu();
    Encoder e;
    encode(e, in);
    hv::VcpuState out;
    Decoder d(e.data(), "vCPU 0");
    decode(d, out);
    ASSERT_TRUE(d.finish()) << d.finish().error().message();
    EXPECT_EQ(out.gprs.rax, in.gprs.rax);
    EXPECT_EQ(out.gprs.r15, 15u);
    EXPECT_EQ(out.gprs.rip, in.gprs.rip);
    EXPECT_EQ(out.segments.cs.selector, 0x10);
    EXPECT_TRUE(out.segments.cs.l && out.segments.cs.present && !out.segments.cs.db);
    EXPECT_TRUE(out.segments.ldt.unusable);
    EXPECT_EQ(out.segments.gdt.base, in.segments.gdt.base);
    EXPECT_EQ(out.crs.cr3, 0x1000u);
    EXPECT_EQ(out.crs.apic_base, 0xfee00900u);
    ASSERT_EQ(out.msrs.size(), 3u);
    EXPECT_EQ(out.msrs[2].index, 0x4b564d01u);
    EXPECT_EQ(out.msrs[1].value, 123456789u);
    EXPECT_EQ(out.fpu.fpr[3][7], 0x42);
    EXPECT_EQ(out.fpu.xmm[15][0], 0x99);
    EXPECT_EQ(out.fpu.mxcsr, 0x1fa0u);
    EXPECT_EQ(out.xsave.region, in.xsave.region);
    EXPECT_EQ(out.xcr0, 7u);
    EXPECT_EQ(out.lapic.regs, in.lapic.regs);
    EXPECT_TRUE(out.events.interrupt.injected);
    EXPECT_EQ(out.events.interrupt.vector, 0xec);
    EXPECT_EQ(out.events.interrupt.shadow, 1);
    EXPECT_TRUE(out.events.nmi.masked);
    EXPECT_EQ(out.events.sipi_vector, 9u);
    EXPECT_EQ(out.mp_state, hv::MpState::Halted);
    EXPECT_NE(vcpu_tag(0), vcpu_tag(1));
    EXPECT_NE(vcpu_tag(1023), vcpu_tag(0));
}

TEST(SnapshotVcpu, MalformedStateIsRefused) {
    Encoder e;
    encode(e, busy_vcpu());
    const std::vector<uint8_t> good = e.data();
    auto decode_error = [](std::span<const uint8_t> bytes) {
        hv::VcpuState s;
        Decoder d(bytes, "vCPU 3");
        decode(d, s);
        const auto r = d.finish();
        return r ? std::string() : r.error().message();
    };
    EXPECT_NE(decode_error(std::span(good).first(good.size() - 1))
                  .find("vCPU 3 state is "
                        "malformed: truncated"),
              std::string::npos);
    // The MSR count sits after 18 GPRs, 8 segments of 23 bytes, 2 tables and 7 CRs.
    const size_t msr_count = 18 * 8 + 8 * 23 + 2 * 10 + 7 * 8;
    ASSERT_EQ(good[msr_count], 3);
    auto hostile = good;
    hostile[msr_count + 3] = 0x7f;  // 2 billion MSRs
    EXPECT_NE(decode_error(hostile).find("the MSR count"), std::string::npos);
    auto mp = good;
    mp[mp.size() - 4] = 9;  // no such MP state
    EXPECT_NE(decode_error(mp).find("the MP state"), std::string::npos);
    auto flag = good;
    flag[18 * 8 + 16] = 2;  // CS's "present" flag: neither 0 nor 1
    EXPECT_NE(decode_error(flag).find("a flag"), std::string::npos);
}

// The machine section: KVM's three interrupt controllers, or none at all (the split model keeps
// them in vireo's own section); one or two of them is malformed.
TEST(SnapshotMachine, InKernelChipsOrNone) {
    auto round_trip = [](const MachineState& in, MachineState& out) {
        Encoder e;
        encode(e, in);
        Decoder d(e.data(), "machine");
        decode(d, out);
        return d.finish();
    };
    MachineState none, back;
    none.clock_ns = 42;
    ASSERT_TRUE(round_trip(none, back));
    EXPECT_EQ(back.clock_ns, 42u);
    EXPECT_TRUE(back.chips.pic_primary.empty() && back.chips.ioapic.empty());
    MachineState kernel;
    for (uint8_t id = 0; id < 3; ++id) {
        auto& chip = id == 0   ? kernel.chips.pic_primary
                     : id == 1 ? kernel.chips.pic_secondary
                               : kernel.chips.ioapic;
        chip.assign(16, 0);
        chip[0] = id;
    }
    ASSERT_TRUE(round_trip(kernel, back));
    EXPECT_EQ(back.chips.ioapic, kernel.chips.ioapic);
    MachineState partial = kernel;
    partial.chips.pic_secondary.clear();
    EXPECT_FALSE(round_trip(partial, back));
    partial = kernel;
    partial.chips.pic_primary.clear();
    EXPECT_FALSE(round_trip(partial, back));
}

}  // namespace
}  // namespace vireo::snapshot
