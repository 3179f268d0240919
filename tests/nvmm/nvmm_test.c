/*
 * libnvmm on this machine's /dev/kvm: a C99 program that uses only <nvmm.h>, as an NVMM client
 * would, with two tiny guests (tests/guests/nvmm_real.S, nvmm_long.S). Each check prints what
 * it expected and what it saw; the exit status is the number of failed checks (capped).
 *
 * usage: nvmm_test
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "nvmm.h"

extern const unsigned char vireo_guest_nvmm_real_start[], vireo_guest_nvmm_real_end[];
extern const unsigned char vireo_guest_nvmm_long_start[], vireo_guest_nvmm_long_end[];

static int failures;

#define CHECK(cond, ...)                                         \
    do {                                                         \
        if (!(cond)) {                                           \
            failures++;                                          \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                        \
            fputc('\n', stderr);                                 \
        }                                                        \
    } while (0)

#define CHECK_ERRNO(call, err)                                                          \
    do {                                                                                \
        errno = 0;                                                                      \
        int r_ = (call);                                                                \
        CHECK(r_ == -1 && errno == (err), "%s returned %d errno %d (%s), expected %s", #call, \
              r_, errno, strerror(errno), #err);                                        \
    } while (0)

static uint64_t get64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static uint32_t get32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static uint16_t get16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }

/* ---- the client's devices -------------------------------------------------------------- */

#define MAX_LOG 64
struct io_rec {
    uint16_t port;
    bool in;
    size_t size;
    uint32_t value;
};
static struct io_rec io_log[MAX_LOG];
static int io_count;
static uint16_t insw_next = 0x1111;
static int phases[16];
static int nphases;

static void io_cb(struct nvmm_io *io) {
    uint32_t v = 0;
    if (io->in) {
        if (io->size == 2) { v = insw_next; insw_next = (uint16_t)(insw_next + 0x1111); }
        else if (io->port == 0x3f8) v = 0x5a;
        else if (io->port == 0x84) v = 0xcafef00d;
        memcpy(io->data, &v, io->size);
    } else {
        memcpy(&v, io->data, io->size);
        if (io->port == 0x99 && nphases < 16) phases[nphases++] = (int)v;
    }
    if (io_count < MAX_LOG) io_log[io_count++] = (struct io_rec){io->port, io->in, io->size, v};
}

#define DEV_GPA 0x400000u
static uint8_t dev[0x1000];
static int mem_reads, mem_writes;
static uint64_t real_mmio_write_gpa, real_mmio_write_val;

static uint64_t ro_write_gpa, ro_write_val;

static void mem_cb(struct nvmm_mem *mem) {
    if (mem->gpa >= 0x300000 && mem->gpa < 0x301000) { /* a read-only page's writes */
        CHECK(mem->write, "read of the read-only page at %#llx exited",
              (unsigned long long)mem->gpa);
        ro_write_gpa = mem->gpa;
        ro_write_val = 0;
        memcpy(&ro_write_val, mem->data, mem->size);
        return;
    }
    if (mem->gpa >= 0x10000 && mem->gpa < 0x11000) { /* the real-mode guest's window */
        if (mem->write) {
            real_mmio_write_gpa = mem->gpa;
            real_mmio_write_val = 0;
            memcpy(&real_mmio_write_val, mem->data, mem->size);
        } else {
            uint64_t v = mem->gpa == 0x10020 ? 0xbeef : 0xdeadbeef;
            memcpy(mem->data, &v, mem->size);
        }
        return;
    }
    CHECK(mem->gpa >= DEV_GPA && mem->gpa + mem->size <= DEV_GPA + sizeof dev,
          "MMIO outside the device: gpa %#llx size %zu", (unsigned long long)mem->gpa, mem->size);
    if (mem->gpa < DEV_GPA || mem->gpa + mem->size > DEV_GPA + sizeof dev) return;
    uint8_t *p = dev + (mem->gpa - DEV_GPA);
    if (mem->write) {
        memcpy(p, mem->data, mem->size);
        mem_writes++;
    } else {
        memcpy(mem->data, p, mem->size);
        mem_reads++;
    }
}

static struct nvmm_assist_callbacks callbacks = {io_cb, mem_cb};

/* ---- helpers --------------------------------------------------------------------------- */

static uint8_t *map_ram(struct nvmm_machine *mach, size_t size) {
    uint8_t *ram = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ram == MAP_FAILED) { perror("mmap"); exit(100); }
    if (nvmm_hva_map(mach, (uintptr_t)ram, size) == -1) { perror("nvmm_hva_map"); exit(100); }
    if (nvmm_gpa_map(mach, (uintptr_t)ram, 0, size, NVMM_PROT_ALL) == -1) {
        perror("nvmm_gpa_map");
        exit(100);
    }
    return ram;
}

/* Runs until an exit the loop does not handle itself (I/O and MMIO are assisted). */
static uint64_t run_until(struct nvmm_machine *mach, struct nvmm_vcpu *vcpu, int max_exits) {
    for (int i = 0; i < max_exits; i++) {
        if (nvmm_vcpu_run(mach, vcpu) == -1) { perror("nvmm_vcpu_run"); return ~0ULL; }
        switch (vcpu->exit->reason) {
            case NVMM_VCPU_EXIT_IO:
                if (nvmm_assist_io(mach, vcpu) == -1) { perror("nvmm_assist_io"); return ~0ULL; }
                if (vcpu->exit->u.io.port == 0x99) return NVMM_VCPU_EXIT_IO;
                break;
            case NVMM_VCPU_EXIT_MEMORY:
                if (nvmm_assist_mem(mach, vcpu) == -1) { perror("nvmm_assist_mem"); return ~0ULL; }
                break;
            case NVMM_VCPU_EXIT_NONE:
                break;
            default:
                return vcpu->exit->reason;
        }
    }
    return ~0ULL;
}

