#include "exits.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "base/log.hpp"
#include "guests/guest_blob.hpp"
#include "nvmm_loop.hpp"
#include "raw_kvm.hpp"
#include "sandbox/sandbox.hpp"
#include "vmm/flat_vm.hpp"

VIREO_GUEST(pio_loop)
VIREO_GUEST(mmio_loop)
VIREO_GUEST(cpuid_loop)

namespace vireo::bench {

namespace {

constexpr uint64_t kMmioAddr = 0xd0000000;
constexpr uint16_t kPort = 0x10;
constexpr uint64_t kCpuidPerReport = 1000;

struct Stats {
    double median = 0, min = 0, max = 0;
};

Stats stats(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    size_t n = v.size();
    double median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    return {median, v.front(), v.back()};
}

// A vireo machine running one loop guest; loop() drives `exits` exits through Vcpu::run().
class VireoLoop {
  public:
    static Result<VireoLoop> create(const hv::Hypervisor& hv, std::span<const uint8_t> image,
                                    const hv::Gprs& init, hv::ExitReason expect, bool user) {
        vmm::FlatVmConfig config;
        config.ring = user ? arch::x86::Ring::User : arch::x86::Ring::Kernel;
        VIREO_TRY_ASSIGN(auto vm, vmm::FlatVm::create(hv, image, config));
        VireoLoop loop(std::move(vm), expect);
        VIREO_TRY_ASSIGN(loop.vcpu_, loop.vm_.create_vcpu(0, init));
        return loop;
    }

    // With `confined`, on a new thread under a vCPU thread's filter (installed before the
    // clock starts).
    Result<uint64_t> loop(uint64_t exits, bool confined) {
        if (!confined) return loop(exits);
        Result<uint64_t> r = fail(ErrorCode::System, "not run");
        std::thread([&] {
            if (auto s = sandbox::install(ThreadClass::Vcpu); !s) {
                r = Unexpected{std::move(s).error()};
                return;
            }
            r = loop(exits);
        }).join();
        return r;
    }

    Result<uint64_t> loop(uint64_t exits) {
        auto t0 = std::chrono::steady_clock::now();
        for (uint64_t i = 0; i < exits;) {
            auto e = vcpu_->run();
            if (!e) return Unexpected{std::move(e).error()};
            if (e->reason == expect_) {
                ++i;
            } else if (e->reason != hv::ExitReason::Interrupted) {
                return fail(ErrorCode::System, "vireo loop: unexpected {} exit",
                            hv::to_string(e->reason));
            }
        }
        auto t1 = std::chrono::steady_clock::now();
        return static_cast<uint64_t>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count());
    }

  private:
    VireoLoop(vmm::FlatVm vm, hv::ExitReason expect) : vm_(std::move(vm)), expect_(expect) {}
    vmm::FlatVm vm_;
    std::unique_ptr<hv::Vcpu> vcpu_;
    hv::ExitReason expect_;
};

template <typename T>
T check(Result<T> r, const char* what) {
    if (!r) {
        log::error("{}: {}", what, r.error().message());
        std::exit(1);
    }
    return std::move(r).value();
}

}  // namespace

