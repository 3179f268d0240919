#include "vmm/flat_vm.hpp"

#include <algorithm>

namespace vireo::vmm {

using memory::Gpa;

Result<FlatVm> FlatVm::create(const hv::Hypervisor& hv, std::span<const uint8_t> image,
                              const FlatVmConfig& config) {
    if (config.load_addr < 0x10000 || config.load_addr >= config.memory_bytes ||
        image.size() > config.memory_bytes - config.load_addr)
        return fail(ErrorCode::InvalidArgument,
                    "flat image of {} bytes at {:#x} does not fit in {} KiB of RAM above the "
                    "page tables",
                    image.size(), config.load_addr, config.memory_bytes >> 10);
    VIREO_TRY_ASSIGN(auto mem, memory::GuestMemory::create_flat(config.memory_bytes));
    FlatVm vm(hv, std::move(mem), config);
    VIREO_TRY(arch::x86::write_long_mode_tables(vm.memory_, vm.layout_));
    VIREO_TRY(vm.memory_.write(Gpa(config.load_addr), std::as_bytes(image)));

    hv::MachineConfig mc;
    mc.irqchip = config.irqchip;
    VIREO_TRY_ASSIGN(vm.machine_, hv.create_machine(mc));
    const auto& ram = vm.memory_.regions()[0];
    VIREO_TRY_ASSIGN(vm.ram_slot_,
                     vm.machine_->map(ram.start, ram.host.ptr(), ram.size, config.map_flags));
    return vm;
}

Result<std::unique_ptr<hv::Vcpu>> FlatVm::create_vcpu(uint32_t id, const hv::Gprs& init) {
    VIREO_TRY_ASSIGN(auto vcpu, machine_->create_vcpu(id));
    VIREO_TRY(vcpu->set_cpuid(hv_->supported_cpuid()));
    // Stacks grow down from the load address, one page per vCPU, above the page tables.
    constexpr uint64_t kStacksFloor = 0x10000;
    const uint64_t slots = (config_.load_addr - kStacksFloor) / 0x1000;
    const uint64_t stack = config_.load_addr - std::min<uint64_t>(id, slots - 1) * 0x1000;
    auto state = arch::x86::long_mode_state(layout_, config_.load_addr, stack, config_.ring);
    const uint64_t rip = state.gprs.rip, rsp = state.gprs.rsp, rflags = state.gprs.rflags;
    state.gprs = init;
    state.gprs.rip = rip, state.gprs.rsp = rsp, state.gprs.rflags = rflags;
    VIREO_TRY(vcpu->set_state(arch::x86::kLongModeStateFlags, state));
    return vcpu;
}

}  // namespace vireo::vmm
