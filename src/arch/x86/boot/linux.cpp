#include "arch/x86/boot/linux.hpp"

#include <algorithm>
#include <array>
#include <cstring>

namespace vireo::arch::x86::boot {

using memory::Gpa;

namespace {

// Offsets in the image / zero page (struct boot_params, struct setup_header).
constexpr size_t kSetupSects = 0x1f1, kBootFlag = 0x1fe, kHeader = 0x202, kVersion = 0x206,
                 kTypeOfLoader = 0x210, kLoadFlags = 0x211, kRamdiskImage = 0x218,
                 kRamdiskSize = 0x21c, kCmdLinePtr = 0x228, kInitrdAddrMax = 0x22c,
                 kRelocatable = 0x234, kXLoadFlags = 0x236, kCmdlineSize = 0x238,
                 kPrefAddress = 0x258, kInitSize = 0x260, kAcpiRsdpAddr = 0x070,
                 kExtRamdiskImage = 0x0c0, kExtRamdiskSize = 0x0c4, kExtCmdLinePtr = 0x0c8,
                 kE820Entries = 0x1e8, kE820Table = 0x2d0;
constexpr size_t kE820Max = 128;
constexpr uint16_t kXlfKernel64 = 1u << 0;
constexpr uint8_t kLoadedHigh = 1u << 0;

template <typename T>
T get(std::span<const uint8_t> b, size_t off) {
    T v;
    std::memcpy(&v, b.data() + off, sizeof v);
    return v;
}

template <typename T>
void set(std::array<uint8_t, 4096>& zp, size_t off, T v) {
    std::memcpy(zp.data() + off, &v, sizeof v);
}

}  // namespace

Result<BzImageInfo> parse_bzimage(std::span<const uint8_t> image) {
    if (image.size() < 0x1000)
        return fail(ErrorCode::InvalidArgument, "not a Linux kernel: only {} bytes", image.size());
    if (get<uint16_t>(image, kBootFlag) != 0xaa55 || std::memcmp(image.data() + kHeader, "HdrS", 4))
        return fail(ErrorCode::InvalidArgument,
                    "not a Linux bzImage: no boot sector signature or \"HdrS\" setup header");
    BzImageInfo info;
    info.protocol = get<uint16_t>(image, kVersion);
    if (info.protocol < 0x020c || !(get<uint16_t>(image, kXLoadFlags) & kXlfKernel64))
        return fail(ErrorCode::Unsupported,
                    "kernel boot protocol {}.{:02} has no 64-bit entry point (need 2.12 or "
                    "newer, a 64-bit kernel)",
                    info.protocol >> 8, info.protocol & 0xff);
    if (!(image[kLoadFlags] & kLoadedHigh))
        return fail(ErrorCode::Unsupported, "kernel is a zImage (not loaded high)");
    uint32_t sects = image[kSetupSects] == 0 ? 4 : image[kSetupSects];
    info.setup_bytes = (sects + 1) * 512;
    if (info.setup_bytes >= image.size())
        return fail(ErrorCode::InvalidArgument,
                    "kernel image is truncated: setup is {} bytes of {}", info.setup_bytes,
                    image.size());
    info.pref_address = get<uint64_t>(image, kPrefAddress);
    info.init_size = get<uint32_t>(image, kInitSize);
    info.initrd_addr_max = get<uint32_t>(image, kInitrdAddrMax);
    info.cmdline_size = get<uint32_t>(image, kCmdlineSize);
    info.relocatable = image[kRelocatable] != 0;
    if (info.pref_address < 0x100000) info.pref_address = 0x1000000;
    return info;
}

Result<LinuxPlacement> place_linux(const BzImageInfo& info, uint64_t payload_size,
                                   uint64_t initrd_size, uint64_t ram_end) {
    constexpr uint64_t kMiB = uint64_t{1} << 20, kLowest = kMiB;  // under 1 MiB: boot data, BIOS
    LinuxPlacement p;
    p.kernel_addr = info.pref_address;
    p.kernel_end = p.kernel_addr + std::max<uint64_t>(info.init_size, payload_size);
    if (p.kernel_end > ram_end)
        return fail(ErrorCode::ResourceExhausted,
                    "the kernel needs {} MiB of memory (it unpacks {} MiB at {} MiB); the guest "
                    "has {} MiB below 4 GiB",
                    (p.kernel_end + kMiB - 1) / kMiB, (info.init_size + kMiB - 1) / kMiB,
                    p.kernel_addr / kMiB, ram_end / kMiB);
    if (initrd_size == 0) return p;
    const uint64_t limit = uint64_t{info.initrd_addr_max} + 1;
    auto slot = initrd_slot(initrd_size, p.kernel_end, std::min(ram_end, limit));         // above
    if (!slot) slot = initrd_slot(initrd_size, kLowest, std::min(p.kernel_addr, limit));  // below
    if (slot) {
        p.initrd_addr = *slot;
        return p;
    }
    return fail(ErrorCode::ResourceExhausted,
                "the initrd ({} MiB) fits neither above the kernel (which unpacks into {}..{} MiB) "
                "nor below it in {} MiB of guest memory; give the guest more --memory",
                (initrd_size + kMiB - 1) / kMiB, p.kernel_addr / kMiB,
                (p.kernel_end + kMiB - 1) / kMiB, ram_end / kMiB);
}

Result<LoadedLinux> load_linux(const memory::GuestMemory& mem, std::span<const uint8_t> image,
                               const BzImageInfo& info, std::span<const uint8_t> initrd,
                               std::string_view cmdline, const std::vector<E820Entry>& e820,
                               const BootLayout& layout) {
    auto payload = image.subspan(info.setup_bytes);
    VIREO_TRY_ASSIGN(auto place,
                     place_linux(info, payload.size(), initrd.size(), layout.low_ram_end));
    if (cmdline.size() > info.cmdline_size)
        return fail(ErrorCode::InvalidArgument,
                    "kernel command line is {} bytes; this kernel accepts at most {}",
                    cmdline.size(), info.cmdline_size);
    if (e820.size() > kE820Max)
        return fail(ErrorCode::InvalidArgument, "{} e820 entries, at most {}", e820.size(),
                    kE820Max);

    VIREO_TRY(copy_image(mem, Gpa(place.kernel_addr), payload, layout));

    LoadedLinux out;
    out.kernel_addr = place.kernel_addr;
    out.entry = place.kernel_addr + 0x200;
    out.zero_page = layout.boot_info.value();

    if (!initrd.empty()) {
        VIREO_TRY(copy_image(mem, Gpa(place.initrd_addr), initrd, layout));
        out.initrd_addr = place.initrd_addr;
        out.initrd_size = initrd.size();
    }

    VIREO_TRY(write_cmdline(mem, cmdline, layout));

    std::array<uint8_t, 4096> zp{};
    // Copy the setup header as the image has it (from 0x1f1 to the end given at 0x201).
    const size_t header_end = std::min<size_t>(0x202 + image[0x201], 4096);
    std::memcpy(zp.data() + kSetupSects, image.data() + kSetupSects, header_end - kSetupSects);
    zp[kTypeOfLoader] = 0xff;  // "undefined" boot loader
    set<uint32_t>(zp, kCmdLinePtr, static_cast<uint32_t>(layout.cmdline.value()));
    set<uint32_t>(zp, kExtCmdLinePtr, static_cast<uint32_t>(layout.cmdline.value() >> 32));
    set<uint32_t>(zp, kRamdiskImage, static_cast<uint32_t>(out.initrd_addr));
    set<uint32_t>(zp, kRamdiskSize, static_cast<uint32_t>(out.initrd_size));
    set<uint32_t>(zp, kExtRamdiskImage, static_cast<uint32_t>(out.initrd_addr >> 32));
    set<uint32_t>(zp, kExtRamdiskSize, static_cast<uint32_t>(out.initrd_size >> 32));
    set<uint64_t>(zp, kAcpiRsdpAddr, layout.acpi_rsdp);
    zp[kE820Entries] = static_cast<uint8_t>(e820.size());
    for (size_t i = 0; i < e820.size(); ++i) {
        const size_t at = kE820Table + i * 20;
        set<uint64_t>(zp, at, e820[i].addr);
        set<uint64_t>(zp, at + 8, e820[i].size);
        set<uint32_t>(zp, at + 16, static_cast<uint32_t>(e820[i].type));
    }
    VIREO_TRY(mem.write_obj(layout.boot_info, zp));
    return out;
}

}  // namespace vireo::arch::x86::boot
