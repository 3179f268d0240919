#include "nvmm/state.hpp"

#include <cstddef>
#include <cstring>
#include <utility>

namespace vireo::nvmm {

static_assert(sizeof(struct fxsave) == 512);
static_assert(offsetof(struct fxsave, fx_87_ac) == 32);
static_assert(offsetof(struct fxsave, fx_xmm) == 160);
static_assert(sizeof(struct nvmm_x64_state_seg) == 16);

namespace {

// NVMM's segment slots and where hv keeps each (GDT and IDT are descriptor tables apart).
constexpr std::pair<unsigned, hv::Segment hv::Segments::*> kSegs[] = {
    {NVMM_X64_SEG_ES, &hv::Segments::es},   {NVMM_X64_SEG_CS, &hv::Segments::cs},
    {NVMM_X64_SEG_SS, &hv::Segments::ss},   {NVMM_X64_SEG_DS, &hv::Segments::ds},
    {NVMM_X64_SEG_FS, &hv::Segments::fs},   {NVMM_X64_SEG_GS, &hv::Segments::gs},
    {NVMM_X64_SEG_LDT, &hv::Segments::ldt}, {NVMM_X64_SEG_TR, &hv::Segments::tr}};

// hv's general registers in NVMM's order (NVMM_X64_GPR_*).
constexpr uint64_t hv::Gprs::*kGprs[NVMM_X64_NGPR] = {
    &hv::Gprs::rax, &hv::Gprs::rcx, &hv::Gprs::rdx,   &hv::Gprs::rbx, &hv::Gprs::rsp,
    &hv::Gprs::rbp, &hv::Gprs::rsi, &hv::Gprs::rdi,   &hv::Gprs::r8,  &hv::Gprs::r9,
    &hv::Gprs::r10, &hv::Gprs::r11, &hv::Gprs::r12,   &hv::Gprs::r13, &hv::Gprs::r14,
    &hv::Gprs::r15, &hv::Gprs::rip, &hv::Gprs::rflags};

nvmm_x64_state_seg to_nvmm(const hv::Segment& s) {
    nvmm_x64_state_seg o{};
    o.selector = s.selector;
    o.attrib.type = s.type & 0xf;
    o.attrib.s = s.s;
    o.attrib.dpl = s.dpl & 3;
    // KVM marks a null data segment "unusable"; NVMM knows only "not present".
    o.attrib.p = s.present && !s.unusable;
    o.attrib.avl = s.avl;
    o.attrib.l = s.l;
    o.attrib.def = s.db;
    o.attrib.g = s.g;
    o.limit = s.limit;
    o.base = s.base;
    return o;
}

hv::Segment from_nvmm(const nvmm_x64_state_seg& s) {
    hv::Segment o;
    o.selector = s.selector;
    o.type = static_cast<uint8_t>(s.attrib.type);
    o.s = s.attrib.s;
    o.dpl = static_cast<uint8_t>(s.attrib.dpl);
    o.present = s.attrib.p;
    o.unusable = !s.attrib.p;
    o.avl = s.attrib.avl;
    o.l = s.attrib.l;
    o.db = s.attrib.def;
    o.g = s.attrib.g;
    o.limit = s.limit;
    o.base = s.base;
    return o;
}

}  // namespace

uint32_t hv_parts(uint64_t flags) noexcept {
    uint32_t parts = 0;
    if (flags & NVMM_X64_STATE_GPRS) parts |= hv::kStateGprs;
    if (flags & (NVMM_X64_STATE_SEGS | NVMM_X64_STATE_CRS | NVMM_X64_STATE_MSRS))
        parts |= hv::kStateSegments | hv::kStateCrs;
    if (flags & NVMM_X64_STATE_CRS) parts |= hv::kStateXcrs;
    if (flags & NVMM_X64_STATE_MSRS) parts |= hv::kStateMsrs;
    if (flags & NVMM_X64_STATE_DRS) parts |= hv::kStateDebugRegs;
    if (flags & NVMM_X64_STATE_INTR) parts |= hv::kStateEvents;
    if (flags & NVMM_X64_STATE_FPU) parts |= hv::kStateFpu;
    return parts;
}

void list_state_msrs(hv::VcpuState& state) {
    state.msrs.resize(kStateMsrs.size());
    for (size_t i = 0; i < kStateMsrs.size(); ++i)
        state.msrs[i] = hv::MsrEntry{kStateMsrs[i].index, 0};
}

void to_nvmm(const hv::VcpuState& from, uint64_t flags, nvmm_x64_state& to) noexcept {
    if (flags & NVMM_X64_STATE_SEGS) {
        for (const auto& [i, seg] : kSegs)
            to.segs[i] = to_nvmm(from.segments.*seg);
        for (auto [i, t] : {std::pair{NVMM_X64_SEG_GDT, &from.segments.gdt},
                            std::pair{NVMM_X64_SEG_IDT, &from.segments.idt}}) {
            to.segs[i] = nvmm_x64_state_seg{};
            to.segs[i].base = t->base;
            to.segs[i].limit = t->limit;
        }
    }
    if (flags & NVMM_X64_STATE_GPRS) {
        for (unsigned i = 0; i < NVMM_X64_NGPR; ++i)
            to.gprs[i] = from.gprs.*kGprs[i];
    }
    if (flags & NVMM_X64_STATE_CRS) {
        to.crs[NVMM_X64_CR_CR0] = from.crs.cr0;
        to.crs[NVMM_X64_CR_CR2] = from.crs.cr2;
        to.crs[NVMM_X64_CR_CR3] = from.crs.cr3;
        to.crs[NVMM_X64_CR_CR4] = from.crs.cr4;
        to.crs[NVMM_X64_CR_CR8] = from.crs.cr8;
        to.crs[NVMM_X64_CR_XCR0] = from.xcr0;
    }
    if (flags & NVMM_X64_STATE_DRS) {
        for (unsigned i = 0; i < 4; ++i)
            to.drs[NVMM_X64_DR_DR0 + i] = from.debug.db[i];
        to.drs[NVMM_X64_DR_DR6] = from.debug.dr6;
        to.drs[NVMM_X64_DR_DR7] = from.debug.dr7;
    }
    if (flags & NVMM_X64_STATE_MSRS) {
        to.msrs[NVMM_X64_MSR_EFER] = from.crs.efer;
        for (const auto& m : kStateMsrs)
            for (const auto& e : from.msrs)
                if (e.index == m.index) to.msrs[m.slot] = e.value;
    }
    if (flags & NVMM_X64_STATE_INTR) {
        const auto& e = from.events;
        to.intr.int_shadow = e.interrupt.shadow != 0;
        to.intr.evt_pending = e.exception.pending || e.exception.injected || e.interrupt.injected ||
                              e.nmi.pending || e.nmi.injected;
    }
    if (flags & NVMM_X64_STATE_FPU) {
        const auto& f = from.fpu;
        auto& o = to.fpu;
        std::memset(&o, 0, sizeof o);
        o.fx_cw = f.fcw;
        o.fx_sw = f.fsw;
        o.fx_tw = f.ftwx;
        o.fx_opcode = f.last_opcode;
        o.fx_ip.fa_64 = f.last_ip;
        o.fx_dp.fa_64 = f.last_dp;
        o.fx_mxcsr = f.mxcsr;
        o.fx_mxcsr_mask = 0xffff;
        for (size_t i = 0; i < 8; ++i)
            std::memcpy(&o.fx_87_ac[i], f.fpr[i].data(), 16);
        for (size_t i = 0; i < 16; ++i)
            std::memcpy(o.fx_xmm[i].xmm_bytes, f.xmm[i].data(), 16);
    }
}

void from_nvmm(const nvmm_x64_state& from, uint64_t flags, hv::VcpuState& to) noexcept {
    if (flags & NVMM_X64_STATE_SEGS) {
        for (const auto& [i, seg] : kSegs)
            to.segments.*seg = from_nvmm(from.segs[i]);
        to.segments.gdt = {from.segs[NVMM_X64_SEG_GDT].base,
                           static_cast<uint16_t>(from.segs[NVMM_X64_SEG_GDT].limit)};
        to.segments.idt = {from.segs[NVMM_X64_SEG_IDT].base,
                           static_cast<uint16_t>(from.segs[NVMM_X64_SEG_IDT].limit)};
    }
    if (flags & NVMM_X64_STATE_GPRS)
        for (unsigned i = 0; i < NVMM_X64_NGPR; ++i)
            to.gprs.*kGprs[i] = from.gprs[i];
    if (flags & NVMM_X64_STATE_CRS) {
        to.crs.cr0 = from.crs[NVMM_X64_CR_CR0];
        to.crs.cr2 = from.crs[NVMM_X64_CR_CR2];
        to.crs.cr3 = from.crs[NVMM_X64_CR_CR3];
        to.crs.cr4 = from.crs[NVMM_X64_CR_CR4];
        to.crs.cr8 = from.crs[NVMM_X64_CR_CR8];
        to.xcr0 = from.crs[NVMM_X64_CR_XCR0];
    }
    if (flags & NVMM_X64_STATE_DRS) {
        for (unsigned i = 0; i < 4; ++i)
            to.debug.db[i] = from.drs[NVMM_X64_DR_DR0 + i];
        to.debug.dr6 = from.drs[NVMM_X64_DR_DR6];
        to.debug.dr7 = from.drs[NVMM_X64_DR_DR7];
    }
    if (flags & NVMM_X64_STATE_MSRS) {
        to.crs.efer = from.msrs[NVMM_X64_MSR_EFER];
        to.msrs.resize(kStateMsrs.size());
        for (size_t i = 0; i < kStateMsrs.size(); ++i)
            to.msrs[i] = hv::MsrEntry{kStateMsrs[i].index, from.msrs[kStateMsrs[i].slot]};
    }
    if (flags & NVMM_X64_STATE_INTR) to.events.interrupt.shadow = from.intr.int_shadow ? 1 : 0;
    if (flags & NVMM_X64_STATE_FPU) {
        const auto& f = from.fpu;
        auto& o = to.fpu;
        o.fcw = f.fx_cw;
        o.fsw = f.fx_sw;
        o.ftwx = f.fx_tw;
        o.last_opcode = f.fx_opcode;
        o.last_ip = f.fx_ip.fa_64;
        o.last_dp = f.fx_dp.fa_64;
        o.mxcsr = f.fx_mxcsr;
        for (size_t i = 0; i < 8; ++i)
            std::memcpy(o.fpr[i].data(), &f.fx_87_ac[i], 16);
        for (size_t i = 0; i < 16; ++i)
            std::memcpy(o.xmm[i].data(), f.fx_xmm[i].xmm_bytes, 16);
    }
}

}  // namespace vireo::nvmm
