// The KVM tests' main. A machine without /dev/kvm (its own kernel runs under kvm_pvm, which then
// offers none to its processes) runs none of them and says SKIPPED, which ctest reports as a
// skip; ctest's kvm_tests_in_test_host runs the same binary on the test host's KVM.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>

int main(int argc, char** argv) {
    ::testing::InitGoogleTest(&argc, argv);
    if (!GTEST_FLAG_GET(list_tests) && ::access("/dev/kvm", F_OK) != 0) {
        std::printf(
            "[  SKIPPED ] no /dev/kvm on this machine (kvm_tests_in_test_host runs these)\n");
        return 0;
    }
    return RUN_ALL_TESTS();
}
