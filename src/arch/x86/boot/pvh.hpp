// The PVH boot protocol (Xen's HVM direct boot, also used by QEMU, Firecracker and Cloud
// Hypervisor): an ELF image with a XEN_ELFNOTE_PHYS32_ENTRY note is loaded by its program
// headers and entered in 32-bit protected mode, paging off, with EBX pointing at an
// hvm_start_info (command line, modules such as the initrd, memory map, RSDP).
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "arch/x86/boot/linux.hpp"
#include "base/result.hpp"
#include "hv/vcpu_state.hpp"
#include "memory/guest_memory.hpp"

namespace vireo::arch::x86::boot {

/// True if `image` starts like an ELF file.
bool is_elf(std::span<const uint8_t> image) noexcept;

struct PvhInfo {
    uint32_t entry = 0;                ///< 32-bit physical entry point (from the note)
    uint64_t lowest = 0, highest = 0;  ///< physical range the segments occupy
};

/// Checks an ELF image: class, machine, loadable segments, and the PVH entry note.
Result<PvhInfo> parse_pvh(std::span<const uint8_t> image);

struct LoadedPvh {
    uint32_t entry = 0;
    uint64_t start_info = 0;
    uint64_t initrd_addr = 0;
};

/// Loads the segments of `image` (which parse_pvh() made `info` of), the initrd (as module 0,
/// as high as fits below low_ram_end), the command line and the start info with the memory map.
Result<LoadedPvh> load_pvh(const memory::GuestMemory& mem, std::span<const uint8_t> image,
                           const PvhInfo& info, std::span<const uint8_t> initrd,
                           std::string_view cmdline, const std::vector<E820Entry>& e820,
                           const BootLayout& layout);

/// vCPU state (kStateGprs | kStateSegments | kStateCrs) for the PVH entry: flat 32-bit code and
/// data segments, CR0.PE only, EBX = start info.
hv::VcpuState pvh_entry_state(const LoadedPvh& loaded, uint64_t gdt_base);

}  // namespace vireo::arch::x86::boot
