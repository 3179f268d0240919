// The Linux x86 boot protocol for bzImage kernels, 64-bit entry
// (Documentation/arch/x86/boot.rst): zero page, command line, initrd, e820 map.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "arch/x86/boot/layout.hpp"
#include "base/result.hpp"
#include "memory/guest_memory.hpp"

namespace vireo::arch::x86::boot {

enum class E820Type : uint32_t { Ram = 1, Reserved = 2, Acpi = 3 };

struct E820Entry {
    uint64_t addr;
    uint64_t size;
    E820Type type;
};

/// What the parsed setup header says about a bzImage.
struct BzImageInfo {
    uint16_t protocol = 0;      ///< e.g. 0x020f
    uint32_t setup_bytes = 0;   ///< real-mode part, skipped for 64-bit entry
    uint64_t pref_address = 0;  ///< where the kernel wants to be loaded
    uint32_t init_size = 0;     ///< memory the kernel needs from its load address
    uint32_t initrd_addr_max = 0;
    uint32_t cmdline_size = 0;  ///< longest command line, without the NUL
    bool relocatable = false;
};

/// Parses and checks the setup header. Refuses anything that is not a bzImage with the 64-bit
/// entry point (protocol 2.12+ with XLF_KERNEL_64), naming the reason.
Result<BzImageInfo> parse_bzimage(std::span<const uint8_t> image);

/// Where a bzImage and its initrd go in a guest with `ram_end` bytes of RAM below 4 GiB.
struct LinuxPlacement {
    uint64_t kernel_addr = 0;  ///< the preferred address (x86-64 never unpacks below it)
    uint64_t kernel_end = 0;   ///< end of the memory the kernel unpacks into (init_size)
    uint64_t initrd_addr = 0;  ///< 0 without an initrd
};

/// Places the kernel at its preferred address and the initrd as high as allowed above the
/// kernel's unpack area, or below the kernel when it does not fit above; refuses with the sizes
/// when the kernel's unpack area does not fit in the guest's RAM or the initrd fits nowhere.
/// (x86-64 kernels never unpack below their preferred address, LOAD_PHYSICAL_ADDR, and need all
/// of init_size there: Debian's cloud kernel, at 16 MiB with 51.5 MiB, needs 68 MiB.)
Result<LinuxPlacement> place_linux(const BzImageInfo& info, uint64_t payload_size,
                                   uint64_t initrd_size, uint64_t ram_end);

/// Where things went.
struct LoadedLinux {
    uint64_t entry = 0;      ///< 64-bit entry point (load address + 0x200)
    uint64_t zero_page = 0;  ///< goes into RSI
    uint64_t kernel_addr = 0;
    uint64_t initrd_addr = 0;
    uint64_t initrd_size = 0;
};

/// Loads the kernel (`image`, which parse_bzimage() made `info` of) and initrd where
/// place_linux() puts them for layout.low_ram_end, the command line, and fills the zero page
/// (setup header, e820, RSDP).
Result<LoadedLinux> load_linux(const memory::GuestMemory& mem, std::span<const uint8_t> image,
                               const BzImageInfo& info, std::span<const uint8_t> initrd,
                               std::string_view cmdline, const std::vector<E820Entry>& e820,
                               const BootLayout& layout);

}  // namespace vireo::arch::x86::boot
