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
