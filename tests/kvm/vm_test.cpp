// vmm::Vm with a tiny PVH guest (pvh_ticker: "TICK" on COM1 in a loop): pause stops the guest
// and resume lets it go on, and neither may be done twice. Judged by the guest's output, not by
// clocks: the guest is slow on a software KVM and fast on hardware.
#include "vmm/vm.hpp"

#include <atomic>
#include <chrono>
#include <filesystem>
#include <optional>
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

// pvh_ticker's machine, running on its own thread, with its output counted.
struct TickingVm {
    TickingVm() {
        auto kernel = arch::x86::boot::KernelImage::parse(guest_pvh_ticker_elf());
        if (!kernel) {
            ADD_FAILURE() << kernel.error().message();
            std::abort();
        }
        images.emplace(vmm::BootImages{*kernel, {}, false});
        vmm::VmConfig config;
        config.memory_bytes = 64 << 20;
        config.cpus = 2;
        config.console_out = tap;
        auto created = vmm::Vm::create(test::hypervisor(), config, *images);
        if (!created) {
            ADD_FAILURE() << created.error().message();
            std::abort();
        }
        vm = std::move(created).value();
        runner = std::thread([this] { outcome = vm->run(); });
    }
    ~TickingVm() {
        vm->stop(vmm::Fate::Stopped, "test over");
        if (runner.joinable()) runner.join();
    }
    vmm::Outcome join() {
        runner.join();
        return outcome;
    }
    void run_again() {
        runner = std::thread([this] { outcome = vm->run(); });
    }
    std::optional<vmm::BootImages> images;
    std::shared_ptr<CountingTap> tap = std::make_shared<CountingTap>();
    std::unique_ptr<vmm::Vm> vm;
    vmm::Outcome outcome;
    std::thread runner;
};

TEST(VmPause, APausedGuestRunsNoInstructionUntilResumed) {
    TickingVm t;
    ASSERT_TRUE(wait_output(*t.tap, 0)) << "the guest never wrote";
    ASSERT_TRUE(t.vm->pause());
    EXPECT_TRUE(t.vm->paused());
    auto again = t.vm->pause();
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().code(), ErrorCode::BadState);
    // Stopped: whatever it wrote before the pause returned is counted; nothing after.
    const uint64_t at_pause = t.tap->bytes.load();
    std::this_thread::sleep_for(1500ms);  // many ticks' worth, on any KVM
    EXPECT_EQ(t.tap->bytes.load(), at_pause) << "the guest ran while paused";

    ASSERT_TRUE(t.vm->resume());
    EXPECT_FALSE(t.vm->paused());
    EXPECT_FALSE(t.vm->resume());
    EXPECT_TRUE(wait_output(*t.tap, at_pause)) << "the guest did not go on after resume";

    t.vm->stop(vmm::Fate::Stopped, "test over");
    EXPECT_EQ(t.join().fate, vmm::Fate::Stopped);
}

TEST(VmPause, StopWhilePausedEndsTheRun) {
    TickingVm t;
    ASSERT_TRUE(wait_output(*t.tap, 0));
    ASSERT_TRUE(t.vm->pause());
    t.vm->stop(vmm::Fate::Stopped, "stopped while paused");
    EXPECT_EQ(t.join().fate, vmm::Fate::Stopped);  // a paused machine still stops
}

size_t open_fds() {
    size_t n = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd"))
        ++n;
    return n;
}

// A guest reboot resets the machine in place (no new VM, vCPU or memory slot: a sandboxed
// domain may not make them) and the guest boots again; over and over, nothing grows.
TEST(VmReboot, ResetInPlaceBootsTheGuestAgain) {
    TickingVm t;
    size_t fds = 0;
    for (int boot = 1; boot <= 12; ++boot) {
        ASSERT_TRUE(wait_output(*t.tap, 0)) << "boot " << boot << ": the guest never wrote";
        t.vm->reset();
        ASSERT_EQ(t.join().fate, vmm::Fate::Reboot) << "boot " << boot;
        if (boot == 2) fds = open_fds();  // after the first reboot's lazily opened things
        if (boot > 2) {
            EXPECT_EQ(open_fds(), fds) << "boot " << boot;
        }
        t.tap->bytes.store(0);
        ASSERT_TRUE(t.vm->reboot(*t.images, {})) << "boot " << boot;
        t.run_again();
    }
    ASSERT_TRUE(wait_output(*t.tap, 0)) << "the guest did not boot after the last reboot";
    t.vm->stop(vmm::Fate::Stopped, "test over");
    EXPECT_EQ(t.join().fate, vmm::Fate::Stopped);
}

// The host resets a paused domain: the reset machine boots running, as a new one would.
TEST(VmReboot, ResetWhilePausedBootsRunning) {
    TickingVm t;
    ASSERT_TRUE(wait_output(*t.tap, 0));
    ASSERT_TRUE(t.vm->pause());
    t.vm->reset();
    ASSERT_EQ(t.join().fate, vmm::Fate::Reboot);
    t.tap->bytes.store(0);
    auto r = t.vm->reboot(*t.images, {});
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_FALSE(t.vm->paused());
    t.run_again();
    EXPECT_TRUE(wait_output(*t.tap, 0)) << "the guest did not run after the reset";
    ASSERT_TRUE(t.vm->pause()) << "pause works again on the reset machine";
    ASSERT_TRUE(t.vm->resume());
    t.vm->stop(vmm::Fate::Stopped, "test over");
    EXPECT_EQ(t.join().fate, vmm::Fate::Stopped);
}

}  // namespace
}  // namespace vireo
