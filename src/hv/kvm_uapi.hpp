// Internal to hv/: the one place that includes <linux/kvm.h>.
//
// Debian bookworm's uapi <linux/stddef.h> defines __DECLARE_FLEX_ARRAY with an empty struct,
// whose size is 1 in C++ (0 in C). That silently changes the size and the entries offset of
// kvm_cpuid2, kvm_msrs, kvm_irq_routing, ... and with them the ioctl numbers, so KVM answers
// EINVAL. Upstream Linux fixed the macro for C++ the same way as here: a zero-length array.
#pragma once

#include <linux/stddef.h>

#undef __DECLARE_FLEX_ARRAY
#define __DECLARE_FLEX_ARRAY(TYPE, NAME) TYPE NAME[0]

#include <linux/kvm.h>

static_assert(sizeof(kvm_cpuid2) == 8, "kvm_cpuid2 ABI");
static_assert(sizeof(kvm_msrs) == 8, "kvm_msrs ABI");
static_assert(sizeof(kvm_msr_list) == 4, "kvm_msr_list ABI");
static_assert(sizeof(kvm_irq_routing) == 8, "kvm_irq_routing ABI");
static_assert(sizeof(kvm_cpuid_entry2) == 40, "kvm_cpuid_entry2 ABI");
static_assert(sizeof(kvm_msr_entry) == 16, "kvm_msr_entry ABI");
