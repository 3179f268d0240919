// libFuzzer target: the PCI bus as a hostile guest kernel reaches it. The input is a sequence
// of accesses: CONFIG_ADDRESS / CONFIG_DATA port reads and writes of any width at any port
// offset (so any device, function and register, BAR sizing and moves, the command register,
// the MSI-X capability's control), reads and writes of any width anywhere in the memory and
// I/O windows the BARs decode in (the MSI-X table and PBA included), and device interrupts on
// any vector, on a function shaped like ivshmem and on the ivshmem device itself (its
// registers, doorbell, INTx and MSI-X, its shared region reached through a moved BAR2, peers'
// doorbells and resets). The bus must never touch memory outside its own state and the
// region, and what a BAR decodes must always lie inside it.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "devices/pci/bus.hpp"
#include "devices/pci/ivshmem.hpp"
#include "devices/pci/msix.hpp"

using namespace vireo;
using namespace vireo::devices::pci;

namespace {

// A function shaped like ivshmem: BAR 0 registers (256 bytes), BAR 1 the MSI-X table and PBA
// (4 KiB, 64 vectors), BAR 2 a 64-bit region; an I/O BAR 4 as well.
class Function final : public PciFunction {
  public:
    Function() : PciFunction(Identity{0x1af4, 0x1110, 0x050000, 1, 0x1af4, 0x1100}) {
        if (!add_bar(0, BarKind::Memory32, 256) || !add_bar(1, BarKind::Memory32, 4096) ||
            !add_bar(2, BarKind::Memory64, 1 << 20, true) || !add_bar(4, BarKind::Io, 64))
            abort();
        msix = Msix::create(64, [this](uint16_t v, const MsiMessage&) { sent += v + 1; }).value();
        cap = config_
                  .add_capability(kCapabilityMsix, msix->capability(1, 0, 1, 2048),
                                  Msix::capability_writable())
                  .value();
    }
    const char* name() const noexcept override { return "fuzz"; }
    void bar_read(uint32_t bar, uint64_t offset, std::span<uint8_t> data) override {
        check(bar, offset, data.size());
        if (bar == 1 && offset < 2048) return msix->table_read(offset, data);
        if (bar == 1) return msix->pba_read(offset - 2048, data);
        std::memset(data.data(), 0, data.size());
    }
    void bar_write(uint32_t bar, uint64_t offset, std::span<const uint8_t> data) override {
        check(bar, offset, data.size());
        if (bar == 1 && offset < 2048) msix->table_write(offset, data);
    }
    void config_changed(const Change& c) override {
        if (c.touches(cap + 2, 2)) msix->set_control(config_.u16(cap + 2));
    }
    void check(uint32_t bar, uint64_t offset, size_t size) const {
        if (bar >= kMaxBars || offset >= bar_size(bar) || size > bar_size(bar) - offset) abort();
    }
    std::unique_ptr<Msix> msix;
    uint32_t cap = 0;
    uint64_t sent = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    auto bus = std::make_shared<PciBus>();
    auto f = std::make_shared<Function>();
    if (!bus->add(f) || !bus->add(std::make_shared<Function>())) abort();
    struct Line final : devices::IrqLine {
        void set_level(bool) override {}
    };
    // The region as the VMM gives it (a guest that moved BAR2 reaches it through the model).
    static std::vector<uint8_t> region(1 << 20);
    devices::pci::IvshmemConfig c;
    c.region_size = region.size();
    c.vectors = 8;
    c.region = region.data();
    c.region_readonly = size % 2 == 1;
    auto ivshmem = devices::pci::Ivshmem::create(
                       c, std::make_shared<Line>(), [](uint16_t, uint16_t) {},
                       [](uint16_t, const MsiMessage&) {})
                       .value();
    if (!bus->add(ivshmem)) abort();
    ivshmem->mark_power_on();
    ConfigPorts ports(bus);
    // Each access: 12 bytes. op[0]: what; op[1]: width; op[2..3]: offset or vector; op[4..11]:
    // value or address.
    for (size_t i = 0; i + 12 <= size; i += 12) {
        const uint8_t* op = data + i;
        const size_t width = size_t{1} << (op[1] & 3);
        uint8_t buf[8];
        std::memcpy(buf, op + 4, 8);
        uint64_t addr;
        std::memcpy(&addr, op + 4, 8);
        const uint16_t small = static_cast<uint16_t>(op[2] | (op[3] << 8));
        switch (op[0] % 8) {
            case 0:
                ports.write(small % kConfigPortsSize, std::span(buf, width));
                break;
            case 1:
                ports.read(small % kConfigPortsSize, std::span(buf, width));
                break;
            case 2:
                (void)bus->bar_read(op[1] & 4, addr, std::span(buf, width));
                break;
            case 3:
                (void)bus->bar_write(op[1] & 4, addr, std::span(buf, width));
                break;
            case 4:
                f->msix->signal(small);
                break;
            case 6:  // a peer's doorbell
                ivshmem->notify(small);
                break;
            case 7:  // a guest reboot
                ivshmem->reset();
                break;
            case 5: {  // what a vCPU in the window would see: anything BAR 0..4 decodes
                for (uint32_t b = 0; b < kMaxBars; ++b) {
                    const uint64_t at = f->decoded(b);
                    if (at != PciFunction::kNotDecoded && at + f->bar_size(b) < at) abort();
                }
                break;
            }
        }
    }
    return 0;
}
