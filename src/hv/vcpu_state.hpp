// vCPU architectural state, read and written in flag-selected parts (NVMM's NVMM_X64_STATE_*).
// Plain structs, independent of <linux/kvm.h>; hv/ converts to and from KVM's layouts.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

namespace vireo::hv {

/// Which parts of VcpuState a get_state()/set_state() call transfers.
enum StateFlags : uint32_t {
    kStateGprs = 1u << 0,      ///< general-purpose registers, RIP, RFLAGS
    kStateSegments = 1u << 1,  ///< CS..GS, TR, LDTR, GDTR, IDTR
    kStateCrs = 1u << 2,       ///< CR0, CR2, CR3, CR4, CR8, EFER, APIC base
    kStateMsrs = 1u << 3,      ///< the MSRs listed in VcpuState::msrs (by index)
    kStateFpu = 1u << 4,       ///< legacy FPU/SSE state (FXSAVE layout)
    kStateXsave = 1u << 5,     ///< XSAVE area (opaque)
    kStateXcrs = 1u << 6,      ///< XCR0
    kStateLapic = 1u << 7,     ///< local APIC registers (needs an in-kernel irqchip)
    kStateEvents = 1u << 8,    ///< pending/injected exception, interrupt, NMI
    kStateMpState = 1u << 9,   ///< runnable / halted / waiting for SIPI
    kStateAll = (1u << 10) - 1,
    /// DR0-DR3, DR6, DR7. Not part of kStateAll (what a snapshot or reset carries): libnvmm's
    /// NVMM_X64_STATE_DRS asks for it.
    kStateDebugRegs = 1u << 10,
};

struct Gprs {
    uint64_t rax = 0, rbx = 0, rcx = 0, rdx = 0, rsi = 0, rdi = 0, rsp = 0, rbp = 0;
    uint64_t r8 = 0, r9 = 0, r10 = 0, r11 = 0, r12 = 0, r13 = 0, r14 = 0, r15 = 0;
    uint64_t rip = 0, rflags = 0x2;  ///< bit 1 of RFLAGS is reserved and always set
};

/// A segment register in its cached (descriptor) form.
struct Segment {
    uint64_t base = 0;
    uint32_t limit = 0;
    uint16_t selector = 0;
    uint8_t type = 0;
    bool present = false;
    uint8_t dpl = 0;
    bool db = false;  ///< default operand size (32-bit) for code, big for stack
    bool s = false;   ///< code/data (true) vs system (false)
    bool l = false;   ///< 64-bit code
    bool g = false;   ///< limit in 4 KiB units
    bool avl = false;
    bool unusable = false;
};

/// A descriptor table register (GDTR, IDTR).
struct DescriptorTable {
    uint64_t base = 0;
    uint16_t limit = 0;
};

struct Segments {
    Segment cs, ds, es, fs, gs, ss, tr, ldt;
    DescriptorTable gdt, idt;
};

struct ControlRegs {
    uint64_t cr0 = 0, cr2 = 0, cr3 = 0, cr4 = 0, cr8 = 0;
    uint64_t efer = 0;
    uint64_t apic_base = 0;
};

/// Debug registers, at their reset values by default.
struct DebugRegs {
    std::array<uint64_t, 4> db{};
    uint64_t dr6 = 0xffff0ff0;
    uint64_t dr7 = 0x400;
};

/// One MSR by index.
struct MsrEntry {
    uint32_t index = 0;
    uint64_t value = 0;
};

/// Legacy FPU/SSE state.
struct Fpu {
    std::array<std::array<uint8_t, 16>, 8> fpr{};
    uint16_t fcw = 0x37f, fsw = 0;
    uint8_t ftwx = 0;
    uint16_t last_opcode = 0;
    uint64_t last_ip = 0, last_dp = 0;
    std::array<std::array<uint8_t, 16>, 16> xmm{};
    uint32_t mxcsr = 0x1f80;
};

/// XSAVE area as KVM reports it (legacy 4 KiB layout); opaque to vireo.
struct Xsave {
    std::array<uint32_t, 1024> region{};
};

/// Local APIC register page (KVM_GET_LAPIC layout).
struct Lapic {
    std::array<uint8_t, 1024> regs{};
};

/// Pending and injected events.
struct Events {
    struct {
        bool injected = false;
        uint8_t vector = 0;
        bool has_error_code = false;
        bool pending = false;
        uint32_t error_code = 0;
    } exception;
    struct {
        bool injected = false;
        uint8_t vector = 0;
        bool soft = false;
        uint8_t shadow = 0;
    } interrupt;
    struct {
        bool injected = false;
        bool pending = false;
        bool masked = false;
    } nmi;
    uint32_t sipi_vector = 0;
};

enum class MpState : uint32_t {
    Runnable = 0,
    Uninitialized = 1,
    InitReceived = 2,
    Halted = 3,
    SipiReceived = 4,
};

/// Complete vCPU state; only the parts selected by the flags of a call are meaningful.
struct VcpuState {
    Gprs gprs;
    Segments segments;
    ControlRegs crs;
    std::vector<MsrEntry> msrs;  ///< kStateMsrs: the caller lists the indices
    Fpu fpu;
    Xsave xsave;
    uint64_t xcr0 = 1;
    Lapic lapic;
    Events events;
    MpState mp_state = MpState::Runnable;
    DebugRegs debug;
};

/// One CPUID leaf as KVM describes it.
struct CpuidEntry {
    uint32_t function = 0;
    uint32_t index = 0;
    uint32_t flags = 0;  ///< bit 0: the index (ECX input) is significant
    uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
    bool operator==(const CpuidEntry&) const = default;
};

}  // namespace vireo::hv
