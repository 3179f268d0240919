#include "arch/x86/boot/layout.hpp"

#include <vector>

namespace vireo::arch::x86::boot {

Result<void> copy_image(const memory::GuestMemory& mem, memory::Gpa at,
                        std::span<const uint8_t> bytes, const BootLayout& layout) {
    return layout.images_are_file_mappings ? mem.write_from_file_mapping(at, bytes)
                                           : mem.write(at, std::as_bytes(bytes));
}

std::optional<uint64_t> initrd_slot(uint64_t size, uint64_t lowest, uint64_t top) noexcept {
    if (size > top) return std::nullopt;
    const uint64_t addr = (top - size) & ~uint64_t{0xfff};
    if (addr < lowest) return std::nullopt;
    return addr;
}

Result<uint64_t> place_initrd(const memory::GuestMemory& mem, std::span<const uint8_t> initrd,
                              uint64_t lowest, uint64_t top, const BootLayout& layout) {
    const auto addr = initrd_slot(initrd.size(), lowest, top);
    if (!addr)
        return fail(ErrorCode::ResourceExhausted,
                    "initrd of {} MiB does not fit in guest memory between the kernel (ends at "
                    "{} MiB) and {} MiB; give the guest more memory",
                    (initrd.size() + (1 << 20) - 1) >> 20, lowest >> 20, top >> 20);
    VIREO_TRY(copy_image(mem, memory::Gpa(*addr), initrd, layout));
    return *addr;
}

Result<void> write_cmdline(const memory::GuestMemory& mem, std::string_view cmdline,
                           const BootLayout& layout) {
    if (cmdline.find('\0') != std::string_view::npos)
        return fail(ErrorCode::InvalidArgument, "kernel command line contains a NUL byte");
    std::vector<char> bytes(cmdline.begin(), cmdline.end());
    bytes.push_back('\0');
    return mem.write(layout.cmdline, std::as_bytes(std::span(bytes)));
}

}  // namespace vireo::arch::x86::boot
