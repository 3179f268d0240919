// What the boot protocols (Linux bzImage, PVH) share: where the boot information and command line
// go, how much low RAM there is, and how images are copied into the guest.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "base/result.hpp"
#include "memory/guest_memory.hpp"

namespace vireo::arch::x86::boot {

struct BootLayout {
    memory::Gpa boot_info{0x8000};  ///< Linux zero page, or PVH hvm_start_info (+ lists)
    memory::Gpa cmdline{0x20000};
    uint64_t low_ram_end = 0;  ///< end of RAM below 4 GiB (the initrd goes under it)
    uint64_t acpi_rsdp = 0;
    /// The kernel and initrd spans are file mappings: drop their pages once copied
    /// (GuestMemory::write_from_file_mapping).
    bool images_are_file_mappings = false;
};

/// Copies image bytes (kernel or initrd) into guest memory as the layout says.
Result<void> copy_image(const memory::GuestMemory& mem, memory::Gpa at,
                        std::span<const uint8_t> bytes, const BootLayout& layout);

/// The highest 4 KiB-aligned address where `size` bytes end at or below `top`, if that is not
/// below `lowest` (the initrd rule of both boot protocols).
std::optional<uint64_t> initrd_slot(uint64_t size, uint64_t lowest, uint64_t top) noexcept;

/// Places the initrd at the highest 4 KiB-aligned address where it ends at or below `top`,
/// refusing if that is below `lowest` (the end of the kernel), and copies it. Returns its address.
Result<uint64_t> place_initrd(const memory::GuestMemory& mem, std::span<const uint8_t> initrd,
                              uint64_t lowest, uint64_t top, const BootLayout& layout);

/// Writes the NUL-terminated command line at layout.cmdline.
Result<void> write_cmdline(const memory::GuestMemory& mem, std::string_view cmdline,
                           const BootLayout& layout);

}  // namespace vireo::arch::x86::boot
