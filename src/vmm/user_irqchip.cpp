#include "vmm/user_irqchip.hpp"

#include <algorithm>
#include <limits>

#include "base/log.hpp"

namespace vireo::vmm {

using devices::irqchip::Ipi;
using devices::irqchip::Lapic;

namespace {
constexpr uint32_t kMsrTsc = 0x10;
constexpr uint32_t kMaxCpus = 1024;  // more than any machine vireo builds
// The local APIC whose vCPU this thread runs (set at its first run): what the vCPU does to its
// own APIC needs no kick, before_run looks anyway.
thread_local const void* t_own = nullptr;
}  // namespace

// One vCPU's side: its local APIC, the APIC's timer, and where its thread sleeps.
struct UserIrqchip::Cpu final : devices::irqchip::LapicSink {
    Cpu(UserIrqchip& c, uint32_t i, TimerFd t)
        : chips(c), id(i), timer(std::move(t)), lapic(i, i == 0, c.clock_, *this) {}

    void send_ipi(const Ipi& ipi) override { chips.route(ipi); }
    void eoi_broadcast(uint8_t vector) override { chips.end_of_interrupt(vector); }
    void arm_timer(uint64_t deadline_ns) override {
        if (auto r = timer.arm_at(deadline_ns); !r)
            log::warn("vCPU {}: local APIC timer: {}", id, r.error().message());
    }
    // On the vCPU's thread (a WRMSR of IA32_TSC_DEADLINE): the guest's TSC now, against the
    // clock, at the TSC's rate. A deadline passed fires at once.
    uint64_t tsc_to_ns(uint64_t tsc) override {
        const uint64_t now = chips.clock_.now_ns();
        hv::MsrEntry e[] = {{kMsrTsc, 0}};
        if (vcpu == nullptr || tsc_khz == 0 || !vcpu->get_msrs(e) || tsc <= e[0].value)
            return std::max<uint64_t>(now, 1);
        const unsigned __int128 ns =
            static_cast<unsigned __int128>(tsc - e[0].value) * 1000000u / tsc_khz;
        constexpr uint64_t kFar = uint64_t{1} << 62;  // ~146 years: a timer that never fires
        return ns >= kFar - now ? kFar : now + static_cast<uint64_t>(ns);
    }
    void kick() override { chips.kick(*this); }

