// virtio-net (over the socketpair back-end), virtio-vsock (with a real Unix listener),
// virtio-balloon, their option parsers, and the API's request handling, driven through the
// registers and rings by the driver-side harness over in-memory guest RAM.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "api/params.hpp"
#include "api/server.hpp"
#include "domain/device_options.hpp"
#include "snapshot/state.hpp"
#include "virtio/balloon/device.hpp"
#include "virtio/net/device.hpp"
#include "virtio/testing/driver.hpp"
#include "virtio/virtio.hpp"
#include "virtio/vsock/device.hpp"

namespace vireo::virtio {
namespace {

using testing::Buf;
using testing::DriverQueue;
using testing::MmioDriver;
using testing::run_until;

constexpr uint64_t kRam = 16 << 20;

bool put(const memory::GuestMemory& m, uint64_t gpa, const void* p, size_t n) {
    return m.write(memory::Gpa(gpa), std::span(static_cast<const std::byte*>(p), n)).has_value();
}
bool get(const memory::GuestMemory& m, uint64_t gpa, void* p, size_t n) {
    return m.read(memory::Gpa(gpa), std::span(static_cast<std::byte*>(p), n)).has_value();
}
constexpr uint64_t kHeap = 0x100000;

// A device with several queues on one transport and its event loop.
struct Rig {
    Rig(std::shared_ptr<Device> dev, size_t queues)
        : mem(memory::GuestMemory::create_flat(kRam).value()),
          device(std::move(dev)),
          transport(MmioTransport::create(mem, device, 0xd0000000).value()),
          loop(EventLoop::create("test").value()),
          drv(*transport) {
        for (size_t i = 0; i < queues; ++i)
            dqs.push_back(std::make_unique<DriverQueue>(mem, 0x10000 * (i + 1), 64));
        EXPECT_TRUE(transport->attach_loop(*loop));
    }
    uint32_t start(uint64_t features) {
        std::vector<DriverQueue*> qs;
        for (auto& q : dqs)
            qs.push_back(q.get());
        return drv.start(features, qs);
    }
    uint64_t alloc(uint64_t len) {
        const uint64_t at = heap;
        heap += (len + 4095) & ~uint64_t{4095};
        return at;
    }
    std::optional<testing::Used> wait_used(size_t q) {
        std::optional<testing::Used> u;
        run_until(
            *loop, [&] { return (u = dqs[q]->next_used()).has_value(); }, std::chrono::seconds(5));
        return u;
    }
    bool needs_reset() const { return (transport->status() & kStatusNeedsReset) != 0; }

