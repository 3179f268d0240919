#include "snapshot/machine.hpp"

namespace vireo::snapshot {

void encode(Encoder& e, const MachineState& s) {
    e.u64(s.clock_ns);
    for (const auto* chip :
         {&s.chips.pic_primary, &s.chips.pic_secondary, &s.chips.ioapic, &s.chips.pit})
        e.bytes(*chip);
}

void decode(Decoder& d, MachineState& s) {
    s.clock_ns = d.u64();
    uint32_t id = 0;  // KVM_IRQCHIP_PIC_MASTER, _PIC_SLAVE, _IOAPIC
    for (auto* chip : {&s.chips.pic_primary, &s.chips.pic_secondary, &s.chips.ioapic}) {
        const auto bytes = d.bytes(kMaxChipBytes);
        chip->assign(bytes.begin(), bytes.end());
        // All three empty: the machine had no in-kernel interrupt controllers (split).
        if (chip->empty() && (id == 0 || s.chips.pic_primary.empty())) {
            ++id;
            continue;
        }
        const bool named = chip->size() >= 4 && (*chip)[0] == id && (*chip)[1] == 0 &&
                           (*chip)[2] == 0 && (*chip)[3] == 0;
        if (d.ok() && !named) d.invalid("an interrupt controller's state");
        ++id;
    }
    if (d.ok() && s.chips.pic_primary.empty() &&
        (!s.chips.pic_secondary.empty() || !s.chips.ioapic.empty()))
        d.invalid("an interrupt controller's state");
    const auto pit = d.bytes(kMaxChipBytes);  // empty: the machine has no PIT
    s.chips.pit.assign(pit.begin(), pit.end());
}

}  // namespace vireo::snapshot