static void init_seg(struct nvmm_x64_state_seg *seg, int type, int sel) {
    seg->selector = (uint16_t)sel;
    seg->attrib.type = (uint16_t)(type & 0xf);
    seg->attrib.s = (type & 0x10) != 0;
    seg->attrib.dpl = 0;
    seg->attrib.p = 1;
    seg->attrib.avl = 0;
    seg->attrib.l = 1;
    seg->attrib.def = 0;
    seg->attrib.g = 1;
    seg->limit = 0xffffffff;
    seg->base = 0;
}

/* A machine with vCPU 0, whose assists call the client's devices above. */
static void new_machine(struct nvmm_machine *mach, struct nvmm_vcpu *vcpu) {
    CHECK(nvmm_machine_create(mach) == 0, "errno %d", errno);
    CHECK(nvmm_vcpu_create(mach, 0, vcpu) == 0, "errno %d", errno);
    CHECK(nvmm_vcpu_configure(mach, vcpu, NVMM_VCPU_CONF_CALLBACKS, &callbacks) == 0, "errno %d",
          errno);
}

/* ---- the tests ------------------------------------------------------------------------- */

static void test_capability(void) {
    struct nvmm_capability cap;
    CHECK(nvmm_capability(&cap) == 0, "errno %d", errno);
    CHECK(cap.version == 2, "version %u", cap.version);
    CHECK(cap.state_size == sizeof(struct nvmm_x64_state), "state_size %u", cap.state_size);
    CHECK(cap.max_vcpus >= 1, "max_vcpus %u", cap.max_vcpus);
    CHECK(cap.arch.xcr0_mask & 1, "xcr0_mask %#llx", (unsigned long long)cap.arch.xcr0_mask);
    CHECK_ERRNO(nvmm_capability(NULL), EFAULT);
}

static void test_bad_arguments(void) {
    struct nvmm_machine mach, bogus;
    struct nvmm_vcpu vcpu, vcpu2;
    memset(&bogus, 0, sizeof bogus);
    bogus.machid = 77;
    CHECK_ERRNO(nvmm_machine_create(NULL), EFAULT);
    CHECK_ERRNO(nvmm_vcpu_create(&bogus, 0, &vcpu), EINVAL);
    CHECK_ERRNO(nvmm_machine_destroy(&bogus), EINVAL);
    CHECK(nvmm_machine_create(&mach) == 0, "errno %d", errno);
    CHECK_ERRNO(nvmm_vcpu_create(&mach, 100000, &vcpu), EINVAL);
    CHECK(nvmm_vcpu_create(&mach, 0, &vcpu) == 0, "errno %d", errno);
    CHECK_ERRNO(nvmm_vcpu_create(&mach, 0, &vcpu2), EBUSY);
    CHECK_ERRNO(nvmm_vcpu_getstate(&mach, &vcpu, 0x1000), EINVAL);
    CHECK_ERRNO(nvmm_vcpu_setstate(&mach, &vcpu, ~0ULL), EINVAL);
    CHECK_ERRNO(nvmm_assist_io(&mach, &vcpu), EINVAL); /* no I/O exit to assist */
    CHECK_ERRNO(nvmm_assist_mem(&mach, &vcpu), EINVAL);
    vcpu.event->type = NVMM_VCPU_EVENT_EXCP;
    vcpu.event->vector = 2; /* NMI is not an exception */
    CHECK_ERRNO(nvmm_vcpu_inject(&mach, &vcpu), EINVAL);
    vcpu.event->type = 7;
    CHECK_ERRNO(nvmm_vcpu_inject(&mach, &vcpu), EINVAL);
    CHECK_ERRNO(nvmm_hva_map(&mach, 0x1001, 4096), EINVAL);
    CHECK_ERRNO(nvmm_hva_map(&mach, 0x1000, 0), EINVAL);
    uint8_t *ram = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    /* gpa_map needs the memory registered first */
    CHECK_ERRNO(nvmm_gpa_map(&mach, (uintptr_t)ram, 0, 8192, NVMM_PROT_ALL), EINVAL);
    CHECK(nvmm_hva_map(&mach, (uintptr_t)ram, 8192) == 0, "errno %d", errno);
    CHECK_ERRNO(nvmm_hva_map(&mach, (uintptr_t)ram, 4096), EEXIST);
    CHECK_ERRNO(nvmm_gpa_map(&mach, (uintptr_t)ram, 0x100, 4096, NVMM_PROT_ALL), EINVAL);
    CHECK_ERRNO(nvmm_gpa_map(&mach, (uintptr_t)ram, 0, 4096, 0x100), EINVAL);
    CHECK(nvmm_gpa_map(&mach, (uintptr_t)ram, 0, 8192, NVMM_PROT_ALL) == 0, "errno %d", errno);
    CHECK_ERRNO(nvmm_gpa_map(&mach, (uintptr_t)ram, 0x1000, 4096, NVMM_PROT_ALL), EEXIST);
    CHECK_ERRNO(nvmm_hva_unmap(&mach, (uintptr_t)ram, 8192), EBUSY);
    uintptr_t hva = 0;
    nvmm_prot_t prot = 0;
    CHECK(nvmm_gpa_to_hva(&mach, 0x1234, &hva, &prot) == 0 && hva == (uintptr_t)ram + 0x1234 &&
              prot == NVMM_PROT_ALL,
          "hva %#lx prot %#llx", (unsigned long)hva, (unsigned long long)prot);
    CHECK_ERRNO(nvmm_gpa_to_hva(&mach, 0x100000, &hva, &prot), ENOENT);
    CHECK(nvmm_gpa_unmap(&mach, (uintptr_t)ram, 0, 8192) == 0, "errno %d", errno);
    CHECK(nvmm_hva_unmap(&mach, (uintptr_t)ram, 8192) == 0, "errno %d", errno);
    struct nvmm_ctl_mach_info info;
    memset(&info, 0, sizeof info);
    info.machid = mach.machid;
    CHECK(nvmm_ctl(NVMM_CTL_MACH_INFO, &info, sizeof info) == 0 && info.nvcpus == 1 &&
              info.pid == getpid(),
          "nvcpus %zu", info.nvcpus);
    CHECK(nvmm_vcpu_destroy(&mach, &vcpu) == 0, "errno %d", errno);
    CHECK(nvmm_machine_destroy(&mach) == 0, "errno %d", errno);
    CHECK_ERRNO(nvmm_vcpu_run(&mach, &vcpu), EINVAL);
    munmap(ram, 8192);
}