    memory::GuestMemory mem;
    std::shared_ptr<Device> device;
    std::shared_ptr<MmioTransport> transport;
    std::unique_ptr<EventLoop> loop;
    std::vector<std::unique_ptr<DriverQueue>> dqs;
    MmioDriver drv;
    uint64_t heap = kHeap;
};

// --- options -----------------------------------------------------------------------------

TEST(NetOptions, ParsesUserAndTap) {
    auto u = domain::parse_net_option(
        "user,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=udp::53-10.0.2.15:53");
    ASSERT_TRUE(u) << u.error().message();
    EXPECT_EQ(u->kind, NetOptions::Kind::User);
    ASSERT_EQ(u->forwards.size(), 2u);
    EXPECT_EQ(u->forwards[0].host_port, 8080);
    EXPECT_EQ(u->forwards[0].guest_port, 80);
    EXPECT_TRUE(u->forwards[1].udp);
    EXPECT_EQ(u->forwards[1].guest_addr, 0x0a00020fu);
    auto t = domain::parse_net_option("tap=tap0,mac=52:54:00:12:34:56,mtu=9000,queue-size=512");
    ASSERT_TRUE(t) << t.error().message();
    EXPECT_EQ(t->tap, "tap0");
    EXPECT_EQ(format_mac(*t->mac), "52:54:00:12:34:56");
    EXPECT_EQ(t->mtu, 9000);
    EXPECT_EQ(t->queue_size, 512);
}

TEST(NetOptions, RefusesBadInputWithAReason) {
    for (const char* bad :
         {"", "bridge=br0", "tap=", "tap=0123456789abcdef", "user,mac=52:54:00:12:34",
          "user,mac=01:00:00:00:00:01", "user,mac=00:00:00:00:00:00", "user,mtu=20",
          "user,queue-size=100", "user,hostfwd=tcp:1.2.3:80-:80", "user,hostfwd=tcp::0-:80",
          "tap=t,hostfwd=tcp::1-:2", "user,color=red"}) {
        auto r = domain::parse_net_option(bad);
        EXPECT_FALSE(r) << bad;
        if (!r) {
            // The value is quoted; the caller names the field (--net, a TOML key).
            EXPECT_EQ(r.error().message().rfind(fmt::format("\"{}\": ", bad), 0), 0u)
                << r.error().message();
        }
    }
}

TEST(NetOptions, RateLimitsPerDirectionAndAtRunTime) {
    auto both = domain::parse_net_option("user,bps=1M,pps=1000,bps-burst=64K");
    ASSERT_TRUE(both) << both.error().message();
    EXPECT_EQ(both->rx_limits, both->tx_limits);
    EXPECT_EQ(both->tx_limits.bps, 1u << 20);
    EXPECT_EQ(both->tx_limits.ops, 1000u);
    EXPECT_EQ(both->tx_limits.bps_burst, 64u << 10);
    auto one = domain::parse_net_option("tap=t,rx-bps=125000,tx-pps=10");
    ASSERT_TRUE(one) << one.error().message();
    EXPECT_EQ(one->rx_limits, (IoLimits{125000, 0, 0, 0}));
    EXPECT_EQ(one->tx_limits, (IoLimits{0, 10, 0, 0}));
    EXPECT_EQ(domain::format_net_limits(one->rx_limits, one->tx_limits), "rx-bps=125000,tx-pps=10");
    EXPECT_EQ(domain::format_net_limits(both->rx_limits, both->tx_limits),
              "bps=1048576,pps=1000,bps-burst=65536");
    for (const char* bad : {"user,bps-burst=1M", "user,rx-pps-burst=5,tx-pps=5", "user,bps=0",
                            "user,pps=x", "user,iops=5", "user,up-bps=5", "user,bps=2T"})
        EXPECT_FALSE(domain::parse_net_option(bad)) << bad;
    // At run time: the same keys alone, or none.
    auto l = domain::parse_net_limits("tx-bps=10M");
    ASSERT_TRUE(l);
    EXPECT_FALSE(l->first.any());
    EXPECT_EQ(l->second.bps, 10u << 20);
    EXPECT_FALSE(domain::parse_net_limits("none")->first.any());
    EXPECT_FALSE(domain::parse_net_limits("tx-bps=1,mtu=5"));
    auto d = domain::parse_disk_limits("bps=10M,iops=200");
    ASSERT_TRUE(d);
    EXPECT_EQ(domain::format_disk_limits(*d), "bps=10485760,iops=200");
    EXPECT_EQ(domain::format_disk_limits(domain::parse_disk_limits("none").value()), "none");
    EXPECT_FALSE(domain::parse_disk_limits("iops-burst=10"));  // a burst without its rate
    EXPECT_FALSE(domain::parse_disk_limits("pps=10"));
    EXPECT_FALSE(domain::parse_disk_option("/x.img,bps-burst=1M"));
}

TEST(NetOptions, DerivedMacsAreStableLocalUnicast) {
    const MacAddress a = derived_mac("web/net0"), b = derived_mac("web/net0"),
                     c = derived_mac("web/net1");
    EXPECT_EQ(a, b);
    EXPECT_NE(a, c);
    EXPECT_EQ(a[0] & 3, 2);  // locally administered, unicast
}

TEST(VsockOptions, ParsesAndRefuses) {
    auto v = domain::parse_vsock_option("cid=42,socket=/tmp/x.sock");
    ASSERT_TRUE(v);
    EXPECT_EQ(v->cid, 42u);
    for (const char* bad : {"cid=2,socket=/tmp/a", "cid=x,socket=/tmp/a", "socket=/tmp/a", "cid=5",
                            "cid=5,socket=/tmp/a,speed=1"})
        EXPECT_FALSE(domain::parse_vsock_option(bad)) << bad;
    EXPECT_FALSE(domain::parse_vsock_option("cid=5,socket=/" + std::string(120, 'a')));
}

// --- virtio-net --------------------------------------------------------------------------

struct NetRig {
    NetRig(uint64_t features = kFeatureEventIdx | kNetFMrgRxbuf | kNetFMac, IoLimits rx = {},
           IoLimits tx = {}) {
        auto [b, w] = socketpair_backend().value();
        wire = std::move(w);
        device = NetDevice::create(b, derived_mac("t"), 1500, 64, rx, tx).value();
        rig = std::make_unique<Rig>(device, 2);
        EXPECT_EQ(rig->start(features) & kStatusDriverOk, kStatusDriverOk);
    }
    std::shared_ptr<NetDevice> device;
    std::unique_ptr<Rig> rig;
    UniqueFd wire;
};

TEST(Net, TransmitsFramesToTheBackendWithoutTheirHeader) {
    NetRig n;
    const uint64_t buf = n.rig->alloc(4096);
    std::vector<uint8_t> frame(kNetHdrSize + 60);
    for (size_t i = 0; i < frame.size(); ++i)
        frame[i] = static_cast<uint8_t>(i);
    ASSERT_TRUE(put(n.rig->mem, buf, frame.data(), frame.size()));
    // Header and frame in two buffers, as Linux may lay them out.
    Buf bufs[] = {{buf, kNetHdrSize}, {buf + kNetHdrSize, 60}};
    n.rig->dqs[1]->add(bufs);
    n.rig->drv.notify(1);
    ASSERT_TRUE(n.rig->wait_used(1));
    uint8_t got[2048];
    const ssize_t len = ::recv(n.wire.get(), got, sizeof got, MSG_DONTWAIT);
    ASSERT_EQ(len, static_cast<ssize_t>(frame.size()));  // the socket back-end keeps the header
    EXPECT_EQ(std::memcmp(got, frame.data(), frame.size()), 0);
    EXPECT_EQ(n.device->stats().tx_frames, 1u);
}

// Transmit limited to 100 frames a second (the bucket starts empty): 30 frames take about 0.3 s,
// on the limit's timer; the metrics count the stops and their time. Lifting the limit at run
// time lets the rest go at once.
TEST(Net, ATransmitLimitPacesFramesAndCanBeLiftedAtRunTime) {
    NetRig n(kFeatureEventIdx | kNetFMrgRxbuf | kNetFMac, {}, IoLimits{0, 100, 0, 0});
    const uint64_t buf = n.rig->alloc(4096);
    std::vector<uint8_t> frame(kNetHdrSize + 60, 0x11);
    ASSERT_TRUE(put(n.rig->mem, buf, frame.data(), frame.size()));
    auto send = [&](int count) {
        for (int i = 0; i < count; ++i) {
            Buf one[] = {{buf, static_cast<uint32_t>(frame.size())}};
            n.rig->dqs[1]->add(one);
        }
        n.rig->drv.notify(1);
    };
    auto sent = [&] { return n.device->stats().tx_frames; };
    const auto t0 = std::chrono::steady_clock::now();
    send(30);
    EXPECT_TRUE(run_until(*n.rig->loop, [&] { return sent() == 30; }));
    const double took =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_GE(took, 0.28);  // never faster than the limit
    EXPECT_LT(took, 1.5);
    const NetStats st = n.device->stats();
    EXPECT_GT(st.tx_throttled, 0u);
    EXPECT_GE(st.tx_throttled_ns, 200'000'000u);
    // 40 more at 1 frame a second would take 40 s: lifted, they go at once.
    n.device->set_limits({}, IoLimits{0, 1, 0, 0});
    send(40);
    EXPECT_TRUE(run_until(*n.rig->loop, [&] { return sent() >= 31; }));
    EXPECT_EQ(n.device->limits().second.ops, 1u);
    n.device->set_limits({}, {});
    const auto t1 = std::chrono::steady_clock::now();
    EXPECT_TRUE(run_until(*n.rig->loop, [&] { return sent() == 70; }));
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count(), 0.5);
}

// Receive limited to 100 kB/s: 30 frames of 1000 bytes take about 0.3 s; the back-end's frames
// wait in its socket meanwhile (none is dropped).
TEST(Net, AReceiveLimitPacesBytes) {
    NetRig n(kFeatureEventIdx | kNetFMrgRxbuf | kNetFMac, IoLimits{100000, 0, 0, 0}, {});
    for (int i = 0; i < 32; ++i) {
        Buf one[] = {{n.rig->alloc(2048), 2048, true}};
        n.rig->dqs[0]->add(one);
    }
    n.rig->drv.notify(0);
    std::vector<uint8_t> frame(kNetHdrSize + 1000, 0xab);
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 30; ++i)
        ASSERT_EQ(::send(n.wire.get(), frame.data(), frame.size(), 0),
                  static_cast<ssize_t>(frame.size()));
    EXPECT_TRUE(run_until(*n.rig->loop, [&] { return n.device->stats().rx_frames == 30; }));
    const double took =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_GE(took, 0.25);  // 29 debts of 10 ms
    EXPECT_LT(took, 1.5);
    EXPECT_EQ(n.device->stats().rx_dropped, 0u);
    EXPECT_GT(n.device->stats().rx_throttled, 0u);
}

