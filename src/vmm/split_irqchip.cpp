#include "vmm/split_irqchip.hpp"

#include "base/log.hpp"

namespace vireo::vmm {

using devices::irqchip::Ioapic;
using devices::irqchip::Pic;
using devices::irqchip::Pit;

// The I/O APIC's MMIO window: the model, then the derived model's reaction to the write.
class PcChips::Window final : public devices::Device {
  public:
    explicit Window(PcChips& chips) : chips_(chips) {}
    const char* name() const noexcept override { return "ioapic"; }
    void read(uint64_t offset, std::span<uint8_t> data) override {
        chips_.ioapic_.read(offset, data);
    }
    void write(uint64_t offset, std::span<const uint8_t> data) override {
        chips_.ioapic_.write(offset, data);
        if (offset == Ioapic::kWindow) chips_.entries_written();
    }

  private:
    PcChips& chips_;
};

PcChips::PcChips(TimerFd timer)
    : timer_(std::move(timer)), ioapic_(*this), pic_(*this), pit_(clock_, *this) {}

PcChips::~PcChips() = default;

void PcChips::keep_power_on() {
    snapshot::Encoder e;
    save(e);
    power_on_ = e.data();
}

Result<std::unique_ptr<SplitIrqchip>> SplitIrqchip::create(hv::Machine& machine) {
    if (machine.irqchip() != hv::IrqchipMode::Split)
        return fail(ErrorCode::BadState, "the user-space I/O APIC needs a split-irqchip machine");
    VIREO_TRY_ASSIGN(auto timer, TimerFd::create());
    std::unique_ptr<SplitIrqchip> chips(new SplitIrqchip(machine, std::move(timer)));
    chips->keep_power_on();
    VIREO_TRY(chips->update_routes());
    return chips;
}

SplitIrqchip::SplitIrqchip(hv::Machine& machine, TimerFd timer)
    : PcChips(std::move(timer)), machine_(machine) {}

std::shared_ptr<devices::Device> PcChips::ioapic_window() {
    return std::make_shared<Window>(*this);
}

Result<void> PcChips::attach_ports(devices::Bus& pio) {
    using devices::irqchip::PicPorts;
    using devices::irqchip::PitPorts;
    VIREO_TRY(
        pio.attach(Pic::kPrimaryPort, 2, std::make_shared<PicPorts>(pic_, Pic::kPrimaryPort)));
    VIREO_TRY(
        pio.attach(Pic::kSecondaryPort, 2, std::make_shared<PicPorts>(pic_, Pic::kSecondaryPort)));
    VIREO_TRY(pio.attach(Pic::kElcrPort, 2, std::make_shared<PicPorts>(pic_, Pic::kElcrPort)));
    VIREO_TRY(pio.attach(Pit::kBasePort, 4, std::make_shared<PitPorts>(pit_, Pit::kBasePort)));
    return pio.attach(Pit::kPort61, 1, std::make_shared<PitPorts>(pit_, Pit::kPort61));
}

void PcChips::on_timer() {
    timer_.consume();
    pit_.expired();
}

void PcChips::set_irq(uint32_t gsi, bool level) {
    if (gsi < 16) pic_.set_irq(gsi, level);
    ioapic_.set_irq(gsi == 0 ? 2 : gsi, level);
}

void PcChips::pulse(uint32_t gsi) {
    if (gsi < 16) {
        pic_.set_irq(gsi, true);
        pic_.set_irq(gsi, false);
    }
    ioapic_.pulse(gsi == 0 ? 2 : gsi);
}

Result<void> SplitIrqchip::before_run(hv::Vcpu& bsp) {
    if (&bsp != bsp_) return ok();
    if (!extint_.load(std::memory_order_acquire)) {
        bsp.request_interrupt_window(false);
        return ok();
    }
    if (bsp.exit_flags().ready) {
        const uint8_t vector = pic_.acknowledge();
        VIREO_TRY(bsp.inject_interrupt(vector));
    }
    bsp.request_interrupt_window(pic_.output());
    return ok();
}

Result<void> PcChips::reset() {
    snapshot::Decoder d(power_on_, "interrupt controllers");
    restore(d);
    VIREO_TRY(d.finish());
    return sync();
}

void PcChips::save(snapshot::Encoder& e) const {
    ioapic_.save(e);
    pic_.save(e);
    pit_.save(e);
}

void PcChips::restore(snapshot::Decoder& d) {
    ioapic_.restore(d);
    pic_.restore(d);
    pit_.restore(d);  // re-arms the timer
}

Result<void> SplitIrqchip::sync() {
    extint_.store(pic_.output(), std::memory_order_release);
    return update_routes();
}

void SplitIrqchip::deliver(const devices::irqchip::MsiMessage& m) {
    if (auto r = machine_.signal_msi(m.address, m.data); !r)
        log::warn("I/O APIC: {}", r.error().message());
}

void SplitIrqchip::set_output(bool asserted) {
    extint_.store(asserted, std::memory_order_release);
    // vCPU 0 takes it at its next entry: kick it out of KVM_RUN (a spurious exit if it was
    // not in the guest).
    if (asserted && bsp_ != nullptr) bsp_->request_stop();
}

void PcChips::arm(uint64_t deadline_ns) {
    if (auto r = timer_.arm_at(deadline_ns); !r)
        log::warn("PIT: arming its timer: {}", r.error().message());
}

void PcChips::irq0_edge() {
    pulse(0);  // one operation at the I/O APIC: an EOI in between cannot see the line up
}

Result<void> SplitIrqchip::update_routes() {
    std::lock_guard lock(routes_mu_);
    std::array<std::optional<hv::MsiRoute>, Ioapic::kPins> routes;
    for (unsigned pin = 0; pin < Ioapic::kPins; ++pin) {
        const uint64_t entry = ioapic_.entry(pin);
        if (entry & Ioapic::kMasked) continue;
        const auto m = Ioapic::message(entry);
        routes[pin] = hv::MsiRoute{m.address, m.data};
    }
    if (routes_set_ && routes == routes_) return ok();
    if (auto r = machine_.set_pin_routes(routes); !r) {
        if (route_errors_.fetch_add(1, std::memory_order_relaxed) == 0)
            log::warn("I/O APIC: {}", r.error().message());
        return r;
    }
    routes_ = routes;
    routes_set_ = true;
    return ok();
}

}  // namespace vireo::vmm
