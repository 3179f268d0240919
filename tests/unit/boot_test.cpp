#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "arch/x86/boot/kernel.hpp"
#include "arch/x86/boot/linux.hpp"
#include "base/size.hpp"

namespace vireo::arch::x86::boot {
namespace {

// A minimal synthetic bzImage header (protocol 2.15, 64-bit entry, relocatable).
std::vector<uint8_t> fake_bzimage(uint16_t version = 0x020f, uint16_t xloadflags = 1) {
    std::vector<uint8_t> img(0x4000, 0);
    img[0x1f1] = 4;  // setup sectors
    img[0x1fe] = 0x55;
    img[0x1ff] = 0xaa;
    img[0x201] = 0x6a;  // header end
    std::memcpy(img.data() + 0x202, "HdrS", 4);
    std::memcpy(img.data() + 0x206, &version, 2);
    img[0x211] = 1;  // LOADED_HIGH
    uint32_t initrd_max = 0x7fffffff, cmdline_size = 2047, init_size = 0x800000;
    std::memcpy(img.data() + 0x22c, &initrd_max, 4);
    img[0x234] = 1;
    std::memcpy(img.data() + 0x236, &xloadflags, 2);
    std::memcpy(img.data() + 0x238, &cmdline_size, 4);
    uint64_t pref = 0x1000000;
    std::memcpy(img.data() + 0x258, &pref, 8);
    std::memcpy(img.data() + 0x260, &init_size, 4);
    img[0xa00] = 0xcc;  // first byte of the protected-mode kernel
    return img;
}

const std::vector<uint8_t> kImage = fake_bzimage();

TEST(KernelImage, ParsedOnceAsWhatItIs) {
    auto k = KernelImage::parse(kImage);
    ASSERT_TRUE(k) << k.error().message();
    ASSERT_NE(k->bzimage(), nullptr);
    EXPECT_EQ(k->pvh(), nullptr);
    EXPECT_EQ(k->bzimage()->setup_bytes, parse_bzimage(kImage)->setup_bytes);
    EXPECT_EQ(k->bytes().data(), kImage.data());  // not copied
    EXPECT_FALSE(KernelImage::parse(std::vector<uint8_t>(100, 0)));
}

TEST(BzImage, ParsesTheSetupHeader) {
    auto info = parse_bzimage(fake_bzimage());
    ASSERT_TRUE(info) << info.error().message();
    EXPECT_EQ(info->protocol, 0x020f);
    EXPECT_EQ(info->setup_bytes, 5u * 512);
    EXPECT_EQ(info->pref_address, 0x1000000u);
    EXPECT_EQ(info->cmdline_size, 2047u);
}

TEST(BzImage, RefusesWhatItCannotBoot) {
    EXPECT_FALSE(parse_bzimage(std::vector<uint8_t>(100, 0)));
    auto no_magic = fake_bzimage();
    no_magic[0x202] = 'X';
    EXPECT_NE(parse_bzimage(no_magic).error().message().find("HdrS"), std::string::npos);
    auto old = parse_bzimage(fake_bzimage(0x0209));
    ASSERT_FALSE(old);
    EXPECT_NE(old.error().message().find("2.09"), std::string::npos);
    EXPECT_FALSE(parse_bzimage(fake_bzimage(0x020f, 0)));  // no 64-bit entry
}

TEST(BzImage, LoadsKernelInitrdCmdlineAndE820) {
    auto mem = memory::GuestMemory::create_flat(64 << 20);
    ASSERT_TRUE(mem);
    std::vector<uint8_t> initrd(5000, 0x42);
    std::vector<E820Entry> e820{{0, 0xa0000, E820Type::Ram},
                                {0x100000, (64 << 20) - 0x100000, E820Type::Ram}};
    BootLayout layout;
    layout.low_ram_end = 64 << 20;
    layout.acpi_rsdp = 0xe0000;
    auto loaded =
        load_linux(*mem, kImage, *parse_bzimage(kImage), initrd, "console=ttyS0", e820, layout);
    ASSERT_TRUE(loaded) << loaded.error().message();
    EXPECT_EQ(loaded->entry, 0x1000200u);
    EXPECT_EQ(*mem->read_obj<uint8_t>(memory::Gpa(0x1000000)), 0xcc);
    EXPECT_EQ(loaded->initrd_addr % 4096, 0u);
    EXPECT_LE(loaded->initrd_addr + initrd.size(), uint64_t{64} << 20);
    EXPECT_EQ(*mem->read_obj<uint8_t>(memory::Gpa(loaded->initrd_addr)), 0x42);
    const memory::Gpa zp(loaded->zero_page);
    EXPECT_EQ(*mem->read_obj<uint32_t>(memory::Gpa(zp.value() + 0x218)), loaded->initrd_addr);
    EXPECT_EQ(*mem->read_obj<uint32_t>(memory::Gpa(zp.value() + 0x21c)), 5000u);
    EXPECT_EQ(*mem->read_obj<uint8_t>(memory::Gpa(zp.value() + 0x1e8)), 2);  // e820 entries
    EXPECT_EQ(*mem->read_obj<uint64_t>(memory::Gpa(zp.value() + 0x070)), 0xe0000u);
    EXPECT_EQ(*mem->read_obj<uint8_t>(memory::Gpa(zp.value() + 0x210)), 0xff);
    char cmdline[14] = {};
    ASSERT_TRUE(mem->read(layout.cmdline, std::as_writable_bytes(std::span(cmdline))));
    EXPECT_STREQ(cmdline, "console=ttyS0");
}

TEST(BzImage, RefusesWhatDoesNotFit) {
    auto mem = memory::GuestMemory::create_flat(64 << 20);
    ASSERT_TRUE(mem);
    BootLayout layout;
    layout.low_ram_end = 16 << 20;  // the kernel is loaded at 16 MiB: no RAM there at all
    EXPECT_FALSE(load_linux(*mem, kImage, *parse_bzimage(kImage), {}, "", {}, layout));
    layout.low_ram_end = 64 << 20;
    std::vector<uint8_t> big(48 << 20, 0);
    auto r = load_linux(*mem, kImage, *parse_bzimage(kImage), big, "", {}, layout);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message().find("initrd"), std::string::npos);
    EXPECT_FALSE(
        load_linux(*mem, kImage, *parse_bzimage(kImage), {}, std::string(3000, 'x'), {}, layout));
}

// The initrd goes above the kernel's unpack area, or below the kernel when only that fits.
TEST(BzImage, PlacesTheInitrdAboveOrBelowTheKernel) {
    auto info = parse_bzimage(fake_bzimage());  // at 16 MiB, 8 MiB to unpack
    ASSERT_TRUE(info);
    constexpr uint64_t kMiB = 1 << 20;
    auto roomy = place_linux(*info, 0x1000, 5000, 64 * kMiB);
    ASSERT_TRUE(roomy) << roomy.error().message();
    EXPECT_EQ(roomy->kernel_end, 24 * kMiB);
    EXPECT_GE(roomy->initrd_addr, 24 * kMiB);
    EXPECT_LE(roomy->initrd_addr + 5000, 64 * kMiB);

    auto tight = place_linux(*info, 0x1000, 4 * kMiB, 26 * kMiB);  // 2 MiB above the kernel
    ASSERT_TRUE(tight) << tight.error().message();
    EXPECT_LE(tight->initrd_addr + 4 * kMiB, 16 * kMiB);
    EXPECT_GE(tight->initrd_addr, kMiB);
    EXPECT_EQ(tight->initrd_addr % 4096, 0u);

    auto mem = memory::GuestMemory::create_flat(26 * kMiB);
    ASSERT_TRUE(mem);
    BootLayout layout;
    layout.low_ram_end = 26 * kMiB;
    std::vector<uint8_t> initrd(4 * kMiB, 0x42);
    auto loaded = load_linux(*mem, kImage, *parse_bzimage(kImage), initrd, "", {}, layout);
    ASSERT_TRUE(loaded) << loaded.error().message();
    EXPECT_EQ(loaded->initrd_addr, tight->initrd_addr);
    EXPECT_EQ(*mem->read_obj<uint8_t>(memory::Gpa(loaded->initrd_addr)), 0x42);

    auto nowhere = place_linux(*info, 0x1000, 15 * kMiB + 1, 26 * kMiB);
    ASSERT_FALSE(nowhere);
    EXPECT_NE(nowhere.error().message().find("fits neither"), std::string::npos);
    auto no_room = place_linux(*info, 0x1000, 0, 23 * kMiB);
    ASSERT_FALSE(no_room);
    EXPECT_NE(no_room.error().message().find("needs 24 MiB"), std::string::npos);
}

TEST(Size, ParsesUnits) {
    EXPECT_EQ(*parse_size("256M"), uint64_t{256} << 20);
    EXPECT_EQ(*parse_size("256"), uint64_t{256} << 20);
    EXPECT_EQ(*parse_size("2G"), uint64_t{2} << 30);
    EXPECT_EQ(*parse_size("2GiB"), uint64_t{2} << 30);
    EXPECT_EQ(*parse_size("128g"), uint64_t{128} << 30);
    EXPECT_EQ(*parse_size("4096B"), 4096u);
    EXPECT_EQ(*parse_size("64K"), uint64_t{64} << 10);
    EXPECT_FALSE(parse_size(""));
    EXPECT_FALSE(parse_size("G"));
    EXPECT_FALSE(parse_size("12Q"));
    EXPECT_FALSE(parse_size("-5M"));
    EXPECT_FALSE(parse_size("99999999999999T"));
}

TEST(Size, TextKeepsTheLargestWholeUnit) {
    EXPECT_EQ(size_text(4096), "4 KiB");
    EXPECT_EQ(size_text(uint64_t{16} << 20), "16 MiB");
    EXPECT_EQ(size_text(uint64_t{3} << 29), "1536 MiB");
    EXPECT_EQ(size_text(uint64_t{64} << 30), "64 GiB");
    EXPECT_EQ(size_text(1000), "1000 B");
    EXPECT_EQ(size_text(0), "0 B");
    EXPECT_EQ(size_text(uint64_t{1} << 63), "8 EiB");
}

}  // namespace
}  // namespace vireo::arch::x86::boot
