#include "snapshot/vcpu.hpp"

namespace vireo::snapshot {

namespace {

template <class F, class Seg>
void segment(F& f, Seg& s) {
    f.u64(s.base);
    f.u32(s.limit);
    f.u16(s.selector);
    f.u8(s.type);
    f.u8(s.dpl);
    f.flag(s.present);
    f.flag(s.db);
    f.flag(s.s);
    f.flag(s.l);
    f.flag(s.g);
    f.flag(s.avl);
    f.flag(s.unusable);
}

template <class F, class Bytes>
void byte_array(F& f, Bytes& a) {
    for (auto& b : a)
        f.u8(b);
}

// The section's layout, both directions (Save/Load in state.hpp).
template <class F, class S>
void fields(F& f, S& s) {
    auto& g = s.gprs;
    for (auto* v : {&g.rax, &g.rbx, &g.rcx, &g.rdx, &g.rsi, &g.rdi, &g.rsp, &g.rbp, &g.r8, &g.r9,
                    &g.r10, &g.r11, &g.r12, &g.r13, &g.r14, &g.r15, &g.rip, &g.rflags})
        f.u64(*v);
    auto& sg = s.segments;
    for (auto* seg : {&sg.cs, &sg.ds, &sg.es, &sg.fs, &sg.gs, &sg.ss, &sg.tr, &sg.ldt})
        segment(f, *seg);
    for (auto* t : {&sg.gdt, &sg.idt}) {
        f.u64(t->base);
        f.u16(t->limit);
    }
    auto& c = s.crs;
    for (auto* v : {&c.cr0, &c.cr2, &c.cr3, &c.cr4, &c.cr8, &c.efer, &c.apic_base})
        f.u64(*v);
    if constexpr (F::kLoading) {
        uint32_t n = 0;
        f.u32(n);
        s.msrs.clear();
        if (n > kMaxVcpuMsrs)
            f.d.invalid("the MSR count");
        else if (f.d.ok())
            s.msrs.resize(n);
    } else {
        const auto n = static_cast<uint32_t>(s.msrs.size());
        f.u32(n);
    }
    for (auto& m : s.msrs) {
        f.u32(m.index);
        f.u64(m.value);
    }
    for (auto& r : s.fpu.fpr)
        byte_array(f, r);
    f.u16(s.fpu.fcw);
    f.u16(s.fpu.fsw);
    f.u8(s.fpu.ftwx);
    f.u16(s.fpu.last_opcode);
    f.u64(s.fpu.last_ip);
    f.u64(s.fpu.last_dp);
    for (auto& r : s.fpu.xmm)
        byte_array(f, r);
    f.u32(s.fpu.mxcsr);
    for (auto& w : s.xsave.region)
        f.u32(w);
    f.u64(s.xcr0);
    byte_array(f, s.lapic.regs);
    auto& ev = s.events;
    f.flag(ev.exception.injected);
    f.u8(ev.exception.vector);
    f.flag(ev.exception.has_error_code);
    f.flag(ev.exception.pending);
    f.u32(ev.exception.error_code);
    f.flag(ev.interrupt.injected);
    f.u8(ev.interrupt.vector);
    f.flag(ev.interrupt.soft);
    f.u8(ev.interrupt.shadow);
    f.flag(ev.nmi.injected);
    f.flag(ev.nmi.pending);
    f.flag(ev.nmi.masked);
    f.u32(ev.sipi_vector);
    if constexpr (F::kLoading) {
        uint32_t mp = 0;
        f.u32(mp);
        if (mp > static_cast<uint32_t>(hv::MpState::SipiReceived)) f.d.invalid("the MP state");
        s.mp_state = static_cast<hv::MpState>(mp);
    } else {
        const auto mp = static_cast<uint32_t>(s.mp_state);
        f.u32(mp);
    }
}

}  // namespace

uint32_t vcpu_tag(uint32_t index) {
    return static_cast<uint32_t>('V') | (index & 0xffffff) << 8;
}

void encode(Encoder& e, const hv::VcpuState& s) {
    Save f{e};
    fields(f, s);
}

void decode(Decoder& d, hv::VcpuState& s) {
    Load f{d};
    fields(f, s);
    // What KVM would take unchecked.
    auto& sg = s.segments;
    for (const auto* seg : {&sg.cs, &sg.ds, &sg.es, &sg.fs, &sg.gs, &sg.ss, &sg.tr, &sg.ldt})
        if (seg->type > 15 || seg->dpl > 3) d.invalid("a segment's type or privilege level");
    if (s.events.exception.vector > 31) d.invalid("the pending exception's vector");
}

void encode(Encoder& e, const std::vector<hv::CpuidEntry>& cpuid) {
    e.u32(static_cast<uint32_t>(cpuid.size()));
    for (const auto& c : cpuid)
        for (uint32_t v : {c.function, c.index, c.flags, c.eax, c.ebx, c.ecx, c.edx})
            e.u32(v);
}

void decode(Decoder& d, std::vector<hv::CpuidEntry>& cpuid) {
    const uint32_t n = d.u32();
    if (n > kMaxCpuidEntries) d.invalid("the CPUID entry count");
    cpuid.assign(d.ok() ? n : 0, {});
    for (auto& c : cpuid)
        for (uint32_t* v : {&c.function, &c.index, &c.flags, &c.eax, &c.ebx, &c.ecx, &c.edx})
            *v = d.u32();
}

}  // namespace vireo::snapshot
