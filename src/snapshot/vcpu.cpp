#include "snapshot/vcpu.hpp"

namespace vireo::snapshot {

namespace {

void encode(Encoder& e, const hv::Segment& s) {
    e.u64(s.base);
    e.u32(s.limit);
    e.u16(s.selector);
    e.u8(s.type);
    e.u8(s.dpl);
    for (bool b : {s.present, s.db, s.s, s.l, s.g, s.avl, s.unusable})
        e.boolean(b);
}

void decode(Decoder& d, hv::Segment& s) {
    s.base = d.u64();
    s.limit = d.u32();
    s.selector = d.u16();
    s.type = d.u8();
    s.dpl = d.u8();
    for (bool* b : {&s.present, &s.db, &s.s, &s.l, &s.g, &s.avl, &s.unusable})
        *b = d.boolean();
    if (s.type > 15 || s.dpl > 3) d.invalid("a segment's type or privilege level");
}

template <size_t N>
void encode_bytes(Encoder& e, const std::array<uint8_t, N>& a) {
    for (uint8_t b : a)
        e.u8(b);
}
template <size_t N>
void decode_bytes(Decoder& d, std::array<uint8_t, N>& a) {
    for (uint8_t& b : a)
        b = d.u8();
}

}  // namespace

uint32_t vcpu_tag(uint32_t index) {
    return static_cast<uint32_t>('V') | (index & 0xffffff) << 8;
}

void encode(Encoder& e, const hv::VcpuState& s) {
    const hv::Gprs& g = s.gprs;
    for (uint64_t v : {g.rax, g.rbx, g.rcx, g.rdx, g.rsi, g.rdi, g.rsp, g.rbp, g.r8, g.r9, g.r10,
                       g.r11, g.r12, g.r13, g.r14, g.r15, g.rip, g.rflags})
        e.u64(v);
    const hv::Segments& sg = s.segments;
    for (const hv::Segment* seg : {&sg.cs, &sg.ds, &sg.es, &sg.fs, &sg.gs, &sg.ss, &sg.tr, &sg.ldt})
        encode(e, *seg);
    for (const hv::DescriptorTable* t : {&sg.gdt, &sg.idt}) {
        e.u64(t->base);
        e.u16(t->limit);
    }
    const hv::ControlRegs& c = s.crs;
    for (uint64_t v : {c.cr0, c.cr2, c.cr3, c.cr4, c.cr8, c.efer, c.apic_base})
        e.u64(v);
    e.u32(static_cast<uint32_t>(s.msrs.size()));
    for (const auto& m : s.msrs) {
        e.u32(m.index);
        e.u64(m.value);
    }
    for (const auto& r : s.fpu.fpr)
        encode_bytes(e, r);
    e.u16(s.fpu.fcw);
    e.u16(s.fpu.fsw);
    e.u8(s.fpu.ftwx);
    e.u16(s.fpu.last_opcode);
    e.u64(s.fpu.last_ip);
    e.u64(s.fpu.last_dp);
    for (const auto& r : s.fpu.xmm)
        encode_bytes(e, r);
    e.u32(s.fpu.mxcsr);
    for (uint32_t w : s.xsave.region)
        e.u32(w);
    e.u64(s.xcr0);
    encode_bytes(e, s.lapic.regs);
    const hv::Events& ev = s.events;
    e.boolean(ev.exception.injected);
    e.u8(ev.exception.vector);
    e.boolean(ev.exception.has_error_code);
    e.boolean(ev.exception.pending);
    e.u32(ev.exception.error_code);
    e.boolean(ev.interrupt.injected);
    e.u8(ev.interrupt.vector);
    e.boolean(ev.interrupt.soft);
    e.u8(ev.interrupt.shadow);
    e.boolean(ev.nmi.injected);
    e.boolean(ev.nmi.pending);
    e.boolean(ev.nmi.masked);
    e.u32(ev.sipi_vector);
    e.u32(static_cast<uint32_t>(s.mp_state));
}

void decode(Decoder& d, hv::VcpuState& s) {
    hv::Gprs& g = s.gprs;
    for (uint64_t* v : {&g.rax, &g.rbx, &g.rcx, &g.rdx, &g.rsi, &g.rdi, &g.rsp, &g.rbp, &g.r8,
                        &g.r9, &g.r10, &g.r11, &g.r12, &g.r13, &g.r14, &g.r15, &g.rip, &g.rflags})
        *v = d.u64();
    hv::Segments& sg = s.segments;
    for (hv::Segment* seg : {&sg.cs, &sg.ds, &sg.es, &sg.fs, &sg.gs, &sg.ss, &sg.tr, &sg.ldt})
        decode(d, *seg);
    for (hv::DescriptorTable* t : {&sg.gdt, &sg.idt}) {
        t->base = d.u64();
        t->limit = d.u16();
    }
    hv::ControlRegs& c = s.crs;
    for (uint64_t* v : {&c.cr0, &c.cr2, &c.cr3, &c.cr4, &c.cr8, &c.efer, &c.apic_base})
        *v = d.u64();
    const uint32_t msrs = d.u32();
    s.msrs.clear();
    if (msrs > kMaxVcpuMsrs) {
        d.invalid("the MSR count");
    } else if (d.ok()) {
        s.msrs.resize(msrs);
        for (auto& m : s.msrs) {
            m.index = d.u32();
            m.value = d.u64();
        }
    }
    for (auto& r : s.fpu.fpr)
        decode_bytes(d, r);
    s.fpu.fcw = d.u16();
    s.fpu.fsw = d.u16();
    s.fpu.ftwx = d.u8();
    s.fpu.last_opcode = d.u16();
    s.fpu.last_ip = d.u64();
    s.fpu.last_dp = d.u64();
    for (auto& r : s.fpu.xmm)
        decode_bytes(d, r);
    s.fpu.mxcsr = d.u32();
    for (uint32_t& w : s.xsave.region)
        w = d.u32();
    s.xcr0 = d.u64();
    decode_bytes(d, s.lapic.regs);
    hv::Events& ev = s.events;
    ev.exception.injected = d.boolean();
    ev.exception.vector = d.u8();
    ev.exception.has_error_code = d.boolean();
    ev.exception.pending = d.boolean();
    ev.exception.error_code = d.u32();
    ev.interrupt.injected = d.boolean();
    ev.interrupt.vector = d.u8();
    ev.interrupt.soft = d.boolean();
    ev.interrupt.shadow = d.u8();
    ev.nmi.injected = d.boolean();
    ev.nmi.pending = d.boolean();
    ev.nmi.masked = d.boolean();
    ev.sipi_vector = d.u32();
    const uint32_t mp = d.u32();
    if (mp > static_cast<uint32_t>(hv::MpState::SipiReceived)) d.invalid("the MP state");
    s.mp_state = static_cast<hv::MpState>(mp);
    if (ev.exception.vector > 31) d.invalid("the pending exception's vector");
}

}  // namespace vireo::snapshot
