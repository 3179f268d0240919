#include "devices/pci/ivshmem.hpp"

#include <bit>
#include <cstring>

namespace vireo::devices::pci {

namespace {
constexpr uint32_t kMsixBarSize = 4096;
constexpr uint32_t kPbaOffset = 2048;  // the table (at most 64 x 16 bytes) below it
}  // namespace

Result<std::shared_ptr<Ivshmem>> Ivshmem::create(const IvshmemConfig& config,
                                                 std::shared_ptr<IrqLine> irq, Ring ring,
                                                 Msix::Send send, Msix::Changed changed) {
    if (!std::has_single_bit(config.region_size) || config.region_size < 4096)
        return fail(ErrorCode::InvalidArgument,
                    "ivshmem: the region's size {:#x} is not a power of two of at least 4 KiB",
                    config.region_size);
    if (config.doorbells && (config.vectors == 0 || config.vectors > kIvshmemMaxVectors))
        return fail(ErrorCode::InvalidArgument, "ivshmem: {} vectors (1 to {})", config.vectors,
                    kIvshmemMaxVectors);
    std::shared_ptr<Ivshmem> d(new Ivshmem(config, std::move(irq), std::move(ring)));
    VIREO_TRY(d->add_bar(0, BarKind::Memory32, kIvshmemRegisters));
    VIREO_TRY(d->add_bar(2, BarKind::Memory64, config.region_size, /*prefetchable=*/true));
    if (config.doorbells) {
        VIREO_TRY(d->add_bar(1, BarKind::Memory32, kMsixBarSize));
        VIREO_TRY_ASSIGN(d->msix_,
                         Msix::create(config.vectors, std::move(send), std::move(changed)));
        std::lock_guard lock(d->config_mu_);
        VIREO_TRY_ASSIGN(
            d->msix_cap_,
            d->config_.add_capability(kCapabilityMsix, d->msix_->capability(1, 0, 1, kPbaOffset),
                                      Msix::capability_writable()));
    }
    return d;
}

Ivshmem::Ivshmem(const IvshmemConfig& config, std::shared_ptr<IrqLine> irq, Ring ring)
    : PciFunction(Identity{0x1af4, 0x1110, 0x050000, 1, 0x1af4, 0x1100}),
      config_ivshmem_(config),
      irq_(std::move(irq)),
      ring_(std::move(ring)) {
    config_.set_interrupt_pin(1);
}

void Ivshmem::bar_read(uint32_t bar, uint64_t offset, std::span<uint8_t> data) {
    std::fill(data.begin(), data.end(), uint8_t{0});
    if (bar == 1 && msix_) {
        if (offset < kPbaOffset) return msix_->table_read(offset, data);
        return msix_->pba_read(offset - kPbaOffset, data);
    }
    if (bar == 2) {
        // The bus checked that the access lies inside the BAR.
        if (config_ivshmem_.region != nullptr)
            std::memcpy(data.data(), config_ivshmem_.region + offset, data.size());
        return;
    }
    if (bar != 0 || data.size() != 4 || offset % 4 != 0) return;
    uint32_t v = 0;
    {
        std::lock_guard lock(config_mu_);
        switch (offset) {
            case kIvshmemIntrMask:
                v = intr_mask_;
                break;
            case kIvshmemIntrStatus:
                v = intr_status_;
                intr_status_ = 0;  // reading clears it (QEMU's rule)
                update_intx_locked();
                break;
            case kIvshmemIvPosition:
                v = config_ivshmem_.doorbells ? config_ivshmem_.peer : 0xffff'ffffu;
                break;
            default:
                break;  // Doorbell is write-only; the rest reads 0
        }
    }
    std::memcpy(data.data(), &v, 4);
}

void Ivshmem::bar_write(uint32_t bar, uint64_t offset, std::span<const uint8_t> data) {
    if (bar == 1 && msix_) {
        if (offset < kPbaOffset) msix_->table_write(offset, data);
        return;  // the PBA is read-only
    }
    if (bar == 2) {
        if (config_ivshmem_.region != nullptr && !config_ivshmem_.region_readonly)
            std::memcpy(config_ivshmem_.region + offset, data.data(), data.size());
        return;
    }
    if (bar != 0 || data.size() != 4 || offset % 4 != 0) return;
    uint32_t v;
    std::memcpy(&v, data.data(), 4);
    if (offset == kIvshmemDoorbell) {
        if (config_ivshmem_.doorbells && ring_)
            ring_(static_cast<uint16_t>(v >> 16), static_cast<uint16_t>(v & 0xff));
        return;
    }
    std::lock_guard lock(config_mu_);
    if (offset == kIvshmemIntrMask) intr_mask_ = v;
    if (offset == kIvshmemIntrStatus) intr_status_ = v;
    update_intx_locked();
}

void Ivshmem::notify(uint16_t vector) {
    if (msix_ && msix_->enabled()) {
        msix_->signal(vector);
        return;
    }
    std::lock_guard lock(config_mu_);
    intr_status_ = 1;
    update_intx_locked();
}

void Ivshmem::update_intx_locked() {
    const bool pending = (intr_status_ & intr_mask_) != 0;
    config_.set_status_bits(kStatusInterrupt, pending);
    const bool level = pending && (config_.command() & kCommandIntxDisable) == 0;
    if (level == line_) return;
    line_ = level;
    if (irq_) irq_->set_level(level);
}

void Ivshmem::config_changed(const Change& c) {
    if (c.command) update_intx_locked();
    if (msix_ && c.touches(msix_cap_ + 2, 2)) msix_->set_control(config_.u16(msix_cap_ + 2));
}

void Ivshmem::reset_function() {
    intr_mask_ = 0;
    intr_status_ = 0;
    if (msix_) msix_->reset();
    update_intx_locked();
}

uint64_t Ivshmem::doorbell_address() const noexcept {
    const uint64_t at = decoded(0);
    return at == kNotDecoded ? kNotDecoded : at + kIvshmemDoorbell;
}

void Ivshmem::save_function(snapshot::Encoder& e) const {
    e.u32(intr_mask_);
    e.u32(intr_status_);
    if (msix_) msix_->save(e);
}

void Ivshmem::restore_function(snapshot::Decoder& d) {
    intr_mask_ = d.u32();
    intr_status_ = d.u32();
    if (msix_) msix_->restore(d);
    update_intx_locked();
}

}  // namespace vireo::devices::pci
