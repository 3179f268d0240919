// Puts a vCPU straight into 64-bit long mode: a flat GDT, identity-mapped page tables (2 MiB
// pages) and the matching CR0/CR4/EFER and segment state. Used for tiny test guests and the
// 64-bit boot paths.
#pragma once

#include <cstdint>

#include "base/result.hpp"
#include "hv/vcpu_state.hpp"
#include "memory/guest_memory.hpp"

namespace vireo::arch::x86 {

/// Where the long-mode tables live in guest memory. The defaults use 0x1000..0x7fff.
struct LongModeLayout {
    memory::Gpa gdt{0x1000};
    memory::Gpa pml4{0x2000};  ///< followed by the PDPT and 4 page directories (6 pages)
    uint64_t identity_map_bytes = uint64_t{4} << 30;  ///< multiple of 1 GiB, at most 4 GiB
};

/// Selectors of the GDT written by write_long_mode_tables(). Code and data are at 0x10 and 0x18,
/// the __BOOT_CS/__BOOT_DS the Linux 64-bit boot protocol asks for.
inline constexpr uint16_t kCodeSelector = 0x10;
inline constexpr uint16_t kDataSelector = 0x18;
inline constexpr uint16_t kUserCodeSelector = 0x23;  // index 4, RPL 3
inline constexpr uint16_t kUserDataSelector = 0x2b;  // index 5, RPL 3
inline constexpr uint16_t kGdtEntries = 6;

/// Writes the GDT and identity page tables into guest RAM. Pages are user-accessible so that
/// ring-3 test code can run too.
Result<void> write_long_mode_tables(const memory::GuestMemory& mem, const LongModeLayout& layout);

/// Processor privilege level to start in.
enum class Ring { Kernel = 0, User = 3 };

/// State (kStateGprs | kStateSegments | kStateCrs) to enter long mode at `entry` with stack
/// pointer `stack`. In Ring::User, IOPL is 3 so port I/O does not fault.
hv::VcpuState long_mode_state(const LongModeLayout& layout, uint64_t entry, uint64_t stack,
                              Ring ring = Ring::Kernel);

/// Flags of the state long_mode_state() fills.
inline constexpr uint32_t kLongModeStateFlags = hv::kStateGprs | hv::kStateSegments | hv::kStateCrs;

}  // namespace vireo::arch::x86
