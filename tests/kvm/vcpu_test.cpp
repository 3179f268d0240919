#include "snapshot/vcpu.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

#include "kvm_test.hpp"

namespace vireo::test {
namespace {

using hv::ExitReason;
using namespace std::chrono_literals;

constexpr uint64_t kMmioBase = 0xd0000000;  // identity-mapped, not backed by RAM

TEST(Vcpu, PioRoundTrip) {
    auto vm = make_vm(guest_io_roundtrip());
    hv::Gprs init;
    init.rdi = 0xcafe;
    auto vcpu = make_vcpu(vm, 0, init);

    auto e = run(*vcpu);
    ASSERT_EQ(e.reason, ExitReason::Io);
    EXPECT_TRUE(e.io.write);
    EXPECT_EQ(e.io.port, 0x10);
    EXPECT_EQ(e.io.size, 4);
    EXPECT_EQ(e.io.count, 1u);
    EXPECT_EQ(e.io.value(), 0xcafeu);

    e = run(*vcpu);
    ASSERT_EQ(e.reason, ExitReason::Io);
    EXPECT_FALSE(e.io.write);
    EXPECT_EQ(e.io.port, 0x11);
    e.io.set_value(41);

    e = run(*vcpu);
    ASSERT_EQ(e.reason, ExitReason::Io);
    EXPECT_EQ(e.io.port, 0x12);
    EXPECT_EQ(e.io.value(), 42u);

    EXPECT_EQ(run(*vcpu).reason, ExitReason::Halt);
}

// KVM's binary statistics: opened before the vCPU runs, read without a vCPU lock; the
// kernel's exit counter covers the exits this test saw.
TEST(Vcpu, KvmStatistics) {
    if (!hypervisor().has(hv::Feature::BinaryStats)) GTEST_SKIP() << "no KVM_GET_STATS_FD";
    auto vm = make_vm(guest_io_roundtrip());
    auto vcpu = make_vcpu(vm, 0, hv::Gprs{});
    auto stats = vcpu->open_stats();
    ASSERT_TRUE(stats) << stats.error().message();
    const auto& names = stats->names();
    const auto it = std::find(names.begin(), names.end(), "exits");
    ASSERT_NE(it, names.end());
    std::vector<uint64_t> before(names.size()), after(names.size());
    ASSERT_TRUE(stats->read(before));
    auto e = run(*vcpu);
    ASSERT_EQ(e.reason, ExitReason::Io);
    e = run(*vcpu);
    e.io.set_value(1);
    (void)run(*vcpu);
    ASSERT_TRUE(stats->read(after));
    const size_t i = static_cast<size_t>(it - names.begin());
    EXPECT_GE(after[i], before[i] + 3);
    std::vector<uint64_t> wrong(names.size() + 1);
    EXPECT_FALSE(stats->read(wrong));
}

// The kvm-clock can be read and set back (what pause/unpause do).
TEST(Machine, ClockGetSet) {
    auto vm = make_vm(guest_io_roundtrip());
    auto c1 = vm.machine().get_clock();
    ASSERT_TRUE(c1) << c1.error().message();
    ASSERT_TRUE(vm.machine().set_clock(*c1 + 1'000'000'000));
    auto c2 = vm.machine().get_clock();
    ASSERT_TRUE(c2);
    EXPECT_GE(*c2, *c1 + 1'000'000'000);
}

TEST(Vcpu, MmioRoundTrip) {
    auto vm = make_vm(guest_mmio_roundtrip());
    hv::Gprs init;
    init.rdi = 0x12345678;
    init.rsi = kMmioBase;
    auto vcpu = make_vcpu(vm, 0, init);

    auto e = run(*vcpu);
    ASSERT_EQ(e.reason, ExitReason::Mmio);
    EXPECT_TRUE(e.mmio.write);
    EXPECT_EQ(e.mmio.gpa, kMmioBase);
    EXPECT_EQ(e.mmio.len, 4);
    EXPECT_EQ(e.mmio.value(), 0x12345678u);

    e = run(*vcpu);
    ASSERT_EQ(e.reason, ExitReason::Mmio);
    EXPECT_FALSE(e.mmio.write);
    EXPECT_EQ(e.mmio.gpa, kMmioBase + 8);
    EXPECT_EQ(e.mmio.len, 8);
    e.mmio.set_value(0x1122334455667788);

    e = run(*vcpu);
    ASSERT_EQ(e.reason, ExitReason::Mmio);
    EXPECT_EQ(e.mmio.gpa, kMmioBase + 16);
    EXPECT_EQ(e.mmio.value(), 0x1122334455667789u);

    e = run(*vcpu);
    ASSERT_EQ(e.reason, ExitReason::Mmio);
    EXPECT_EQ(e.mmio.gpa, kMmioBase + 24);
    EXPECT_EQ(e.mmio.len, 1);
    EXPECT_EQ(e.mmio.value(), 0x5au);

    EXPECT_EQ(run(*vcpu).reason, ExitReason::Halt);
}

TEST(Vcpu, HaltThenResume) {
    auto vm = make_vm(guest_halt());
    auto vcpu = make_vcpu(vm);
    ASSERT_EQ(run(*vcpu).reason, ExitReason::Halt);
    auto e = run(*vcpu);  // without an in-kernel LAPIC, HLT returns and run() resumes after it
    ASSERT_EQ(e.reason, ExitReason::Io);
    EXPECT_EQ(e.io.port, 0x10);
    EXPECT_EQ(run(*vcpu).reason, ExitReason::Halt);
}

TEST(Vcpu, TripleFaultIsShutdown) {
    auto vm = make_vm(guest_triple_fault());
    auto vcpu = make_vcpu(vm);
    EXPECT_EQ(run(*vcpu).reason, ExitReason::Shutdown);
}

TEST(Vcpu, InjectedExceptionWithoutIdtIsShutdown) {
    auto vm = make_vm(guest_halt());
    auto vcpu = make_vcpu(vm);
    ASSERT_TRUE(vcpu->inject_exception(6));  // #UD through an empty IDT: triple fault
    EXPECT_EQ(run(*vcpu).reason, ExitReason::Shutdown);
    EXPECT_FALSE(vcpu->inject_exception(32));
}

TEST(Vcpu, RequestStopInterruptsASpinningGuest) {
    auto vm = make_vm(guest_spin());
    auto vcpu = make_vcpu(vm);
    std::atomic<bool> returned{false};
    hv::ExitReason reason = ExitReason::Unknown;
    std::thread runner([&] {
        auto e = vcpu->run();
        reason = e ? e->reason : ExitReason::Unknown;
        returned = true;
    });
    std::this_thread::sleep_for(50ms);
    EXPECT_FALSE(returned) << "the spinning guest should still be running";
    auto t0 = std::chrono::steady_clock::now();
    vcpu->request_stop();
    while (!returned && std::chrono::steady_clock::now() - t0 < 5s)
        std::this_thread::yield();
    auto latency = std::chrono::steady_clock::now() - t0;
    runner.join();
    EXPECT_EQ(reason, ExitReason::Interrupted);
    EXPECT_LT(latency, 1s);
    hv::VcpuState st;
    ASSERT_TRUE(vcpu->get_state(hv::kStateGprs, st));
    EXPECT_GT(st.gprs.rax, 0u) << "the guest made progress before it was stopped";
}

TEST(Vcpu, RequestStopBeforeRunReturnsAtOnce) {
    auto vm = make_vm(guest_spin());
    auto vcpu = make_vcpu(vm);
    vcpu->request_stop();
    auto e = vcpu->run();
    ASSERT_TRUE(e);
    EXPECT_EQ(e->reason, ExitReason::Interrupted);
    // The request is consumed: the guest can run again (and is stopped again on request).
    std::thread stopper([&] {
        std::this_thread::sleep_for(20ms);
        vcpu->request_stop();
    });
    e = vcpu->run();
    stopper.join();
    ASSERT_TRUE(e);
    EXPECT_EQ(e->reason, ExitReason::Interrupted);
}

TEST(Vcpu, StateRoundTrip) {
    auto vm = make_vm(guest_io_roundtrip());
    auto vcpu = make_vcpu(vm);
    hv::VcpuState st;
    st.msrs = {{0x174, 0}, {0x175, 0}};  // SYSENTER_CS, SYSENTER_ESP
    const uint32_t flags = hv::kStateGprs | hv::kStateSegments | hv::kStateCrs | hv::kStateMsrs |
                           hv::kStateFpu | hv::kStateXsave | hv::kStateXcrs | hv::kStateEvents |
                           hv::kStateMpState;
    ASSERT_TRUE(vcpu->get_state(flags, st));
    EXPECT_EQ(st.gprs.rip, vm.config().load_addr);
    EXPECT_TRUE(st.segments.cs.l);
    EXPECT_EQ(st.crs.cr3, 0x2000u);
    EXPECT_EQ(st.mp_state, hv::MpState::Runnable);

    st.gprs.rdi = 0xbeef;
    st.msrs[0].value = 0x10;
    st.msrs[1].value = 0xffff8000;
    // x87 state round-trips through KVM_SET_FPU. (SSE state such as MXCSR only sticks once the
    // XSAVE header marks SSE as in use, so it is not a reliable round-trip on a fresh vCPU.)
    st.fpu.fcw = 0x27f;
    const auto xsave = st.xsave;
    ASSERT_TRUE(vcpu->set_state(flags & ~uint32_t{hv::kStateFpu}, st));
    ASSERT_TRUE(vcpu->set_state(hv::kStateFpu, st));

    hv::VcpuState back;
    back.msrs = {{0x174, 0}, {0x175, 0}};
    ASSERT_TRUE(vcpu->get_state(flags, back));
    EXPECT_EQ(back.gprs.rdi, 0xbeefu);
    EXPECT_EQ(back.msrs[0].value, 0x10u);
    EXPECT_EQ(back.msrs[1].value, 0xffff8000u);
    EXPECT_EQ(back.fpu.fcw, 0x27fu);
    EXPECT_EQ(back.xsave.region[6], xsave.region[6]);  // MXCSR in the legacy XSAVE area
    EXPECT_EQ(back.segments.gdt.base, st.segments.gdt.base);
    EXPECT_EQ(back.crs.efer, st.crs.efer);

    auto e = run(*vcpu);  // the guest sees the register we set
    ASSERT_EQ(e.reason, ExitReason::Io);
    EXPECT_EQ(e.io.value(), 0xbeefu);
    ASSERT_TRUE(vcpu->get_state(hv::kStateGprs, back));
    EXPECT_GT(back.gprs.rip, vm.config().load_addr);
}

// A vCPU's state written as a snapshot section and read back into a vCPU of another machine
// (same guest image): that vCPU goes on from where the first one stood.
TEST(Vcpu, StateMovesThroughASnapshotSection) {
    auto source = make_vm(guest_io_roundtrip());
    auto from = make_vcpu(source);
    const uint32_t flags = hv::kStateGprs | hv::kStateSegments | hv::kStateCrs | hv::kStateMsrs |
                           hv::kStateXsave | hv::kStateXcrs | hv::kStateEvents | hv::kStateMpState;
    hv::VcpuState st;
    st.msrs = {{0x174, 0}, {0x175, 0}};
    ASSERT_TRUE(from->get_state(flags, st));
    st.gprs.rdi = 0xcafe;
    st.msrs[1].value = 0xffff9000;
    ASSERT_TRUE(from->set_state(flags, st));
    hv::VcpuState saved;
    saved.msrs = st.msrs;
    ASSERT_TRUE(from->get_state(flags, saved));

    snapshot::Encoder e;
    snapshot::encode(e, saved);
    hv::VcpuState loaded;
    snapshot::Decoder d(e.data(), "vCPU 0");
    snapshot::decode(d, loaded);
    ASSERT_TRUE(d.finish());

    auto target = make_vm(guest_io_roundtrip());
    auto to = make_vcpu(target);
    ASSERT_TRUE(to->set_state(flags, loaded));
    hv::VcpuState check;
    check.msrs = {{0x174, 0}, {0x175, 0}};
    ASSERT_TRUE(to->get_state(flags, check));
    EXPECT_EQ(check.msrs[1].value, 0xffff9000u);
    EXPECT_EQ(check.crs.cr3, saved.crs.cr3);
    auto exit = run(*to);
    ASSERT_EQ(exit.reason, ExitReason::Io);
    EXPECT_EQ(exit.io.value(), 0xcafeu);
}

TEST(Vcpu, RefusedMsrIsNamed) {
    auto vm = make_vm(guest_halt());
    auto vcpu = make_vcpu(vm);
    std::array<hv::MsrEntry, 2> msrs{hv::MsrEntry{0x174, 0}, hv::MsrEntry{0xdeadbeef, 1}};
    auto r = vcpu->set_msrs(msrs);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message().find("0xdeadbeef"), std::string::npos) << r.error().message();
}

TEST(Vcpu, LapicStateNeedsIrqchip) {
    vmm::FlatVmConfig config;
    config.irqchip = hv::IrqchipMode::Kernel;
    auto vm = make_vm(guest_halt(), config);
    auto vcpu = make_vcpu(vm);
    hv::VcpuState st;
    ASSERT_TRUE(vcpu->get_state(hv::kStateLapic, st));
    ASSERT_TRUE(vcpu->set_state(hv::kStateLapic, st));

    auto plain = make_vm(guest_halt());
    auto plain_vcpu = make_vcpu(plain);
    EXPECT_FALSE(plain_vcpu->get_state(hv::kStateLapic, st));
}

TEST(Vcpu, InjectInterruptWithoutIrqchip) {
    auto vm = make_vm(guest_halt());
    auto vcpu = make_vcpu(vm);
    // Interrupts are disabled (RFLAGS.IF = 0), but KVM accepts the injection request itself.
    EXPECT_TRUE(vcpu->inject_interrupt(0x20));
    EXPECT_TRUE(vcpu->inject_nmi());
}

}  // namespace
}  // namespace vireo::test