    UserIrqchip& chips;
    const uint32_t id;
    TimerFd timer;
    hv::Vcpu* vcpu = nullptr;
    uint32_t tsc_khz = 0;
    Lapic lapic;
    std::mutex mu;  // the sleeper's; taken to wake it (no lost wake-up)
    std::condition_variable cv;
    std::atomic<bool> sleeping{false};
    std::atomic<bool> nmi{false};
    std::atomic<bool> wait_sipi{false};  // after power-on (APs) and INIT
    std::atomic<int> sipi{-1};           // the startup IPI's vector, until taken
};

Result<std::unique_ptr<UserIrqchip>> UserIrqchip::create(const hv::Machine& machine,
                                                         uint32_t cpus) {
    if (machine.irqchip() != hv::IrqchipMode::None)
        return fail(ErrorCode::BadState,
                    "the user-space interrupt controllers need a machine without in-kernel ones");
    if (cpus == 0 || cpus > kMaxCpus)
        return fail(ErrorCode::InvalidArgument, "{} vCPUs: the user-space local APICs take 1 to {}",
                    cpus, kMaxCpus);
    VIREO_TRY_ASSIGN(auto timer, TimerFd::create());
    std::unique_ptr<UserIrqchip> chips(new UserIrqchip(std::move(timer), cpus));
    for (uint32_t id = 0; id < cpus; ++id) {
        VIREO_TRY_ASSIGN(auto t, TimerFd::create());
        chips->cpus_.push_back(std::make_unique<Cpu>(*chips, id, std::move(t)));
        chips->cpus_.back()->wait_sipi.store(id != 0);
    }
    chips->cpus_[0]->lapic.wire_lints();
    chips->keep_power_on();
    return chips;
}

UserIrqchip::UserIrqchip(TimerFd timer, uint32_t cpus) : PcChips(std::move(timer)) {
    cpus_.reserve(cpus);
}

UserIrqchip::~UserIrqchip() = default;

Result<void> UserIrqchip::attach(hv::Vcpu& vcpu) {
    if (vcpu.id() >= cpus_.size())
        return fail(ErrorCode::OutOfRange, "vCPU {}: the machine has {} local APICs", vcpu.id(),
                    cpus_.size());
    Cpu& c = *cpus_[vcpu.id()];
    c.vcpu = &vcpu;
    if (auto khz = vcpu.tsc_khz()) {
        c.tsc_khz = *khz;
    } else {
        log::warn("vCPU {}: {}; its TSC-deadline timer fires at once", vcpu.id(),
                  khz.error().message());
    }
    return ok();
}

int UserIrqchip::lapic_timer_fd(uint32_t id) const noexcept {
    return id < cpus_.size() ? cpus_[id]->timer.fd() : -1;
}

void UserIrqchip::on_lapic_timer(uint32_t id) {
    if (id >= cpus_.size()) return;
    cpus_[id]->timer.consume();
    cpus_[id]->lapic.timer_expired();
}

bool UserIrqchip::extint_for(Cpu& c) const {
    return c.id == 0 && extint_.load() && c.lapic.accepts_extint();
}

bool UserIrqchip::deliverable(Cpu& c, bool if_flag) const {
    if (c.nmi.load() || c.wait_sipi.load()) return true;
    return if_flag && (extint_for(c) || c.lapic.pending().has_value());
}

Result<void> UserIrqchip::before_run(hv::Vcpu& vcpu) {
    Cpu& c = *cpus_[vcpu.id()];
    t_own = &c;
    if (c.nmi.exchange(false)) VIREO_TRY(vcpu.inject_nmi());
    const bool ready = vcpu.exit_flags().ready;
    std::optional<uint8_t> vector;
    if (extint_for(c)) {
        if (ready) vector = pic_.acknowledge();
    } else if (ready) {
        vector = c.lapic.acknowledge();
    }
    if (vector) {
        VIREO_TRY(vcpu.inject_interrupt(*vector));
        injected_.fetch_add(1, std::memory_order_relaxed);
    }
    // Another request: an exit as soon as the guest can take it (after this one, if any).
    vcpu.request_interrupt_window(extint_for(c) || c.lapic.pending().has_value());
    vcpu.set_cr8(c.lapic.cr8());
    return ok();
}

void UserIrqchip::after_exit(hv::Vcpu& vcpu) {
    cpus_[vcpu.id()]->lapic.set_cr8(static_cast<uint8_t>(vcpu.exit_flags().cr8 & 0xf));
}

bool UserIrqchip::mmio(hv::Vcpu& vcpu, const hv::MmioExit& exit) {
    if (exit.gpa < Lapic::kBase || exit.gpa - Lapic::kBase >= Lapic::kSize) return false;
    Lapic& lapic = cpus_[vcpu.id()]->lapic;
    if (exit.write)
        lapic.write(exit.gpa - Lapic::kBase, exit.data());
    else
        lapic.read(exit.gpa - Lapic::kBase, exit.data());
    return true;
}

bool UserIrqchip::msr(hv::Vcpu& vcpu, const hv::MsrExit& exit) {
    if (exit.index != Lapic::kApicBaseMsr && exit.index != Lapic::kTscDeadlineMsr &&
        (exit.index < Lapic::kFirstMsr || exit.index > Lapic::kLastMsr))
        return false;
    Lapic& lapic = cpus_[vcpu.id()]->lapic;
    bool ok;
    if (exit.write) {
        ok = lapic.write_msr(exit.index, exit.data);
    } else {
        uint64_t value = 0;
        ok = lapic.read_msr(exit.index, value);
        if (ok) exit.set_value(value);
    }
    if (!ok) exit.fail();
    return true;
}

void UserIrqchip::halt(hv::Vcpu& vcpu, const std::function<bool()>& stop) {
    Cpu& c = *cpus_[vcpu.id()];
    const bool if_flag = vcpu.exit_flags().if_flag;
    c.sleeping.store(true);
    {
        std::unique_lock lock(c.mu);
        c.cv.wait(lock, [&] { return deliverable(c, if_flag) || stop(); });
    }
    c.sleeping.store(false);
}

bool UserIrqchip::waits_for_startup(const hv::Vcpu& vcpu) const {
    return cpus_[vcpu.id()]->wait_sipi.load();
}

std::optional<uint8_t> UserIrqchip::wait_for_startup(const hv::Vcpu& vcpu,
                                                     const std::function<bool()>& stop) {
    Cpu& c = *cpus_[vcpu.id()];
    c.sleeping.store(true);
    {
        std::unique_lock lock(c.mu);
        c.cv.wait(lock, [&] { return c.sipi.load() >= 0 || stop(); });
    }
    c.sleeping.store(false);
    const int v = c.sipi.exchange(-1);
    if (v < 0) return std::nullopt;
    c.wait_sipi.store(false);
    return static_cast<uint8_t>(v);
}

void UserIrqchip::wake_all() {
    for (auto& c : cpus_) {
        std::lock_guard lock(c->mu);
        c->cv.notify_all();
    }
}

void UserIrqchip::kick(Cpu& c) {
    if (t_own == &c) return;  // on the vCPU's own thread, out of KVM_RUN
    if (c.sleeping.load()) {
        std::lock_guard lock(c.mu);
        c.cv.notify_all();
    } else if (c.vcpu != nullptr) {
        c.vcpu->request_stop();  // out of KVM_RUN (or its next entry returns at once)
    }
}

void UserIrqchip::route(const Ipi& ipi) {
    const uint32_t all = ipi.x2apic ? 0xffffffffu : 0xffu;
    const bool broadcast = !ipi.logical && ipi.destination == all;
    Cpu* lowest = nullptr;
    for (auto& cp : cpus_) {
        Cpu& c = *cp;
        bool named;
        switch (ipi.shorthand) {
            case Ipi::Self:
                named = c.id == ipi.source;
                break;
            case Ipi::AllIncludingSelf:
                named = true;
                break;
            case Ipi::AllExcludingSelf:
                named = c.id != ipi.source;
                break;
            default:
                named = ipi.logical ? c.lapic.matches_logical(ipi.destination, ipi.x2apic)
                                    : broadcast || c.lapic.id() == ipi.destination;
                break;
        }
        if (!named) continue;
        switch (ipi.mode) {
            case Ipi::Fixed:
                c.lapic.accept(ipi.vector, ipi.level);  // kicks when it becomes deliverable
                break;
            case Ipi::LowestPriority:  // any CPU it names is allowed; the first one
                if (lowest == nullptr) lowest = &c;
                break;
            case Ipi::Nmi:
                c.nmi.store(true);
                kick(c);
                break;
            case Ipi::Init:
                // At once, in order with a startup IPI right behind it: the APIC is reset and
                // the CPU waits (a running one leaves the guest).
                if (ipi.level && !ipi.assert) break;  // the INIT level de-assert: nothing
                if (c.id == 0) break;                 // the BSP is not sent back to wait
                c.lapic.reset();
                c.sipi.store(-1);
                c.wait_sipi.store(true);
                kick(c);
                break;
            case Ipi::Startup:
                if (!c.wait_sipi.load()) break;  // ignored unless waiting for one
                c.sipi.store(ipi.vector);
                kick(c);
                break;
            default:  // SMI, ExtINT by message: not emulated
                break;
        }
    }
    if (lowest != nullptr) lowest->lapic.accept(ipi.vector, ipi.level);
}

void UserIrqchip::deliver(const devices::irqchip::MsiMessage& m) {
    // The MSI format (the I/O APIC's too): address bits 19:12 the destination, bit 2 logical;
    // data bits 7:0 the vector, 10:8 the delivery mode, 15 level-triggered.
    Ipi ipi;
    ipi.source = std::numeric_limits<uint32_t>::max();
    ipi.destination = static_cast<uint32_t>(m.address >> 12) & 0xff;
    ipi.logical = (m.address & 4) != 0;
    ipi.vector = static_cast<uint8_t>(m.data);
    ipi.mode = static_cast<Ipi::Mode>((m.data >> 8) & 7);
    ipi.level = (m.data & (1u << 15)) != 0;
    route(ipi);
}

void UserIrqchip::set_output(bool asserted) {
    extint_.store(asserted);
    if (asserted) kick(*cpus_[0]);
}

void UserIrqchip::save(snapshot::Encoder& e) const {
    PcChips::save(e);
    e.u32(static_cast<uint32_t>(cpus_.size()));
    for (const auto& c : cpus_) {
        c->lapic.save(e);
        e.boolean(c->wait_sipi.load());
        e.boolean(c->nmi.load());
        e.u32(static_cast<uint32_t>(c->sipi.load() + 1));  // 0: none
    }
}

void UserIrqchip::restore(snapshot::Decoder& d) {
    PcChips::restore(d);
    if (d.u32() != cpus_.size()) return d.invalid("local APIC count");
    for (auto& c : cpus_) {
        c->lapic.restore(d);
        const bool wait_sipi = d.boolean(), nmi = d.boolean();
        const uint32_t sipi = d.u32();
        if (!d.ok()) return;
        if (sipi > 256 || (c->id == 0 && wait_sipi) || (sipi != 0 && !wait_sipi))
            return d.invalid("local APIC start-up state");
        c->wait_sipi.store(wait_sipi);
        c->nmi.store(nmi);
        c->sipi.store(static_cast<int>(sipi) - 1);
    }
}

Result<void> UserIrqchip::sync() {
    extint_.store(pic_.output());
    return ok();
}

}  // namespace vireo::vmm
