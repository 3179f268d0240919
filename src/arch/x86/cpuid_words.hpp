// The CPUID feature registers vireo knows by name: what cpuid_cannot_continue checks after a
// restore and what CPU template overrides may change. Internal to arch/x86.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "hv/vcpu_state.hpp"

namespace vireo::arch::x86::detail {

enum Reg { Eax, Ebx, Ecx, Edx };
inline constexpr const char* kRegNames[] = {"EAX", "EBX", "ECX", "EDX"};

// A feature register: leaf, sub-leaf (or -1: any), register, bits that are not features
// (per-vCPU or set by the state the guest runs in), and the names of the well-known bits.
struct FeatureWord {
    uint32_t leaf;
    int64_t index;
    Reg reg;
    uint32_t ignore;
    std::vector<std::pair<int, const char*>> names;
};

const std::vector<FeatureWord>& feature_words();
const hv::CpuidEntry* find_leaf(const std::vector<hv::CpuidEntry>& v, uint32_t leaf, int64_t index);
hv::CpuidEntry* find_leaf(std::vector<hv::CpuidEntry>& v, uint32_t leaf, int64_t index);
uint32_t reg_of(const hv::CpuidEntry& e, Reg r);
uint32_t& reg_of(hv::CpuidEntry& e, Reg r);
/// The feature register at (leaf, index, reg), or nullptr when it is not one.
const FeatureWord* find_word(uint32_t leaf, int64_t index, Reg reg);
/// "avx2 (CPUID 0x7.0 EBX bit 5)", or just the place for a bit without a name.
std::string describe_bit(uint32_t leaf, int64_t index, Reg reg, int bit);
/// A 32-bit number in a policy's text: decimal, or hex with 0x (leaves, masks, MSR indices).
std::optional<uint32_t> parse_number(std::string_view s);

}  // namespace vireo::arch::x86::detail
