/*
 * nvmm.h: NetBSD's NVMM library API (libnvmm, NVMM_USER_VERSION 2, x86-64) on Linux/KVM.
 *
 * vireo's libnvmm offers the public interface of NetBSD's <nvmm.h> with the same function
 * names, types, constants, structure layouts and return conventions (-1 and errno), so that a
 * program written for NVMM builds against this header and runs on KVM. It is self-contained:
 * it includes only the C standard library's headers and <sys/types.h>. What differs on KVM, and
 * why, is in docs/libnvmm.md.
 *
 * Written from NetBSD's documentation of the interface (libnvmm(3)) and its public headers
 * (lib/libnvmm/nvmm.h, sys/dev/nvmm/nvmm.h, sys/dev/nvmm/x86/nvmm_x86.h); the declarations are
 * interface facts, the implementation is vireo's own (src/nvmm/).
 */
#ifndef _LIBNVMM_H_
#define _LIBNVMM_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif
#if defined(__cplusplus) && defined(__GNUC__)
/* nvmm_capability() is both a function and a struct, as in C: C++ warns of the function. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wshadow"
#endif

/* ------------------------------------------------------------------------------------------ */
/* Machine-independent types (sys/dev/nvmm/nvmm.h). */

typedef uint64_t gpaddr_t;
typedef uint64_t gvaddr_t;

typedef uint32_t nvmm_machid_t;
typedef uint32_t nvmm_cpuid_t;

#define NVMM_KERN_VERSION 2

/* ------------------------------------------------------------------------------------------ */
/* x86 (sys/dev/nvmm/x86/nvmm_x86.h). */

struct nvmm_x86_exit_memory {
    int prot;
    gpaddr_t gpa;
    uint8_t inst_len;
    uint8_t inst_bytes[15];
};

struct nvmm_x86_exit_io {
    bool in;
    uint16_t port;
    int8_t seg;
    uint8_t address_size;
    uint8_t operand_size;
    bool rep;
    bool str;
    uint64_t npc;
};

struct nvmm_x86_exit_rdmsr {
    uint32_t msr;
    uint64_t npc;
};

struct nvmm_x86_exit_wrmsr {
    uint32_t msr;
    uint64_t val;
    uint64_t npc;
};

struct nvmm_x86_exit_insn {
    uint64_t npc;
};

struct nvmm_x86_exit_invalid {
    uint64_t hwcode;
};

/* Generic. */
#define NVMM_VCPU_EXIT_NONE 0x0000000000000000ULL
#define NVMM_VCPU_EXIT_STOPPED 0xFFFFFFFFFFFFFFFEULL
#define NVMM_VCPU_EXIT_INVALID 0xFFFFFFFFFFFFFFFFULL
/* x86: operations. */
#define NVMM_VCPU_EXIT_MEMORY 0x0000000000000001ULL
#define NVMM_VCPU_EXIT_IO 0x0000000000000002ULL
/* x86: changes in VCPU state. */
#define NVMM_VCPU_EXIT_SHUTDOWN 0x0000000000001000ULL
#define NVMM_VCPU_EXIT_INT_READY 0x0000000000001001ULL
#define NVMM_VCPU_EXIT_NMI_READY 0x0000000000001002ULL
#define NVMM_VCPU_EXIT_HALTED 0x0000000000001003ULL
#define NVMM_VCPU_EXIT_TPR_CHANGED 0x0000000000001004ULL
/* x86: instructions. */
#define NVMM_VCPU_EXIT_RDMSR 0x0000000000002000ULL
#define NVMM_VCPU_EXIT_WRMSR 0x0000000000002001ULL
#define NVMM_VCPU_EXIT_MONITOR 0x0000000000002002ULL
#define NVMM_VCPU_EXIT_MWAIT 0x0000000000002003ULL
#define NVMM_VCPU_EXIT_CPUID 0x0000000000002004ULL

struct nvmm_x86_exit {
    uint64_t reason;
    union {
        struct nvmm_x86_exit_memory mem;
        struct nvmm_x86_exit_io io;
        struct nvmm_x86_exit_rdmsr rdmsr;
        struct nvmm_x86_exit_wrmsr wrmsr;
        struct nvmm_x86_exit_insn insn;
        struct nvmm_x86_exit_invalid inv;
    } u;
    struct {
        uint64_t rflags;
        uint64_t cr8;
        uint64_t int_shadow : 1;
        uint64_t int_window_exiting : 1;
        uint64_t nmi_window_exiting : 1;
        uint64_t evt_pending : 1;
        uint64_t rsvd : 60;
    } exitstate;
};

#define NVMM_VCPU_EVENT_EXCP 0
#define NVMM_VCPU_EVENT_INTR 1