static void test_real_mode(void) {
    struct nvmm_machine mach;
    struct nvmm_vcpu vcpu;
    new_machine(&mach, &vcpu);
    uint8_t *ram = map_ram(&mach, 0x10000);
    memcpy(ram + 0x1000, vireo_guest_nvmm_real_start,
           (size_t)(vireo_guest_nvmm_real_end - vireo_guest_nvmm_real_start));
    memcpy(ram + 0x3000, "ABCD", 4);

    /* A new vCPU is at the x86 power-on state. */
    struct nvmm_x64_state *st = vcpu.state;
    CHECK(nvmm_vcpu_getstate(&mach, &vcpu, NVMM_X64_STATE_ALL) == 0, "errno %d", errno);
    CHECK(st->segs[NVMM_X64_SEG_CS].selector == 0xf000 &&
              st->segs[NVMM_X64_SEG_CS].base == 0xffff0000 && st->gprs[NVMM_X64_GPR_RIP] == 0xfff0,
          "CS %#x base %#llx RIP %#llx", st->segs[NVMM_X64_SEG_CS].selector,
          (unsigned long long)st->segs[NVMM_X64_SEG_CS].base,
          (unsigned long long)st->gprs[NVMM_X64_GPR_RIP]);
    CHECK((st->crs[NVMM_X64_CR_CR0] & 0x60000011) == 0x60000010, "CR0 %#llx",
          (unsigned long long)st->crs[NVMM_X64_CR_CR0]);
    CHECK(st->gprs[NVMM_X64_GPR_RFLAGS] == 0x2, "RFLAGS %#llx",
          (unsigned long long)st->gprs[NVMM_X64_GPR_RFLAGS]);
    CHECK(st->drs[NVMM_X64_DR_DR7] == 0x400, "DR7 %#llx", (unsigned long long)st->drs[NVMM_X64_DR_DR7]);
    CHECK(st->fpu.fx_cw == 0x37f && st->fpu.fx_mxcsr == 0x1f80, "FCW %#x MXCSR %#x",
          st->fpu.fx_cw, st->fpu.fx_mxcsr);

    /* Real mode at 0000:1000. */
    st->segs[NVMM_X64_SEG_CS].selector = 0;
    st->segs[NVMM_X64_SEG_CS].base = 0;
    st->gprs[NVMM_X64_GPR_RIP] = 0x1000;
    CHECK(nvmm_vcpu_setstate(&mach, &vcpu, NVMM_X64_STATE_SEGS | NVMM_X64_STATE_GPRS) == 0,
          "errno %d", errno);
    io_count = 0;
    uint64_t r = run_until(&mach, &vcpu, 100);
    CHECK(r == NVMM_VCPU_EXIT_HALTED, "exit %#llx", (unsigned long long)r);

    /* OUT 0x41, IN 0x5a, OUT word, IN dword, 4 x OUTSB, 3 x INSW. */
    CHECK(io_count == 11, "%d port accesses", io_count);
    CHECK(io_log[0].port == 0x3f8 && !io_log[0].in && io_log[0].size == 1 && io_log[0].value == 0x41,
          "OUT %#x %zu %#x", io_log[0].port, io_log[0].size, io_log[0].value);
    CHECK(ram[0x2000] == 0x5a, "IN gave %#x", ram[0x2000]);
    CHECK(io_log[2].port == 0x80 && io_log[2].size == 2 && io_log[2].value == 0x1234,
          "OUT word %#x %zu %#x", io_log[2].port, io_log[2].size, io_log[2].value);
    CHECK(get32(ram + 0x2004) == 0xcafef00d, "IN dword gave %#x", get32(ram + 0x2004));
    for (int i = 0; i < 4; i++)
        CHECK(io_log[4 + i].port == 0x3f8 && io_log[4 + i].size == 1 &&
                  io_log[4 + i].value == (uint32_t)("ABCD"[i]),
              "OUTSB element %d: %#x", i, io_log[4 + i].value);
    CHECK(get16(ram + 0x3100) == 0x1111 && get16(ram + 0x3102) == 0x2222 &&
              get16(ram + 0x3104) == 0x3333,
          "INSW stored %#x %#x %#x", get16(ram + 0x3100), get16(ram + 0x3102), get16(ram + 0x3104));
    CHECK(real_mmio_write_gpa == 0x10010 && real_mmio_write_val == 0x77, "MMIO write %#llx=%#llx",
          (unsigned long long)real_mmio_write_gpa, (unsigned long long)real_mmio_write_val);
    CHECK(get16(ram + 0x2008) == 0xbeef, "MMIO word read %#x", get16(ram + 0x2008));
    CHECK(get32(ram + 0x200c) == 0xdeadbeef, "MMIO 0x66/0x67 read %#x", get32(ram + 0x200c));

    /* After HLT the state is past it. */
    CHECK(nvmm_vcpu_getstate(&mach, &vcpu, NVMM_X64_STATE_GPRS) == 0, "errno %d", errno);
    size_t len = (size_t)(vireo_guest_nvmm_real_end - vireo_guest_nvmm_real_start);
    CHECK(st->gprs[NVMM_X64_GPR_RIP] == 0x1000 + len, "RIP %#llx, code ends at %#zx",
          (unsigned long long)st->gprs[NVMM_X64_GPR_RIP], 0x1000 + len);
    CHECK(nvmm_machine_destroy(&mach) == 0, "errno %d", errno);
    munmap(ram, 0x10000);
}

