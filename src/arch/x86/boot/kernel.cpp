#include "arch/x86/boot/kernel.hpp"

namespace vireo::arch::x86::boot {

Result<KernelImage> KernelImage::parse(std::span<const uint8_t> bytes) {
    if (is_elf(bytes)) {
        VIREO_TRY_ASSIGN(auto pvh, parse_pvh(bytes));
        return KernelImage(bytes, pvh);
    }
    VIREO_TRY_ASSIGN(auto bz, parse_bzimage(bytes));
    return KernelImage(bytes, bz);
}

}  // namespace vireo::arch::x86::boot
