// A kernel image, parsed and checked once: a bzImage (the 64-bit Linux boot protocol) or a PVH
// ELF. Every boot of a domain loads from the same parsed image; nothing parses it again.
#pragma once

#include <cstdint>
#include <span>
#include <variant>

#include "arch/x86/boot/linux.hpp"
#include "arch/x86/boot/pvh.hpp"
#include "base/result.hpp"

namespace vireo::arch::x86::boot {

class KernelImage {
  public:
    /// Parses `bytes` (which must outlive the image): PVH if it is an ELF file, else bzImage.
    static Result<KernelImage> parse(std::span<const uint8_t> bytes);

    std::span<const uint8_t> bytes() const noexcept { return bytes_; }
    /// The PVH note's view of an ELF image, or null for a bzImage.
    const PvhInfo* pvh() const noexcept { return std::get_if<PvhInfo>(&info_); }
    /// The setup header of a bzImage, or null for an ELF image.
    const BzImageInfo* bzimage() const noexcept { return std::get_if<BzImageInfo>(&info_); }

  private:
    KernelImage(std::span<const uint8_t> bytes, std::variant<BzImageInfo, PvhInfo> info)
        : bytes_(bytes), info_(info) {}
    std::span<const uint8_t> bytes_;
    std::variant<BzImageInfo, PvhInfo> info_;
};

}  // namespace vireo::arch::x86::boot