/* Long mode from a zeroed state, as NetBSD's own libnvmm tests enter it. */
static void enter_long_mode(struct nvmm_machine *mach, struct nvmm_vcpu *vcpu, uint8_t *ram,
                            uint64_t rip) {
    /* Identity map of the first 1 GiB with 2 MiB pages: PML4 0x10000, PDPT 0x11000, PD 0x12000. */
    put64(ram + 0x10000, 0x11000 | 3);
    put64(ram + 0x11000, 0x12000 | 3);
    for (uint64_t i = 0; i < 512; i++) put64(ram + 0x12000 + i * 8, (i << 21) | 0x83);
    /* GDT: null, 64-bit code (0x8), data (0x10). */
    put64(ram + 0x500, 0);
    put64(ram + 0x508, 0x00af9a000000ffffULL);
    put64(ram + 0x510, 0x00cf92000000ffffULL);

    struct nvmm_x64_state *st = vcpu->state;
    memset(st, 0, sizeof *st);
    st->gprs[NVMM_X64_GPR_RFLAGS] = 0x2;
    st->gprs[NVMM_X64_GPR_RIP] = rip;
    st->gprs[NVMM_X64_GPR_RSP] = 0x7000;
    init_seg(&st->segs[NVMM_X64_SEG_CS], 0x1b, 0x8);
    st->segs[NVMM_X64_SEG_CS].limit = 0xfffff;
    init_seg(&st->segs[NVMM_X64_SEG_SS], 0x13, 0x10);
    init_seg(&st->segs[NVMM_X64_SEG_DS], 0x13, 0x10);
    init_seg(&st->segs[NVMM_X64_SEG_ES], 0x13, 0x10);
    init_seg(&st->segs[NVMM_X64_SEG_FS], 0x13, 0x10);
    init_seg(&st->segs[NVMM_X64_SEG_GS], 0x13, 0x10);
    for (int s = NVMM_X64_SEG_SS; s <= NVMM_X64_SEG_GS; s++) st->segs[s].attrib.l = 0;
    st->segs[NVMM_X64_SEG_SS].attrib.def = 1;
    st->segs[NVMM_X64_SEG_GDT].base = 0x500;
    st->segs[NVMM_X64_SEG_GDT].limit = 0x17;
    st->segs[NVMM_X64_SEG_IDT].base = 0x600;
    st->segs[NVMM_X64_SEG_IDT].limit = 0xfff;
    init_seg(&st->segs[NVMM_X64_SEG_LDT], 0x2, 0);
    st->segs[NVMM_X64_SEG_LDT].attrib.l = 0;
    init_seg(&st->segs[NVMM_X64_SEG_TR], 0xb, 0);
    st->segs[NVMM_X64_SEG_TR].attrib.l = 0;
    st->segs[NVMM_X64_SEG_TR].limit = 0x67;
    st->segs[NVMM_X64_SEG_TR].attrib.g = 0;
    st->crs[NVMM_X64_CR_CR0] = 0x80050033; /* PG WP AM NE ET MP PE */
    st->crs[NVMM_X64_CR_CR4] = 0x20;       /* PAE */
    st->crs[NVMM_X64_CR_CR3] = 0x10000;
    st->msrs[NVMM_X64_MSR_EFER] = 0x501; /* LMA LME SCE */
    st->msrs[NVMM_X64_MSR_PAT] = 0x0007040600070406ULL;
    st->drs[NVMM_X64_DR_DR6] = 0xffff0ff0;
    st->drs[NVMM_X64_DR_DR7] = 0x400;
    st->fpu.fx_cw = 0x37f;
    st->fpu.fx_mxcsr = 0x1f80;
    CHECK(nvmm_vcpu_setstate(mach, vcpu, NVMM_X64_STATE_ALL) == 0, "errno %d", errno);
}

