// libFuzzer target: the virtio-blk request path (chain framing, request parsing, bounds,
// read-only checks, io_uring submission) behind a correctly set-up queue. The input supplies
// the descriptor table, the avail ring entries and the memory the descriptors point at.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "base/log.hpp"
#include "descriptors.hpp"
#include "virtio/blk/device.hpp"
#include "virtio/testing/driver.hpp"
#include "virtio/virtio.hpp"

using namespace vireo;

namespace {
constexpr uint64_t kRam = 1 << 20;
constexpr uint16_t kQueueSize = 64;
constexpr uint64_t kRings = 0;      // descriptors, avail, used: < 2 KiB
constexpr uint64_t kData = 0x1000;  // what descriptors usually point at

struct World {
    explicit World(bool readonly) {
        log::set_level(log::Level::Off);
        int fd = ::memfd_create("vireo-fuzz-disk", 0);
        if (fd < 0 || ::ftruncate(fd, 256 * 1024) != 0) abort();
        auto disk = virtio::DiskImage::open(
            {"/proc/self/fd/" + std::to_string(fd), readonly, "fuzz-serial", 256, {}});
        ::close(fd);
        if (!disk) abort();
        loop = EventLoop::create("fuzz").value();
        transport =
            virtio::MmioTransport::create(mem, virtio::BlockDevice::create(*disk).value(), 0)
                .value();
        if (!transport->attach_loop(*loop)) abort();
    }
    memory::GuestMemory mem = memory::GuestMemory::create_flat(kRam).value();
    std::unique_ptr<EventLoop> loop;
    std::shared_ptr<virtio::MmioTransport> transport;
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    static World rw(false), ro(true);
    World& w = (data[0] & 1) ? ro : rw;
    const uint64_t features = virtio::kFeatureIndirectDesc |
                              ((data[0] & 2) ? virtio::kFeatureEventIdx : 0) | (uint64_t{1} << 9);
    // The driver's view of guest RAM (the test plays the guest).
    auto* ram = static_cast<uint8_t*>(w.mem.slice(memory::Gpa(0), kRam).value().iov().iov_base);
    std::memset(ram, 0, 0x10000);
    virtio::testing::DriverQueue dq(w.mem, kRings, kQueueSize);
    virtio::testing::MmioDriver drv(*w.transport);
    virtio::testing::DriverQueue* qs[] = {&dq};
    drv.start(features, qs);
    // Input layout: [flags][n avail][descriptors...][data...]. Descriptor addresses are taken
    // modulo 64 KiB of RAM most of the time, raw otherwise (bit 63 of the address selects).
    const size_t n_avail = data[1] % (kQueueSize + 1);
    const uint8_t* p = data + 2;
    fuzz::fill_descriptors(dq, p, data + size, kData, 0xf000);
    const size_t off = static_cast<size_t>(p - data);
    if (off < size) std::memcpy(ram + kData, data + off, std::min<size_t>(size - off, 0xf000));
    for (size_t i = 0; i < n_avail; ++i)
        dq.put_avail(static_cast<uint16_t>((i < size ? data[i] : i) % (kQueueSize + 2)));
    w.transport->process_queue(0);
    for (int i = 0; i < 3; ++i)  // completions that are already there
        w.loop->poll_once(0);
    uint32_t zero = 0;  // reset with requests possibly still in flight
    w.transport->write(0x70, std::span(reinterpret_cast<const uint8_t*>(&zero), 4));
    return 0;
}
