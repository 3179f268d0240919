// libFuzzer target: the virtio-mmio register interface, with a virtio-rng and a virtio-blk
// device behind it. The input is a hostile driver: register reads and writes of any width at
// any offset, writes into guest RAM (rings, descriptors, buffers) and queue notifications.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "base/log.hpp"
#include "virtio/blk/device.hpp"
#include "virtio/mmio.hpp"
#include "virtio/rng/device.hpp"

using namespace vireo;

namespace {
constexpr uint64_t kRam = 256 * 1024;

struct World {
    World() {
        log::set_level(log::Level::Off);
        int fd = ::memfd_create("vireo-fuzz-disk", 0);
        if (fd < 0 || ::ftruncate(fd, 64 * 1024) != 0) abort();
        auto disk = virtio::DiskImage::open(
            {"/proc/self/fd/" + std::to_string(fd), false, "fuzz", 256, {}});
        ::close(fd);
        if (!disk) abort();
        loop = EventLoop::create("fuzz").value();
        transports[0] = virtio::MmioTransport::create(
                            mem, std::make_shared<virtio::EntropyDevice>(), 0xd0000000)
                            .value();
        transports[1] = virtio::MmioTransport::create(
                            mem, virtio::BlockDevice::create(*disk).value(), 0xd0001000)
                            .value();
        for (auto& t : transports)
            if (!t->attach_loop(*loop)) abort();
        if (!transports[0]->enable_register_page()) abort();  // one with, one without
    }
    memory::GuestMemory mem = memory::GuestMemory::create_flat(kRam).value();
    std::unique_ptr<EventLoop> loop;
    std::shared_ptr<virtio::MmioTransport> transports[2];
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static World w;
    // The driver's view of guest RAM (the test plays the guest).
    auto* ram = static_cast<uint8_t*>(w.mem.slice(memory::Gpa(0), kRam).value().iov().iov_base);
    std::memset(ram, 0, 64 * 1024);
    for (size_t i = 0; i + 8 <= size; i += 8) {
        const uint8_t* op = data + i;
        auto& t = *w.transports[op[0] >> 7];
        const uint64_t offset = (op[1] | (op[2] << 8)) & 0x1ff;
        const size_t width = size_t{1} << (op[3] & 3);
        uint8_t buf[8];
        std::memcpy(buf, op + 4, 4);
        std::memcpy(buf + 4, op + 4, 4);
        switch (op[0] & 3) {
            case 0:
                t.write(offset, std::span<const uint8_t>(buf, width));
                break;
            case 1:
                t.read(offset, std::span<uint8_t>(buf, width));
                if (t.register_page() != nullptr && width == 4 && offset % 4 == 0 &&
                    offset < 0x100 && offset != 0x60 &&
                    std::memcmp(t.register_page() + offset, buf, 4) != 0)
                    abort();  // the register page must read as the registers do
                break;
            case 2: {  // guest RAM write (rings live in the first 64 KiB)
                const uint64_t at = (uint64_t{op[1]} | (uint64_t{op[2]} << 8)) & 0xfffc;
                std::memcpy(ram + at, op + 4, 4);
                break;
            }
            case 3:
                t.process_queue(op[1] & 1);
                w.loop->poll_once(0);
                break;
        }
    }
    for (auto& t : w.transports) {  // reset between inputs: in-flight I/O must not leak through
        uint32_t zero = 0;
        t->write(0x70, std::span(reinterpret_cast<const uint8_t*>(&zero), 4));
    }
    w.loop->poll_once(0);
    return 0;
}
