// libnvmm on KVM: NetBSD's NVMM library API (nvmm.h) over vireo's hv layer.
//
// NVMM's model, kept here: a machine starts empty (no interrupt controller, no devices); the
// client maps memory it owns, creates vCPUs, reads and writes their state in flag-selected
// parts through vcpu->state, injects events through vcpu->event and completes I/O and MMIO
// exits with the assists. State is cached as NVMM's communication page does: getstate fetches
// only parts not yet cached since the last exit, setstate marks parts to commit, and the next
// nvmm_vcpu_run() applies them.
//
// What KVM adds: it finishes an I/O, MMIO or MSR instruction itself when KVM_RUN is next
// entered (it stores a read's value and moves RIP). An assisted exit lets it do exactly that,
// with no extra system call. An exit the client did not assist, or whose state it overwrote, is
// first flushed with the general registers put back as they were at the exit, so no leftover
// completion changes what the client set, and an unhandled instruction runs again as on NVMM.
// docs/libnvmm.md lists every difference.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <type_traits>
#include <vector>

#include "hv/hypervisor.hpp"
#include "hv/machine.hpp"
#include "hv/vcpu.hpp"
#include "nvmm/nvmm.h"
#include "nvmm/page_walk.hpp"
#include "nvmm/state.hpp"

