// libnvmm's state translation, both ways (src/nvmm/state.cpp).
#include <gtest/gtest.h>

#include <cstring>

#include "nvmm/state.hpp"

namespace vireo::nvmm {
namespace {

hv::VcpuState sample() {
    hv::VcpuState s;
    s.gprs = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 0x1000, 0x202};
    s.segments.cs = {0x10000, 0xffff, 0x8, 0xb, true, 0, false, true, true, true, false, false};
    s.segments.ds = {0, 0xfffff, 0x10, 0x3, true, 3, true, true, false, true, true, false};
    s.segments.ss = {0, 0, 0, 0, false, 0, false, false, false, false, false, true};
    s.segments.tr = {0x5000, 0x67, 0x28, 0xb, true, 0, false, false, false, false, false, false};
    s.segments.gdt = {0x500, 0x17};
    s.segments.idt = {0x600, 0xfff};
    s.crs = {0x80050033, 0x1234, 0x10000, 0x20, 5, 0x501, 0xfee00900};
    s.xcr0 = 7;
    s.debug.db = {1, 2, 3, 4};
    s.debug.dr6 = 0xffff4ff0;
    s.debug.dr7 = 0x401;
    list_state_msrs(s);
    for (size_t i = 0; i < s.msrs.size(); ++i)
        s.msrs[i].value = 0x100 + i;
    s.events.interrupt.shadow = 1;
    s.fpu.fcw = 0x27f;
    s.fpu.mxcsr = 0x1fa0;
    s.fpu.fpr[3][0] = 0x42;
    s.fpu.xmm[15][15] = 0x99;
    s.fpu.last_ip = 0xdeadbeef;
    return s;
}

TEST(NvmmState, ToNvmmPlacesEveryPartWhereNvmmHasIt) {
    nvmm_x64_state n{};
    to_nvmm(sample(), NVMM_X64_STATE_ALL, n);
    EXPECT_EQ(n.gprs[NVMM_X64_GPR_RAX], 1u);
    EXPECT_EQ(n.gprs[NVMM_X64_GPR_RCX], 3u);  // NVMM's order: RAX RCX RDX RBX RSP RBP RSI RDI
    EXPECT_EQ(n.gprs[NVMM_X64_GPR_RDX], 4u);
    EXPECT_EQ(n.gprs[NVMM_X64_GPR_RBX], 2u);
    EXPECT_EQ(n.gprs[NVMM_X64_GPR_RSP], 7u);
    EXPECT_EQ(n.gprs[NVMM_X64_GPR_RIP], 0x1000u);
    EXPECT_EQ(n.gprs[NVMM_X64_GPR_RFLAGS], 0x202u);
    const auto& cs = n.segs[NVMM_X64_SEG_CS];
    EXPECT_EQ(cs.selector, 0x8);
    EXPECT_EQ(cs.base, 0x10000u);
    EXPECT_EQ(cs.attrib.type, 0xb);
    EXPECT_EQ(cs.attrib.p, 1);
    EXPECT_EQ(cs.attrib.l, 1);
    EXPECT_EQ(cs.attrib.g, 1);
    EXPECT_EQ(n.segs[NVMM_X64_SEG_DS].attrib.dpl, 3);
    EXPECT_EQ(n.segs[NVMM_X64_SEG_DS].attrib.def, 1);
    EXPECT_EQ(n.segs[NVMM_X64_SEG_DS].attrib.avl, 1);
    EXPECT_EQ(n.segs[NVMM_X64_SEG_SS].attrib.p, 0);  // KVM's "unusable" is NVMM's "not present"
    EXPECT_EQ(n.segs[NVMM_X64_SEG_TR].base, 0x5000u);
    EXPECT_EQ(n.segs[NVMM_X64_SEG_GDT].base, 0x500u);
    EXPECT_EQ(n.segs[NVMM_X64_SEG_IDT].limit, 0xfffu);
    EXPECT_EQ(n.crs[NVMM_X64_CR_CR0], 0x80050033u);
    EXPECT_EQ(n.crs[NVMM_X64_CR_CR8], 5u);
    EXPECT_EQ(n.crs[NVMM_X64_CR_XCR0], 7u);
    EXPECT_EQ(n.drs[NVMM_X64_DR_DR2], 3u);
    EXPECT_EQ(n.drs[NVMM_X64_DR_DR6], 0xffff4ff0u);
    EXPECT_EQ(n.msrs[NVMM_X64_MSR_EFER], 0x501u);  // EFER: hv keeps it with the CRs
    EXPECT_EQ(n.msrs[NVMM_X64_MSR_STAR], 0x100u);
    EXPECT_EQ(n.msrs[NVMM_X64_MSR_TSC], 0x109u);
    EXPECT_EQ(n.intr.int_shadow, 1u);
    EXPECT_EQ(n.intr.evt_pending, 0u);
    EXPECT_EQ(n.fpu.fx_cw, 0x27f);
    EXPECT_EQ(n.fpu.fx_mxcsr, 0x1fa0u);
    EXPECT_EQ(n.fpu.fx_ip.fa_64, 0xdeadbeefu);
    EXPECT_EQ(reinterpret_cast<const uint8_t*>(&n.fpu.fx_87_ac[3])[0], 0x42);
    EXPECT_EQ(n.fpu.fx_xmm[15].xmm_bytes[15], 0x99);
}

TEST(NvmmState, RoundTripKeepsEverything) {
    const hv::VcpuState in = sample();
    nvmm_x64_state n{};
    to_nvmm(in, NVMM_X64_STATE_ALL, n);
    hv::VcpuState out;
    from_nvmm(n, NVMM_X64_STATE_ALL, out);
    EXPECT_EQ(std::memcmp(&out.gprs, &in.gprs, sizeof in.gprs), 0);
    EXPECT_EQ(out.segments.cs.base, in.segments.cs.base);
    EXPECT_EQ(out.segments.cs.l, true);
    EXPECT_EQ(out.segments.ds.dpl, 3);
    EXPECT_TRUE(out.segments.ss.unusable);
    EXPECT_FALSE(out.segments.cs.unusable);
    EXPECT_EQ(out.segments.gdt.base, 0x500u);
    EXPECT_EQ(out.segments.idt.limit, 0xfff);
    EXPECT_EQ(out.crs.cr3, in.crs.cr3);
    EXPECT_EQ(out.crs.efer, in.crs.efer);
    EXPECT_EQ(out.xcr0, in.xcr0);
    EXPECT_EQ(out.debug.db, in.debug.db);
    EXPECT_EQ(out.debug.dr7, in.debug.dr7);
    ASSERT_EQ(out.msrs.size(), in.msrs.size());
    for (size_t i = 0; i < in.msrs.size(); ++i) {
        EXPECT_EQ(out.msrs[i].index, in.msrs[i].index);
        EXPECT_EQ(out.msrs[i].value, in.msrs[i].value);
    }
    EXPECT_EQ(out.events.interrupt.shadow, 1);
    EXPECT_EQ(out.fpu.fpr, in.fpu.fpr);
    EXPECT_EQ(out.fpu.xmm, in.fpu.xmm);
    EXPECT_EQ(out.fpu.mxcsr, in.fpu.mxcsr);
}

TEST(NvmmState, OnlyTheSelectedPartsMove) {
    nvmm_x64_state n{};
    std::memset(&n, 0xa5, sizeof n);
    to_nvmm(sample(), NVMM_X64_STATE_GPRS, n);
    EXPECT_EQ(n.gprs[NVMM_X64_GPR_RAX], 1u);
    EXPECT_EQ(n.crs[NVMM_X64_CR_CR0], 0xa5a5a5a5a5a5a5a5u);
    EXPECT_EQ(n.segs[NVMM_X64_SEG_CS].base, 0xa5a5a5a5a5a5a5a5u);

    hv::VcpuState out = sample();
    nvmm_x64_state z{};
    from_nvmm(z, NVMM_X64_STATE_CRS, out);
    EXPECT_EQ(out.crs.cr0, 0u);
    EXPECT_EQ(out.crs.efer, 0x501u);  // EFER belongs to NVMM's MSRS, not CRS
    EXPECT_EQ(out.gprs.rip, 0x1000u);
}

TEST(NvmmState, HvPartsCoverWhatKvmSetsTogether) {
    EXPECT_EQ(hv_parts(NVMM_X64_STATE_GPRS), uint32_t{hv::kStateGprs});
    EXPECT_EQ(hv_parts(NVMM_X64_STATE_MSRS),
              uint32_t{hv::kStateSegments | hv::kStateCrs | hv::kStateMsrs});
    EXPECT_EQ(hv_parts(NVMM_X64_STATE_DRS), uint32_t{hv::kStateDebugRegs});
    EXPECT_EQ(hv_parts(NVMM_X64_STATE_INTR), uint32_t{hv::kStateEvents});
}

}  // namespace
}  // namespace vireo::nvmm