static void test_long_mode(void) {
    struct nvmm_machine mach;
    struct nvmm_vcpu vcpu;
    new_machine(&mach, &vcpu);
    uint8_t *ram = map_ram(&mach, 0x200000);
    memcpy(ram + 0x100000, vireo_guest_nvmm_long_start,
           (size_t)(vireo_guest_nvmm_long_end - vireo_guest_nvmm_long_start));
    memcpy(ram + 0x8100, "abcdefgh", 8);
    ram[0x8208] = 0xee;
    for (size_t i = 0; i < sizeof dev; i++) dev[i] = (uint8_t)(i * 13 + 1);
    put32(dev + 0x40, 0x00a0b0c0);
    put32(dev + 0x44, 0x12345678);
    put16(dev + 0x48, 0x1234);
    put64(dev + 0x50, 0);
    put32(dev + 0x58, 0x12345678);
    dev[0x5c] = 0x80;
    put64(dev + 0x60, 0x1111222233334444ULL);
    put64(dev + 0x100, 0x8877665544332211ULL);
    enter_long_mode(&mach, &vcpu, ram, 0x100000);

    /* nvmm_gva_to_gpa walks the guest's page tables. */
    gpaddr_t gpa = 0;
    nvmm_prot_t prot = 0;
    CHECK(nvmm_gva_to_gpa(&mach, &vcpu, 0x123456, &gpa, &prot) == 0 && gpa == 0x123456 &&
              (prot & NVMM_PROT_WRITE),
          "gva 0x123456 -> %#llx prot %#llx errno %d", (unsigned long long)gpa,
          (unsigned long long)prot, errno);
    CHECK_ERRNO(nvmm_gva_to_gpa(&mach, &vcpu, 0x8000000000ULL, &gpa, &prot), EFAULT);

    nphases = 0;
    io_count = 0;
    uint64_t r = run_until(&mach, &vcpu, 1000);
    CHECK(r == NVMM_VCPU_EXIT_IO && nphases == 1 && phases[0] == 1, "exit %#llx phases %d",
          (unsigned long long)r, nphases);
    const uint8_t *res = ram + 0x8000;
    CHECK(dev[0] == 0x11 && get16(dev + 2) == 0x2222 && get32(dev + 4) == 0x33333333 &&
              get64(dev + 8) == 0xffffffffbbbbbbbbULL,
          "MOV immediate stores: %#x %#x %#x %#llx", dev[0], get16(dev + 2), get32(dev + 4),
          (unsigned long long)get64(dev + 8));
    CHECK(get64(dev + 16) == 0x5566778899aabbccULL && get32(dev + 24) == 0x99aabbcc &&
              get16(dev + 28) == 0xbbcc && dev[30] == 0xcc,
          "MOV register stores: %#llx %#x %#x %#x", (unsigned long long)get64(dev + 16),
          get32(dev + 24), get16(dev + 28), dev[30]);
    CHECK(get64(res) == 0x8877665544332211ULL && get64(res + 8) == 0x44332211 &&
              get16(res + 16) == 0x2211 && res[18] == 0x11,
          "MOV loads: %#llx %#llx %#x %#x", (unsigned long long)get64(res),
          (unsigned long long)get64(res + 8), get16(res + 16), res[18]);
    CHECK(get64(res + 24) == 0x8877665544332211ULL, "indexed load %#llx",
          (unsigned long long)get64(res + 24));
    CHECK(get32(res + 32) == 0x22 && get64(res + 40) == 0x4433, "MOVZX %#x %#llx",
          get32(res + 32), (unsigned long long)get64(res + 40));
    CHECK(get32(dev + 0x40) == 0x0fa0b0c0, "OR %#x", get32(dev + 0x40));
    CHECK(get32(dev + 0x44) == 0x00345600, "AND %#x", get32(dev + 0x44));
    CHECK(get16(dev + 0x48) == 0xedcb, "XOR %#x", get16(dev + 0x48));
    CHECK(get64(dev + 0x50) == ~0ULL, "SUB %#llx", (unsigned long long)get64(dev + 0x50));
    CHECK(res[48] == 1 && res[49] == 1, "CMP %d TEST %d", res[48], res[49]);
    CHECK(get64(res + 56) == 0x1111222233334444ULL && get64(dev + 0x60) == 0xabcdef,
          "XCHG %#llx %#llx", (unsigned long long)get64(res + 56),
          (unsigned long long)get64(dev + 0x60));
    CHECK(get64(res + 64) == 0x8877665544332211ULL && get64(dev + 0x68) == 0x0102030405060708ULL,
          "MOVABS %#llx %#llx", (unsigned long long)get64(res + 64),
          (unsigned long long)get64(dev + 0x68));
    CHECK(get64(dev + 0x200) == 0x7777777777777777ULL && dev[0x210] == 0x99 &&
              dev[0x211] == 0x99 && dev[0x212] == 0x99 && dev[0x213] != 0x99,
          "STOS %#llx REP STOSB %#x %#x %#x %#x", (unsigned long long)get64(dev + 0x200),
          dev[0x210], dev[0x211], dev[0x212], dev[0x213]);
    CHECK(get32(res + 72) == 0x44332211, "LODS %#x", get32(res + 72));
    CHECK(memcmp(dev + 0x300, "abcdefgh", 8) == 0, "REP MOVSW RAM->MMIO: %.8s", dev + 0x300);
    CHECK(memcmp(ram + 0x8200, dev + 0x100, 8) == 0, "REP MOVSL MMIO->RAM");
    CHECK(res[80] == 1, "CMPS %d", res[80]);
    CHECK(res[81] == 1 && get32(res + 84) == 0, "REPE CMPSB: equal %d, RCX left %u", res[81],
          get32(res + 84));
    CHECK(ram[0x8208] == dev[0x108], "MOVSB MMIO->RAM %#x %#x", ram[0x8208], dev[0x108]);
    CHECK(res[82] == 0x33, "REP LODSB left %#x", res[82]);
    CHECK(io_count == 5, "%d port accesses", io_count);
    for (int i = 0; i < 4 && i < io_count; i++)
        CHECK(io_log[i].port == 0x3f9 && !io_log[i].in && io_log[i].value == (uint32_t)"abcd"[i],
              "REP OUTSB through the page tables, element %d: port %#x value %#x", i,
              io_log[i].port, io_log[i].value);

    /* RDMSR and WRMSR of MSRs KVM does not know come back as exits; the client completes them
     * NVMM's way, through the state and npc. */
    struct nvmm_x64_state *st = vcpu.state;
    r = run_until(&mach, &vcpu, 100);
    CHECK(r == NVMM_VCPU_EXIT_RDMSR && vcpu.exit->u.rdmsr.msr == 0x4b564d99, "exit %#llx msr %#x",
          (unsigned long long)r, vcpu.exit->u.rdmsr.msr);
    if (r == NVMM_VCPU_EXIT_RDMSR) {
        CHECK(nvmm_vcpu_getstate(&mach, &vcpu, NVMM_X64_STATE_GPRS) == 0, "errno %d", errno);
        CHECK(vcpu.exit->u.rdmsr.npc == st->gprs[NVMM_X64_GPR_RIP] + 2, "npc %#llx rip %#llx",
              (unsigned long long)vcpu.exit->u.rdmsr.npc,
              (unsigned long long)st->gprs[NVMM_X64_GPR_RIP]);
        st->gprs[NVMM_X64_GPR_RAX] = 0x55667788;
        st->gprs[NVMM_X64_GPR_RDX] = 0x11223344;
        st->gprs[NVMM_X64_GPR_RIP] = vcpu.exit->u.rdmsr.npc;
        CHECK(nvmm_vcpu_setstate(&mach, &vcpu, NVMM_X64_STATE_GPRS) == 0, "errno %d", errno);
        r = run_until(&mach, &vcpu, 100);
    }
    CHECK(r == NVMM_VCPU_EXIT_WRMSR && vcpu.exit->u.wrmsr.msr == 0x4b564d98 &&
              vcpu.exit->u.wrmsr.val == 0x10badf00dULL,
          "exit %#llx msr %#x val %#llx", (unsigned long long)r, vcpu.exit->u.wrmsr.msr,
          (unsigned long long)vcpu.exit->u.wrmsr.val);
    if (r == NVMM_VCPU_EXIT_WRMSR) {
        CHECK(nvmm_vcpu_getstate(&mach, &vcpu, NVMM_X64_STATE_GPRS) == 0, "errno %d", errno);
        st->gprs[NVMM_X64_GPR_RIP] = vcpu.exit->u.wrmsr.npc;
        CHECK(nvmm_vcpu_setstate(&mach, &vcpu, NVMM_X64_STATE_GPRS) == 0, "errno %d", errno);
        r = run_until(&mach, &vcpu, 100);
    }
    CHECK(r == NVMM_VCPU_EXIT_IO && phases[nphases - 1] == 2, "exit %#llx phase %d",
          (unsigned long long)r, phases[nphases - 1]);
    CHECK(get32(res + 88) == 0x55667788 && get32(res + 92) == 0x11223344, "RDMSR gave %#x:%#x",
          get32(res + 92), get32(res + 88));

    /* Phase 3 comes with interrupts off: ask for the interrupt window, inject when it opens. */
    r = run_until(&mach, &vcpu, 100);
    CHECK(r == NVMM_VCPU_EXIT_IO && phases[nphases - 1] == 3, "phase %d", phases[nphases - 1]);
    CHECK(!(vcpu.exit->exitstate.rflags & 0x200), "IF set at phase 3: rflags %#llx",
          (unsigned long long)vcpu.exit->exitstate.rflags);
    CHECK(nvmm_vcpu_getstate(&mach, &vcpu, NVMM_X64_STATE_INTR) == 0, "errno %d", errno);
    st->intr.int_window_exiting = 1;
    CHECK(nvmm_vcpu_setstate(&mach, &vcpu, NVMM_X64_STATE_INTR) == 0, "errno %d", errno);
    r = run_until(&mach, &vcpu, 100);
    CHECK(r == NVMM_VCPU_EXIT_INT_READY, "exit %#llx", (unsigned long long)r);
    vcpu.event->type = NVMM_VCPU_EVENT_INTR;
    vcpu.event->vector = 0x40;
    CHECK(nvmm_vcpu_inject(&mach, &vcpu) == 0, "errno %d", errno);
    r = run_until(&mach, &vcpu, 100); /* the handler's phase 5 */
    r = run_until(&mach, &vcpu, 100); /* phase 4 after IRET */
    r = run_until(&mach, &vcpu, 100);
    CHECK(r == NVMM_VCPU_EXIT_HALTED, "exit %#llx", (unsigned long long)r);
    CHECK(nphases == 5 && phases[3] == 5 && phases[4] == 4 && get32(res + 96) == 1,
          "phases %d: %d %d, handler ran %u times", nphases, phases[3], phases[4], get32(res + 96));
    CHECK(nvmm_machine_destroy(&mach) == 0, "errno %d", errno);
    munmap(ram, 0x200000);
}