struct nvmm_x86_event {
    unsigned int type;
    uint8_t vector;
    union {
        struct {
            uint64_t error;
        } excp;
    } u;
};

struct nvmm_cap_md {
    uint64_t mach_conf_support;

    uint64_t vcpu_conf_support;
#define NVMM_CAP_ARCH_VCPU_CONF_CPUID (1ULL << 0)
#define NVMM_CAP_ARCH_VCPU_CONF_TPR (1ULL << 1)

    uint64_t xcr0_mask;
    uint32_t mxcsr_mask;
    uint32_t conf_cpuid_maxops;
    uint64_t rsvd[6];
};

/* Segments. */
#define NVMM_X64_SEG_ES 0
#define NVMM_X64_SEG_CS 1
#define NVMM_X64_SEG_SS 2
#define NVMM_X64_SEG_DS 3
#define NVMM_X64_SEG_FS 4
#define NVMM_X64_SEG_GS 5
#define NVMM_X64_SEG_GDT 6
#define NVMM_X64_SEG_IDT 7
#define NVMM_X64_SEG_LDT 8
#define NVMM_X64_SEG_TR 9
#define NVMM_X64_NSEG 10

/* General Purpose Registers. */
#define NVMM_X64_GPR_RAX 0
#define NVMM_X64_GPR_RCX 1
#define NVMM_X64_GPR_RDX 2
#define NVMM_X64_GPR_RBX 3
#define NVMM_X64_GPR_RSP 4
#define NVMM_X64_GPR_RBP 5
#define NVMM_X64_GPR_RSI 6
#define NVMM_X64_GPR_RDI 7
#define NVMM_X64_GPR_R8 8
#define NVMM_X64_GPR_R9 9
#define NVMM_X64_GPR_R10 10
#define NVMM_X64_GPR_R11 11
#define NVMM_X64_GPR_R12 12
#define NVMM_X64_GPR_R13 13
#define NVMM_X64_GPR_R14 14
#define NVMM_X64_GPR_R15 15
#define NVMM_X64_GPR_RIP 16
#define NVMM_X64_GPR_RFLAGS 17
#define NVMM_X64_NGPR 18

/* Control Registers. */
#define NVMM_X64_CR_CR0 0
#define NVMM_X64_CR_CR2 1
#define NVMM_X64_CR_CR3 2
#define NVMM_X64_CR_CR4 3
#define NVMM_X64_CR_CR8 4
#define NVMM_X64_CR_XCR0 5
#define NVMM_X64_NCR 6

/* Debug Registers. */
#define NVMM_X64_DR_DR0 0
#define NVMM_X64_DR_DR1 1
#define NVMM_X64_DR_DR2 2
#define NVMM_X64_DR_DR3 3
#define NVMM_X64_DR_DR6 4
#define NVMM_X64_DR_DR7 5
#define NVMM_X64_NDR 6

/* MSRs. */
#define NVMM_X64_MSR_EFER 0
#define NVMM_X64_MSR_STAR 1
#define NVMM_X64_MSR_LSTAR 2
#define NVMM_X64_MSR_CSTAR 3
#define NVMM_X64_MSR_SFMASK 4
#define NVMM_X64_MSR_KERNELGSBASE 5
#define NVMM_X64_MSR_SYSENTER_CS 6
#define NVMM_X64_MSR_SYSENTER_ESP 7
#define NVMM_X64_MSR_SYSENTER_EIP 8
#define NVMM_X64_MSR_PAT 9
#define NVMM_X64_MSR_TSC 10
#define NVMM_X64_NMSR 11

struct nvmm_x64_state_seg {
    uint16_t selector;
    struct { /* hidden */
        uint16_t type : 4;
        uint16_t s : 1;
        uint16_t dpl : 2;
        uint16_t p : 1;
        uint16_t avl : 1;
        uint16_t l : 1;
        uint16_t def : 1;
        uint16_t g : 1;
        uint16_t rsvd : 4;
    } attrib;
    uint32_t limit; /* hidden */
    uint64_t base;  /* hidden */
};

struct nvmm_x64_state_intr {
    uint64_t int_shadow : 1;
    uint64_t int_window_exiting : 1;
    uint64_t nmi_window_exiting : 1;
    uint64_t evt_pending : 1;
    uint64_t rsvd : 60;
};

/* The FXSAVE area (NetBSD's x86/cpu_extended_state.h). */
union fp_addr {
    uint64_t fa_64; /* linear address, 64-bit */
    struct {
        uint32_t fa_off;    /* linear address, 32-bit */
        uint16_t fa_seg;    /* code/data segment */
        uint16_t fa_opcode; /* last opcode (sometimes) */
    } fa_32;
} __attribute__((packed, aligned(4)));

