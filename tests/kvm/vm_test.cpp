// vmm::Vm with a tiny PVH guest (pvh_ticker: "TICK" on COM1 in a loop): pause stops the guest
// and resume lets it go on, and neither may be done twice. Judged by the guest's output, not by
// clocks: the guest is slow on a software KVM and fast on hardware.
#include "vmm/vm.hpp"

#include <atomic>
#include <chrono>
#include <thread>

#include "arch/x86/boot/kernel.hpp"
#include "kvm_test.hpp"

VIREO_GUEST(pvh_ticker_elf)

namespace vireo {
namespace {

using namespace std::chrono_literals;

// Counts what the guest writes on COM1.
class CountingTap final : public devices::OutputTap {
  public:
    void put(uint8_t) noexcept override { bytes.fetch_add(1, std::memory_order_relaxed); }
    std::atomic<uint64_t> bytes{0};
};

// Waits until the guest wrote more than `than` bytes (up to a minute of no output).
bool wait_output(const CountingTap& tap, uint64_t than) {
    for (int i = 0; i < 600; ++i) {
        if (tap.bytes.load() > than) return true;
        std::this_thread::sleep_for(100ms);
    }
    return false;
}

TEST(VmPause, APausedGuestRunsNoInstructionUntilResumed) {
    auto kernel = arch::x86::boot::KernelImage::parse(guest_pvh_ticker_elf());
    ASSERT_TRUE(kernel) << kernel.error().message();
    auto tap = std::make_shared<CountingTap>();
    vmm::VmConfig config;
    config.memory_bytes = 64 << 20;
    config.console_out = tap;
    auto vm = vmm::Vm::create(test::hypervisor(), config, vmm::BootImages{*kernel, {}, false});
    ASSERT_TRUE(vm) << vm.error().message();
    vmm::Outcome outcome;
    std::thread runner([&] { outcome = (*vm)->run(); });

    ASSERT_TRUE(wait_output(*tap, 0)) << "the guest never wrote";
    ASSERT_TRUE((*vm)->pause());
    EXPECT_TRUE((*vm)->paused());
    auto again = (*vm)->pause();
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().code(), ErrorCode::BadState);
    // Stopped: whatever it wrote before the pause returned is counted; nothing after.
    const uint64_t at_pause = tap->bytes.load();
    std::this_thread::sleep_for(1500ms);  // many ticks' worth, on any KVM
    EXPECT_EQ(tap->bytes.load(), at_pause) << "the guest ran while paused";

    ASSERT_TRUE((*vm)->resume());
    EXPECT_FALSE((*vm)->paused());
    EXPECT_FALSE((*vm)->resume());
    EXPECT_TRUE(wait_output(*tap, at_pause)) << "the guest did not go on after resume";

    (*vm)->stop(vmm::Fate::Stopped, "test over");
    runner.join();
    EXPECT_EQ(outcome.fate, vmm::Fate::Stopped);
}

TEST(VmPause, StopWhilePausedEndsTheRun) {
    auto kernel = arch::x86::boot::KernelImage::parse(guest_pvh_ticker_elf());
    ASSERT_TRUE(kernel);
    auto tap = std::make_shared<CountingTap>();
    vmm::VmConfig config;
    config.memory_bytes = 64 << 20;
    config.console_out = tap;
    auto vm = vmm::Vm::create(test::hypervisor(), config, vmm::BootImages{*kernel, {}, false});
    ASSERT_TRUE(vm) << vm.error().message();
    vmm::Outcome outcome;
    std::thread runner([&] { outcome = (*vm)->run(); });
    ASSERT_TRUE(wait_output(*tap, 0));
    ASSERT_TRUE((*vm)->pause());
    (*vm)->stop(vmm::Fate::Stopped, "stopped while paused");
    runner.join();  // a paused machine still stops (vireo down, destroy)
    EXPECT_EQ(outcome.fate, vmm::Fate::Stopped);
}

}  // namespace
}  // namespace vireo
