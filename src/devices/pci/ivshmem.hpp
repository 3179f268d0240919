// An inter-VM shared memory device with QEMU's ivshmem register layout, so guest software
// written for QEMU's ivshmem (its "plain" and "doorbell" forms, Linux's uio_pci_generic)
// works unchanged:
//   vendor 0x1af4, device 0x1110, class 0x0500 (RAM), subsystem 0x1af4:0x1100, INTA#;
//   BAR0 (256 bytes): 0x00 IntrMask, 0x04 IntrStatus (reading clears it), 0x08 IVPosition
//        (this domain's peer number; -1 without doorbells), 0x0C Doorbell (write
//        peer << 16 | vector); 32-bit accesses only, as QEMU's;
//   BAR1: the MSI-X table and PBA (with doorbells);
//   BAR2: the shared region (64-bit, prefetchable), guest memory the VMM maps there.
//
// Doorbells: in a machine, each (peer, vector) value of the Doorbell register is an ioeventfd
// whose eventfd the peer's machine holds; with MSI-X that eventfd is the peer's irqfd and the
// kernel delivers the interrupt, so this model sees a doorbell write only for a value no
// ioeventfd matched (a wrong peer or vector: dropped). Without MSI-X (INTx, as
// uio_pci_generic uses) the peer's VMM reads the eventfd and calls notify(): INTx needs the
// status bits set, which only the device model can do (QEMU does the same).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include "devices/device.hpp"
#include "devices/pci/bus.hpp"
#include "devices/pci/msix.hpp"

namespace vireo::devices::pci {

inline constexpr uint32_t kIvshmemRegisters = 256;
inline constexpr uint32_t kIvshmemIntrMask = 0x00;
inline constexpr uint32_t kIvshmemIntrStatus = 0x04;
inline constexpr uint32_t kIvshmemIvPosition = 0x08;
inline constexpr uint32_t kIvshmemDoorbell = 0x0c;
inline constexpr uint16_t kIvshmemMaxVectors = 64;

struct IvshmemConfig {
    uint64_t region_size = 0;  ///< a power of two, at least 4 KiB
    bool doorbells = true;
    uint16_t peer = 0;     ///< this domain's peer number (IVPosition)
    uint16_t vectors = 1;  ///< MSI-X vectors (with doorbells), 1 to kIvshmemMaxVectors
    /// The region in this process (region_size bytes), for BAR2 accesses that reach the
    /// model: the VMM maps the region into the guest where it placed BAR2, so only a guest
    /// that moved the BAR (or a read-only borrower's writes) comes here. Null: reads zeros.
    uint8_t* region = nullptr;
    bool region_readonly = false;  ///< writes to BAR2 are dropped
};

class Ivshmem final : public PciFunction {
  public:
    /// `irq`: the INTx line (may be null: no INTx). `ring`: a Doorbell write that reached the
    /// model (no ioeventfd took it): the VMM drops it or, without ioeventfds, delivers it.
    using Ring = std::function<void(uint16_t peer, uint16_t vector)>;
    /// `changed`: an MSI-X vector's message or deliverability changed (the VMM's irqfd route).
    static Result<std::shared_ptr<Ivshmem>> create(const IvshmemConfig& config,
                                                   std::shared_ptr<IrqLine> irq, Ring ring,
                                                   Msix::Send send, Msix::Changed changed = {});

    const char* name() const noexcept override { return "ivshmem"; }
    void bar_read(uint32_t bar, uint64_t offset, std::span<uint8_t> data) override;
    void bar_write(uint32_t bar, uint64_t offset, std::span<const uint8_t> data) override;

    /// A peer rang `vector` of this domain (the INTx path, or MSI-X when no irqfd is routed).
    void notify(uint16_t vector);

    const IvshmemConfig& ivshmem_config() const noexcept { return config_ivshmem_; }
    Msix* msix() noexcept { return msix_.get(); }
    /// The Doorbell register's guest-physical address now (kNotDecoded if BAR0 does not
    /// decode): where the VMM registers its ioeventfds.
    uint64_t doorbell_address() const noexcept;

  private:
    Ivshmem(const IvshmemConfig& config, std::shared_ptr<IrqLine> irq, Ring ring);
    void config_changed(const Change& c) override;
    void reset_function() override;
    void save_function(snapshot::Encoder& e) const override;
    void restore_function(snapshot::Decoder& d) override;
    void update_intx_locked();

    IvshmemConfig config_ivshmem_;
    std::shared_ptr<IrqLine> irq_;
    Ring ring_;
    std::unique_ptr<Msix> msix_;
    uint32_t msix_cap_ = 0;
    // Under config_mu_ (INTx state touches the status register).
    uint32_t intr_mask_ = 0;
    uint32_t intr_status_ = 0;
    bool line_ = false;
};

}  // namespace vireo::devices::pci