TEST(Net, MergeableReceiveSpreadsALargeFrameOverBuffers) {
    NetRig n;
    uint64_t bufs[8];
    for (auto& b : bufs) {
        b = n.rig->alloc(4096);
        Buf one[] = {{b, 1024, true}};
        n.rig->dqs[0]->add(one);
    }
    n.rig->drv.notify(0);
    std::vector<uint8_t> frame(kNetHdrSize + 1514, 0xab);  // a full MTU-sized frame
    ASSERT_EQ(::send(n.wire.get(), frame.data(), frame.size(), 0),
              static_cast<ssize_t>(frame.size()));
    size_t total = 0, count = 0;
    while (total < frame.size()) {
        auto u = n.rig->wait_used(0);
        ASSERT_TRUE(u);
        total += u->len;
        ++count;
    }
    EXPECT_EQ(count, 2u);  // 1526 bytes in 1024-byte buffers
    uint16_t num_buffers = 0;
    ASSERT_TRUE(get(n.rig->mem, bufs[0] + 10, &num_buffers, 2));
    EXPECT_EQ(num_buffers, 2);
    // Larger than the MTU (the guest has no receive GSO): dropped, counted, no buffer used.
    std::vector<uint8_t> big(kNetHdrSize + 4000, 0xcd);
    ASSERT_EQ(::send(n.wire.get(), big.data(), big.size(), 0), static_cast<ssize_t>(big.size()));
    EXPECT_TRUE(run_until(*n.rig->loop, [&] { return n.device->stats().rx_dropped == 1; }));
    // The next frame uses the buffers left over, none popped twice.
    ASSERT_EQ(::send(n.wire.get(), frame.data(), 100, 0), 100);
    auto u = n.rig->wait_used(0);
    ASSERT_TRUE(u);
    EXPECT_EQ(u->len, 100u);
}

