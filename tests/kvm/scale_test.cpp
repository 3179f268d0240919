// Many vCPUs of one machine running at the same time, each on its own thread.
#include <atomic>
#include <latch>
#include <thread>
#include <vector>

#include "kvm_test.hpp"

namespace vireo::test {
namespace {

using hv::ExitReason;

// Creates `n` vCPUs of the report_id guest, runs each on its own thread, and checks that every
// id reports exactly once and that all n vCPU threads were inside the guest loop at once (each
// waits on a latch between its report and its final HLT).
void run_concurrently(uint32_t n) {
    auto vm = make_vm(guest_report_id());
    std::vector<std::unique_ptr<hv::Vcpu>> vcpus;
    vcpus.reserve(n);
    for (uint32_t id = 0; id < n; ++id) {
        hv::Gprs init;
        init.rdi = id;
        vcpus.push_back(make_vcpu(vm, id, init));
    }
    EXPECT_EQ(vm.machine().vcpu_count(), n);

    std::vector<std::atomic<uint32_t>> seen(n);
    std::atomic<uint32_t> bad{0};
    std::latch all_reported(n);
    std::vector<std::thread> threads;
    threads.reserve(n);
    for (uint32_t id = 0; id < n; ++id) {
        threads.emplace_back([&, id] {
            auto& vcpu = *vcpus[id];
            auto e = vcpu.run();
            if (!e || e->reason != ExitReason::Io || e->io.port != 0x20 || e->io.value() >= n) {
                bad.fetch_add(1);
                all_reported.count_down();
                return;
            }
            seen[e->io.value()].fetch_add(1);
            all_reported.arrive_and_wait();
            e = vcpu.run();
            if (!e || e->reason != ExitReason::Halt) bad.fetch_add(1);
        });
    }
    for (auto& t : threads)
        t.join();
    EXPECT_EQ(bad.load(), 0u);
    for (uint32_t id = 0; id < n; ++id)
        EXPECT_EQ(seen[id].load(), 1u) << "vCPU " << id;
}

TEST(Scale, TwoHundredFiftySixVcpusRunConcurrently) {
    run_concurrently(256);
}

TEST(Scale, KvmMaximumVcpus) {
    const uint32_t max = hypervisor().limits().max_vcpus;
    run_concurrently(max);
}

TEST(Scale, OneVcpuPastTheMaximumIsRefused) {
    const uint32_t max = hypervisor().limits().max_vcpus;
    auto vm = make_vm(guest_report_id());
    for (uint32_t id = 0; id < max; ++id)
        ASSERT_TRUE(vm.machine().create_vcpu(id));
    auto extra = vm.machine().create_vcpu(max);
    ASSERT_FALSE(extra);
    EXPECT_EQ(extra.error().code(), ErrorCode::ResourceExhausted);
    EXPECT_NE(extra.error().message().find("KVM maximum"), std::string::npos);
}

TEST(Scale, MachinesRunInParallel) {
    // Several machines, each with its own vCPU thread, all running at the same time.
    constexpr int kMachines = 8;
    std::vector<vmm::FlatVm> vms;
    std::vector<std::unique_ptr<hv::Vcpu>> vcpus;
    for (int i = 0; i < kMachines; ++i) {
        vms.push_back(make_vm(guest_report_id()));
        hv::Gprs init;
        init.rdi = static_cast<uint64_t>(i);
        vcpus.push_back(make_vcpu(vms.back(), 0, init));
    }
    std::latch all(kMachines);
    std::atomic<int> good{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < kMachines; ++i) {
        threads.emplace_back([&, i] {
            auto e = vcpus[static_cast<size_t>(i)]->run();
            bool ok = e && e->reason == ExitReason::Io && e->io.value() == static_cast<uint32_t>(i);
            all.arrive_and_wait();
            e = vcpus[static_cast<size_t>(i)]->run();
            if (ok && e && e->reason == ExitReason::Halt) good.fetch_add(1);
        });
    }
    for (auto& t : threads)
        t.join();
    EXPECT_EQ(good.load(), kMachines);
}

}  // namespace
}  // namespace vireo::test