namespace vireo::nvmm {
namespace {

constexpr uint32_t kMaxMachines = 1024;  // per process: a bound on the library's table
constexpr uint32_t kMaxVcpus = 256;      // NVMM's own limit, and the library's vCPU table
constexpr uint64_t kPage = 4096;
constexpr uint32_t kMaxCpuidConfs = 64;

int fail(int err) {
    errno = err;
    return -1;
}

int fail(const Error& e) {
    if (e.sys_errno() != 0) return fail(e.sys_errno());
    switch (e.code()) {
        case ErrorCode::InvalidArgument:
            return fail(EINVAL);
        case ErrorCode::NotFound:
            return fail(ENOENT);
        case ErrorCode::PermissionDenied:
            return fail(EACCES);
        case ErrorCode::Unsupported:
            return fail(ENOTSUP);
        case ErrorCode::AlreadyExists:
            return fail(EEXIST);
        case ErrorCode::OutOfRange:
            return fail(EINVAL);
        case ErrorCode::ResourceExhausted:
            return fail(ENOBUFS);
        case ErrorCode::BadState:
            return fail(EBUSY);
        case ErrorCode::System:
            break;
    }
    return fail(EIO);
}

enum class Pending : uint8_t { None, Io, Mmio, Msr };

// The communication page and what nvmm_vcpu_stop() needs, which finds it from vcpu->stop
// alone: a standard-layout struct whose first member is the page.
struct CommBox {
    nvmm_comm_page comm{};
    hv::Vcpu* vcpu = nullptr;
};
static_assert(std::is_standard_layout_v<CommBox>);

struct VcpuImpl {
    CommBox box;
    nvmm_comm_page& comm = box.comm;
    nvmm_vcpu_exit exit{};
    std::unique_ptr<hv::Vcpu> hv;
    hv::Exit last{};  // the last exit KVM reported (points into the run page)
    Pending pending = Pending::None;
    bool assisted = false;    // the client completed `pending` (an assist ran)
    bool int_window = false;  // NVMM's intr.int_window_exiting
    bool nmi_window = false;  // NVMM's intr.nmi_window_exiting (KVM injects NMIs itself)
    bool tpr_exit = false;    // NVMM_VCPU_CONF_TPR exit_changed
    bool ran = false;         // KVM refuses a new CPUID table once a vCPU has run
    std::vector<hv::CpuidEntry> cpuid;
    hv::VcpuState scratch;  // translation buffer (slow paths only)
};

struct MachineImpl {
    nvmm_machid_t id = 0;
    std::unique_ptr<hv::Machine> hv;
    time_t created = 0;
    std::mutex mu;  // areas, maps and the vCPU table's writers; never taken by nvmm_vcpu_run
    struct Area {
        uintptr_t hva;
        size_t size;
    };
    struct Map {
        uintptr_t hva;
        gpaddr_t gpa;
        size_t size;
        int prot;
        hv::SlotId slot;
    };
    std::vector<Area> areas;
    std::vector<Map> maps;
    std::unique_ptr<std::atomic<VcpuImpl*>[]> vcpus;
    std::vector<nvmm_comm_page*> pages;  // mach->pages, indexed by vCPU id
};

std::mutex g_mu;  // g_hv's creation and the machine table's writers
std::optional<hv::Hypervisor> g_hv;
std::atomic<MachineImpl*> g_machines[kMaxMachines];

MachineImpl* machine_of(const nvmm_machine* mach) {
    if (mach == nullptr || mach->machid >= kMaxMachines) return nullptr;
    MachineImpl* m = g_machines[mach->machid].load(std::memory_order_acquire);
    return m != nullptr && mach->areas == m ? m : nullptr;
}

// The library's vCPU behind (mach, vcpu), or nullptr if either is not one of its own.
VcpuImpl* vcpu_of(const nvmm_machine* mach, const nvmm_vcpu* vcpu) {
    MachineImpl* m = machine_of(mach);
    if (m == nullptr || vcpu == nullptr || vcpu->cpuid >= kMaxVcpus) return nullptr;
    VcpuImpl* v = m->vcpus[vcpu->cpuid].load(std::memory_order_acquire);
    return v != nullptr && vcpu->state == &v->comm.state ? v : nullptr;
}

// Runs `body` with C++ exceptions (only std::bad_alloc can arise) turned into ENOMEM.
template <typename F>
int guarded(F&& body) noexcept {
    try {
        return body();
    } catch (const std::bad_alloc&) {
        return fail(ENOMEM);
    } catch (...) {
        return fail(EIO);
    }
}

// ---- CPUID ------------------------------------------------------------------------------------

std::vector<hv::CpuidEntry> default_cpuid(nvmm_cpuid_t id) {
    std::vector<hv::CpuidEntry> out;
    for (hv::CpuidEntry e : g_hv->supported_cpuid()) {
        // NVMM offers no paravirtual interface: hide KVM's leaves (kvm-clock and friends).
        if (e.function >= 0x40000000 && e.function <= 0x4fffffff) continue;
        if (e.function == 1) {
            e.ebx = (e.ebx & 0x00ffffff) | (id << 24);
            e.ecx |= 1u << 31;                    // hypervisor present
            e.ecx &= ~((1u << 21) | (1u << 24));  // no x2APIC, no TSC deadline: no in-kernel LAPIC
        }
        if (e.function == 0xb || e.function == 0x1f) e.edx = id;
        out.push_back(e);
    }
    return out;
}

void apply_cpuid_mask(std::vector<hv::CpuidEntry>& table, const nvmm_vcpu_conf_cpuid& c) {
    for (auto& e : table) {
        if (e.function != c.leaf) continue;
        e.eax = (e.eax & ~c.u.mask.del.eax) | c.u.mask.set.eax;
        e.ebx = (e.ebx & ~c.u.mask.del.ebx) | c.u.mask.set.ebx;
        e.ecx = (e.ecx & ~c.u.mask.del.ecx) | c.u.mask.set.ecx;
        e.edx = (e.edx & ~c.u.mask.del.edx) | c.u.mask.set.edx;
    }
}

// KVM_GET_FPU and KVM_SET_FPU leave MXCSR out: where KVM has XSAVE, NVMM's FXSAVE-layout FPU
// state is the first 512 bytes of the XSAVE area instead.
bool fpu_through_xsave() {
    return g_hv->has(hv::Feature::Xsave);
}

uint32_t kvm_parts(uint64_t flags) {
    uint32_t parts = hv_parts(flags);
    if (!g_hv->has(hv::Feature::Xcrs)) parts &= ~hv::kStateXcrs;
    if ((parts & hv::kStateFpu) && fpu_through_xsave())
        parts = (parts & ~hv::kStateFpu) | hv::kStateXsave;
    return parts;
}

constexpr size_t kFxsaveSize = 512;
static_assert(sizeof(fxsave) == kFxsaveSize);

uint64_t xcr0_mask() {
    for (const auto& e : g_hv->supported_cpuid())
        if (e.function == 0xd && e.index == 0) return (uint64_t{e.edx} << 32) | e.eax;
    return 1;  // x87 only
}

// ---- state ------------------------------------------------------------------------------------

// Makes KVM finish the instruction of the last I/O, MMIO or MSR exit now, with nothing left
// for a later KVM_RUN. If the client did not assist it, the general registers are put back as
// they were at the exit (unless the client is about to set them), so the instruction runs
// again, as on NVMM, and no stale completion lands in the state.
Result<void> flush(VcpuImpl& v, bool client_sets_gprs) {
    if (v.pending == Pending::None) return ok();
    std::optional<hv::Gprs> before;
    if (!v.assisted) {
        if (!client_sets_gprs) {
            VIREO_TRY(v.hv->get_state(hv::kStateGprs, v.scratch));
            before = v.scratch.gprs;
        }
        // Neutral data for a read nobody answered, and no #GP for an MSR nobody handled.
        if (v.pending == Pending::Io && !v.last.io.write)
            std::memset(v.last.io.data_, 0, size_t{v.last.io.size} * v.last.io.count);
        if (v.pending == Pending::Mmio && !v.last.mmio.write) std::memset(v.last.mmio.data_, 0, 8);
    }
    v.pending = Pending::None;
    VIREO_TRY(v.hv->complete_pending());
    if (before) {
        v.scratch.gprs = *before;
        VIREO_TRY(v.hv->set_state(hv::kStateGprs, v.scratch));
    }
    return ok();
}

Result<void> fetch(VcpuImpl& v, uint64_t flags) {
    const uint64_t missing = flags & ~v.comm.state_cached;
    if (missing == 0) return ok();
    // After an assist the registers the client asks for are the ones past the instruction
    // (KVM's completion touches nothing else of the state).
    if (v.assisted && (missing & NVMM_X64_STATE_GPRS)) VIREO_TRY(flush(v, false));
    const uint32_t parts = kvm_parts(missing);
    if (parts & hv::kStateMsrs) list_state_msrs(v.scratch);
    VIREO_TRY(v.hv->get_state(parts, v.scratch));
    to_nvmm(v.scratch, missing, v.comm.state);
    if (parts & hv::kStateXsave)
        std::memcpy(&v.comm.state.fpu, v.scratch.xsave.region.data(), kFxsaveSize);
    if (missing & NVMM_X64_STATE_INTR) {
        v.comm.state.intr.int_window_exiting = v.int_window;
        v.comm.state.intr.nmi_window_exiting = v.nmi_window;
    }
    v.comm.state_cached |= missing;
    return ok();
}

Result<void> commit(VcpuImpl& v) {
    const uint64_t flags = v.comm.state_commit;
    if (flags == 0) return ok();
    VIREO_TRY(flush(v, (flags & NVMM_X64_STATE_GPRS) != 0));
    nvmm_x64_state& s = v.comm.state;
    // KVM sets segments, control registers and EFER in one call, and the events whole: read
    // what the client does not set, so it stays as it is.
    const uint32_t parts = kvm_parts(flags);
    const uint32_t read =
        parts & (hv::kStateSegments | hv::kStateCrs | hv::kStateEvents | hv::kStateXsave);
    if (read != 0) VIREO_TRY(v.hv->get_state(read, v.scratch));
    if (flags & NVMM_X64_STATE_CRS) {
        // As NVMM does: XCR0 keeps x87 and only what the host supports.
        s.crs[NVMM_X64_CR_XCR0] = (s.crs[NVMM_X64_CR_XCR0] & xcr0_mask()) | 1;
    }
    from_nvmm(s, flags, v.scratch);
    if (parts & hv::kStateXsave) {
        auto* area = reinterpret_cast<uint8_t*>(v.scratch.xsave.region.data());
        std::memcpy(area, &s.fpu, kFxsaveSize);
        area[kFxsaveSize] |= 3;  // XSTATE_BV: the x87 and SSE state are the ones given
    }
    const uint32_t write = parts;
    if (flags & NVMM_X64_STATE_INTR) {
        v.int_window = s.intr.int_window_exiting;
        v.nmi_window = s.intr.nmi_window_exiting;
        v.hv->request_interrupt_window(v.int_window);
    }
    VIREO_TRY(v.hv->set_state(write, v.scratch));
    v.comm.state_commit = 0;
    return ok();
}

// An assist ran: KVM will finish the instruction, so registers read before are stale (unless
// the client set its own, which win).
void assisted(VcpuImpl& v) {
    v.assisted = true;
    if (!(v.comm.state_commit & NVMM_X64_STATE_GPRS))
        v.comm.state_cached &= ~uint64_t{NVMM_X64_STATE_GPRS};
}

bool has_error_code(uint8_t vector) {
    switch (vector) {
        case 8:
        case 10:
        case 11:
        case 12:
        case 13:
        case 14:
        case 17:
        case 21:
        case 29:
        case 30:
            return true;
        default:
            return false;
    }
}

Result<void> inject_now(VcpuImpl& v) {
    const nvmm_vcpu_event& e = v.comm.event;
    v.comm.event_commit = false;
    if (e.type == NVMM_VCPU_EVENT_INTR) {
        if (e.vector == 2) return v.hv->inject_nmi();
        return v.hv->inject_interrupt(e.vector);
    }
    std::optional<uint32_t> code;
    if (has_error_code(e.vector)) code = static_cast<uint32_t>(e.u.excp.error);
    return v.hv->inject_exception(e.vector, code);
}

// ---- exits ------------------------------------------------------------------------------------

void translate(VcpuImpl& v, const hv::Exit& x) {
    nvmm_vcpu_exit& e = v.exit;
    if (x.reason == hv::ExitReason::Io) {  // the hot path: every field set, nothing cleared
        e.reason = NVMM_VCPU_EXIT_IO;
        e.u.io.in = !x.io.write;
        e.u.io.port = x.io.port;
        e.u.io.seg = -1;
        e.u.io.address_size = 0;
        e.u.io.operand_size = x.io.size;
        e.u.io.rep = e.u.io.str = x.io.count > 1;
        e.u.io.npc = 0;
        v.pending = Pending::Io;
        return;
    }
    std::memset(&e.u, 0, sizeof e.u);
    switch (x.reason) {
        case hv::ExitReason::Mmio:
            e.reason = NVMM_VCPU_EXIT_MEMORY;
            e.u.mem.gpa = x.mmio.gpa;
            e.u.mem.prot = x.mmio.write ? NVMM_PROT_WRITE : NVMM_PROT_READ;
            v.pending = Pending::Mmio;
            break;
        case hv::ExitReason::Msr: {
            // The client completes it NVMM's way (RAX/RDX, RIP = npc): give it RIP, and keep
            // the registers read for it as the state's cache.
            v.pending = Pending::Msr;
            uint64_t rip = 0;
            if (v.hv->get_state(hv::kStateGprs, v.scratch)) {
                to_nvmm(v.scratch, NVMM_X64_STATE_GPRS, v.comm.state);
                v.comm.state_cached |= NVMM_X64_STATE_GPRS;
                rip = v.scratch.gprs.rip;
            }
            if (x.msr.write) {
                e.reason = NVMM_VCPU_EXIT_WRMSR;
                e.u.wrmsr.msr = x.msr.index;
                e.u.wrmsr.val = x.msr.data;
                e.u.wrmsr.npc = rip + 2;
            } else {
                e.reason = NVMM_VCPU_EXIT_RDMSR;
                e.u.rdmsr.msr = x.msr.index;
                e.u.rdmsr.npc = rip + 2;
            }
            break;
        }
        case hv::ExitReason::Halt:
            e.reason = NVMM_VCPU_EXIT_HALTED;
            break;
        case hv::ExitReason::Shutdown:
            e.reason = NVMM_VCPU_EXIT_SHUTDOWN;
            break;
        case hv::ExitReason::IrqWindowOpen:
            // NVMM clears the request with the exit it asked for.
            e.reason = NVMM_VCPU_EXIT_INT_READY;
            v.int_window = false;
            v.hv->request_interrupt_window(false);
            break;
        case hv::ExitReason::Interrupted:
            if (v.comm.stop) {
                v.comm.stop = 0;
                e.reason = NVMM_VCPU_EXIT_STOPPED;
            } else {
                e.reason = NVMM_VCPU_EXIT_NONE;
            }
            break;
        case hv::ExitReason::SetTpr:  // (was matched as KVM's 12, TPR_ACCESS: never seen)
            e.reason = v.tpr_exit ? NVMM_VCPU_EXIT_TPR_CHANGED : NVMM_VCPU_EXIT_NONE;
            break;
        case hv::ExitReason::Unknown:
            e.reason = NVMM_VCPU_EXIT_INVALID;
            e.u.inv.hwcode = x.unknown.hardware_reason;
            break;
        case hv::ExitReason::InternalError:
            e.reason = NVMM_VCPU_EXIT_INVALID;
            e.u.inv.hwcode = x.internal.suberror;
            break;
        case hv::ExitReason::FailEntry:
            e.reason = NVMM_VCPU_EXIT_INVALID;
            e.u.inv.hwcode = x.fail_entry.hardware_reason;
            break;
        case hv::ExitReason::SystemEvent:
            e.reason = NVMM_VCPU_EXIT_SHUTDOWN;
            break;
        default:
            e.reason = NVMM_VCPU_EXIT_INVALID;
            break;
    }
}

// ---- guest page tables ------------------------------------------------------------------------

// With m.mu held: the client's map holding [gpa, gpa + len) whole, or nullptr.
const MachineImpl::Map* map_at(const MachineImpl& m, gpaddr_t gpa, uint64_t len) {
    for (const auto& map : m.maps)
        if (gpa >= map.gpa && len <= map.size && gpa - map.gpa <= map.size - len) return &map;
    return nullptr;
}

// `size` (4 or 8) bytes of guest-physical memory the client mapped, or nothing.
std::optional<uint64_t> read_gpa(MachineImpl& m, gpaddr_t gpa, unsigned size) {
    std::lock_guard lock(m.mu);
    const MachineImpl::Map* map = map_at(m, gpa, size);
    if (map == nullptr) return std::nullopt;
    uint64_t v = 0;
    std::memcpy(&v, reinterpret_cast<const void*>(map->hva + (gpa - map->gpa)), size);
    return v;
}

}  // namespace
}  // namespace vireo::nvmm

