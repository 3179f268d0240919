// The tagged result of Vcpu::run(): why the guest stopped, with what is needed to complete it.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>

namespace vireo::hv {

enum class ExitReason : uint8_t {
    Io,             ///< port I/O: see Exit::io
    Mmio,           ///< access to guest-physical memory no slot backs: see Exit::mmio
    Halt,           ///< HLT with no interrupt pending (only without an in-kernel LAPIC)
    Shutdown,       ///< triple fault
    SystemEvent,    ///< the in-kernel platform asked to power off / reset / crash
    Interrupted,    ///< request_stop() or a signal; may be spurious, just run again
    InternalError,  ///< KVM could not emulate something: see Exit::internal
    FailEntry,      ///< hardware refused to enter the guest: see Exit::fail_entry
    Hypercall,      ///< KVM_HC_* the kernel forwards (only when enabled)
    Debug,          ///< guest debugging exit
    IrqWindowOpen,  ///< the guest can accept an interrupt (only when requested)
    Msr,            ///< RDMSR/WRMSR outside Machine::restrict_msrs' list: see Exit::msr
    IoapicEoi,      ///< split irqchip: the local APIC's EOI of a level vector, see Exit::eoi
    SetTpr,   ///< no in-kernel LAPIC: the guest lowered CR8 (the VMM may deliver what it unmasked)
    Unknown,  ///< anything else: see Exit::unknown
};

/// Short name of an exit reason ("io", "mmio", ...).
const char* to_string(ExitReason reason) noexcept;

/// Port I/O. For an IN, the handler fills data() before the next run().
struct IoExit {
    uint16_t port;
    uint8_t size;    ///< 1, 2 or 4 bytes per element
    bool write;      ///< OUT (true) or IN (false)
    uint32_t count;  ///< elements (> 1 for REP INS/OUTS)
    uint8_t* data_;  ///< inside the vCPU's run page; valid until the next run()

    std::span<uint8_t> data() const noexcept { return {data_, size_t{size} * count}; }
    /// The first element as an integer (OUT).
    uint32_t value() const noexcept {
        uint32_t v = 0;
        std::memcpy(&v, data_, size);
        return v;
    }
    /// Sets the first element (IN).
    void set_value(uint32_t v) const noexcept { std::memcpy(data_, &v, size); }
};

/// MMIO access. For a read, the handler calls set_value() before the next run().
struct MmioExit {
    uint64_t gpa;
    uint8_t len;  ///< 1..8 bytes
    bool write;
    uint8_t* data_;  ///< 8 bytes inside the vCPU's run page; valid until the next run()

    std::span<uint8_t> data() const noexcept { return {data_, len}; }
    uint64_t value() const noexcept {
        uint64_t v = 0;
        std::memcpy(&v, data_, len);
        return v;
    }
    void set_value(uint64_t v) const noexcept { std::memcpy(data_, &v, len); }
};

struct SystemEventExit {
    enum Type : uint32_t { Shutdown = 1, Reset = 2, Crash = 3, Wakeup = 4, Suspend = 5, Other = 0 };
    Type type;
};

struct InternalErrorExit {
    uint32_t suberror;  ///< KVM_INTERNAL_ERROR_*: 1 emulation, 2 simultaneous exceptions, ...
    uint32_t ndata;
    uint64_t data[4];
};

struct FailEntryExit {
    uint64_t hardware_reason;
    uint32_t cpu;
};

struct HypercallExit {
    uint64_t nr;
    uint64_t args[6];
    uint64_t* ret_;  ///< inside the run page
    void set_return(uint64_t v) const noexcept { *ret_ = v; }
};

/// An MSR access the machine's filter denies, or of an MSR KVM does not know
/// (Machine::restrict_msrs). Before the next run() the handler either refuses it, fail() (the
/// guest gets #GP), or completes it: set_value() for a read.
struct MsrExit {
    uint32_t index;
    bool write;
    bool unknown;   ///< KVM does not know the MSR (else the filter denied it, or KVM refused it)
    bool refused;   ///< KVM refused the access (Machine::restrict_msrs' refused_too)
    uint64_t data;  ///< the value written (WRMSR)
    uint8_t* error_;
    uint64_t* data_;
    void fail() const noexcept { *error_ = 1; }
    void set_value(uint64_t v) const noexcept { *data_ = v; }
};

/// IrqchipMode::Split: the guest ended a level-triggered interrupt that a user-space I/O APIC
/// routed (KVM_EXIT_IOAPIC_EOI); the VMM's I/O APIC drops the entry's remote IRR.
struct EoiExit {
    uint8_t vector;
};

struct UnknownExit {
    uint32_t kvm_reason;  ///< KVM_EXIT_* value
    uint64_t hardware_reason;
};

/// Why Vcpu::run() returned. Pointers inside point into the run page and stay valid only until
/// the next run() on the same vCPU.
struct Exit {
    ExitReason reason;
    union {
        IoExit io;
        MmioExit mmio;
        SystemEventExit system_event;
        InternalErrorExit internal;
        FailEntryExit fail_entry;
        HypercallExit hypercall;
        MsrExit msr;
        EoiExit eoi;
        UnknownExit unknown;
    };
};

}  // namespace vireo::hv