TEST(Net, WithoutReceiveBuffersFramesWaitAndFlowWhenBuffersCome) {
    NetRig n;
    std::vector<uint8_t> frame(kNetHdrSize + 64, 1);
    for (int i = 0; i < 3; ++i)
        ASSERT_EQ(::send(n.wire.get(), frame.data(), frame.size(), 0),
                  static_cast<ssize_t>(frame.size()));
    for (int i = 0; i < 10; ++i)
        n.rig->loop->poll_once(5);  // nothing to put them in: the loop must not spin on them
    EXPECT_EQ(n.device->stats().rx_frames, 0u);
    for (int i = 0; i < 3; ++i) {
        Buf one[] = {{n.rig->alloc(4096), 2048, true}};
        n.rig->dqs[0]->add(one);
    }
    n.rig->drv.notify(0);
    for (int i = 0; i < 3; ++i)
        ASSERT_TRUE(n.rig->wait_used(0));
    EXPECT_EQ(n.device->stats().rx_frames, 3u);
}

TEST(Net, ReadableReceiveBufferIsADriverError) {
    NetRig n;
    Buf bad[] = {{n.rig->alloc(4096), 2048, false}};
    n.rig->dqs[0]->add(bad);
    n.rig->drv.notify(0);
    std::vector<uint8_t> frame(kNetHdrSize + 64, 1);
    ASSERT_EQ(::send(n.wire.get(), frame.data(), frame.size(), 0),
              static_cast<ssize_t>(frame.size()));
    EXPECT_TRUE(run_until(
        *n.rig->loop, [&] { return n.rig->needs_reset(); }, std::chrono::seconds(5)));
}

