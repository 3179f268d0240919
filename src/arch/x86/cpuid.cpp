#include "arch/x86/cpuid.hpp"

#include <bit>

namespace vireo::arch::x86 {

namespace {
uint32_t bits_for(uint32_t n) {
    return n <= 1 ? 0 : static_cast<uint32_t>(std::bit_width(n - 1));
}
}  // namespace

std::vector<hv::CpuidEntry> guest_cpuid(const std::vector<hv::CpuidEntry>& supported,
                                        uint32_t vcpu_id, uint32_t num_vcpus) {
    std::vector<hv::CpuidEntry> out = supported;
    const uint32_t core_bits = bits_for(num_vcpus);
    for (auto& e : out) {
        switch (e.function) {
            case 0x1:
                // EBX: initial APIC id, logical processors per package, CLFLUSH line size (8*8).
                e.ebx = (vcpu_id << 24) | (std::min<uint32_t>(num_vcpus, 255) << 16) | (8u << 8);
                e.ecx |= 1u << 31;                     // running under a hypervisor
                if (num_vcpus > 1) e.edx |= 1u << 28;  // HTT: more than one logical processor
                break;
            case 0x4:
                // Deterministic cache parameters: cores per package - 1 in EAX[31:26].
                if (e.eax & 0x1f)
                    e.eax = (e.eax & 0x03ffffff) | (std::min<uint32_t>(num_vcpus - 1, 63) << 26);
                break;
            case 0xb:
            case 0x1f:
                // Extended topology: level 0 = SMT (1 thread), level 1 = core (num_vcpus).
                e.edx = vcpu_id;
                if (e.index == 0) {
                    e.eax = 0;
                    e.ebx = 1;
                    e.ecx = (1u << 8) | 0;
                } else if (e.index == 1) {
                    e.eax = core_bits;
                    e.ebx = num_vcpus;
                    e.ecx = (2u << 8) | 1;
                } else {
                    e.eax = 0;
                    e.ebx = 0;
                    e.ecx = e.index;
                }
                break;
            case 0x80000008:
                // AMD: number of cores - 1 and the APIC id bits they use.
                e.ecx =
                    (e.ecx & ~0xf0ffu) | (core_bits << 12) | std::min<uint32_t>(num_vcpus - 1, 255);
                break;
            case 0x8000001e:
                e.eax = vcpu_id;                              // extended APIC id
                e.ebx = (e.ebx & ~0xffu) | (vcpu_id & 0xff);  // core id, 1 thread per core
                e.ecx = 0;                                    // node 0
                break;
            default:
                break;
        }
    }
    return out;
}

std::vector<hv::MsrEntry> boot_msrs() {
    constexpr uint32_t kMiscEnable = 0x1a0, kMtrrDefType = 0x2ff;
    constexpr uint64_t kFastStrings = 1, kMtrrEnable = 1u << 11, kWriteBack = 6;
    return {{kMiscEnable, kFastStrings}, {kMtrrDefType, kMtrrEnable | kWriteBack}};
}

}  // namespace vireo::arch::x86