/* An exit the client leaves unassisted and whose state it overwrites: the stale completion
 * must not change the new state. */
static void test_overwrite_after_exit(void) {
    struct nvmm_machine mach;
    struct nvmm_vcpu vcpu;
    new_machine(&mach, &vcpu);
    uint8_t *ram = map_ram(&mach, 0x200000);
    /* at 0x1000: in (%dx),%al ; hlt      at 0x2000: mov $0x99,%al ; hlt */
    static const uint8_t in_hlt[] = {0xec, 0xf4}, other[] = {0xb0, 0x99, 0xf4};
    memcpy(ram + 0x1000, in_hlt, sizeof in_hlt);
    memcpy(ram + 0x2000, other, sizeof other);
    enter_long_mode(&mach, &vcpu, ram, 0x1000);
    vcpu.state->gprs[NVMM_X64_GPR_RAX] = 0x1234;
    vcpu.state->gprs[NVMM_X64_GPR_RDX] = 0x70;
    CHECK(nvmm_vcpu_setstate(&mach, &vcpu, NVMM_X64_STATE_GPRS) == 0, "errno %d", errno);
    CHECK(nvmm_vcpu_run(&mach, &vcpu) == 0 && vcpu.exit->reason == NVMM_VCPU_EXIT_IO, "exit %#llx",
          (unsigned long long)vcpu.exit->reason);
    /* Unassisted: the state is still before the IN. */
    CHECK(nvmm_vcpu_getstate(&mach, &vcpu, NVMM_X64_STATE_GPRS) == 0 &&
              vcpu.state->gprs[NVMM_X64_GPR_RIP] == 0x1000,
          "RIP %#llx", (unsigned long long)vcpu.state->gprs[NVMM_X64_GPR_RIP]);
    /* Run unassisted: NVMM runs the instruction again. */
    CHECK(nvmm_vcpu_run(&mach, &vcpu) == 0 && vcpu.exit->reason == NVMM_VCPU_EXIT_IO &&
              vcpu.exit->u.io.port == 0x70,
          "exit %#llx", (unsigned long long)vcpu.exit->reason);
    /* Overwrite RIP and RAX: the IN's completion must not land on them. */
    CHECK(nvmm_vcpu_getstate(&mach, &vcpu, NVMM_X64_STATE_GPRS) == 0, "errno %d", errno);
    vcpu.state->gprs[NVMM_X64_GPR_RIP] = 0x2000;
    vcpu.state->gprs[NVMM_X64_GPR_RAX] = 0xabcd;
    CHECK(nvmm_vcpu_setstate(&mach, &vcpu, NVMM_X64_STATE_GPRS) == 0, "errno %d", errno);
    CHECK(nvmm_vcpu_run(&mach, &vcpu) == 0 && vcpu.exit->reason == NVMM_VCPU_EXIT_HALTED,
          "exit %#llx", (unsigned long long)vcpu.exit->reason);
    CHECK(nvmm_vcpu_getstate(&mach, &vcpu, NVMM_X64_STATE_GPRS) == 0, "errno %d", errno);
    CHECK(vcpu.state->gprs[NVMM_X64_GPR_RAX] == 0xab99 && vcpu.state->gprs[NVMM_X64_GPR_RIP] == 0x2003,
          "RAX %#llx RIP %#llx", (unsigned long long)vcpu.state->gprs[NVMM_X64_GPR_RAX],
          (unsigned long long)vcpu.state->gprs[NVMM_X64_GPR_RIP]);
    /* An assisted IN: state read after the assist is past the instruction, with the value. */
    vcpu.state->gprs[NVMM_X64_GPR_RIP] = 0x1000;
    vcpu.state->gprs[NVMM_X64_GPR_RDX] = 0x3f8;
    CHECK(nvmm_vcpu_setstate(&mach, &vcpu, NVMM_X64_STATE_GPRS) == 0, "errno %d", errno);
    CHECK(nvmm_vcpu_run(&mach, &vcpu) == 0 && vcpu.exit->reason == NVMM_VCPU_EXIT_IO, "exit %#llx",
          (unsigned long long)vcpu.exit->reason);
    /* Read before the assist: still at the IN; after it: past it, even though cached. */
    CHECK(nvmm_vcpu_getstate(&mach, &vcpu, NVMM_X64_STATE_GPRS) == 0 &&
              vcpu.state->gprs[NVMM_X64_GPR_RIP] == 0x1000,
          "RIP %#llx", (unsigned long long)vcpu.state->gprs[NVMM_X64_GPR_RIP]);
    CHECK(nvmm_assist_io(&mach, &vcpu) == 0, "errno %d", errno);
    CHECK(nvmm_vcpu_getstate(&mach, &vcpu, NVMM_X64_STATE_GPRS) == 0, "errno %d", errno);
    CHECK((vcpu.state->gprs[NVMM_X64_GPR_RAX] & 0xff) == 0x5a &&
              vcpu.state->gprs[NVMM_X64_GPR_RIP] == 0x1001,
          "RAX %#llx RIP %#llx", (unsigned long long)vcpu.state->gprs[NVMM_X64_GPR_RAX],
          (unsigned long long)vcpu.state->gprs[NVMM_X64_GPR_RIP]);
    CHECK(nvmm_machine_destroy(&mach) == 0, "errno %d", errno);
    munmap(ram, 0x200000);
}

