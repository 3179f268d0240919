// The device path alone: a driver-side harness (the same one the unit tests use) submits
// virtio-blk read requests as fast as the device completes them, through vireo's split
// virtqueue, request parser and io_uring back-end, on the calling thread's event loop. Guest
// buffers are 4 KiB segments in indirect tables, as a Linux guest lays out O_DIRECT I/O.
// Compared in the same run with the host reading the same image with pread() into one
// buffer: sequential (large requests) and random 4 KiB reads.
#include "blk_path.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <random>
#include <vector>

#include "base/log.hpp"
#include "stats.hpp"
#include "virtio/blk/device.hpp"
#include "virtio/testing/driver.hpp"
#include "virtio/virtio.hpp"

namespace vireo::bench {

namespace {

using Clock = std::chrono::steady_clock;
using memory::Gpa;

struct Figure {
    double bytes_per_s = 0;
    double requests_per_s = 0;
};

// The host's own figure: pread() of `request` bytes, sequential or at random aligned offsets,
// into `buffers` rotating buffers (as much memory as the device path's requests in flight).
Figure host_read(int fd, uint64_t image_size, uint64_t request, bool random, double seconds,
                 unsigned buffers = 1) {
    std::vector<uint8_t> mem(request * buffers, 1);
    std::mt19937_64 rng(42);
    uint64_t off = 0, bytes = 0, n = 0;
    const auto start = Clock::now();
    const auto end = start + std::chrono::duration<double>(seconds);
    while ((n & 15) != 0 || Clock::now() < end) {
        if (random) off = (rng() % (image_size / request)) * request;
        uint8_t* buf = mem.data() + (n % buffers) * request;
        const ssize_t got = ::pread(fd, buf, request, static_cast<off_t>(off));
        if (got <= 0) break;
        bytes += static_cast<uint64_t>(got);
        ++n;
        off += request;
        if (off + request > image_size) off = 0;
    }
    const double secs = std::chrono::duration<double>(Clock::now() - start).count();
    return {static_cast<double>(bytes) / secs, static_cast<double>(n) / secs};
}

// vireo's device path: `depth` requests in flight through queue + parser + io_uring.
// With `limits`, the device is rate-limited and the figure counts only after `warmup` seconds
// (the buckets start empty; the first request's wait and the last one's debt are not the rate).
Result<Figure> device_read(const std::shared_ptr<virtio::DiskImage>& disk, uint64_t request,
                           uint64_t segment, unsigned depth, bool random, double seconds,
                           const IoLimits& limits = {}, double warmup = 0) {
    constexpr uint16_t kQueueSize = 256;
    const uint64_t rings = 0, tables = 0x10000, headers = 0x80000, data = 0x100000;
    const uint64_t ram = data + uint64_t{depth} * request;
    VIREO_TRY_ASSIGN(auto mem, memory::GuestMemory::create_flat((ram + 0xfffff) & ~0xfffffull));
    VIREO_TRY_ASSIGN(auto dev, virtio::BlockDevice::create(disk));
    if (limits.any()) dev->set_limits(limits);
    VIREO_TRY_ASSIGN(auto transport, virtio::MmioTransport::create(mem, dev, 0));
    VIREO_TRY_ASSIGN(auto loop, EventLoop::create("bench"));
    VIREO_TRY(transport->attach_loop(*loop));
    // The guest's side of the interrupt: wakes the loop when requests complete.
    VIREO_TRY(loop->add(transport->irq_fd(), [fd = transport->irq_fd()] {
        uint64_t v;
        (void)!::read(fd, &v, sizeof v);
    }));
    virtio::testing::DriverQueue dq(mem, rings, kQueueSize);
    virtio::testing::MmioDriver drv(*transport);
    virtio::testing::DriverQueue* qs[] = {&dq};
    if ((drv.start(virtio::kFeatureIndirectDesc | virtio::kFeatureEventIdx, qs) &
         virtio::kStatusDriverOk) == 0)
        return fail(ErrorCode::BadState, "the device did not start");
    // Pre-touch the buffers (a running guest's memory is resident).
    const auto all = mem.slice(Gpa(0), mem.total_size()).value().iov();
    std::memset(all.iov_base, 0, all.iov_len);

    const uint64_t sectors = disk->size() / 512;
    const uint64_t per_request = request / 512;
    std::mt19937_64 rng(42);
    uint64_t next_sector = 0;
    std::vector<unsigned> slot_of_head(kQueueSize);
    std::vector<virtio::testing::Buf> bufs;
    auto submit = [&](unsigned slot) {
        uint64_t sector = next_sector;
        if (random) {
            sector = (rng() % (sectors / per_request)) * per_request;
        } else {
            next_sector += per_request;
            if (next_sector + per_request > sectors) next_sector = 0;
        }
        const uint64_t hdr = headers + 32 * uint64_t{slot};
        struct {
            uint32_t type, reserved;
            uint64_t sector;
        } h{virtio::kBlkIn, 0, sector};
        (void)mem.write_obj(Gpa(hdr), h);
        bufs.clear();
        bufs.push_back({hdr, 16, false});
        const uint64_t base = data + uint64_t{slot} * request;
        for (uint64_t off = 0; off < request; off += segment)
            bufs.push_back(
                {base + off, static_cast<uint32_t>(std::min(segment, request - off)), true});
        bufs.push_back({hdr + 16, 1, true});
        const uint16_t head = dq.add(bufs, tables + uint64_t{slot} * 16 * 260);
        slot_of_head[head] = slot;
    };
    for (unsigned s = 0; s < depth; ++s)
        submit(s);
    transport->process_queue(0);

    uint64_t done = 0;
    auto start = Clock::now();
    const auto end = start + std::chrono::duration<double>(warmup + seconds);
    const auto counted_from = start + std::chrono::duration<double>(warmup);
    bool counting = warmup == 0;
    bool stop = false;
    while (!stop) {
        loop->poll_once(100);
        if (transport->status() & virtio::kStatusNeedsReset)
            return fail(ErrorCode::BadState, "the device refused a request (needs reset)");
        if (Clock::now() > end + std::chrono::seconds(5))
            return fail(ErrorCode::System, "requests stopped completing");
        bool any = false;
        if (!counting && Clock::now() >= counted_from) {
            counting = true;
            done = 0;
            start = Clock::now();
        }
        while (auto u = dq.next_used()) {
            any = true;
            ++done;
            if (mem.read_obj<uint8_t>(Gpa(headers + 32 * uint64_t{slot_of_head[u->id]} + 16))
                    .value_or(1) != virtio::kBlkOk)
                return fail(ErrorCode::System, "a read request failed");
            if (Clock::now() >= end) {
                stop = true;
                continue;
            }
            submit(slot_of_head[u->id]);
        }
        if (any && !stop) transport->process_queue(0);  // what the guest's notify would do
    }
    const double secs = std::chrono::duration<double>(Clock::now() - start).count();
    const double n = static_cast<double>(done);
    return Figure{n * static_cast<double>(request) / secs, n / secs};
}

}  // namespace

int run_blk_path(const BlkPathOptions& o) {
    log::set_level(log::Level::Warn);
    std::string path = o.image;
    bool temporary = false;
    if (path.empty()) {
        const char* tmp = std::getenv("TMPDIR");
        path = std::string(tmp ? tmp : "/tmp") + "/vireo-bench-blk.img";
        int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0) {
            std::perror(path.c_str());
            return 1;
        }
        std::vector<uint8_t> chunk(1 << 20);
        for (size_t i = 0; i < chunk.size(); ++i)
            chunk[i] = static_cast<uint8_t>(i * 31 + 7);
        for (unsigned i = 0; i < o.size_mib; ++i)
            if (::write(fd, chunk.data(), chunk.size()) != static_cast<ssize_t>(chunk.size())) {
                std::perror("write");
                return 1;
            }
        ::close(fd);
        temporary = true;
    }
    virtio::DiskOptions disk_options{path, true, "", 256, {}};
    disk_options.limits.bps = o.limit_bps;
    auto disk = virtio::DiskImage::open(disk_options);
    if (!disk) {
        std::fprintf(stderr, "%s\n", disk.error().message().c_str());
        return 1;
    }
    const uint64_t size = (*disk)->size();
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    // Warm the page cache so that both sides read the same cached data.
    (void)host_read(fd, size, 1 << 20, false, 0.5);