// ---- nvmm_gva_to_gpa's page walk ----------------------------------------------------------

#include <map>

#include "nvmm/page_walk.hpp"

namespace vireo::nvmm {
namespace {

// Guest memory as a sparse map of 8-byte-aligned words.
struct Memory {
    std::map<uint64_t, uint64_t> words;
    void put64(uint64_t gpa, uint64_t v) { words[gpa] = v; }
    void put32(uint64_t gpa, uint32_t v) {
        uint64_t& w = words[gpa & ~7ull];
        const unsigned shift = (gpa & 4) ? 32 : 0;
        w = (w & ~(0xffffffffull << shift)) | (uint64_t{v} << shift);
    }
    ReadGuest reader() const {
        return [this](uint64_t gpa, unsigned size) -> std::optional<uint64_t> {
            if (gpa >= (1ull << 32)) return std::nullopt;  // no memory up there
            const auto it = words.find(gpa & ~7ull);
            const uint64_t w = it == words.end() ? 0 : it->second;
            if (size == 8) return w;
            return (gpa & 4) ? w >> 32 : w & 0xffffffffu;
        };
    }
};

nvmm_x64_state paging(uint64_t cr0, uint64_t cr3, uint64_t cr4, uint64_t efer) {
    nvmm_x64_state s{};
    s.crs[NVMM_X64_CR_CR0] = cr0;
    s.crs[NVMM_X64_CR_CR3] = cr3;
    s.crs[NVMM_X64_CR_CR4] = cr4;
    s.msrs[NVMM_X64_MSR_EFER] = efer;
    return s;
}

TEST(NvmmPageWalk, NoPagingIsIdentity) {
    Memory m;
    auto r = walk_page_tables(paging(1, 0, 0, 0), 0x1234'5678'9abcull, m.reader());
    ASSERT_TRUE(r);
    EXPECT_EQ(r->gpa, 0x5678'9abcu);  // 32-bit addresses without long mode
    EXPECT_EQ(r->prot, uint64_t{NVMM_PROT_ALL});
}

TEST(NvmmPageWalk, FourLevelWithSmallLargeAndHugePagesAndProtections) {
    Memory m;
    const uint64_t nx = 1ull << 63;
    m.put64(0x1000, 0x2000 | 7);               // PML4[0] -> PDPT, user, writable
    m.put64(0x2000, 0x3000 | 7);               // PDPT[0] -> PD
    m.put64(0x2008, 0x40000000 | 0x83);        // PDPT[1]: a 1 GiB page, supervisor
    m.put64(0x3000, 0x4000 | 5);               // PD[0] -> PT, read-only
    m.put64(0x3008, 0x200000 | 0x87);          // PD[1]: a 2 MiB page
    m.put64(0x4000 + 5 * 8, 0x9000 | 7 | nx);  // PT[5]: 4 KiB at 0x9000, no execute
    const auto s = paging(0x80000001, 0x1000, 0x20, 0x500 | 0x800);  // LMA LME NXE
    auto r = walk_page_tables(s, 0x5123, m.reader());
    ASSERT_TRUE(r);
    EXPECT_EQ(r->gpa, 0x9123u);
    EXPECT_EQ(r->prot, uint64_t{NVMM_PROT_READ | NVMM_PROT_USER});  // PD read-only, PT no-exec
    r = walk_page_tables(s, 0x212345, m.reader());
    ASSERT_TRUE(r);
    EXPECT_EQ(r->gpa, 0x212345u);
    EXPECT_EQ(r->prot, uint64_t{NVMM_PROT_ALL});
    r = walk_page_tables(s, 0x4567'8901, m.reader());
    ASSERT_TRUE(r);
    EXPECT_EQ(r->gpa, 0x4567'8901u);
    EXPECT_EQ(r->prot, uint64_t{NVMM_PROT_READ | NVMM_PROT_WRITE | NVMM_PROT_EXEC});
    EXPECT_FALSE(walk_page_tables(s, 0x6000, m.reader()));          // PT[6] not present
    EXPECT_FALSE(walk_page_tables(s, 0x80'0000'0000, m.reader()));  // PML4[1] not present
}

TEST(NvmmPageWalk, FiveLevelPaging) {
    Memory m;
    m.put64(0x1000, 0x2000 | 3);  // PML5[0]
    m.put64(0x2000, 0x3000 | 3);  // PML4[0]
    m.put64(0x3000, 0x4000 | 3);  // PDPT[0]
    m.put64(0x4000, 0x0 | 0x83);  // PD[0]: 2 MiB at 0
    auto r = walk_page_tables(paging(0x80000001, 0x1000, 0x20 | 0x1000, 0x500), 0x1234, m.reader());
    ASSERT_TRUE(r);
    EXPECT_EQ(r->gpa, 0x1234u);
}

TEST(NvmmPageWalk, PaeAndThirtyTwoBitPaging) {
    Memory m;
    // PAE: PDPTE[1] -> PD at 0x5000, PD[0] -> PT at 0x6000, PT[2] -> 0x7000.
    m.put64(0x1008, 0x5000 | 1);
    m.put64(0x5000, 0x6000 | 3);
    m.put64(0x6010, 0x7000 | 3);
    auto r = walk_page_tables(paging(0x80000001, 0x1000, 0x20, 0), 0x4000'2abc, m.reader());
    ASSERT_TRUE(r);
    EXPECT_EQ(r->gpa, 0x7abcu);
    // 32-bit: PD at 0x8000; PDE[1] a 4 MiB page at 0x1'0040'0000 (PSE-36 bits), PDE[0] -> PT.
    m.put32(0x8004, 0x00400000 | (0x1u << 13) | 0x87);
    m.put32(0x8000, 0x9000 | 3);
    m.put32(0x9000 + 3 * 4, 0xa000 | 1);  // read-only
    auto s = paging(0x80000001, 0x8000, 0x10, 0);
    r = walk_page_tables(s, 0x0041'2345, m.reader());
    ASSERT_TRUE(r);
    EXPECT_EQ(r->gpa, 0x1'0041'2345u);
    r = walk_page_tables(s, 0x3456, m.reader());
    ASSERT_TRUE(r);
    EXPECT_EQ(r->gpa, 0xa456u);
    EXPECT_EQ(r->prot, uint64_t{NVMM_PROT_READ | NVMM_PROT_EXEC});
    // Without CR4.PSE the large bit means nothing: PDE[1]'s frame is a page table.
    s.crs[NVMM_X64_CR_CR4] = 0;
    r = walk_page_tables(s, 0x0040'0000, m.reader());
    EXPECT_FALSE(r && r->gpa == 0x1'0040'0000u);
}

TEST(NvmmPageWalk, TablesOutsideMemoryFailCleanly) {
    Memory m;
    m.put64(0x1000, 0x1'0000'0000ull | 3);  // PML4[0] points past the guest's memory
    EXPECT_FALSE(walk_page_tables(paging(0x80000001, 0x1000, 0x20, 0x500), 0x1000, m.reader()));
}

}  // namespace
}  // namespace vireo::nvmm