/* Two vCPUs on two threads; nvmm_vcpu_stop() from another thread ends a guest's busy loop. */
struct spinner {
    struct nvmm_machine *mach;
    struct nvmm_vcpu vcpu;
    uint64_t reason;
    int outs;
};

static void count_io(struct nvmm_io *io) { (void)io; }

static void *spin_thread(void *arg) {
    struct spinner *s = arg;
    for (;;) {
        if (nvmm_vcpu_run(s->mach, &s->vcpu) == -1) { s->reason = ~0ULL; return NULL; }
        if (s->vcpu.exit->reason == NVMM_VCPU_EXIT_IO) {
            nvmm_assist_io(s->mach, &s->vcpu);
            s->outs++;
            continue;
        }
        if (s->vcpu.exit->reason == NVMM_VCPU_EXIT_NONE) continue;
        s->reason = s->vcpu.exit->reason;
        return NULL;
    }
}

static void test_two_vcpus_and_stop(void) {
    struct nvmm_machine mach;
    CHECK(nvmm_machine_create(&mach) == 0, "errno %d", errno);
    uint8_t *ram = map_ram(&mach, 0x200000);
    /* at 0x1000: 1: out %al,$0x70 ; jmp 1b */
    static const uint8_t loop[] = {0xe6, 0x70, 0xeb, 0xfc};
    memcpy(ram + 0x1000, loop, sizeof loop);
    struct nvmm_assist_callbacks cbs = {count_io, mem_cb};
    struct spinner s[2];
    pthread_t t[2];
    memset(s, 0, sizeof s);
    for (int i = 0; i < 2; i++) {
        s[i].mach = &mach;
        CHECK(nvmm_vcpu_create(&mach, (nvmm_cpuid_t)i, &s[i].vcpu) == 0, "errno %d", errno);
        CHECK(nvmm_vcpu_configure(&mach, &s[i].vcpu, NVMM_VCPU_CONF_CALLBACKS, &cbs) == 0,
              "errno %d", errno);
        enter_long_mode(&mach, &s[i].vcpu, ram, 0x1000);
    }
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, spin_thread, &s[i]);
    for (int tries = 0; tries < 2000 && (s[0].outs < 50 || s[1].outs < 50); tries++) usleep(1000);
    for (int i = 0; i < 2; i++) CHECK(nvmm_vcpu_stop(&s[i].vcpu) == 0, "errno %d", errno);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < 2; i++)
        CHECK(s[i].reason == NVMM_VCPU_EXIT_STOPPED && s[i].outs >= 50, "vCPU %d: exit %#llx, %d OUTs",
              i, (unsigned long long)s[i].reason, s[i].outs);
    CHECK(nvmm_machine_destroy(&mach) == 0, "errno %d", errno);
    munmap(ram, 0x200000);
}