struct fpacc87 {
    uint64_t f87_mantissa;
    uint16_t f87_exp_sign;
} __attribute__((packed, aligned(2)));

/* An x87 register padded to 16 bytes, as FXSAVE stores it. */
struct fpaccfx {
    struct fpacc87 r;
    uint8_t f87_rsvd[16 - 10];
} __attribute__((packed, aligned(16)));

struct xmmreg {
    uint8_t xmm_bytes[16];
};

struct fxsave {
    uint16_t fx_cw;     /* FPU control word */
    uint16_t fx_sw;     /* FPU status word */
    uint8_t fx_tw;      /* FPU tag word (abridged) */
    uint8_t fx_zero;    /* zero */
    uint16_t fx_opcode; /* FPU opcode */
    union fp_addr fx_ip;
    union fp_addr fx_dp;
    uint32_t fx_mxcsr;
    uint32_t fx_mxcsr_mask;
    struct fpaccfx fx_87_ac[8];
    struct xmmreg fx_xmm[16];
    uint8_t fx_rsvd[48];
    uint8_t fx_kernel[48];
} __attribute__((packed, aligned(16)));

/* Flags. */
#define NVMM_X64_STATE_SEGS 0x01
#define NVMM_X64_STATE_GPRS 0x02
#define NVMM_X64_STATE_CRS 0x04
#define NVMM_X64_STATE_DRS 0x08
#define NVMM_X64_STATE_MSRS 0x10
#define NVMM_X64_STATE_INTR 0x20
#define NVMM_X64_STATE_FPU 0x40
#define NVMM_X64_STATE_ALL                                                                      \
    (NVMM_X64_STATE_SEGS | NVMM_X64_STATE_GPRS | NVMM_X64_STATE_CRS | NVMM_X64_STATE_DRS |       \
     NVMM_X64_STATE_MSRS | NVMM_X64_STATE_INTR | NVMM_X64_STATE_FPU)

struct nvmm_x64_state {
    struct nvmm_x64_state_seg segs[NVMM_X64_NSEG];
    uint64_t gprs[NVMM_X64_NGPR];
    uint64_t crs[NVMM_X64_NCR];
    uint64_t drs[NVMM_X64_NDR];
    uint64_t msrs[NVMM_X64_NMSR];
    struct nvmm_x64_state_intr intr;
    struct fxsave fpu;
};

/* ------------------------------------------------------------------------------------------ */
/* Configuration (sys/dev/nvmm/nvmm.h). */

struct nvmm_capability {
    uint32_t version;
    uint32_t state_size;
    uint32_t max_machines;
    uint32_t max_vcpus;
    uint64_t max_ram;
    struct nvmm_cap_md arch;
};

/* Machine configuration slots. */
#define NVMM_MACH_CONF_LIBNVMM_BEGIN 0
#define NVMM_MACH_CONF_MI_BEGIN 100
#define NVMM_MACH_CONF_MD_BEGIN 200
#define NVMM_MACH_CONF_MD(op) (op - NVMM_MACH_CONF_MD_BEGIN)

/* VCPU configuration slots. */
#define NVMM_VCPU_CONF_LIBNVMM_BEGIN 0
#define NVMM_VCPU_CONF_MI_BEGIN 100
#define NVMM_VCPU_CONF_MD_BEGIN 200
#define NVMM_VCPU_CONF_MD(op) (op - NVMM_VCPU_CONF_MD_BEGIN)

#define NVMM_VCPU_CONF_CPUID NVMM_VCPU_CONF_MD_BEGIN
#define NVMM_VCPU_CONF_TPR (NVMM_VCPU_CONF_MD_BEGIN + 1)

struct nvmm_vcpu_conf_cpuid {
    /* The options. */
    uint32_t mask : 1;
    uint32_t exit : 1;
    uint32_t rsvd : 30;

    /* The leaf. */
    uint32_t leaf;

    /* The params. */
    union {
        struct {
            struct {
                uint32_t eax;
                uint32_t ebx;
                uint32_t ecx;
                uint32_t edx;
            } set;
            struct {
                uint32_t eax;
                uint32_t ebx;
                uint32_t ecx;
                uint32_t edx;
            } del;
        } mask;
    } u;
};

struct nvmm_vcpu_conf_tpr {
    uint32_t exit_changed : 1;
    uint32_t rsvd : 31;
};

#define nvmm_vcpu_exit nvmm_x86_exit
#define nvmm_vcpu_event nvmm_x86_event
#define nvmm_vcpu_state nvmm_x64_state

/*
 * Per-vCPU communication area. On NetBSD the kernel shares it with the process; here it is the
 * library's own memory, and its layout is private to the library: use the nvmm_vcpu pointers.
 */
struct nvmm_comm_page {
    /* State. */
    uint64_t state_wanted;
    uint64_t state_cached;
    uint64_t state_commit;
    struct nvmm_vcpu_state state;