// --- virtio-vsock ------------------------------------------------------------------------

// A host program listening on `path` (for a guest's connections to a host port).
UniqueFd listen_unix(const std::string& path, int backlog) {
    ::unlink(path.c_str());
    UniqueFd s(::socket(AF_UNIX, SOCK_STREAM, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strcpy(a.sun_path, path.c_str());
    EXPECT_EQ(::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(s.get(), backlog), 0);
    return s;
}

// The guest (CID 9) sends one packet from `src_port` to the host's port 77 on the transmit
// queue and waits for the device to use it.
::testing::AssertionResult send_vsock(Rig& rig, uint16_t op, uint32_t src_port,
                                      std::string_view payload = {}) {
    VsockHeader h{};
    h.src_cid = 9;
    h.dst_cid = kVsockHostCid;
    h.src_port = src_port;
    h.dst_port = 77;
    h.len = static_cast<uint32_t>(payload.size());
    h.type = 1;
    h.op = op;
    h.buf_alloc = 65536;
    const uint64_t at = rig.alloc(4096);
    if (!put(rig.mem, at, &h, sizeof h) ||
        !put(rig.mem, at + sizeof h, payload.data(), payload.size()))
        return ::testing::AssertionFailure() << "cannot write the packet";
    Buf b[] = {{at, static_cast<uint32_t>(sizeof h + payload.size())}};
    rig.dqs[1]->add(b);
    rig.drv.notify(1);
    if (!rig.wait_used(1)) return ::testing::AssertionFailure() << "the device did not use it";
    return ::testing::AssertionSuccess();
}

TEST(Vsock, GuestConnectsToAHostPortAndSendsData) {
    const std::string path = "/tmp/vireo-unit-vsock-" + std::to_string(::getpid());
    ::unlink(path.c_str());
    auto listener = VsockListener::create({9, path}).value();
    UniqueFd host = listen_unix(path + "_77", 1);

    auto dev = std::make_shared<VsockDevice>(listener);
    Rig rig(dev, 3);
    ASSERT_EQ(rig.start(kFeatureEventIdx) & kStatusDriverOk, kStatusDriverOk);
    for (int i = 0; i < 4; ++i) {
        Buf rx[] = {{rig.alloc(4096), 4096, true}};
        rig.dqs[0]->add(rx);
    }
    rig.drv.notify(0);
    ASSERT_TRUE(send_vsock(rig, 1, 1234));  // REQUEST
    auto resp = rig.wait_used(0);           // the RESPONSE: a bare header
    ASSERT_TRUE(resp);
    EXPECT_EQ(resp->len, sizeof(VsockHeader));
    UniqueFd conn(::accept(host.get(), nullptr, nullptr));
    ASSERT_TRUE(conn);
    ASSERT_TRUE(send_vsock(rig, 5, 1234, "hello, host"));  // RW
    char got[64] = {};
    ASSERT_EQ(::recv(conn.get(), got, sizeof got, 0), 11);
    EXPECT_STREQ(got, "hello, host");
    EXPECT_EQ(dev->stats().connections, 1u);
    ::unlink((path + "_77").c_str());
}

TEST(MemoryPool, TakesUpToItsLimitAndCountsRefusals) {
    MemoryPool pool(10000);
    EXPECT_TRUE(pool.take(6000));
    EXPECT_FALSE(pool.take(4001));
    EXPECT_TRUE(pool.take(4000));
    EXPECT_FALSE(pool.take(1));
    EXPECT_FALSE(pool.take(UINT64_MAX));  // no wrap-around
    EXPECT_EQ(pool.refused(), 3u);
    pool.give(7000);
    EXPECT_EQ(pool.used(), 3000u);
    EXPECT_EQ(pool.high_water(), 10000u);
    {
        PoolCharge c(&pool);
        EXPECT_TRUE(c.set(5000));
        EXPECT_FALSE(c.set(8000));  // refused: what it held stays held
        EXPECT_EQ(c.held(), 5000u);
        EXPECT_TRUE(c.set(1000));
        EXPECT_EQ(pool.used(), 4000u);
    }
    EXPECT_EQ(pool.used(), 3000u);  // given back when the charge went
    PoolCharge none;
    EXPECT_TRUE(none.set(UINT64_MAX));  // no pool: nothing to take from
}

// The domain's VMM pool bounds vsock connections: with room for three, the guest's fourth
// REQUEST gets a reset, is counted, and the three go on; closing one makes room again.
TEST(Vsock, ConnectionsBeyondTheVmmPoolAreRefused) {
    const std::string path = "/tmp/vireo-unit-vsock-pool-" + std::to_string(::getpid());
    ::unlink(path.c_str());
    auto listener = VsockListener::create({9, path}).value();
    UniqueFd host = listen_unix(path + "_77", 8);
    auto pool = std::make_shared<MemoryPool>(3 * VsockDevice::kConnCost + 100);
    auto dev = std::make_shared<VsockDevice>(listener, pool);
    Rig rig(dev, 3);
    ASSERT_EQ(rig.start(kFeatureEventIdx) & kStatusDriverOk, kStatusDriverOk);
    for (int i = 0; i < 16; ++i) {
        Buf rx[] = {{rig.alloc(4096), 4096, true}};
        rig.dqs[0]->add(rx);
    }
    rig.drv.notify(0);
    for (uint32_t port = 1000; port < 1004; ++port)
        ASSERT_TRUE(send_vsock(rig, 1, port));  // REQUEST
    EXPECT_EQ(dev->stats().connections, 3u);
    EXPECT_EQ(dev->stats().pool_refused, 1u);
    EXPECT_EQ(pool->used(), 3 * VsockDevice::kConnCost);
    // The refused one never reached the host program: three connections wait to be accepted.
    ASSERT_EQ(::fcntl(host.get(), F_SETFL, O_NONBLOCK), 0);
    int accepted = 0;
    for (UniqueFd a; (a = UniqueFd(::accept(host.get(), nullptr, nullptr)));)
        ++accepted;
    EXPECT_EQ(accepted, 3);
    ASSERT_TRUE(send_vsock(rig, 3, 1000));  // RST: the guest closes one
    ASSERT_TRUE(send_vsock(rig, 1, 1004));  // and the next fits
    EXPECT_EQ(dev->stats().connections, 4u);
    EXPECT_EQ(dev->stats().pool_refused, 1u);
    EXPECT_EQ(pool->high_water(), 3 * VsockDevice::kConnCost);
    ::unlink((path + "_77").c_str());
}

TEST(Vsock, HostHandshakeIsRefusedWhenMalformed) {
    const std::string path = "/tmp/vireo-unit-vsock-hs-" + std::to_string(::getpid());
    ::unlink(path.c_str());
    auto listener = VsockListener::create({9, path}).value();
    auto dev = std::make_shared<VsockDevice>(listener);
    Rig rig(dev, 3);
    UniqueFd c(::socket(AF_UNIX, SOCK_STREAM, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strcpy(a.sun_path, path.c_str());
    ASSERT_EQ(::connect(c.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    const char bad[] = "HELLO 5\n";
    ASSERT_EQ(::send(c.get(), bad, sizeof bad - 1, 0), static_cast<ssize_t>(sizeof bad - 1));
    char buf[64] = {};
    ssize_t n = 0;
    run_until(*rig.loop, [&] {
        n = ::recv(c.get(), buf, sizeof buf, MSG_DONTWAIT);
        return n >= 0;
    });
    EXPECT_NE(std::string(buf).find("ERROR"), std::string::npos);
    EXPECT_TRUE(VsockListener::create({9, path}).error().message().find("already exists") !=
                std::string::npos);
}

// --- virtio-balloon ----------------------------------------------------------------------

TEST(Balloon, InflateReturnsPagesAndStatsArrive) {
    auto dev = std::make_shared<BalloonDevice>();
    Rig rig(dev, 3);
    ASSERT_EQ(rig.start(kFeatureEventIdx | kBalloonFStatsVq) & kStatusDriverOk, kStatusDriverOk);
    // Touch two pages, then hand them over.
    const uint64_t page = rig.alloc(2 * 4096);
    std::vector<uint8_t> ones(2 * 4096, 1);
    ASSERT_TRUE(put(rig.mem, page, ones.data(), ones.size()));
    const uint32_t pfns[] = {static_cast<uint32_t>(page >> 12),
                             static_cast<uint32_t>((page >> 12) + 1), 0xfffffff0u /* not RAM */};
    const uint64_t list = rig.alloc(4096);
    ASSERT_TRUE(put(rig.mem, list, pfns, sizeof pfns));
    Buf b[] = {{list, sizeof pfns}};
    rig.dqs[0]->add(b);
    rig.drv.notify(0);
    ASSERT_TRUE(rig.wait_used(0));
    uint8_t v = 9;
    ASSERT_TRUE(get(rig.mem, page + 4096, &v, 1));
    EXPECT_EQ(v, 0);  // given back: reads as a fresh page
    EXPECT_EQ(dev->info().inflated_pages, 2u);
    // Statistics: tag 4 (free-memory) = 12345.
    uint8_t stat[10] = {4, 0};
    const uint64_t val = 12345;
    std::memcpy(stat + 2, &val, 8);
    const uint64_t s = rig.alloc(4096);
    ASSERT_TRUE(put(rig.mem, s, stat, sizeof stat));
    Buf sb[] = {{s, 10}};
    rig.dqs[2]->add(sb);
    rig.drv.notify(2);
    EXPECT_TRUE(run_until(*rig.loop, [&] { return dev->info().stats_updates == 1; }));
    EXPECT_EQ(dev->info().stats.at("free-memory"), 12345u);
    EXPECT_TRUE(dev->request_stats());  // the buffer goes back to the driver
    EXPECT_TRUE(rig.dqs[2]->next_used());
    // Target and actual.
    dev->set_target_bytes(64 << 20);
    uint32_t num_pages = 0;
    rig.transport->read(0x100, std::span(reinterpret_cast<uint8_t*>(&num_pages), 4));
    EXPECT_EQ(num_pages, (64u << 20) / 4096);
    rig.drv.write32(0x104, 1000);
    EXPECT_EQ(dev->info().actual_pages, 1000u);
}

TEST(Balloon, TheHeldStatisticsBufferAndTheSizesMoveThroughASnapshot) {
    auto dev = std::make_shared<BalloonDevice>();
    Rig rig(dev, 3);
    ASSERT_EQ(rig.start(kFeatureEventIdx | kBalloonFStatsVq) & kStatusDriverOk, kStatusDriverOk);
    uint8_t stat[10] = {4, 0, 1};
    const uint64_t s = rig.alloc(4096);
    ASSERT_TRUE(put(rig.mem, s, stat, sizeof stat));
    Buf sb[] = {{s, 10}};
    rig.dqs[2]->add(sb);
    rig.drv.notify(2);
    ASSERT_TRUE(run_until(*rig.loop, [&] { return dev->info().stats_updates == 1; }));
    dev->set_target_bytes(64 << 20);
    rig.drv.write32(0x104, 1000);
    // The device holds the statistics buffer; a save gives it back to the queue.
    ASSERT_TRUE(rig.transport->prepare_save());
    snapshot::Encoder e;
    rig.transport->save(e);

    auto dev2 = std::make_shared<BalloonDevice>();
    auto t2 = MmioTransport::create(rig.mem, dev2, 0xd0001000).value();
    ASSERT_TRUE(t2->attach_loop(*rig.loop));
    snapshot::Decoder d(e.data(), "virtio-balloon");
    t2->restore(d);
    ASSERT_TRUE(d.finish()) << d.finish().error().message();
    EXPECT_EQ(dev2->info().target_pages, (64u << 20) / 4096);
    EXPECT_EQ(dev2->info().actual_pages, 1000u);
    uint32_t num_pages = 0;
    t2->read(0x100, std::span(reinterpret_cast<uint8_t*>(&num_pages), 4));
    EXPECT_EQ(num_pages, (64u << 20) / 4096);
    // The restored device takes the same buffer again (the restore wakes its queues) and can
    // hand it back to the driver for fresh statistics.
    ASSERT_TRUE(run_until(*rig.loop, [&] { return dev2->info().stats_updates == 1; }));
    EXPECT_TRUE(dev2->request_stats());
    EXPECT_TRUE(rig.dqs[2]->next_used());
}

// --- API ---------------------------------------------------------------------------------

TEST(Api, StructuredErrorsAndDispatch) {
    std::map<std::string, api::Method> methods;
    methods["echo"] = [](const api::Json& p) -> Result<api::Json> { return p; };
    methods["typed"] = [](const api::Json& p) -> Result<api::Json> {
        return api::Json(p.at("n").get<int>() + 1);  // a wrong type throws: invalid-params
    };
    methods["refuse"] = [](const api::Json&) -> Result<api::Json> {
        return fail(ErrorCode::BadState, "no");
    };
    methods["missing"] = [](const api::Json& p) -> Result<api::Json> {
        VIREO_TRY_ASSIGN(const uint64_t n, api::uint_param(p, "n", 9));
        return api::Json(n);
    };
    methods["gone"] = [](const api::Json&) -> Result<api::Json> {
        return fail(ErrorCode::NotFound, "no such domain");
    };
    methods["broken"] = [](const api::Json&) -> Result<api::Json> {
        return fail_errno(EIO, "writing");
    };
    auto call = [&](std::string_view line) {
        return api::Json::parse(api::handle_request(methods, line));
    };
    EXPECT_EQ(call(R"({"id":3,"method":"echo","params":{"a":1}})")["result"]["a"], 1);
    EXPECT_EQ(call(R"({"id":3,"method":"echo"})")["id"], 3);
    EXPECT_EQ(call("{nope")["error"]["code"], "parse-error");
    EXPECT_EQ(call("[1,2]")["error"]["code"], "invalid-request");
    EXPECT_EQ(call(R"({"method":5})")["error"]["code"], "invalid-request");
    EXPECT_EQ(call(R"({"method":"zzz"})")["error"]["code"], "unknown-method");
    EXPECT_EQ(call(R"({"method":"echo","params":[1]})")["error"]["code"], "invalid-params");
    EXPECT_EQ(call(R"({"method":"typed","params":{"n":"x"}})")["error"]["code"], "invalid-params");
    EXPECT_EQ(call(R"({"method":"typed","params":{"n":41}})")["result"], 42);
    EXPECT_EQ(call(R"({"method":"refuse"})")["error"]["code"], "bad-state");
    EXPECT_EQ(call(R"({"method":"refuse"})")["error"]["message"], "no");
    // ErrorCode -> API error code, in one place (api::api_error_code).
    EXPECT_EQ(call(R"({"method":"missing"})")["error"]["code"], "invalid-params");
    EXPECT_EQ(call(R"({"method":"missing","params":{"n":10}})")["error"]["code"], "invalid-params");
    EXPECT_EQ(call(R"({"method":"missing","params":{"n":7}})")["result"], 7);
    EXPECT_EQ(call(R"({"method":"gone"})")["error"]["code"], "not-found");
    EXPECT_EQ(call(R"({"method":"broken"})")["error"]["code"], "failed");
    EXPECT_EQ(call(R"({"method":"version"})")["result"]["api"], api::kApiVersion);
}

TEST(Api, ServerAnswersOverItsSocketAndRefusesALiveOne) {
    const std::string path = "/tmp/vireo-unit-api-" + std::to_string(::getpid());
    ::unlink(path.c_str());
    auto server = api::Server::create(path).value();
    server->add("ping", [](const api::Json&) { return api::Json("pong"); });
    ASSERT_TRUE(server->start());
    auto r = api::call(path, "ping");
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_EQ(*r, "pong");
    EXPECT_FALSE(api::call(path, "nope"));
    EXPECT_FALSE(api::Server::create(path));  // live: refused
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    server.reset();
    EXPECT_NE(::access(path.c_str(), F_OK), 0);  // removed
}

}  // namespace
}  // namespace vireo::virtio
