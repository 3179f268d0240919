#include "arch/x86/boot/pvh.hpp"

#include <elf.h>

#include <algorithm>
#include <cstring>

#include "base/checked.hpp"

namespace vireo::arch::x86::boot {

using memory::Gpa;

namespace {

constexpr uint32_t kXenElfNotePhys32Entry = 18;
constexpr uint32_t kStartInfoMagic = 0x336ec578;

struct StartInfo {  // struct hvm_start_info, version 1
    uint32_t magic, version, flags, nr_modules;
    uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
    uint32_t memmap_entries, reserved;
};
struct ModlistEntry {
    uint64_t paddr, size, cmdline_paddr, reserved;
};
struct MemmapEntry {
    uint64_t addr, size;
    uint32_t type, reserved;
};
static_assert(sizeof(StartInfo) == 56 && sizeof(ModlistEntry) == 32 && sizeof(MemmapEntry) == 24);

template <typename T>
Result<T> read_at(std::span<const uint8_t> image, uint64_t off) {
    if (off > image.size() || image.size() - off < sizeof(T))
        return fail(ErrorCode::InvalidArgument, "ELF image is truncated at offset {:#x}", off);
    T v;
    std::memcpy(&v, image.data() + off, sizeof v);
    return v;
}

// Calls fn(phdr) for each program header.
template <typename Fn>
Result<void> for_each_phdr(std::span<const uint8_t> image, Fn&& fn) {
    VIREO_TRY_ASSIGN(auto eh, read_at<Elf64_Ehdr>(image, 0));
    if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0)
        return fail(ErrorCode::InvalidArgument, "ELF image has no usable program headers");
    for (uint16_t i = 0; i < eh.e_phnum; ++i) {
        VIREO_TRY_ASSIGN(auto ph,
                         read_at<Elf64_Phdr>(image, eh.e_phoff + uint64_t{i} * sizeof(Elf64_Phdr)));
        VIREO_TRY(fn(ph));
    }
    return ok();
}

}  // namespace

bool is_elf(std::span<const uint8_t> image) noexcept {
    return image.size() >= SELFMAG && std::memcmp(image.data(), ELFMAG, SELFMAG) == 0;
}

Result<PvhInfo> parse_pvh(std::span<const uint8_t> image) {
    if (!is_elf(image)) return fail(ErrorCode::InvalidArgument, "not an ELF image");
    VIREO_TRY_ASSIGN(auto eh, read_at<Elf64_Ehdr>(image, 0));
    if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB ||
        eh.e_machine != EM_X86_64)
        return fail(ErrorCode::Unsupported, "ELF image is not a little-endian x86-64 ELF64 file");
    PvhInfo info;
    info.lowest = UINT64_MAX;
    bool has_entry = false, has_load = false;
    VIREO_TRY(for_each_phdr(image, [&](const Elf64_Phdr& ph) -> Result<void> {
        if (ph.p_type == PT_LOAD) {
            if (ph.p_filesz > ph.p_memsz || ph.p_offset > image.size() ||
                image.size() - ph.p_offset < ph.p_filesz || !range_fits(ph.p_paddr, ph.p_memsz))
                return fail(ErrorCode::InvalidArgument, "ELF segment at {:#x} is malformed",
                            ph.p_paddr);
            has_load = true;
            info.lowest = std::min(info.lowest, ph.p_paddr);
            info.highest = std::max(info.highest, ph.p_paddr + ph.p_memsz);
        } else if (ph.p_type == PT_NOTE) {
            // Walk the notes: namesz, descsz, type, name (4-aligned), desc (4-aligned).
            uint64_t off = ph.p_offset, end = ph.p_offset + ph.p_filesz;
            while (off + 12 <= end && end <= image.size()) {
                VIREO_TRY_ASSIGN(auto nh, read_at<Elf64_Nhdr>(image, off));
                uint64_t name = off + 12, desc = name + ((nh.n_namesz + 3) & ~3u);
                if (nh.n_type == kXenElfNotePhys32Entry && nh.n_namesz == 4 && desc + 4 <= end &&
                    std::memcmp(image.data() + name, "Xen", 4) == 0) {
                    VIREO_TRY_ASSIGN(info.entry, read_at<uint32_t>(image, desc));
                    has_entry = true;
                }
                off = desc + ((nh.n_descsz + 3) & ~3u);
            }
        }
        return ok();
    }));
    if (!has_load) return fail(ErrorCode::InvalidArgument, "ELF image has no loadable segment");
    if (!has_entry)
        return fail(ErrorCode::Unsupported,
                    "ELF image has no PVH entry point (XEN_ELFNOTE_PHYS32_ENTRY note); vireo "
                    "boots ELF kernels through PVH only");
    return info;
}