/* A mapping without NVMM_PROT_WRITE: reads come from memory, writes exit as MEMORY with
 * NVMM_PROT_WRITE and do not reach it. Then a triple fault ends in NVMM_VCPU_EXIT_SHUTDOWN. */
static void test_readonly_and_shutdown(void) {
    struct nvmm_machine mach;
    struct nvmm_vcpu vcpu;
    new_machine(&mach, &vcpu);
    uint8_t *ram = map_ram(&mach, 0x200000);
    uint8_t *ro = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    put32(ro, 0x600dbeef);
    CHECK(nvmm_hva_map(&mach, (uintptr_t)ro, 4096) == 0, "errno %d", errno);
    CHECK(nvmm_gpa_map(&mach, (uintptr_t)ro, 0x300000, 4096, NVMM_PROT_READ | NVMM_PROT_EXEC) == 0,
          "errno %d", errno);
    /* mov 0x300000,%eax ; mov %eax,0x8000 ; movl $0x55,0x300004 ; hlt    at 0x1100: ud2 */
    static const uint8_t code[] = {0x8b, 0x04, 0x25, 0x00, 0x00, 0x30, 0x00, 0x89, 0x04, 0x25,
                                   0x00, 0x80, 0x00, 0x00, 0xc7, 0x04, 0x25, 0x04, 0x00, 0x30,
                                   0x00, 0x55, 0x00, 0x00, 0x00, 0xf4};
    memcpy(ram + 0x1000, code, sizeof code);
    ram[0x1100] = 0x0f;
    ram[0x1101] = 0x0b;
    enter_long_mode(&mach, &vcpu, ram, 0x1000);
    CHECK(nvmm_vcpu_run(&mach, &vcpu) == 0 && vcpu.exit->reason == NVMM_VCPU_EXIT_MEMORY &&
              vcpu.exit->u.mem.gpa == 0x300004 && vcpu.exit->u.mem.prot == NVMM_PROT_WRITE,
          "exit %#llx gpa %#llx prot %d", (unsigned long long)vcpu.exit->reason,
          (unsigned long long)vcpu.exit->u.mem.gpa, vcpu.exit->u.mem.prot);
    CHECK(nvmm_assist_mem(&mach, &vcpu) == 0, "errno %d", errno);
    CHECK(nvmm_vcpu_run(&mach, &vcpu) == 0 && vcpu.exit->reason == NVMM_VCPU_EXIT_HALTED,
          "exit %#llx", (unsigned long long)vcpu.exit->reason);
    CHECK(get32(ram + 0x8000) == 0x600dbeef, "read of the read-only page gave %#x",
          get32(ram + 0x8000));
    CHECK(ro_write_gpa == 0x300004 && ro_write_val == 0x55 && get32(ro + 4) == 0,
          "write %#llx=%#llx, memory now %#x", (unsigned long long)ro_write_gpa,
          (unsigned long long)ro_write_val, get32(ro + 4));
    /* UD2 with no handlers: #UD, then #DF, then the triple fault. */
    CHECK(nvmm_vcpu_getstate(&mach, &vcpu, NVMM_X64_STATE_GPRS) == 0, "errno %d", errno);
    vcpu.state->gprs[NVMM_X64_GPR_RIP] = 0x1100;
    CHECK(nvmm_vcpu_setstate(&mach, &vcpu, NVMM_X64_STATE_GPRS) == 0, "errno %d", errno);
    CHECK(nvmm_vcpu_run(&mach, &vcpu) == 0 && vcpu.exit->reason == NVMM_VCPU_EXIT_SHUTDOWN,
          "exit %#llx", (unsigned long long)vcpu.exit->reason);
    CHECK(nvmm_machine_destroy(&mach) == 0, "errno %d", errno);
    munmap(ro, 4096);
    munmap(ram, 0x200000);
}

static int open_fds(void) {
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL) return -1;
    while (readdir(d) != NULL) n++;
    closedir(d);
    return n;
}

static void test_many_machines(void) {
    int before = open_fds();
    for (int i = 0; i < 40; i++) {
        struct nvmm_machine mach;
        struct nvmm_vcpu vcpu;
        if (nvmm_machine_create(&mach) == -1) { CHECK(0, "machine %d: errno %d", i, errno); return; }
        CHECK(nvmm_vcpu_create(&mach, 0, &vcpu) == 0, "errno %d", errno);
        uint8_t *ram = map_ram(&mach, 0x200000);
        ram[0x1000] = 0xf4; /* hlt */
        enter_long_mode(&mach, &vcpu, ram, 0x1000);
        CHECK(nvmm_vcpu_run(&mach, &vcpu) == 0 && vcpu.exit->reason == NVMM_VCPU_EXIT_HALTED,
              "machine %d: exit %#llx", i, (unsigned long long)vcpu.exit->reason);
        CHECK(nvmm_machine_destroy(&mach) == 0, "errno %d", errno);
        munmap(ram, 0x200000);
    }
    CHECK(open_fds() == before, "file descriptors %d before, %d after", before, open_fds());
}

int main(void) {
    if (nvmm_init() == -1) {
        perror("nvmm_init");
        return 100;
    }
    test_capability();
    test_bad_arguments();
    test_real_mode();
    test_long_mode();
    test_overwrite_after_exit();
    test_two_vcpus_and_stop();
    test_readonly_and_shutdown();
    test_many_machines();
    if (failures) fprintf(stderr, "%d check(s) failed\n", failures);
    else printf("libnvmm: all checks passed\n");
    return failures > 99 ? 99 : failures;
}
