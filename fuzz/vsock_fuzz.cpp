// libFuzzer target: virtio-vsock's packet path. The input is a hostile driver: descriptor
// tables of the receive and transmit queues, the avail entries, and the packets (44-byte
// headers with any op, ports, lengths, credit figures, then payload) buffers point at. A host
// program listens on PATH_5 (guest connections to port 5 reach it; it drains them) so that
// connected paths (data, credit, shutdown, reset) run too; other ports have no listener.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "base/log.hpp"
#include "descriptors.hpp"
#include "virtio/testing/driver.hpp"
#include "virtio/virtio.hpp"
#include "virtio/vsock/device.hpp"

using namespace vireo;

namespace {
constexpr uint64_t kRam = 1 << 20;
constexpr uint16_t kQueueSize = 64;
constexpr uint64_t kRxRings = 0, kTxRings = 0x2000, kEvRings = 0x3000;
constexpr uint64_t kData = 0x4000;

struct World {
    World() {
        log::set_level(log::Level::Off);
        path = "/tmp/vireo-fuzz-vsock-" + std::to_string(::getpid());
        ::unlink(path.c_str());
        ::unlink((path + "_5").c_str());
        auto listener = virtio::VsockListener::create({3, path}).value();
        host.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0));
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::strcpy(a.sun_path, (path + "_5").c_str());
        if (::bind(host.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
            ::listen(host.get(), 64) != 0)
            abort();
        loop = EventLoop::create("fuzz").value();
        transport =
            virtio::MmioTransport::create(mem, std::make_shared<virtio::VsockDevice>(listener), 0)
                .value();
        if (!transport->attach_loop(*loop)) abort();
    }
    ~World() { ::unlink((path + "_5").c_str()); }
    void drain_host() {
        for (;;) {
            int c = ::accept4(host.get(), nullptr, nullptr, SOCK_NONBLOCK);
            if (c < 0) break;
            conns.push_back(UniqueFd(c));
        }
        char buf[65536];
        for (auto& c : conns)
            while (::recv(c.get(), buf, sizeof buf, 0) > 0) {
            }
    }
    memory::GuestMemory mem = memory::GuestMemory::create_flat(kRam).value();
    std::string path;
    UniqueFd host;
    std::vector<UniqueFd> conns;
    std::unique_ptr<EventLoop> loop;
    std::shared_ptr<virtio::MmioTransport> transport;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 4) return 0;
    static World w;
    const uint64_t features =
        virtio::kFeatureIndirectDesc | ((data[0] & 1) ? virtio::kFeatureEventIdx : 0);
    // The driver's view of guest RAM (the test plays the guest).
    auto* ram = static_cast<uint8_t*>(w.mem.slice(memory::Gpa(0), kRam).value().iov().iov_base);
    std::memset(ram, 0, kData);
    virtio::testing::DriverQueue rx(w.mem, kRxRings, kQueueSize), tx(w.mem, kTxRings, kQueueSize),
        ev(w.mem, kEvRings, 8);
    virtio::testing::MmioDriver drv(*w.transport);
    virtio::testing::DriverQueue* qs[] = {&rx, &tx, &ev};
    drv.start(features, qs);
    const uint8_t* p = data + 4;
    const uint8_t* end = data + size;
    const uint8_t* mid = p + std::min<size_t>(size - 4, 64 * 16) / 2;
    fuzz::fill_descriptors(rx, p, mid, kData, kRam - kData, 0x11000);
    fuzz::fill_descriptors(tx, p, end, kData, kRam - kData, 0x11000);
    if (p < end) {
        // Packets: make most of them plausible (right CIDs, port 5 or a few others).
        std::memcpy(ram + kData, p, std::min<size_t>(static_cast<size_t>(end - p), kRam - kData));
        for (uint64_t at = kData; at + 44 <= kData + 0x8000; at += 0x800) {
            if (data[0] & 2) continue;
            virtio::VsockHeader h;
            std::memcpy(&h, ram + at, 44);
            h.src_cid = 3;
            h.dst_cid = virtio::kVsockHostCid;
            h.dst_port = (h.dst_port & 1) ? 5 : h.dst_port % 8;
            h.type = 1;
            h.op = static_cast<uint16_t>(h.op % 9);
            std::memcpy(ram + at, &h, 44);
        }
    }
    for (size_t i = 0; i < data[1] % (kQueueSize + 2); ++i)
        rx.put_avail(static_cast<uint16_t>(i < size ? data[size - 1 - i] % (kQueueSize + 1) : i));
    for (size_t i = 0; i < data[2] % (kQueueSize + 2); ++i)
        tx.put_avail(static_cast<uint16_t>((i < size ? data[i] : i) % (kQueueSize + 1)));
    w.transport->process_queue(1);
    w.transport->process_queue(0);
    for (int i = 0; i < 3; ++i) {
        w.drain_host();
        w.loop->poll_once(0);
    }
    uint32_t zero = 0;  // reset closes every connection
    w.transport->write(0x70, std::span(reinterpret_cast<const uint8_t*>(&zero), 4));
    w.drain_host();
    w.conns.clear();
    return 0;
}