    struct Case {
        const char* name;
        uint64_t request;
        bool random;
        unsigned depth;
    };
    const Case cases[] = {
        {"seq-read", uint64_t{o.request_kib} * 1024, false, o.depth},
        {"rand-4k-qd1", 4096, true, 1},
        {"rand-4k-qd32", 4096, true, o.depth},
    };
    std::printf(
        "virtio-blk device path vs host pread, image %s (%llu MiB, page cache), %u runs "
        "x %.1f s, medians\n",
        path.c_str(), static_cast<unsigned long long>(size >> 20), o.runs, o.seconds);
    std::printf("%-14s %12s %12s %12s %12s %8s\n", "case", "host MiB/s", "host req/s",
                "vireo MiB/s", "vireo req/s", "ratio");
    std::string json = "{\"bench\":\"blk-path\",\"cases\":[";
    int status = 0;
    for (const auto& c : cases) {
        std::vector<double> hb, hr, vb, vr;
        for (unsigned r = 0; r < o.runs; ++r) {
            auto h = host_read(fd, size, c.request, c.random, o.seconds, c.depth);
            auto v = device_read(*disk, c.request, uint64_t{o.segment_kib} * 1024, c.depth,
                                 c.random, o.seconds);
            if (!v) {
                std::fprintf(stderr, "%s: %s\n", c.name, v.error().message().c_str());
                status = 1;
                break;
            }
            hb.push_back(h.bytes_per_s);
            hr.push_back(h.requests_per_s);
            vb.push_back(v->bytes_per_s);
            vr.push_back(v->requests_per_s);
        }
        if (hb.empty() || vb.size() != hb.size()) continue;
        const double ratio = median(vb) / median(hb);
        std::printf("%-14s %12.0f %12.0f %12.0f %12.0f %7.2fx\n", c.name, median(hb) / 1048576,
                    median(hr), median(vb) / 1048576, median(vr), ratio);
        json += fmt::format(
            "{}{{\"case\":\"{}\",\"host_bytes_per_s\":{:.0f},\"host_req_per_s\":{:.0f},"
            "\"vireo_bytes_per_s\":{:.0f},\"vireo_req_per_s\":{:.0f},\"ratio\":{:.3f}}}",
            json.back() == '[' ? "" : ",", c.name, median(hb), median(hr), median(vb), median(vr),
            ratio);
    }
    json += "]";
    if (o.accuracy) {
        // The limiter's accuracy: the rate reached in steady state (after a second) against
        // the rate set, at three rates each of bytes (sequential 64 KiB reads) and operations
        // (random 4 KiB reads, 32 in flight).
        struct Limited {
            const char* name;
            IoLimits limits;
            uint64_t request;
            bool random;
        };
        const Limited limited[] = {
            {"bps=4M", {.bps = 4 << 20}, 64 << 10, false},
            {"bps=40M", {.bps = 40 << 20}, 64 << 10, false},
            {"bps=400M", {.bps = 400 << 20}, 64 << 10, false},
            {"iops=200", {.ops = 200}, 4096, true},
            {"iops=2000", {.ops = 2000}, 4096, true},
            {"iops=20000", {.ops = 20000}, 4096, true},
        };
        std::printf("\nlimiter accuracy (steady state: %.1f s after 1 s, median of %u)\n",
                    o.seconds, o.runs);
        std::printf("%-12s %14s %14s %9s\n", "limit", "set", "reached", "error");
        json += ",\"accuracy\":[";
        for (const auto& c : limited) {
            std::vector<double> got;
            for (unsigned r = 0; r < o.runs; ++r) {
                auto v = device_read(*disk, c.request, uint64_t{o.segment_kib} * 1024, o.depth,
                                     c.random, o.seconds, c.limits, 1.0);
                if (!v) {
                    std::fprintf(stderr, "%s: %s\n", c.name, v.error().message().c_str());
                    status = 1;
                    break;
                }
                got.push_back(c.limits.bps != 0 ? v->bytes_per_s : v->requests_per_s);
            }
            if (got.empty()) continue;
            const double set = static_cast<double>(c.limits.bps != 0 ? c.limits.bps : c.limits.ops);
            const double reached = median(got);
            std::printf("%-12s %14.0f %14.0f %+8.2f%%\n", c.name, set, reached,
                        100.0 * (reached - set) / set);
            json += fmt::format("{}{{\"limit\":\"{}\",\"set\":{:.0f},\"reached\":{:.0f}}}",
                                json.back() == '[' ? "" : ",", c.name, set, reached);
        }
        json += "]";
    }
    if (o.limit_cost) {
        // What a limit costs where it never waits: bps and iops set far above any rate reached,
        // so every request goes through both buckets. A run without and one with it alternate
        // (their order too); each pair's ratio is one sample: the machine's drift from run to
        // run, larger than the cost on a noisy host, cancels within a pair.
        const IoLimits far{.bps = uint64_t{1} << 40, .ops = uint64_t{1} << 40};
        std::printf(
            "\nrate limit's cost: bps=1T,iops=1T vs none, %u alternating pairs x %.1f s; "
            "per-pair change of req/s\n",
            o.runs, o.seconds);
        std::printf("%-14s %12s %12s %9s %9s %9s\n", "case", "none req/s", "limit req/s", "median",
                    "q1", "q3");
        json += ",\"limit_cost\":[";
        for (const auto& c : cases) {
            std::vector<double> without, with, change;
            for (unsigned r = 0; r < o.runs && status == 0; ++r) {
                std::optional<Figure> v[2];
                for (int i = 0; i < 2 && status == 0; ++i) {
                    const bool limited = (i + static_cast<int>(r)) % 2 == 1;
                    auto f = device_read(*disk, c.request, uint64_t{o.segment_kib} * 1024, c.depth,
                                         c.random, o.seconds, limited ? far : IoLimits{});
                    if (!f) {
                        std::fprintf(stderr, "%s: %s\n", c.name, f.error().message().c_str());
                        status = 1;
                    } else {
                        v[limited] = *f;
                    }
                }
                if (status != 0) break;
                without.push_back(v[0]->requests_per_s);
                with.push_back(v[1]->requests_per_s);
                change.push_back(100.0 * (v[1]->requests_per_s / v[0]->requests_per_s - 1));
            }
            if (change.empty()) continue;
            std::printf("%-14s %12.0f %12.0f %+8.2f%% %+8.2f%% %+8.2f%%\n", c.name, median(without),
                        median(with), median(change), quantile(change, 0.25),
                        quantile(change, 0.75));
            json += fmt::format(
                "{}{{\"case\":\"{}\",\"without_req_per_s\":{:.0f},\"with_req_per_s\":{:.0f},"
                "\"median_change_pct\":{:.2f}}}",
                json.back() == '[' ? "" : ",", c.name, median(without), median(with),
                median(change));
        }
        json += "]";
    }
    json += "}";
    if (o.json) std::printf("%s\n", json.c_str());
    ::close(fd);
    if (temporary) ::unlink(path.c_str());
    return status;
}

}  // namespace vireo::bench
