#include "hv/vcpu.hpp"

#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>
#include <vector>

#include "hv/kvm_ioctl.hpp"
#include "hv/kvm_uapi.hpp"

namespace vireo::hv {

using detail::kvm_ioctl;

namespace {

// request_stop() kicks a vCPU thread out of KVM_RUN with this signal. The handler does nothing:
// the point is that KVM_RUN returns EINTR. SA_RESTART keeps every other syscall transparent if
// the signal ever lands on a thread that is not in KVM_RUN.
int kick_signal() {
    return SIGRTMIN;
}

void install_kick_handler() {
    static std::once_flag once;
    std::call_once(once, [] {
        struct sigaction sa {};
        sa.sa_handler = [](int) {};
        sa.sa_flags = SA_RESTART;
        sigemptyset(&sa.sa_mask);
        ::sigaction(kick_signal(), &sa, nullptr);
    });
}

pid_t this_thread_tid() noexcept {
    thread_local pid_t tid = static_cast<pid_t>(::syscall(SYS_gettid));
    return tid;
}

Segment from_kvm(const kvm_segment& s) {
    return Segment{s.base,    s.limit,  s.selector, s.type,   s.present != 0, s.dpl,
                   s.db != 0, s.s != 0, s.l != 0,   s.g != 0, s.avl != 0,     s.unusable != 0};
}

kvm_segment to_kvm(const Segment& s) {
    kvm_segment k{};
    k.base = s.base;
    k.limit = s.limit;
    k.selector = s.selector;
    k.type = s.type;
    k.present = s.present;
    k.dpl = s.dpl;
    k.db = s.db;
    k.s = s.s;
    k.l = s.l;
    k.g = s.g;
    k.avl = s.avl;
    k.unusable = s.unusable;
    return k;
}

// kvm_msrs has a flexible array; keep small lists on the stack.
struct MsrBuffer {
    explicit MsrBuffer(size_t n)
        : storage((sizeof(kvm_msrs) + n * sizeof(kvm_msr_entry)) / sizeof(uint64_t) + 1) {
        get()->nmsrs = static_cast<uint32_t>(n);
    }
    kvm_msrs* get() { return reinterpret_cast<kvm_msrs*>(storage.data()); }
    std::vector<uint64_t> storage;
};

}  // namespace

Vcpu::Vcpu(UniqueFd fd, uint32_t id, void* run, size_t run_size)
    : fd_(std::move(fd)), id_(id), run_(run), run_size_(run_size) {
    install_kick_handler();
}

Vcpu::~Vcpu() {
    ::munmap(run_, run_size_);
}

Result<Exit> Vcpu::run() {
    auto* run = static_cast<kvm_run*>(run_);
    const pid_t tid = this_thread_tid();
    if (runner_tid_.load(std::memory_order_relaxed) != tid)
        runner_tid_.store(tid, std::memory_order_release);

    Exit exit;
    if (::ioctl(fd_.get(), KVM_RUN, 0) < 0) {
        if (errno == EINTR || errno == EAGAIN) {
            std::atomic_ref<uint8_t>(run->immediate_exit).store(0, std::memory_order_relaxed);
            exit.reason = ExitReason::Interrupted;
            return exit;
        }
        return fail_errno(errno, "KVM_RUN on vCPU {}", id_);
    }
    auto* base = static_cast<uint8_t*>(run_);
    switch (run->exit_reason) {
        case KVM_EXIT_IO:
            exit.reason = ExitReason::Io;
            // SAFETY: data_offset is set by KVM and points inside the run area.
            exit.io = IoExit{run->io.port, run->io.size, run->io.direction == KVM_EXIT_IO_OUT,
                             run->io.count, base + run->io.data_offset};
            break;
        case KVM_EXIT_MMIO:
            exit.reason = ExitReason::Mmio;
            exit.mmio = MmioExit{run->mmio.phys_addr, static_cast<uint8_t>(run->mmio.len),
                                 run->mmio.is_write != 0, run->mmio.data};
            break;
        case KVM_EXIT_HLT:
            exit.reason = ExitReason::Halt;
            break;
        case KVM_EXIT_SHUTDOWN:
            exit.reason = ExitReason::Shutdown;
            break;
        case KVM_EXIT_INTR:
            std::atomic_ref<uint8_t>(run->immediate_exit).store(0, std::memory_order_relaxed);
            exit.reason = ExitReason::Interrupted;
            break;
        case KVM_EXIT_SYSTEM_EVENT: {
            exit.reason = ExitReason::SystemEvent;
            auto t = run->system_event.type;
            exit.system_event.type =
                (t >= 1 && t <= 5) ? static_cast<SystemEventExit::Type>(t) : SystemEventExit::Other;
            break;
        }
        case KVM_EXIT_INTERNAL_ERROR:
            exit.reason = ExitReason::InternalError;
            exit.internal = InternalErrorExit{run->internal.suberror, run->internal.ndata, {}};
            for (uint32_t i = 0; i < 4 && i < run->internal.ndata; ++i)
                exit.internal.data[i] = run->internal.data[i];
            break;
        case KVM_EXIT_FAIL_ENTRY:
            exit.reason = ExitReason::FailEntry;
            exit.fail_entry =
                FailEntryExit{run->fail_entry.hardware_entry_failure_reason, run->fail_entry.cpu};
            break;
        case KVM_EXIT_HYPERCALL:
            exit.reason = ExitReason::Hypercall;
            exit.hypercall.nr = run->hypercall.nr;
            for (int i = 0; i < 6; ++i)
                exit.hypercall.args[i] = run->hypercall.args[i];
            // SAFETY: __u64 and uint64_t have the same size and representation.
            exit.hypercall.ret_ = reinterpret_cast<uint64_t*>(&run->hypercall.ret);
            break;
        case KVM_EXIT_DEBUG:
            exit.reason = ExitReason::Debug;
            break;
        case KVM_EXIT_IRQ_WINDOW_OPEN:
            exit.reason = ExitReason::IrqWindowOpen;
            break;
        case KVM_EXIT_X86_RDMSR:
        case KVM_EXIT_X86_WRMSR:
            exit.reason = ExitReason::Msr;
            run->msr.error = 0;
            // SAFETY: __u64 and uint64_t have the same size and representation.
            exit.msr = MsrExit{run->msr.index,
                               run->exit_reason == KVM_EXIT_X86_WRMSR,
                               run->msr.reason == KVM_MSR_EXIT_REASON_UNKNOWN,
                               run->msr.reason == KVM_MSR_EXIT_REASON_INVAL,
                               run->msr.data,
                               &run->msr.error,
                               reinterpret_cast<uint64_t*>(&run->msr.data)};
            break;
        case KVM_EXIT_IOAPIC_EOI:
            exit.reason = ExitReason::IoapicEoi;
            exit.eoi.vector = run->eoi.vector;
            break;
        case KVM_EXIT_SET_TPR:
            exit.reason = ExitReason::SetTpr;
            break;
        default:
            exit.reason = ExitReason::Unknown;
            exit.unknown = UnknownExit{run->exit_reason, run->hw.hardware_exit_reason};
            break;
    }
    return exit;
}

Result<void> Vcpu::notify_paused() {
    if (kvm_ioctl(fd_.get(), KVM_KVMCLOCK_CTRL, 0) == 0) return ok();
    if (errno == EINVAL) return ok();  // the guest has not set up kvm-clock on this vCPU
    return fail_errno(errno, "KVM_KVMCLOCK_CTRL on vCPU {}", id_);
}

Result<Stats> Vcpu::open_stats() const {
    const int fd = kvm_ioctl(fd_.get(), KVM_GET_STATS_FD, 0);
    if (fd < 0) return fail_errno(errno, "KVM_GET_STATS_FD on vCPU {}", id_);
    return Stats::from_fd(UniqueFd(fd));
}

Result<void> Vcpu::complete_pending() {
    auto* run = static_cast<kvm_run*>(run_);
    std::atomic_ref<uint8_t>(run->immediate_exit).store(1, std::memory_order_relaxed);
    const int r = ::ioctl(fd_.get(), KVM_RUN, 0);
    const int err = errno;
    std::atomic_ref<uint8_t>(run->immediate_exit).store(0, std::memory_order_relaxed);
    if (r < 0 && err != EINTR && err != EAGAIN)
        return fail_errno(err, "KVM_RUN (completing an exit) on vCPU {}", id_);
    return ok();
}

void Vcpu::request_stop() noexcept {
    auto* run = static_cast<kvm_run*>(run_);
    std::atomic_ref<uint8_t>(run->immediate_exit).store(1, std::memory_order_release);
    pid_t tid = runner_tid_.load(std::memory_order_acquire);
    if (tid != 0) ::syscall(SYS_tgkill, ::getpid(), tid, kick_signal());
}

ExitFlags Vcpu::exit_flags() const noexcept {
    const auto* run = static_cast<const kvm_run*>(run_);
    return {run->if_flag != 0, run->ready_for_interrupt_injection != 0, run->cr8};
}

void Vcpu::set_cr8(uint64_t cr8) noexcept {
    static_cast<kvm_run*>(run_)->cr8 = cr8;
}

void Vcpu::request_interrupt_window(bool enable) noexcept {
    static_cast<kvm_run*>(run_)->request_interrupt_window = enable ? 1 : 0;
}

Result<void> Vcpu::get_state(uint32_t flags, VcpuState& state) const {
    const int fd = fd_.get();
    if (flags & kStateGprs) {
        kvm_regs r{};
        if (kvm_ioctl(fd, KVM_GET_REGS, &r) < 0) return fail_errno(errno, "KVM_GET_REGS");
        state.gprs = Gprs{r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rsp, r.rbp, r.r8,
                          r.r9,  r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, r.rip, r.rflags};
    }
    if (flags & (kStateSegments | kStateCrs)) {
        kvm_sregs s{};
        if (kvm_ioctl(fd, KVM_GET_SREGS, &s) < 0) return fail_errno(errno, "KVM_GET_SREGS");
        if (flags & kStateSegments) {
            auto& g = state.segments;
            g.cs = from_kvm(s.cs), g.ds = from_kvm(s.ds), g.es = from_kvm(s.es);
            g.fs = from_kvm(s.fs), g.gs = from_kvm(s.gs), g.ss = from_kvm(s.ss);
            g.tr = from_kvm(s.tr), g.ldt = from_kvm(s.ldt);
            g.gdt = {s.gdt.base, s.gdt.limit};
            g.idt = {s.idt.base, s.idt.limit};
        }
        if (flags & kStateCrs)
            state.crs = ControlRegs{s.cr0, s.cr2, s.cr3, s.cr4, s.cr8, s.efer, s.apic_base};
    }
    if (flags & kStateMsrs) VIREO_TRY(get_msrs(state.msrs));
    if (flags & kStateFpu) {
        kvm_fpu f{};
        if (kvm_ioctl(fd, KVM_GET_FPU, &f) < 0) return fail_errno(errno, "KVM_GET_FPU");
        auto& o = state.fpu;
        std::memcpy(o.fpr.data(), f.fpr, sizeof f.fpr);
        o.fcw = f.fcw, o.fsw = f.fsw, o.ftwx = f.ftwx, o.last_opcode = f.last_opcode;
        o.last_ip = f.last_ip, o.last_dp = f.last_dp, o.mxcsr = f.mxcsr;
        std::memcpy(o.xmm.data(), f.xmm, sizeof f.xmm);
    }
    if (flags & kStateXsave) {
        static_assert(sizeof(kvm_xsave) >= sizeof(Xsave));
        if (kvm_ioctl(fd, KVM_GET_XSAVE, state.xsave.region.data()) < 0)
            return fail_errno(errno, "KVM_GET_XSAVE");
    }
    if (flags & kStateXcrs) {
        kvm_xcrs x{};
        if (kvm_ioctl(fd, KVM_GET_XCRS, &x) < 0) return fail_errno(errno, "KVM_GET_XCRS");
        for (uint32_t i = 0; i < x.nr_xcrs; ++i)
            if (x.xcrs[i].xcr == 0) state.xcr0 = x.xcrs[i].value;
    }
    if (flags & kStateLapic) {
        static_assert(sizeof(kvm_lapic_state) == sizeof(Lapic));
        if (kvm_ioctl(fd, KVM_GET_LAPIC, state.lapic.regs.data()) < 0)
            return fail_errno(errno, "KVM_GET_LAPIC (is there an in-kernel irqchip?)");
    }
    if (flags & kStateDebugRegs) {
        kvm_debugregs d{};
        if (kvm_ioctl(fd, KVM_GET_DEBUGREGS, &d) < 0) return fail_errno(errno, "KVM_GET_DEBUGREGS");
        for (size_t i = 0; i < 4; ++i)
            state.debug.db[i] = d.db[i];
        state.debug.dr6 = d.dr6, state.debug.dr7 = d.dr7;
    }
    if (flags & kStateEvents) {
        kvm_vcpu_events e{};
        if (kvm_ioctl(fd, KVM_GET_VCPU_EVENTS, &e) < 0)
            return fail_errno(errno, "KVM_GET_VCPU_EVENTS");
        auto& o = state.events;
        o.exception = {e.exception.injected != 0, e.exception.nr, e.exception.has_error_code != 0,
                       e.exception.pending != 0, e.exception.error_code};
        o.interrupt = {e.interrupt.injected != 0, e.interrupt.nr, e.interrupt.soft != 0,
                       e.interrupt.shadow};
        o.nmi = {e.nmi.injected != 0, e.nmi.pending != 0, e.nmi.masked != 0};
        o.sipi_vector = e.sipi_vector;
    }
    if (flags & kStateMpState) {
        kvm_mp_state mp{};
        if (kvm_ioctl(fd, KVM_GET_MP_STATE, &mp) < 0) return fail_errno(errno, "KVM_GET_MP_STATE");
        state.mp_state = static_cast<MpState>(mp.mp_state);
    }
    return ok();
}

Result<void> Vcpu::set_state(uint32_t flags, const VcpuState& state) {
    const int fd = fd_.get();
    // Order matters: control registers and segments first (they decide the mode), then MSRs,
    // registers, FPU, LAPIC and finally pending events.
    if (flags & (kStateSegments | kStateCrs)) {
        kvm_sregs s{};
        if (kvm_ioctl(fd, KVM_GET_SREGS, &s) < 0) return fail_errno(errno, "KVM_GET_SREGS");
        if (flags & kStateSegments) {
            const auto& g = state.segments;
            s.cs = to_kvm(g.cs), s.ds = to_kvm(g.ds), s.es = to_kvm(g.es);
            s.fs = to_kvm(g.fs), s.gs = to_kvm(g.gs), s.ss = to_kvm(g.ss);
            s.tr = to_kvm(g.tr), s.ldt = to_kvm(g.ldt);
            s.gdt.base = g.gdt.base, s.gdt.limit = g.gdt.limit;
            s.idt.base = g.idt.base, s.idt.limit = g.idt.limit;
        }
        if (flags & kStateCrs) {
            const auto& c = state.crs;
            s.cr0 = c.cr0, s.cr2 = c.cr2, s.cr3 = c.cr3, s.cr4 = c.cr4, s.cr8 = c.cr8;
            s.efer = c.efer, s.apic_base = c.apic_base;
        }
        if (kvm_ioctl(fd, KVM_SET_SREGS, &s) < 0)
            return fail_errno(errno,
                              "KVM_SET_SREGS on vCPU {} (inconsistent CR0/CR4/EFER or "
                              "segments, or CPUID not set before entering long mode?)",
                              id_);
    }
    if (flags & kStateMsrs) VIREO_TRY(set_msrs(state.msrs));
    if (flags & kStateGprs) {
        const auto& g = state.gprs;
        kvm_regs r{g.rax, g.rbx, g.rcx, g.rdx, g.rsi, g.rdi, g.rsp, g.rbp, g.r8,
                   g.r9,  g.r10, g.r11, g.r12, g.r13, g.r14, g.r15, g.rip, g.rflags};
        if (kvm_ioctl(fd, KVM_SET_REGS, &r) < 0) return fail_errno(errno, "KVM_SET_REGS");
    }
    if (flags & kStateFpu) {
        kvm_fpu f{};
        const auto& i = state.fpu;
        std::memcpy(f.fpr, i.fpr.data(), sizeof f.fpr);
        f.fcw = i.fcw, f.fsw = i.fsw, f.ftwx = i.ftwx, f.last_opcode = i.last_opcode;
        f.last_ip = i.last_ip, f.last_dp = i.last_dp, f.mxcsr = i.mxcsr;
        std::memcpy(f.xmm, i.xmm.data(), sizeof f.xmm);
        if (kvm_ioctl(fd, KVM_SET_FPU, &f) < 0) return fail_errno(errno, "KVM_SET_FPU");
    }
    if (flags & kStateXsave) {
        if (kvm_ioctl(fd, KVM_SET_XSAVE, state.xsave.region.data()) < 0)
            return fail_errno(errno, "KVM_SET_XSAVE");
    }
    if (flags & kStateXcrs) {
        kvm_xcrs x{};
        x.nr_xcrs = 1;
        x.xcrs[0].xcr = 0;
        x.xcrs[0].value = state.xcr0;
        if (kvm_ioctl(fd, KVM_SET_XCRS, &x) < 0) return fail_errno(errno, "KVM_SET_XCRS");
    }
    if (flags & kStateLapic) {
        if (kvm_ioctl(fd, KVM_SET_LAPIC, state.lapic.regs.data()) < 0)
            return fail_errno(errno, "KVM_SET_LAPIC (is there an in-kernel irqchip?)");
    }
    if (flags & kStateMpState) {
        kvm_mp_state mp{static_cast<uint32_t>(state.mp_state)};
        if (kvm_ioctl(fd, KVM_SET_MP_STATE, &mp) < 0) return fail_errno(errno, "KVM_SET_MP_STATE");
    }
    if (flags & kStateDebugRegs) VIREO_TRY(set_debug_registers(state.debug));
    if (flags & kStateEvents) {
        const auto& i = state.events;
        kvm_vcpu_events e{};
        e.exception.injected = i.exception.injected;
        e.exception.nr = i.exception.vector;
        e.exception.has_error_code = i.exception.has_error_code;
        e.exception.error_code = i.exception.error_code;
        e.interrupt.injected = i.interrupt.injected;
        e.interrupt.nr = i.interrupt.vector;
        e.interrupt.soft = i.interrupt.soft;
        e.interrupt.shadow = i.interrupt.shadow;
        e.nmi.injected = i.nmi.injected;
        e.nmi.pending = i.nmi.pending;
        e.nmi.masked = i.nmi.masked;
        e.sipi_vector = i.sipi_vector;
        e.flags = KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR |
                  KVM_VCPUEVENT_VALID_SHADOW;
        if (kvm_ioctl(fd, KVM_SET_VCPU_EVENTS, &e) < 0)
            return fail_errno(errno, "KVM_SET_VCPU_EVENTS");
    }
    return ok();
}

Result<void> Vcpu::get_msrs(std::span<MsrEntry> msrs) const {
    if (msrs.empty()) return ok();
    MsrBuffer buf(msrs.size());
    for (size_t i = 0; i < msrs.size(); ++i)
        buf.get()->entries[i].index = msrs[i].index;
    int n = kvm_ioctl(fd_.get(), KVM_GET_MSRS, buf.get());
    if (n < 0) return fail_errno(errno, "KVM_GET_MSRS");
    if (static_cast<size_t>(n) < msrs.size())
        return fail(ErrorCode::Unsupported, "vCPU {}: KVM cannot read MSR {:#x}", id_,
                    msrs[static_cast<size_t>(n)].index);
    for (size_t i = 0; i < msrs.size(); ++i)
        msrs[i].value = buf.get()->entries[i].data;
    return ok();
}

Result<void> Vcpu::set_msrs(std::span<const MsrEntry> msrs) {
    if (msrs.empty()) return ok();
    MsrBuffer buf(msrs.size());
    for (size_t i = 0; i < msrs.size(); ++i) {
        buf.get()->entries[i].index = msrs[i].index;
        buf.get()->entries[i].data = msrs[i].value;
    }
    int n = kvm_ioctl(fd_.get(), KVM_SET_MSRS, buf.get());
    if (n < 0) return fail_errno(errno, "KVM_SET_MSRS");
    if (static_cast<size_t>(n) < msrs.size())
        return fail(ErrorCode::InvalidArgument, "vCPU {}: KVM refused MSR {:#x} = {:#x}", id_,
                    msrs[static_cast<size_t>(n)].index, msrs[static_cast<size_t>(n)].value);
    return ok();
}

Result<std::vector<MsrEntry>> Vcpu::read_msrs(std::span<const uint32_t> indices) const {
    std::vector<MsrEntry> out;
    out.reserve(indices.size());
    MsrBuffer buf(indices.size());
    size_t i = 0;
    while (i < indices.size()) {
        const size_t n = indices.size() - i;
        buf.get()->nmsrs = static_cast<uint32_t>(n);
        for (size_t k = 0; k < n; ++k)
            buf.get()->entries[k].index = indices[i + k];
        const int got = kvm_ioctl(fd_.get(), KVM_GET_MSRS, buf.get());
        if (got < 0) return fail_errno(errno, "KVM_GET_MSRS");
        for (size_t k = 0; k < static_cast<size_t>(got); ++k)
            out.push_back({indices[i + k], buf.get()->entries[k].data});
        i += static_cast<size_t>(got) + 1;  // past the one KVM could not read
    }
    return out;
}

Result<size_t> Vcpu::write_msrs(std::span<const MsrEntry> msrs) {
    MsrBuffer buf(msrs.size());
    size_t refused = 0, i = 0;
    while (i < msrs.size()) {
        const size_t n = msrs.size() - i;
        buf.get()->nmsrs = static_cast<uint32_t>(n);
        for (size_t k = 0; k < n; ++k) {
            buf.get()->entries[k].index = msrs[i + k].index;
            buf.get()->entries[k].data = msrs[i + k].value;
        }
        const int got = kvm_ioctl(fd_.get(), KVM_SET_MSRS, buf.get());
        if (got < 0) return fail_errno(errno, "KVM_SET_MSRS");
        if (static_cast<size_t>(got) < n) ++refused;
        i += static_cast<size_t>(got) + 1;
    }
    return refused;
}

Result<void> Vcpu::clear_debug_registers() {
    return set_debug_registers(DebugRegs{});  // DebugRegs' defaults are the reset values
}

Result<void> Vcpu::set_debug_registers(const DebugRegs& regs) {
    kvm_debugregs d{};
    for (size_t i = 0; i < 4; ++i)
        d.db[i] = regs.db[i];
    d.dr6 = regs.dr6, d.dr7 = regs.dr7;
    if (kvm_ioctl(fd_.get(), KVM_SET_DEBUGREGS, &d) < 0)
        return fail_errno(errno, "KVM_SET_DEBUGREGS");
    return ok();
}

Result<void> Vcpu::set_cpuid(std::span<const CpuidEntry> entries) {
    std::vector<uint64_t> storage(
        (sizeof(kvm_cpuid2) + entries.size() * sizeof(kvm_cpuid_entry2)) / 8 + 1);
    auto* cpuid = reinterpret_cast<kvm_cpuid2*>(storage.data());
    cpuid->nent = static_cast<uint32_t>(entries.size());
    for (size_t i = 0; i < entries.size(); ++i) {
        const auto& e = entries[i];
        auto& k = cpuid->entries[i];
        k.function = e.function, k.index = e.index, k.flags = e.flags;
        k.eax = e.eax, k.ebx = e.ebx, k.ecx = e.ecx, k.edx = e.edx;
    }
    if (kvm_ioctl(fd_.get(), KVM_SET_CPUID2, cpuid) < 0)
        return fail_errno(errno, "KVM_SET_CPUID2 on vCPU {} ({} leaves)", id_, entries.size());
    return ok();
}

Result<void> Vcpu::inject_interrupt(uint8_t vector) {
    kvm_interrupt irq{vector};
    if (kvm_ioctl(fd_.get(), KVM_INTERRUPT, &irq) < 0)
        return fail_errno(errno,
                          "injecting interrupt {:#x} into vCPU {} (only without an in-kernel "
                          "irqchip, or as the split irqchip's ExtINT)",
                          vector, id_);
    return ok();
}

Result<uint32_t> Vcpu::tsc_khz() const {
    const int khz = kvm_ioctl(fd_.get(), KVM_GET_TSC_KHZ, 0);
    if (khz <= 0) return fail_errno(khz < 0 ? errno : EINVAL, "KVM_GET_TSC_KHZ on vCPU {}", id_);
    return static_cast<uint32_t>(khz);
}

Result<void> Vcpu::inject_nmi() {
    if (kvm_ioctl(fd_.get(), KVM_NMI, 0) < 0)
        return fail_errno(errno, "injecting an NMI into vCPU {}", id_);
    return ok();
}

Result<void> Vcpu::inject_exception(uint8_t vector, std::optional<uint32_t> error_code) {
    if (vector >= 32)
        return fail(ErrorCode::InvalidArgument, "exception vector {} is not below 32", vector);
    kvm_vcpu_events e{};
    if (kvm_ioctl(fd_.get(), KVM_GET_VCPU_EVENTS, &e) < 0)
        return fail_errno(errno, "KVM_GET_VCPU_EVENTS");
    e.exception.injected = 1;
    e.exception.nr = vector;
    e.exception.has_error_code = error_code.has_value();
    e.exception.error_code = error_code.value_or(0);
    e.flags = 0;
    if (kvm_ioctl(fd_.get(), KVM_SET_VCPU_EVENTS, &e) < 0)
        return fail_errno(errno, "injecting exception {} into vCPU {}", vector, id_);
    return ok();
}

}  // namespace vireo::hv