Result<LoadedPvh> load_pvh(const memory::GuestMemory& mem, std::span<const uint8_t> image,
                           const PvhInfo& info, std::span<const uint8_t> initrd,
                           std::string_view cmdline, const std::vector<E820Entry>& e820,
                           const BootLayout& layout) {
    if (info.lowest < 0x100000 || info.highest > layout.low_ram_end)
        return fail(ErrorCode::ResourceExhausted,
                    "ELF segments [{:#x}, {:#x}) do not fit in guest RAM [1 MiB, {:#x})",
                    info.lowest, info.highest, layout.low_ram_end);
    VIREO_TRY(for_each_phdr(image, [&](const Elf64_Phdr& ph) -> Result<void> {
        if (ph.p_type != PT_LOAD) return ok();
        VIREO_TRY(
            mem.write(Gpa(ph.p_paddr), std::as_bytes(image.subspan(ph.p_offset, ph.p_filesz))));
        std::vector<std::byte> zeros(ph.p_memsz - ph.p_filesz);
        return mem.write(Gpa(ph.p_paddr + ph.p_filesz), zeros);
    }));

    LoadedPvh out;
    out.entry = info.entry;
    out.start_info = layout.boot_info.value();
    StartInfo si{};
    si.magic = kStartInfoMagic;
    si.version = 1;
    si.cmdline_paddr = layout.cmdline.value();
    si.rsdp_paddr = layout.acpi_rsdp;
    const uint64_t modlist = out.start_info + sizeof(StartInfo);
    const uint64_t memmap = modlist + sizeof(ModlistEntry);
    if (!initrd.empty()) {
        VIREO_TRY_ASSIGN(out.initrd_addr,
                         place_initrd(mem, initrd, info.highest, layout.low_ram_end, layout));
        si.nr_modules = 1;
        si.modlist_paddr = modlist;
        VIREO_TRY(mem.write_obj(Gpa(modlist), ModlistEntry{out.initrd_addr, initrd.size(), 0, 0}));
    }
    si.memmap_paddr = memmap;
    si.memmap_entries = static_cast<uint32_t>(e820.size());
    for (size_t i = 0; i < e820.size(); ++i)
        VIREO_TRY(mem.write_obj(
            Gpa(memmap + i * sizeof(MemmapEntry)),
            MemmapEntry{e820[i].addr, e820[i].size, static_cast<uint32_t>(e820[i].type), 0}));
    VIREO_TRY(mem.write_obj(layout.boot_info, si));
    VIREO_TRY(write_cmdline(mem, cmdline, layout));
    return out;
}

hv::VcpuState pvh_entry_state(const LoadedPvh& loaded, uint64_t gdt_base) {
    hv::VcpuState st;
    hv::Segment code;
    code.limit = 0xffffffff;
    code.selector = 0x10;
    code.type = 0xb;
    code.present = true;
    code.db = true;
    code.s = true;
    code.g = true;
    hv::Segment data = code;
    data.selector = 0x18;
    data.type = 0x3;
    auto& seg = st.segments;
    seg.cs = code;
    seg.ds = seg.es = seg.fs = seg.gs = seg.ss = data;
    seg.tr.limit = 0x67;
    seg.tr.type = 0xb;
    seg.tr.present = true;
    seg.ldt.type = 0x2;
    seg.ldt.present = true;
    seg.ldt.unusable = true;
    seg.gdt = {gdt_base, 6 * 8 - 1};
    st.crs.cr0 = 0x11;  // PE | ET
    st.crs.apic_base = 0xfee00000 | (1u << 11) | (1u << 8);
    st.gprs.rip = loaded.entry;
    st.gprs.rbx = loaded.start_info;
    st.gprs.rflags = 0x2;
    return st;
}

}  // namespace vireo::arch::x86::boot
