// libFuzzer target: virtio-net's frame path. The input is a hostile driver and a hostile wire
// at once: the descriptor tables of the receive and transmit queues, the avail entries, the
// bytes buffers point at (frames and their virtio_net_hdr), and frames of any size arriving
// from the back-end (a datagram socketpair: a real back-end, one frame per datagram). Each frame
// the guest sent, and the input itself, also goes through user networking's classification
// (virtio/net/guest_flow.hpp) and, if it is a SYN, the reset that refuses it.
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "base/log.hpp"
#include "descriptors.hpp"
#include "virtio/net/device.hpp"
#include "virtio/net/guest_flow.hpp"
#include "virtio/testing/driver.hpp"
#include "virtio/virtio.hpp"

using namespace vireo;

namespace {
constexpr uint64_t kRam = 1 << 20;
constexpr uint16_t kQueueSize = 64;
constexpr uint64_t kRxRings = 0, kTxRings = 0x2000;
constexpr uint64_t kData = 0x4000;  // what descriptors usually point at (to the end of RAM)

struct World {
    World() {
        log::set_level(log::Level::Off);
        auto [backend, peer] = virtio::socketpair_backend().value();
        wire = std::move(peer);
        loop = EventLoop::create("fuzz").value();
        device = virtio::NetDevice::create(backend, virtio::derived_mac("fuzz"), 1500, kQueueSize)
                     .value();
        transport = virtio::MmioTransport::create(mem, device, 0).value();
        if (!transport->attach_loop(*loop)) abort();
    }
    memory::GuestMemory mem = memory::GuestMemory::create_flat(kRam).value();
    std::unique_ptr<EventLoop> loop;
    std::shared_ptr<virtio::NetDevice> device;
    std::shared_ptr<virtio::MmioTransport> transport;
    UniqueFd wire;
};

// A reset answers the SYN it refuses: ports swapped, a valid IPv4 header checksum. A TCP
// segment's sequence space lies within the frame (a FIN takes one more).
void check_flow(const uint8_t* f, size_t len) {
    for (const bool from_guest : {true, false}) {
        const auto seg = virtio::tcp_segment(std::span(f, len), from_guest);
        if (seg && seg->length > len + 1) abort();
    }
    const auto flow = virtio::guest_flow(std::span(f, len));
    if (flow.opens != virtio::Opens::TcpSyn) return;
    const auto r = virtio::tcp_reset_for(std::span(f, len));
    const uint16_t sport = static_cast<uint16_t>(r[34] << 8 | r[35]);
    const uint16_t dport = static_cast<uint16_t>(r[36] << 8 | r[37]);
    if (sport != flow.dport || dport != flow.sport) abort();
    if (virtio::internet_checksum(std::span(r).subspan(14, 20)) != 0) abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    check_flow(data, size);
    if (size < 4) return 0;
    static World w;
    const uint8_t flags = data[0];
    const uint64_t features = virtio::kFeatureIndirectDesc | virtio::kNetFMac | virtio::kNetFMtu |
                              ((flags & 1) ? virtio::kFeatureEventIdx : 0) |
                              ((flags & 2) ? virtio::kNetFMrgRxbuf : 0);
    // The driver's view of guest RAM (the test plays the guest).
    auto* ram = static_cast<uint8_t*>(w.mem.slice(memory::Gpa(0), kRam).value().iov().iov_base);
    std::memset(ram, 0, kData);
    virtio::testing::DriverQueue rx(w.mem, kRxRings, kQueueSize), tx(w.mem, kTxRings, kQueueSize);
    virtio::testing::MmioDriver drv(*w.transport);
    virtio::testing::DriverQueue* qs[] = {&rx, &tx};
    drv.start(features, qs);
    // Input: [flags][n rx avail][n tx avail][n frames][rx descs (half)][tx descs][data...]
    const uint8_t* p = data + 4;
    const uint8_t* end = data + size;
    const uint8_t* mid = p + std::min<size_t>(size - 4, 64 * 16) / 2;
    fuzz::fill_descriptors(rx, p, mid, kData, kRam - kData, 0x12000);
    fuzz::fill_descriptors(tx, p, end, kData, kRam - kData, 0x12000);
    if (p < end)
        std::memcpy(ram + kData, p, std::min<size_t>(static_cast<size_t>(end - p), kRam - kData));
    for (size_t i = 0; i < data[1] % (kQueueSize + 2); ++i)
        rx.put_avail(static_cast<uint16_t>(i < size ? data[size - 1 - i] % (kQueueSize + 1) : i));
    for (size_t i = 0; i < data[2] % (kQueueSize + 2); ++i)
        tx.put_avail(static_cast<uint16_t>((i < size ? data[i] : i) % (kQueueSize + 1)));
    // Frames from the wire: sizes taken from the input, bytes from it too (cycled).
    static uint8_t frame[70000];
    for (size_t i = 0; i < data[3] % 8; ++i) {
        size_t len = (size_t{data[(i * 7) % size]} << 8 | data[(i * 13) % size]) * 2 % sizeof frame;
        for (size_t j = 0; j < len; j += 97)
            frame[j] = data[(i + j) % size];
        (void)::send(w.wire.get(), frame, len, MSG_DONTWAIT);
    }
    w.transport->process_queue(1);
    w.transport->process_queue(0);
    for (int i = 0; i < 4; ++i)
        w.loop->poll_once(0);
    for (ssize_t n; (n = ::recv(w.wire.get(), frame, sizeof frame, MSG_DONTWAIT)) > 0;)
        if (static_cast<size_t>(n) > virtio::kNetHdrSize)
            check_flow(frame + virtio::kNetHdrSize, static_cast<size_t>(n) - virtio::kNetHdrSize);
    uint32_t zero = 0;  // reset: the next input starts clean
    w.transport->write(0x70, std::span(reinterpret_cast<const uint8_t*>(&zero), 4));
    while (::recv(w.wire.get(), frame, sizeof frame, MSG_DONTWAIT) > 0) {
    }
    return 0;
}
