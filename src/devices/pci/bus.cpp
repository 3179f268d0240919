#include "devices/pci/bus.hpp"

#include <algorithm>

namespace vireo::devices::pci {

namespace {

// Device 0: the host bridge (Red Hat's generic PCIe host bridge ID, as QEMU's gpex uses; no
// kernel quirk applies to it), class 0x0600.
class HostBridge final : public PciFunction {
  public:
    HostBridge() : PciFunction(Identity{0x1b36, 0x0008, 0x060000, 0, 0x1b36, 0x0008}) {}
    const char* name() const noexcept override { return "host-bridge"; }
    void bar_read(uint32_t, uint64_t, std::span<uint8_t> data) override {
        std::fill(data.begin(), data.end(), uint8_t{0xff});
    }
    void bar_write(uint32_t, uint64_t, std::span<const uint8_t>) override {}
};

}  // namespace

// ---- PciFunction ----

Result<void> PciFunction::add_bar(uint32_t bar, BarKind kind, uint64_t size, bool prefetchable) {
    std::lock_guard lock(config_mu_);
    VIREO_TRY(config_.add_bar(bar, kind, size, prefetchable));
    decode_locked();
    return ok();
}

Result<void> PciFunction::place_bar(uint32_t bar, uint64_t address) {
    std::lock_guard lock(config_mu_);
    VIREO_TRY(config_.place_bar(bar, address));
    decode_locked();
    return ok();
}

void PciFunction::mark_power_on() {
    std::lock_guard lock(config_mu_);
    power_on_ = config_;
}

void PciFunction::reset() {
    std::lock_guard lock(config_mu_);
    if (power_on_) config_ = *power_on_;
    decode_locked();
    reset_function();
}

void PciFunction::decode_locked() noexcept {
    for (uint32_t i = 0; i < kMaxBars; ++i) {
        const uint64_t at = config_.bar_decodes(i) ? config_.bar_address(i) : kNotDecoded;
        // Mid-sizing (all ones written), a BAR's address wraps past the top: not decoded.
        const bool fits = at != kNotDecoded && at + config_.bar_size(i) > at;
        decoded_[i].store(fits ? at : kNotDecoded, std::memory_order_release);
    }
}

void PciFunction::config_read(uint32_t offset, std::span<uint8_t> data) const {
    std::lock_guard lock(config_mu_);
    config_.read(offset, data);
}

void PciFunction::config_write(uint32_t offset, std::span<const uint8_t> data) {
    std::lock_guard lock(config_mu_);
    const Change c = config_.write(offset, data);
    if (c.command || c.bars) decode_locked();
    if (c.last > c.first) config_changed(c);
}

void PciFunction::save(snapshot::Encoder& e) const {
    std::lock_guard lock(config_mu_);
    config_.save(e);
    save_function(e);
}

void PciFunction::restore(snapshot::Decoder& d) {
    std::lock_guard lock(config_mu_);
    config_.restore(d);
    decode_locked();
    restore_function(d);
}

// ---- PciBus ----

PciBus::PciBus() {
    functions_[0] = std::make_shared<HostBridge>();
}

Result<uint32_t> PciBus::add(std::shared_ptr<PciFunction> function) {
    if (!function) return fail(ErrorCode::InvalidArgument, "pci: no function");
    for (uint32_t d = 1; d < kMaxDevices; ++d)
        if (!functions_[d]) {
            functions_[d] = std::move(function);
            return d;
        }
    return fail(ErrorCode::ResourceExhausted, "pci: bus 0 is full ({} devices)", kMaxDevices);
}

void PciBus::config_read(uint32_t device, uint32_t fn, uint32_t offset,
                         std::span<uint8_t> data) const {
    const PciFunction* f = fn == 0 ? function(device) : nullptr;
    if (!f) {
        std::fill(data.begin(), data.end(), uint8_t{0xff});  // nothing there
        return;
    }
    f->config_read(offset, data);
}

void PciBus::config_write(uint32_t device, uint32_t fn, uint32_t offset,
                          std::span<const uint8_t> data) const {
    if (PciFunction* f = fn == 0 ? function(device) : nullptr) f->config_write(offset, data);
}

PciBus::Hit PciBus::find(bool io, uint64_t address, size_t size) const noexcept {
    for (const auto& f : functions_) {
        if (!f) continue;
        for (uint32_t b = 0; b < kMaxBars; ++b) {
            const BarKind kind = f->bar_kind(b);
            if (kind == BarKind::None || (kind == BarKind::Io) != io) continue;
            const uint64_t at = f->decoded(b);
            if (at == PciFunction::kNotDecoded || address < at) continue;
            const uint64_t offset = address - at;
            if (offset < f->bar_size(b) && size <= f->bar_size(b) - offset)
                return {f.get(), b, offset};
        }
    }
    return {};
}

bool PciBus::bar_read(bool io, uint64_t address, std::span<uint8_t> data) const {
    const Hit h = find(io, address, data.size());
    if (!h.function) return false;
    h.function->bar_read(h.bar, h.offset, data);
    return true;
}

bool PciBus::bar_write(bool io, uint64_t address, std::span<const uint8_t> data) const {
    const Hit h = find(io, address, data.size());
    if (!h.function) return false;
    h.function->bar_write(h.bar, h.offset, data);
    return true;
}

// ---- ConfigPorts ----

std::optional<ConfigPorts::Target> ConfigPorts::target(uint64_t offset, size_t size) const {
    if (offset < 4 || offset + size > kConfigPortsSize) return std::nullopt;
    const uint32_t a = address_.load(std::memory_order_relaxed);
    if ((a & 0x8000'0000u) == 0 || ((a >> 16) & 0xff) != 0) return std::nullopt;  // off, bus 0
    return Target{(a >> 11) & 0x1f, (a >> 8) & 7, (a & 0xfc) + static_cast<uint32_t>(offset - 4)};
}

void ConfigPorts::read(uint64_t offset, std::span<uint8_t> data) {
    std::fill(data.begin(), data.end(), uint8_t{0xff});
    if (offset == 0 && data.size() == 4) {  // CONFIG_ADDRESS is a dword register
        const uint32_t a = address_.load(std::memory_order_relaxed);
        for (size_t i = 0; i < 4; ++i)
            data[i] = static_cast<uint8_t>(a >> (8 * i));
        return;
    }
    if (const auto t = target(offset, data.size()))
        bus_->config_read(t->device, t->function, t->offset, data);
}

void ConfigPorts::write(uint64_t offset, std::span<const uint8_t> data) {
    if (offset == 0 && data.size() == 4) {
        uint32_t a = 0;
        for (size_t i = 0; i < 4; ++i)
            a |= static_cast<uint32_t>(data[i]) << (8 * i);
        address_.store(a & 0x80ff'fffcu, std::memory_order_relaxed);  // reserved bits read 0
        return;
    }
    if (const auto t = target(offset, data.size()))
        bus_->config_write(t->device, t->function, t->offset, data);
}

void ConfigPorts::save(snapshot::Encoder& e) const {
    e.u32(address_.load());
}

void ConfigPorts::restore(snapshot::Decoder& d) {
    address_.store(d.u32() & 0x80ff'fffcu);
}

// ---- BarWindow ----

void BarWindow::read(uint64_t offset, std::span<uint8_t> data) {
    if (!bus_->bar_read(io_, base_ + offset, data))
        std::fill(data.begin(), data.end(), uint8_t{0xff});
}

void BarWindow::write(uint64_t offset, std::span<const uint8_t> data) {
    (void)bus_->bar_write(io_, base_ + offset, data);
}

}  // namespace vireo::devices::pci