using namespace vireo;
using namespace vireo::nvmm;

extern "C" {

int nvmm_init(void) {
    return guarded([] {
        std::lock_guard lock(g_mu);
        if (g_hv) return 0;
        auto hv = hv::Hypervisor::open("/dev/kvm");
        if (!hv) return fail(hv.error().sys_errno() != 0 ? hv.error().sys_errno() : ENXIO);
        g_hv.emplace(std::move(*hv));
        return 0;
    });
}

int nvmm_root_init(void) {
    return nvmm_init();
}

int nvmm_capability(struct nvmm_capability* cap) {
    if (cap == nullptr) return fail(EFAULT);
    if (!g_hv) return fail(ENXIO);
    std::memset(cap, 0, sizeof *cap);
    cap->version = NVMM_KERN_VERSION;
    cap->state_size = sizeof(nvmm_x64_state);
    cap->max_machines = kMaxMachines;
    cap->max_vcpus = std::min(kMaxVcpus, g_hv->limits().max_vcpus);
    cap->max_ram = uint64_t{1} << g_hv->limits().phys_addr_bits;
    cap->arch.vcpu_conf_support = NVMM_CAP_ARCH_VCPU_CONF_CPUID | NVMM_CAP_ARCH_VCPU_CONF_TPR;
    cap->arch.xcr0_mask = xcr0_mask();
    cap->arch.mxcsr_mask = 0xffff;
    cap->arch.conf_cpuid_maxops = kMaxCpuidConfs;
    return 0;
}

int nvmm_machine_create(struct nvmm_machine* mach) {
    if (mach == nullptr) return fail(EFAULT);
    if (!g_hv) return fail(ENXIO);
    return guarded([&] {
        auto impl = std::make_unique<MachineImpl>();
        auto hm = g_hv->create_machine(hv::MachineConfig{});
        if (!hm) return fail(hm.error());
        impl->hv = std::move(*hm);
        // An MSR access KVM does not know exits to the client (NVMM's RDMSR/WRMSR exits); a KVM
        // without user-space MSR exits gives the guest #GP instead (docs/libnvmm.md).
        (void)impl->hv->exit_on_unknown_msrs();
        impl->vcpus = std::make_unique<std::atomic<VcpuImpl*>[]>(kMaxVcpus);
        impl->pages.assign(kMaxVcpus, nullptr);
        impl->created = std::time(nullptr);
        std::lock_guard lock(g_mu);
        for (uint32_t id = 0; id < kMaxMachines; ++id) {
            if (g_machines[id].load(std::memory_order_relaxed) != nullptr) continue;
            impl->id = id;
            mach->machid = id;
            mach->pages = impl->pages.data();
            mach->areas = impl.get();
            g_machines[id].store(impl.release(), std::memory_order_release);
            return 0;
        }
        return fail(ENOBUFS);
    });
}

int nvmm_machine_destroy(struct nvmm_machine* mach) {
    MachineImpl* m = machine_of(mach);
    if (m == nullptr) return fail(EINVAL);
    {
        std::lock_guard lock(g_mu);
        g_machines[m->id].store(nullptr, std::memory_order_release);
    }
    for (uint32_t i = 0; i < kMaxVcpus; ++i)
        delete m->vcpus[i].exchange(nullptr);
    delete m;
    std::memset(mach, 0, sizeof *mach);
    return 0;
}

int nvmm_machine_configure(struct nvmm_machine*, uint64_t, void*) {
    // NVMM defines no machine configuration on x86 (NVMM_MACH_CONF_CALLBACKS is obsolete): every
    // operation, on a machine or not, is EINVAL.
    return fail(EINVAL);
}

int nvmm_vcpu_create(struct nvmm_machine* mach, nvmm_cpuid_t cpuid, struct nvmm_vcpu* vcpu) {
    MachineImpl* m = machine_of(mach);
    if (m == nullptr) return fail(EINVAL);
    if (vcpu == nullptr) return fail(EFAULT);
    if (cpuid >= kMaxVcpus) return fail(EINVAL);
    return guarded([&] {
        std::lock_guard lock(m->mu);
        if (m->vcpus[cpuid].load(std::memory_order_relaxed) != nullptr) return fail(EBUSY);
        auto v = std::make_unique<VcpuImpl>();
        auto hvc = m->hv->create_vcpu(cpuid);
        if (!hvc) return fail(hvc.error());
        v->hv = std::move(*hvc);
        v->box.vcpu = v->hv.get();
        v->cpuid = default_cpuid(cpuid);
        if (auto r = v->hv->set_cpuid(v->cpuid); !r) return fail(r.error());
        // The x87/SSE power-on state (FCW 0x37f, MXCSR 0x1f80), which KVM leaves at zero.
        v->comm.state.fpu.fx_cw = 0x37f;
        v->comm.state.fpu.fx_mxcsr = 0x1f80;
        v->comm.state_commit = NVMM_X64_STATE_FPU;
        if (auto r = commit(*v); !r) return fail(r.error());
        std::memset(vcpu, 0, sizeof *vcpu);
        vcpu->cpuid = cpuid;
        vcpu->state = &v->comm.state;
        vcpu->event = &v->comm.event;
        vcpu->exit = &v->exit;
        vcpu->stop = &v->comm.stop;
        m->pages[cpuid] = &v->comm;
        m->vcpus[cpuid].store(v.release(), std::memory_order_release);
        return 0;
    });
}

int nvmm_vcpu_destroy(struct nvmm_machine* mach, struct nvmm_vcpu* vcpu) {
    VcpuImpl* v = vcpu_of(mach, vcpu);
    if (v == nullptr) return fail(EINVAL);
    MachineImpl* m = machine_of(mach);
    // KVM frees a vCPU only with its machine: its id stays taken until then (docs/libnvmm.md).
    std::lock_guard lock(m->mu);
    m->vcpus[vcpu->cpuid].store(nullptr, std::memory_order_release);
    m->pages[vcpu->cpuid] = nullptr;
    delete v;
    std::memset(vcpu, 0, sizeof *vcpu);
    return 0;
}

int nvmm_vcpu_configure(struct nvmm_machine* mach, struct nvmm_vcpu* vcpu, uint64_t op,
                        void* data) {
    VcpuImpl* v = vcpu_of(mach, vcpu);
    if (v == nullptr) return fail(EINVAL);
    if (data == nullptr) return fail(EFAULT);
    return guarded([&] {
        switch (op) {
            case NVMM_VCPU_CONF_CALLBACKS:
                std::memcpy(&vcpu->cbs, data, sizeof vcpu->cbs);
                return 0;
            case NVMM_VCPU_CONF_CPUID: {
                nvmm_vcpu_conf_cpuid c;
                std::memcpy(&c, data, sizeof c);
                if (c.rsvd != 0 || c.mask == c.exit) return fail(EINVAL);
                if (c.exit) return fail(ENOTSUP);  // KVM answers CPUID itself, never exits
                if (v->ran) return fail(EBUSY);    // KVM takes a CPUID table only before running
                apply_cpuid_mask(v->cpuid, c);
                if (auto r = v->hv->set_cpuid(v->cpuid); !r) return fail(r.error());
                return 0;
            }
            case NVMM_VCPU_CONF_TPR: {
                nvmm_vcpu_conf_tpr t;
                std::memcpy(&t, data, sizeof t);
                if (t.rsvd != 0) return fail(EINVAL);
                v->tpr_exit = t.exit_changed;
                return 0;
            }
            default:
                return fail(EINVAL);
        }
    });
}

int nvmm_vcpu_getstate(struct nvmm_machine* mach, struct nvmm_vcpu* vcpu, uint64_t flags) {
    VcpuImpl* v = vcpu_of(mach, vcpu);
    if (v == nullptr) return fail(EINVAL);
    if (flags & ~uint64_t{NVMM_X64_STATE_ALL}) return fail(EINVAL);
    return guarded([&] {
        if (auto r = fetch(*v, flags); !r) return fail(r.error());
        return 0;
    });
}

int nvmm_vcpu_setstate(struct nvmm_machine* mach, struct nvmm_vcpu* vcpu, uint64_t flags) {
    VcpuImpl* v = vcpu_of(mach, vcpu);
    if (v == nullptr) return fail(EINVAL);
    if (flags & ~uint64_t{NVMM_X64_STATE_ALL}) return fail(EINVAL);
    v->comm.state_commit |= flags;
    v->comm.state_cached |= flags;
    return 0;
}

int nvmm_vcpu_inject(struct nvmm_machine* mach, struct nvmm_vcpu* vcpu) {
    VcpuImpl* v = vcpu_of(mach, vcpu);
    if (v == nullptr) return fail(EINVAL);
    const nvmm_vcpu_event& e = v->comm.event;
    if (e.type == NVMM_VCPU_EVENT_EXCP) {
        if (e.vector >= 32 || e.vector == 2) return fail(EINVAL);
    } else if (e.type != NVMM_VCPU_EVENT_INTR) {
        return fail(EINVAL);
    }
    return guarded([&] {
        // Behind a completion KVM still owes, the event waits for nvmm_vcpu_run().
        v->comm.event_commit = true;
        if (v->pending != Pending::None) return 0;
        if (auto r = inject_now(*v); !r) return fail(r.error());
        return 0;
    });
}

int nvmm_vcpu_run(struct nvmm_machine* mach, struct nvmm_vcpu* vcpu) {
    VcpuImpl* v = vcpu_of(mach, vcpu);
    if (v == nullptr) return fail(EINVAL);
    return guarded([&] {
        // Slow paths: the client changed the state, left an exit unassisted, or queued an
        // event behind a completion.
        if (v->comm.state_commit != 0) {
            if (auto r = commit(*v); !r) return fail(r.error());
        } else if (v->pending != Pending::None && !v->assisted) {
            if (auto r = flush(*v, false); !r) return fail(r.error());
        }
        if (v->comm.event_commit) {
            if (v->pending != Pending::None)
                if (auto r = flush(*v, false); !r) return fail(r.error());
            if (auto r = inject_now(*v); !r) return fail(r.error());
        }
        if (v->comm.stop) {
            v->comm.stop = 0;
            v->exit.reason = NVMM_VCPU_EXIT_STOPPED;
            return 0;
        }
        v->ran = true;
        auto x = v->hv->run();
        if (!x) return fail(x.error());
        v->pending = Pending::None;
        v->assisted = false;
        v->comm.state_cached = 0;
        v->last = *x;
        translate(*v, *x);
        auto& es = v->exit.exitstate;
        const hv::ExitFlags f = v->hv->exit_flags();
        es.rflags = 0x2 | (f.if_flag ? 0x200 : 0);  // KVM reports only IF without a system call
        es.cr8 = f.cr8;
        es.int_shadow = 0;
        es.evt_pending = 0;
        es.int_window_exiting = v->int_window;
        es.nmi_window_exiting = v->nmi_window;
        return 0;
    });
}

int nvmm_vcpu_stop(struct nvmm_vcpu* vcpu) {
    if (vcpu == nullptr || vcpu->stop == nullptr) return fail(EINVAL);
    // vcpu->stop points into the library's VcpuImpl (its comm page): find the vCPU from it,
    // as this call may come from a signal handler that knows only the nvmm_vcpu.
    auto* box = reinterpret_cast<CommBox*>(reinterpret_cast<uintptr_t>(vcpu->stop) -
                                           offsetof(nvmm_comm_page, stop));
    *vcpu->stop = 1;
    box->vcpu->request_stop();
    return 0;
}

int nvmm_gpa_map(struct nvmm_machine* mach, uintptr_t hva, gpaddr_t gpa, size_t size, int prot) {
    MachineImpl* m = machine_of(mach);
    if (m == nullptr) return fail(EINVAL);
    if (size == 0 || hva % kPage || gpa % kPage || size % kPage) return fail(EINVAL);
    if (prot & ~NVMM_PROT_ALL) return fail(EINVAL);
    // KVM maps guest memory readable, and executable, always.
    if (!(prot & NVMM_PROT_READ)) return fail(ENOTSUP);
    return guarded([&] {
        std::lock_guard lock(m->mu);
        bool inside = false;
        for (const auto& a : m->areas)
            if (hva >= a.hva && hva - a.hva <= a.size && size <= a.size - (hva - a.hva))
                inside = true;
        if (!inside) return fail(EINVAL);
        auto slot = m->hv->map(memory::Gpa(gpa), reinterpret_cast<void*>(hva), size,
                               (prot & NVMM_PROT_WRITE) ? hv::kMapNone : hv::kMapReadOnly);
        if (!slot) return fail(slot.error());
        m->maps.push_back({hva, gpa, size, prot, *slot});
        return 0;
    });
}

int nvmm_gpa_unmap(struct nvmm_machine* mach, uintptr_t hva, gpaddr_t gpa, size_t size) {
    MachineImpl* m = machine_of(mach);
    if (m == nullptr) return fail(EINVAL);
    return guarded([&] {
        std::lock_guard lock(m->mu);
        for (auto it = m->maps.begin(); it != m->maps.end(); ++it) {
            if (it->gpa != gpa || it->size != size || it->hva != hva) continue;
            if (auto r = m->hv->unmap(it->slot); !r) return fail(r.error());
            m->maps.erase(it);
            return 0;
        }
        return fail(ENOENT);
    });
}

int nvmm_hva_map(struct nvmm_machine* mach, uintptr_t hva, size_t size) {
    MachineImpl* m = machine_of(mach);
    if (m == nullptr) return fail(EINVAL);
    if (size == 0 || hva % kPage || size % kPage || hva + size < hva) return fail(EINVAL);
    return guarded([&] {
        std::lock_guard lock(m->mu);
        for (const auto& a : m->areas)
            if (hva < a.hva + a.size && a.hva < hva + size) return fail(EEXIST);
        m->areas.push_back({hva, size});
        return 0;
    });
}

int nvmm_hva_unmap(struct nvmm_machine* mach, uintptr_t hva, size_t size) {
    MachineImpl* m = machine_of(mach);
    if (m == nullptr) return fail(EINVAL);
    return guarded([&] {
        std::lock_guard lock(m->mu);
        for (auto it = m->areas.begin(); it != m->areas.end(); ++it) {
            if (it->hva != hva || it->size != size) continue;
            for (const auto& map : m->maps)
                if (map.hva >= hva && map.hva - hva < size) return fail(EBUSY);
            m->areas.erase(it);
            return 0;
        }
        return fail(ENOENT);
    });
}

int nvmm_gpa_to_hva(struct nvmm_machine* mach, gpaddr_t gpa, uintptr_t* hva, nvmm_prot_t* prot) {
    MachineImpl* m = machine_of(mach);
    if (m == nullptr) return fail(EINVAL);
    if (hva == nullptr || prot == nullptr) return fail(EFAULT);
    std::lock_guard lock(m->mu);
    const MachineImpl::Map* map = map_at(*m, gpa, 1);
    if (map == nullptr) return fail(ENOENT);
    *hva = map->hva + (gpa - map->gpa);
    *prot = static_cast<nvmm_prot_t>(map->prot);
    return 0;
}

int nvmm_gva_to_gpa(struct nvmm_machine* mach, struct nvmm_vcpu* vcpu, gvaddr_t gva, gpaddr_t* gpa,
                    nvmm_prot_t* prot) {
    VcpuImpl* v = vcpu_of(mach, vcpu);
    if (v == nullptr) return fail(EINVAL);
    if (gpa == nullptr || prot == nullptr) return fail(EFAULT);
    MachineImpl* m = machine_of(mach);
    return guarded([&] {
        if (auto r = fetch(*v, NVMM_X64_STATE_CRS | NVMM_X64_STATE_MSRS); !r)
            return fail(r.error());
        const auto r = walk_page_tables(
            v->comm.state, gva, [m](uint64_t at, unsigned size) { return read_gpa(*m, at, size); });
        if (!r) return fail(EFAULT);
        *gpa = r->gpa;
        *prot = r->prot;
        return 0;
    });
}

int nvmm_assist_io(struct nvmm_machine* mach, struct nvmm_vcpu* vcpu) {
    VcpuImpl* v = vcpu_of(mach, vcpu);
    if (v == nullptr) return fail(EINVAL);
    if (v->pending != Pending::Io || v->assisted) return fail(EINVAL);
    if (vcpu->cbs.io == nullptr) return fail(EINVAL);
    // KVM has moved string I/O's memory side (REP INS/OUTS through the guest's page tables)
    // into the run page: one callback per element.
    const hv::IoExit& io = v->last.io;
    for (uint32_t i = 0; i < io.count; ++i) {
        nvmm_io cb{mach, vcpu, io.port, !io.write, io.size, io.data_ + size_t{i} * io.size};
        vcpu->cbs.io(&cb);
    }
    assisted(*v);
    return 0;
}

int nvmm_assist_mem(struct nvmm_machine* mach, struct nvmm_vcpu* vcpu) {
    VcpuImpl* v = vcpu_of(mach, vcpu);
    if (v == nullptr) return fail(EINVAL);
    if (v->pending != Pending::Mmio || v->assisted) return fail(EINVAL);
    if (vcpu->cbs.mem == nullptr) return fail(EINVAL);
    // KVM has decoded the instruction and asks for one access; a read-modify-write instruction
    // (AND, XCHG, MOVS between two MMIO addresses, ...) comes as two exits.
    const hv::MmioExit& mm = v->last.mmio;
    nvmm_mem cb{mach, vcpu, mm.gpa, mm.write, mm.len, mm.data_};
    vcpu->cbs.mem(&cb);
    assisted(*v);
    return 0;
}

int nvmm_ctl(int op, void* data, size_t size) {
    if (op != NVMM_CTL_MACH_INFO) return fail(EINVAL);
    if (data == nullptr || size != sizeof(nvmm_ctl_mach_info)) return fail(EINVAL);
    auto* info = static_cast<nvmm_ctl_mach_info*>(data);
    if (info->machid >= kMaxMachines) return fail(ENOENT);
    MachineImpl* m = g_machines[info->machid].load(std::memory_order_acquire);
    if (m == nullptr) return fail(ENOENT);
    std::lock_guard lock(m->mu);
    info->pid = getpid();
    info->time = m->created;
    info->nvcpus = m->hv->vcpu_count();
    info->nram = 0;
    for (const auto& map : m->maps)
        info->nram += map.size;
    return 0;
}

int nvmm_vcpu_dump(struct nvmm_machine* mach, struct nvmm_vcpu* vcpu) {
    if (nvmm_vcpu_getstate(mach, vcpu, NVMM_X64_STATE_ALL) < 0) return -1;
    const nvmm_x64_state& s = *vcpu->state;
    static const char* const gpr[] = {"RAX", "RCX", "RDX", "RBX", "RSP", "RBP",
                                      "RSI", "RDI", "R8",  "R9",  "R10", "R11",
                                      "R12", "R13", "R14", "R15", "RIP", "RFLAGS"};
    static const char* const seg[] = {"ES", "CS",  "SS",  "DS",  "FS",
                                      "GS", "GDT", "IDT", "LDT", "TR"};
    std::fprintf(stderr, "+ VCPU id=%u\n", vcpu->cpuid);
    for (unsigned i = 0; i < NVMM_X64_NGPR; ++i)
        std::fprintf(stderr, "| -> %s=%llx\n", gpr[i], static_cast<unsigned long long>(s.gprs[i]));
    for (unsigned i = 0; i < NVMM_X64_NSEG; ++i)
        std::fprintf(stderr, "| -> %s: sel=0x%x base=%llx limit=%x p=%d dpl=%d\n", seg[i],
                     s.segs[i].selector, static_cast<unsigned long long>(s.segs[i].base),
                     s.segs[i].limit, s.segs[i].attrib.p, s.segs[i].attrib.dpl);
    std::fprintf(stderr, "| -> CR0=%llx CR2=%llx CR3=%llx CR4=%llx CR8=%llx XCR0=%llx EFER=%llx\n",
                 static_cast<unsigned long long>(s.crs[NVMM_X64_CR_CR0]),
                 static_cast<unsigned long long>(s.crs[NVMM_X64_CR_CR2]),
                 static_cast<unsigned long long>(s.crs[NVMM_X64_CR_CR3]),
                 static_cast<unsigned long long>(s.crs[NVMM_X64_CR_CR4]),
                 static_cast<unsigned long long>(s.crs[NVMM_X64_CR_CR8]),
                 static_cast<unsigned long long>(s.crs[NVMM_X64_CR_XCR0]),
                 static_cast<unsigned long long>(s.msrs[NVMM_X64_MSR_EFER]));
    return 0;
}

}  // extern "C"
