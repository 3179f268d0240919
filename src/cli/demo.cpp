#include "cli/demo.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <span>

#include "base/log.hpp"
#include "hv/hypervisor.hpp"
#include "vmm/flat_vm.hpp"

extern "C" const uint8_t vireo_guest_demo_start[];
extern "C" const uint8_t vireo_guest_demo_end[];

namespace vireo::cli {

namespace {
constexpr uint16_t kDebugPort = 0xe9;  // Bochs/QEMU debug console: one byte per OUT
constexpr uint16_t kExitPort = 0xf4;   // isa-debug-exit style: the value is the status
}  // namespace

int run_demo(bool quiet) {
    using clock = std::chrono::steady_clock;
    auto t0 = clock::now();
    auto hv = hv::Hypervisor::open();
    if (!hv) {
        log::error("{}", hv.error().message());
        return 1;
    }
    std::span<const uint8_t> image(
        vireo_guest_demo_start, static_cast<size_t>(vireo_guest_demo_end - vireo_guest_demo_start));
    auto vm = vmm::FlatVm::create(*hv, image, {.memory_bytes = 2 << 20});
    if (!vm) {
        log::error("creating the demo machine: {}", vm.error().message());
        return 1;
    }
    auto vcpu = vm->create_vcpu(0);
    if (!vcpu) {
        log::error("creating the demo vCPU: {}", vcpu.error().message());
        return 1;
    }
    uint64_t exits = 0;
    int status = -1;
    while (status < 0) {
        auto exit = (*vcpu)->run();
        if (!exit) {
            log::error("{}", exit.error().message());
            return 1;
        }
        ++exits;
        switch (exit->reason) {
            case hv::ExitReason::Io:
                if (exit->io.write && exit->io.port == kDebugPort) {
                    if (!quiet) std::fputc(static_cast<int>(exit->io.value() & 0xff), stdout);
                } else if (exit->io.write && exit->io.port == kExitPort) {
                    status = static_cast<int>(exit->io.value() & 0xff);
                }
                break;
            case hv::ExitReason::Halt:
                status = 0;
                break;
            case hv::ExitReason::Interrupted:
                break;
            default:
                log::error("demo guest stopped unexpectedly: {} exit", hv::to_string(exit->reason));
                return 2;
        }
    }
    std::fflush(stdout);
    auto ms = std::chrono::duration<double, std::milli>(clock::now() - t0).count();
    std::fprintf(stderr,
                 "vireo: demo guest exited with status %d after %llu exits, %.1f ms from start "
                 "(KVM: %s)\n",
                 status, static_cast<unsigned long long>(exits), ms,
                 hv->flavor().empty() ? "unknown" : hv->flavor().c_str());
    return status;
}

}  // namespace vireo::cli