int run_exits(const ExitsOptions& o) {
    auto hv = check(hv::Hypervisor::open(), "opening KVM");
    const bool user = o.user_mode;

    hv::Gprs pio_init;
    pio_init.rdx = kPort;
    hv::Gprs mmio_init;
    mmio_init.rsi = kMmioAddr;
    hv::Gprs cpuid_init;
    cpuid_init.rdi = kCpuidPerReport;

    auto vireo_pio =
        check(VireoLoop::create(hv, guest_pio_loop(), pio_init, hv::ExitReason::Io, user), "pio");
    auto vireo_mmio = check(
        VireoLoop::create(hv, guest_mmio_loop(), mmio_init, hv::ExitReason::Mmio, user), "mmio");
    auto vireo_cpuid = check(
        VireoLoop::create(hv, guest_cpuid_loop(), cpuid_init, hv::ExitReason::Io, user), "cpuid");
    auto raw_pio = check(RawVm::create(guest_pio_loop(), 0, 0, kPort, user), "raw pio");
    auto raw_mmio = check(RawVm::create(guest_mmio_loop(), 0, kMmioAddr, 0, user), "raw mmio");
    // The same PIO loop through libnvmm's C API (ring 0 only: its set-up is NVMM's own).
    std::unique_ptr<NvmmLoop> nvmm_pio;
    if (!user) nvmm_pio = check(NvmmLoop::create(guest_pio_loop(), kPort), "libnvmm pio");

    // Warm up every loop (page faults, caches, CPU frequency).
    const uint64_t warm = std::max<uint64_t>(o.iterations / 10, 100);
    check(vireo_pio.loop(warm, o.sandbox), "pio"), check(raw_pio.loop(warm, false), "raw pio");
    check(vireo_mmio.loop(warm, o.sandbox), "mmio"), check(raw_mmio.loop(warm, true), "raw mmio");
    if (nvmm_pio) check(nvmm_pio->loop(warm), "libnvmm pio");

    std::vector<double> pio, mmio, rpio, rmmio, cpuid, npio;
    const auto n = static_cast<double>(o.iterations);
    const uint64_t cpuid_reports = std::max<uint64_t>(o.iterations / kCpuidPerReport, 5);
    for (int r = 0; r < o.runs; ++r) {
        // Alternate which side goes first so drift affects both alike.
        if (r % 2 == 0) {
            pio.push_back(
                static_cast<double>(check(vireo_pio.loop(o.iterations, o.sandbox), "pio")) / n);
            rpio.push_back(static_cast<double>(check(raw_pio.loop(o.iterations, false), "raw")) /
                           n);
            mmio.push_back(
                static_cast<double>(check(vireo_mmio.loop(o.iterations, o.sandbox), "mmio")) / n);
            rmmio.push_back(static_cast<double>(check(raw_mmio.loop(o.iterations, true), "raw")) /
                            n);
        } else {
            rpio.push_back(static_cast<double>(check(raw_pio.loop(o.iterations, false), "raw")) /
                           n);
            pio.push_back(
                static_cast<double>(check(vireo_pio.loop(o.iterations, o.sandbox), "pio")) / n);
            rmmio.push_back(static_cast<double>(check(raw_mmio.loop(o.iterations, true), "raw")) /
                            n);
            mmio.push_back(
                static_cast<double>(check(vireo_mmio.loop(o.iterations, o.sandbox), "mmio")) / n);
        }
        if (nvmm_pio)
            npio.push_back(static_cast<double>(check(nvmm_pio->loop(o.iterations), "libnvmm")) / n);
        cpuid.push_back(
            static_cast<double>(check(vireo_cpuid.loop(cpuid_reports, o.sandbox), "cpuid")) /
            static_cast<double>(cpuid_reports * kCpuidPerReport));
    }

    auto sp = stats(pio), sm = stats(mmio), srp = stats(rpio), srm = stats(rmmio),
         sc = stats(cpuid);
    const char* ring = user ? "user" : "kernel";
    std::printf("vireo-bench exits: %llu exits x %d runs, guest loops in ring %s, KVM %s%s\n",
                static_cast<unsigned long long>(o.iterations), o.runs, user ? "3" : "0",
                hv.flavor().empty() ? "unknown" : hv.flavor().c_str(),
                o.sandbox ? ", vireo under a vCPU thread's seccomp filter" : "");
    std::printf("%-22s %10s %10s %10s %22s\n", "exit", "vireo ns", "raw ns", "vireo/raw",
                "vireo min..max ns");
    auto row = [](const char* name, Stats v, Stats raw) {
        std::printf("%-22s %10.0f %10.0f %10.3f %11.0f..%-10.0f\n", name, v.median, raw.median,
                    v.median / raw.median, v.min, v.max);
    };
    row("PIO (user space)", sp, srp);
    if (nvmm_pio) row("PIO through libnvmm", stats(npio), srp);
    row("MMIO (user space)", sm, srm);
    std::printf("%-22s %10.0f %10s %10s %11.0f..%-10.0f\n", "CPUID (in kernel)", sc.median, "-",
                "-", sc.min, sc.max);
    if (o.json) {
        std::printf(
            "{\"bench\":\"exits\",\"sandbox\":%s,\"ring\":\"%s\",\"kvm\":\"%s\",\"iterations\":%"
            "llu,\"runs\":%d,"
            "\"pio_ns\":%.1f,\"mmio_ns\":%.1f,\"raw_pio_ns\":%.1f,\"raw_mmio_ns\":%.1f,"
            "\"cpuid_ns\":%.1f,\"pio_ratio\":%.4f,\"mmio_ratio\":%.4f,\"libnvmm_pio_ns\":%.1f}\n",
            o.sandbox ? "true" : "false", ring, hv.flavor().c_str(),
            static_cast<unsigned long long>(o.iterations), o.runs, sp.median, sm.median, srp.median,
            srm.median, sc.median, sp.median / srp.median, sm.median / srm.median,
            npio.empty() ? 0.0 : stats(npio).median);
    }
    return 0;
}

}  // namespace vireo::bench
