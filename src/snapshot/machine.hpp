// The machine's own state as a snapshot section ("MACH"): the VM's clock (KVM_GET_CLOCK) and
// the in-kernel interrupt controllers and PIT (hv::ChipState: KVM_GET_IRQCHIP for the primary
// and secondary PIC and the IOAPIC, KVM_GET_PIT2), kept as KVM's bytes. Decoding bounds each
// and checks that each controller's bytes name the controller they are restored into (the
// chip id KVM_SET_IRQCHIP would otherwise take from the file); their sizes are checked against
// KVM's structures by hv::Machine::restore_chips.
#pragma once

#include <cstdint>

#include "hv/machine.hpp"
#include "snapshot/format.hpp"
#include "snapshot/state.hpp"

namespace vireo::snapshot {

inline constexpr uint32_t kMachineTag = tag("MACH");
inline constexpr uint32_t kMachineVersion = 1;
/// Far above KVM's structures (kvm_irqchip: 520 bytes, kvm_pit_state2: 112).
inline constexpr size_t kMaxChipBytes = 4096;

struct MachineState {
    uint64_t clock_ns = 0;
    hv::ChipState chips;
};

void encode(Encoder& e, const MachineState& s);
void decode(Decoder& d, MachineState& s);

}  // namespace vireo::snapshot
