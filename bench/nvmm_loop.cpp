#include "nvmm_loop.hpp"

#include <sys/mman.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "nvmm/nvmm.h"

namespace vireo::bench {

namespace {
constexpr size_t kRam = 2 << 20;
constexpr uint64_t kEntry = 0x100000;

void no_op_io(nvmm_io*) {}
nvmm_assist_callbacks g_callbacks{no_op_io, nullptr};

void put64(uint8_t* p, uint64_t v) {
    std::memcpy(p, &v, 8);
}

void flat_seg(nvmm_x64_state_seg& s, uint16_t type, uint16_t selector, bool code) {
    s = {};
    s.selector = selector;
    s.attrib.type = type & 0xf;
    s.attrib.s = 1;
    s.attrib.p = 1;
    s.attrib.l = code;
    s.attrib.def = !code;
    s.attrib.g = 1;
    s.limit = 0xffffffff;
}
}  // namespace

struct NvmmLoop::Impl {
    nvmm_machine mach{};
    nvmm_vcpu vcpu{};
    uint8_t* ram = nullptr;
    bool machine = false;
};

NvmmLoop::~NvmmLoop() {
    if (!impl_) return;
    if (impl_->machine) nvmm_machine_destroy(&impl_->mach);
    if (impl_->ram) ::munmap(impl_->ram, kRam);
}

Result<std::unique_ptr<NvmmLoop>> NvmmLoop::create(std::span<const uint8_t> image, uint16_t port) {
    std::unique_ptr<NvmmLoop> loop(new NvmmLoop);
    loop->impl_ = std::make_unique<Impl>();
    Impl& m = *loop->impl_;
    if (nvmm_init() == -1) return fail_errno(errno, "nvmm_init");
    if (nvmm_machine_create(&m.mach) == -1) return fail_errno(errno, "nvmm_machine_create");
    m.machine = true;
    if (nvmm_vcpu_create(&m.mach, 0, &m.vcpu) == -1) return fail_errno(errno, "nvmm_vcpu_create");
    if (nvmm_vcpu_configure(&m.mach, &m.vcpu, NVMM_VCPU_CONF_CALLBACKS, &g_callbacks) == -1)
        return fail_errno(errno, "nvmm_vcpu_configure");
    void* ram = ::mmap(nullptr, kRam, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ram == MAP_FAILED) return fail_errno(errno, "mmap");
    m.ram = static_cast<uint8_t*>(ram);
    const auto hva = reinterpret_cast<uintptr_t>(ram);
    if (nvmm_hva_map(&m.mach, hva, kRam) == -1) return fail_errno(errno, "nvmm_hva_map");
    if (nvmm_gpa_map(&m.mach, hva, 0, kRam, NVMM_PROT_ALL) == -1)
        return fail_errno(errno, "nvmm_gpa_map");
    if (image.size() > kRam - kEntry) return fail(ErrorCode::InvalidArgument, "image too large");
    std::memcpy(m.ram + kEntry, image.data(), image.size());
    // One 2 MiB page, identity-mapped: PML4 0x10000, PDPT 0x11000, PD 0x12000.
    put64(m.ram + 0x10000, 0x11000 | 3);
    put64(m.ram + 0x11000, 0x12000 | 3);
    put64(m.ram + 0x12000, 0x83);
    nvmm_x64_state* s = m.vcpu.state;
    std::memset(s, 0, sizeof *s);
    flat_seg(s->segs[NVMM_X64_SEG_CS], 0xb, 0x8, true);
    for (int i :
         {NVMM_X64_SEG_SS, NVMM_X64_SEG_DS, NVMM_X64_SEG_ES, NVMM_X64_SEG_FS, NVMM_X64_SEG_GS})
        flat_seg(s->segs[i], 0x3, 0x10, false);
    s->segs[NVMM_X64_SEG_TR].attrib.type = 0xb;
    s->segs[NVMM_X64_SEG_TR].attrib.p = 1;
    s->segs[NVMM_X64_SEG_TR].limit = 0x67;
    s->segs[NVMM_X64_SEG_LDT].attrib.type = 0x2;
    s->segs[NVMM_X64_SEG_LDT].attrib.p = 1;
    s->gprs[NVMM_X64_GPR_RIP] = kEntry;
    s->gprs[NVMM_X64_GPR_RFLAGS] = 0x2;
    s->gprs[NVMM_X64_GPR_RDX] = port;
    s->crs[NVMM_X64_CR_CR0] = 0x80050033;
    s->crs[NVMM_X64_CR_CR3] = 0x10000;
    s->crs[NVMM_X64_CR_CR4] = 0x20;
    s->msrs[NVMM_X64_MSR_EFER] = 0x500;
    s->msrs[NVMM_X64_MSR_PAT] = 0x0007040600070406ull;
    s->drs[NVMM_X64_DR_DR6] = 0xffff0ff0;
    s->drs[NVMM_X64_DR_DR7] = 0x400;
    s->fpu.fx_cw = 0x37f;
    s->fpu.fx_mxcsr = 0x1f80;
    if (nvmm_vcpu_setstate(&m.mach, &m.vcpu, NVMM_X64_STATE_ALL) == -1)
        return fail_errno(errno, "nvmm_vcpu_setstate");
    return loop;
}

Result<uint64_t> NvmmLoop::loop(uint64_t exits) {
    Impl& m = *impl_;
    auto t0 = std::chrono::steady_clock::now();
    for (uint64_t i = 0; i < exits;) {
        if (nvmm_vcpu_run(&m.mach, &m.vcpu) == -1) return fail_errno(errno, "nvmm_vcpu_run");
        const uint64_t reason = m.vcpu.exit->reason;
        if (reason == NVMM_VCPU_EXIT_IO) {
            if (nvmm_assist_io(&m.mach, &m.vcpu) == -1) return fail_errno(errno, "nvmm_assist_io");
            ++i;
        } else if (reason != NVMM_VCPU_EXIT_NONE) {
            return fail(ErrorCode::System, "libnvmm loop: unexpected exit {:#x}", reason);
        }
    }
    auto t1 = std::chrono::steady_clock::now();
    return static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count());
}

}  // namespace vireo::bench