    /* Event. */
    bool event_commit;
    struct nvmm_vcpu_event event;

    /* Race-free exit from nvmm_vcpu_run() without signals. */
    volatile int stop;
};

/* nvmm_ctl() operations (sys/dev/nvmm/nvmm_ioctl.h). */
#define NVMM_CTL_MACH_INFO 0

struct nvmm_ctl_mach_info {
    nvmm_machid_t machid;
    pid_t pid;
    time_t time;
    size_t nvcpus;
    size_t nram;
};

/* ------------------------------------------------------------------------------------------ */
/* The library (lib/libnvmm/nvmm.h). */

/* Version 2 added nvmm_vcpu::stop and nvmm_vcpu_stop(). */
#define NVMM_USER_VERSION 2

struct nvmm_io;
struct nvmm_mem;

struct nvmm_assist_callbacks {
    void (*io)(struct nvmm_io *);
    void (*mem)(struct nvmm_mem *);
};

struct nvmm_machine {
    nvmm_machid_t machid;
    struct nvmm_comm_page **pages;
    void *areas; /* opaque */
};

struct nvmm_vcpu {
    nvmm_cpuid_t cpuid;
    struct nvmm_assist_callbacks cbs;
    struct nvmm_vcpu_state *state;
    struct nvmm_vcpu_event *event;
    struct nvmm_vcpu_exit *exit;
    volatile int *stop;
};

struct nvmm_io {
    struct nvmm_machine *mach;
    struct nvmm_vcpu *vcpu;
    uint16_t port;
    bool in;
    size_t size;
    uint8_t *data;
};

struct nvmm_mem {
    struct nvmm_machine *mach;
    struct nvmm_vcpu *vcpu;
    gpaddr_t gpa;
    bool write;
    size_t size;
    uint8_t *data;
};

#define NVMM_MACH_CONF_CALLBACKS NVMM_MACH_CONF_LIBNVMM_BEGIN
#define NVMM_VCPU_CONF_CALLBACKS NVMM_VCPU_CONF_LIBNVMM_BEGIN

#define NVMM_PROT_READ 0x01
#define NVMM_PROT_WRITE 0x02
#define NVMM_PROT_EXEC 0x04
#define NVMM_PROT_USER 0x08
#define NVMM_PROT_ALL 0x0F
typedef uint64_t nvmm_prot_t;

int nvmm_init(void);
int nvmm_root_init(void);

int nvmm_capability(struct nvmm_capability *);

int nvmm_machine_create(struct nvmm_machine *);
int nvmm_machine_destroy(struct nvmm_machine *);
int nvmm_machine_configure(struct nvmm_machine *, uint64_t, void *);

int nvmm_vcpu_create(struct nvmm_machine *, nvmm_cpuid_t, struct nvmm_vcpu *);
int nvmm_vcpu_destroy(struct nvmm_machine *, struct nvmm_vcpu *);
int nvmm_vcpu_configure(struct nvmm_machine *, struct nvmm_vcpu *, uint64_t, void *);
int nvmm_vcpu_setstate(struct nvmm_machine *, struct nvmm_vcpu *, uint64_t);
int nvmm_vcpu_getstate(struct nvmm_machine *, struct nvmm_vcpu *, uint64_t);
int nvmm_vcpu_inject(struct nvmm_machine *, struct nvmm_vcpu *);
int nvmm_vcpu_run(struct nvmm_machine *, struct nvmm_vcpu *);

int nvmm_gpa_map(struct nvmm_machine *, uintptr_t, gpaddr_t, size_t, int);
int nvmm_gpa_unmap(struct nvmm_machine *, uintptr_t, gpaddr_t, size_t);
int nvmm_hva_map(struct nvmm_machine *, uintptr_t, size_t);
int nvmm_hva_unmap(struct nvmm_machine *, uintptr_t, size_t);

int nvmm_gva_to_gpa(struct nvmm_machine *, struct nvmm_vcpu *, gvaddr_t, gpaddr_t *,
                    nvmm_prot_t *);
int nvmm_gpa_to_hva(struct nvmm_machine *, gpaddr_t, uintptr_t *, nvmm_prot_t *);

int nvmm_assist_io(struct nvmm_machine *, struct nvmm_vcpu *);
int nvmm_assist_mem(struct nvmm_machine *, struct nvmm_vcpu *);

int nvmm_ctl(int, void *, size_t);

int nvmm_vcpu_dump(struct nvmm_machine *, struct nvmm_vcpu *);
int nvmm_vcpu_stop(struct nvmm_vcpu *);

#if defined(__cplusplus) && defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
#ifdef __cplusplus
}
#endif

#endif /* _LIBNVMM_H_ */
