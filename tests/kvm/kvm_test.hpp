// Shared helpers for tests that run real guests on /dev/kvm.
#pragma once

#include <gtest/gtest.h>

#include "base/limits.hpp"
#include "guests/guest_blob.hpp"
#include "hv/hypervisor.hpp"
#include "hv/machine.hpp"
#include "hv/vcpu.hpp"
#include "vmm/flat_vm.hpp"

VIREO_GUEST(io_roundtrip)
VIREO_GUEST(mmio_roundtrip)
VIREO_GUEST(halt)
VIREO_GUEST(msr_trap)
VIREO_GUEST(triple_fault)
VIREO_GUEST(dirty_pages)
VIREO_GUEST(report_id)
VIREO_GUEST(spin)

namespace vireo::test {

/// The host's KVM, opened once for the whole test binary. Fails the test if unusable.
inline const hv::Hypervisor& hypervisor() {
    static auto hv = (raise_fd_limit(), hv::Hypervisor::open());
    if (!hv) {
        ADD_FAILURE() << "these tests need a usable /dev/kvm: " << hv.error().message();
        std::abort();
    }
    return *hv;
}

/// Builds a FlatVm or fails the test.
inline vmm::FlatVm make_vm(std::span<const uint8_t> image, vmm::FlatVmConfig config = {}) {
    auto vm = vmm::FlatVm::create(hypervisor(), image, config);
    if (!vm) {
        ADD_FAILURE() << vm.error().message();
        std::abort();
    }
    return std::move(vm).value();
}

/// Creates a vCPU or fails the test.
inline std::unique_ptr<hv::Vcpu> make_vcpu(vmm::FlatVm& vm, uint32_t id = 0,
                                           const hv::Gprs& init = {}) {
    auto vcpu = vm.create_vcpu(id, init);
    if (!vcpu) {
        ADD_FAILURE() << vcpu.error().message();
        std::abort();
    }
    return std::move(vcpu).value();
}

/// Runs until an exit other than Interrupted; fails the test on a host error.
inline hv::Exit run(hv::Vcpu& vcpu) {
    for (;;) {
        auto exit = vcpu.run();
        if (!exit) {
            ADD_FAILURE() << exit.error().message();
            hv::Exit e{};
            e.reason = hv::ExitReason::Unknown;
            return e;
        }
        if (exit->reason != hv::ExitReason::Interrupted) return *exit;
    }
}

}  // namespace vireo::test
