#include "nvmm/state.hpp"

#include <cstddef>
#include <cstring>

namespace vireo::nvmm {

static_assert(sizeof(struct fxsave) == 512);
static_assert(offsetof(struct fxsave, fx_87_ac) == 32);
static_assert(offsetof(struct fxsave, fx_xmm) == 160);
static_assert(sizeof(struct nvmm_x64_state_seg) == 16);

namespace {

constexpr unsigned kSegs[] = {NVMM_X64_SEG_ES, NVMM_X64_SEG_CS, NVMM_X64_SEG_SS,  NVMM_X64_SEG_DS,
                              NVMM_X64_SEG_FS, NVMM_X64_SEG_GS, NVMM_X64_SEG_LDT, NVMM_X64_SEG_TR};

hv::Segment& seg_of(hv::Segments& s, unsigned i) {
    switch (i) {
        case NVMM_X64_SEG_ES:
            return s.es;
        case NVMM_X64_SEG_CS:
            return s.cs;
        case NVMM_X64_SEG_SS:
            return s.ss;
        case NVMM_X64_SEG_DS:
            return s.ds;
        case NVMM_X64_SEG_FS:
            return s.fs;
        case NVMM_X64_SEG_GS:
            return s.gs;
        case NVMM_X64_SEG_LDT:
            return s.ldt;
        default:
            return s.tr;
    }
}

const hv::Segment& seg_of(const hv::Segments& s, unsigned i) {
    return seg_of(const_cast<hv::Segments&>(s), i);
}

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

uint64_t* gpr_slot(hv::Gprs& g, unsigned i) {
    uint64_t* slots[NVMM_X64_NGPR] = {&g.rax, &g.rcx, &g.rdx, &g.rbx, &g.rsp, &g.rbp,
                                      &g.rsi, &g.rdi, &g.r8,  &g.r9,  &g.r10, &g.r11,
                                      &g.r12, &g.r13, &g.r14, &g.r15, &g.rip, &g.rflags};
    return slots[i];
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
        for (unsigned i : kSegs)
            to.segs[i] = to_nvmm(seg_of(from.segments, i));
        for (auto [i, t] : {std::pair{NVMM_X64_SEG_GDT, &from.segments.gdt},
                            std::pair{NVMM_X64_SEG_IDT, &from.segments.idt}}) {
            to.segs[i] = nvmm_x64_state_seg{};
            to.segs[i].base = t->base;
            to.segs[i].limit = t->limit;
        }
    }
    if (flags & NVMM_X64_STATE_GPRS) {
        auto g = from.gprs;
        for (unsigned i = 0; i < NVMM_X64_NGPR; ++i)
            to.gprs[i] = *gpr_slot(g, i);
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
        for (unsigned i : kSegs)
            seg_of(to.segments, i) = from_nvmm(from.segs[i]);
        to.segments.gdt = {from.segs[NVMM_X64_SEG_GDT].base,
                           static_cast<uint16_t>(from.segs[NVMM_X64_SEG_GDT].limit)};
        to.segments.idt = {from.segs[NVMM_X64_SEG_IDT].base,
                           static_cast<uint16_t>(from.segs[NVMM_X64_SEG_IDT].limit)};
    }
    if (flags & NVMM_X64_STATE_GPRS)
        for (unsigned i = 0; i < NVMM_X64_NGPR; ++i)
            *gpr_slot(to.gprs, i) = from.gprs[i];
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
