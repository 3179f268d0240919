#include <grp.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kvm_test.hpp"

namespace vireo::test {
namespace {

TEST(Hypervisor, OpensAndReportsLimits) {
    const auto& hv = hypervisor();
    const auto& l = hv.limits();
    EXPECT_GE(l.max_vcpus, 256u);
    EXPECT_GE(l.max_vcpu_id, l.max_vcpus);
    EXPECT_GE(l.max_memslots, 32u);
    EXPECT_GE(l.phys_addr_bits, 36u);
    EXPECT_FALSE(hv.supported_cpuid().empty());
    EXPECT_TRUE(hv.has(hv::Feature::Ioeventfd));
    EXPECT_GE(hv.vcpu_mmap_size(), 4096u);
}

TEST(Hypervisor, MissingDeviceSaysSo) {
    auto hv = hv::Hypervisor::open("/nonexistent/kvm");
    ASSERT_FALSE(hv);
    EXPECT_EQ(hv.error().code(), ErrorCode::NotFound);
    EXPECT_NE(hv.error().message().find("/nonexistent/kvm does not exist"), std::string::npos);
    EXPECT_NE(hv.error().message().find("modprobe"), std::string::npos);
}

TEST(Hypervisor, NonKvmDeviceSaysSo) {
    auto hv = hv::Hypervisor::open("/dev/null");
    ASSERT_FALSE(hv);
    EXPECT_EQ(hv.error().code(), ErrorCode::Unsupported);
    EXPECT_NE(hv.error().message().find("/dev/null is not a KVM device"), std::string::npos);
}

TEST(Hypervisor, InaccessibleDeviceSaysSo) {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to drop privileges";
    // In a child that gave up root, /dev/kvm (mode 0600 root or 0660 root:kvm) is refused.
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        if (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0) _exit(3);
        auto hv = hv::Hypervisor::open("/dev/kvm");
        if (hv) _exit(4);  // world-accessible /dev/kvm: nothing to test
        bool ok =
            hv.error().code() == ErrorCode::PermissionDenied &&
            hv.error().message().find("permission denied opening /dev/kvm") != std::string::npos;
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    if (WEXITSTATUS(status) == 4) GTEST_SKIP() << "/dev/kvm is world-accessible here";
    EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(Hypervisor, MachineConfigIsChecked) {
    const auto& hv = hypervisor();
    hv::MachineConfig pit_without_irqchip;
    pit_without_irqchip.pit = true;
    auto m = hv.create_machine(pit_without_irqchip);
    ASSERT_FALSE(m);
    EXPECT_EQ(m.error().code(), ErrorCode::InvalidArgument);

    hv::MachineConfig bad_pins;
    bad_pins.irqchip = hv::IrqchipMode::Split;
    bad_pins.split_irqchip_pins = 0;
    EXPECT_FALSE(hv.create_machine(bad_pins));
}

TEST(Hypervisor, IrqchipModes) {
    const auto& hv = hypervisor();
    for (auto mode : {hv::IrqchipMode::None, hv::IrqchipMode::Kernel, hv::IrqchipMode::Split}) {
        hv::MachineConfig config;
        config.irqchip = mode;
        config.pit = mode == hv::IrqchipMode::Kernel;
        auto m = hv.create_machine(config);
        ASSERT_TRUE(m) << m.error().message();
        EXPECT_EQ((*m)->irqchip(), mode);
    }
}

}  // namespace
}  // namespace vireo::test
