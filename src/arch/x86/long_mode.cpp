#include "arch/x86/long_mode.hpp"

#include <array>

namespace vireo::arch::x86 {

using memory::Gpa;

namespace {

constexpr uint64_t kCr0Pe = 1u << 0, kCr0Mp = 1u << 1, kCr0Et = 1u << 4, kCr0Ne = 1u << 5,
                   kCr0Wp = 1u << 16, kCr0Pg = 1u << 31;
constexpr uint64_t kCr4Pae = 1u << 5, kCr4Osfxsr = 1u << 9, kCr4Osxmmexcpt = 1u << 10;
constexpr uint64_t kEferLme = 1u << 8, kEferLma = 1u << 10;

constexpr uint64_t kPtePresent = 1u << 0, kPteWrite = 1u << 1, kPteUser = 1u << 2,
                   kPteAccessed = 1u << 5, kPteDirty = 1u << 6, kPteHuge = 1u << 7;

// Encodes a GDT descriptor from its cached form.
uint64_t gdt_entry(const hv::Segment& s) {
    uint64_t d = 0;
    d |= s.limit & 0xffffu;
    d |= (s.base & 0xffffffu) << 16;
    d |= uint64_t{s.type} << 40;
    d |= uint64_t{s.s} << 44;
    d |= uint64_t{s.dpl} << 45;
    d |= uint64_t{s.present} << 47;
    d |= uint64_t{(s.limit >> 16) & 0xfu} << 48;
    d |= uint64_t{s.avl} << 52;
    d |= uint64_t{s.l} << 53;
    d |= uint64_t{s.db} << 54;
    d |= uint64_t{s.g} << 55;
    d |= ((s.base >> 24) & 0xffu) << 56;
    return d;
}

hv::Segment code_segment(uint8_t dpl) {
    hv::Segment s;
    s.limit = 0xfffff;
    s.selector = dpl == 0 ? kCodeSelector : kUserCodeSelector;
    s.type = 0xb;  // execute/read, accessed
    s.present = true;
    s.dpl = dpl;
    s.s = true;
    s.l = true;
    s.g = true;
    return s;
}

hv::Segment data_segment(uint8_t dpl) {
    hv::Segment s;
    s.limit = 0xfffff;
    s.selector = dpl == 0 ? kDataSelector : kUserDataSelector;
    s.type = 0x3;  // read/write, accessed
    s.present = true;
    s.dpl = dpl;
    s.db = true;
    s.s = true;
    s.g = true;
    return s;
}

}  // namespace

Result<void> write_long_mode_tables(const memory::GuestMemory& mem, const LongModeLayout& layout) {
    constexpr uint64_t kGiB = uint64_t{1} << 30;
    if (layout.identity_map_bytes == 0 || layout.identity_map_bytes % kGiB != 0 ||
        layout.identity_map_bytes > 4 * kGiB)
        return fail(ErrorCode::InvalidArgument,
                    "long mode: identity map of {:#x} bytes is not 1..4 GiB in whole GiB",
                    layout.identity_map_bytes);

    const std::array<uint64_t, kGdtEntries> gdt = {0,
                                                   0,
                                                   gdt_entry(code_segment(0)),
                                                   gdt_entry(data_segment(0)),
                                                   gdt_entry(code_segment(3)),
                                                   gdt_entry(data_segment(3))};
    VIREO_TRY(mem.write_obj(layout.gdt, gdt));

    const uint64_t pml4 = layout.pml4.value();
    const uint64_t pdpt = pml4 + 0x1000;
    const uint64_t pd = pml4 + 0x2000;
    // Accessed and Dirty are preset so the guest's page walks never write to the tables: the
    // tables stay out of dirty logs and out of the way of tests that count written pages.
    const uint64_t flags = kPtePresent | kPteWrite | kPteUser | kPteAccessed;
    std::array<uint64_t, 512> table{};
    table[0] = pdpt | flags;
    VIREO_TRY(mem.write_obj(Gpa(pml4), table));

    table = {};
    const uint64_t gibs = layout.identity_map_bytes / kGiB;
    for (uint64_t i = 0; i < gibs; ++i)
        table[i] = (pd + i * 0x1000) | flags;
    VIREO_TRY(mem.write_obj(Gpa(pdpt), table));

    for (uint64_t g = 0; g < gibs; ++g) {
        for (uint64_t i = 0; i < 512; ++i)
            table[i] = ((g * 512 + i) << 21) | flags | kPteDirty | kPteHuge;
        VIREO_TRY(mem.write_obj(Gpa(pd + g * 0x1000), table));
    }
    return ok();
}

hv::VcpuState long_mode_state(const LongModeLayout& layout, uint64_t entry, uint64_t stack,
                              Ring ring) {
    hv::VcpuState st;
    const auto dpl = static_cast<uint8_t>(ring);
    auto& seg = st.segments;
    seg.cs = code_segment(dpl);
    seg.ds = seg.es = seg.fs = seg.gs = seg.ss = data_segment(dpl);
    seg.tr.limit = 0x67;
    seg.tr.type = 0xb;  // busy 64-bit TSS
    seg.tr.present = true;
    seg.ldt.type = 0x2;
    seg.ldt.present = true;
    seg.ldt.unusable = true;
    seg.gdt = {layout.gdt.value(), kGdtEntries * 8 - 1};
    seg.idt = {0, 0};

    st.crs.cr0 = kCr0Pe | kCr0Mp | kCr0Et | kCr0Ne | kCr0Wp | kCr0Pg;
    st.crs.cr3 = layout.pml4.value();
    st.crs.cr4 = kCr4Pae | kCr4Osfxsr | kCr4Osxmmexcpt;
    st.crs.efer = kEferLme | kEferLma;
    // xAPIC enabled at its default base, as the bootstrap processor. (Writing 0 here would
    // disable the local APIC, and KVM then hides it from CPUID as well.)
    st.crs.apic_base = 0xfee00000 | (1u << 11) | (1u << 8);

    st.gprs.rip = entry;
    st.gprs.rsp = stack;
    st.gprs.rflags = 0x2 | (ring == Ring::User ? 0x3000u : 0u);  // IOPL 3 for user-mode I/O
    return st;
}

}  // namespace vireo::arch::x86
