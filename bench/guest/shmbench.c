// shmbench: the guest side of bench/shm.sh. Static, no dependencies; runs in a Debian guest
// with an ivshmem device (vireo's [shm.NAME], QEMU's ivshmem-doorbell) at a PCI address.
//
//   shmbench rr a|b COUNT [BDF [intx|msix]]
//                                 doorbell ping-pong: A writes a sequence number into the
//                                 region and rings B; B, woken by its interrupt, checks it,
//                                 writes it back and rings A. Interrupts arrive through Debian's
//                                 uio_pci_generic (intx, the default: /dev/uio0, which the
//                                 caller binds) or bench/guest/shmbell.c (msix: /dev/shmbell).
//                                 A prints SHM_RR_P50_US= SHM_RR_P99_US= SHM_RR_MEAN_US=
//   shmbench copy MIB [BDF]       memcpy bandwidth, MIB MiB each (best of eight interleaved
//                                 rounds): guest RAM to guest RAM, RAM to the region, region
//                                 to RAM:
//                                 COPY_RAM_MBPS= COPY_TO_SHM_MBPS= COPY_FROM_SHM_MBPS=
//
// BDF defaults to 0000:00:01.0 (vireo's first ivshmem function). The region is mapped through
// sysfs (resource2_wc when the BAR is prefetchable, else resource2), BAR0 through resource0.
// Region layout: 0x00 A's sequence number, 0x40 B's answer, 0x80 B's ready flag.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { kIntrMask = 0, kIntrStatus = 1, kIvPosition = 2, kDoorbell = 3 };
enum { kSeq = 0, kAnswer = 16, kReady = 32 };  // in 32-bit words of the region
#define READY_MAGIC 0x52454459u

static void die(const char* what) {
    fprintf(stderr, "shmbench: %s: %s\n", what, strerror(errno));
    exit(1);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void* map_file(const char* path, size_t* size) {
    int fd = open(path, O_RDWR | O_SYNC);
    if (fd < 0) return NULL;
    struct stat st;
    if (fstat(fd, &st)) die("fstat");
    *size = (size_t)st.st_size;
    void* p = mmap(NULL, *size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) die(path);
    close(fd);
    return p;
}

static volatile uint32_t* bar0;
static volatile uint32_t* region;
static size_t region_size;

static void map_device(const char* bdf) {
    char path[128];
    size_t size;
    snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/resource0", bdf);
    bar0 = map_file(path, &size);
    if (!bar0) die(path);
    snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/resource2_wc", bdf);
    region = map_file(path, &region_size);
    if (!region) {
        snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/resource2", bdf);
        region = map_file(path, &region_size);
        if (!region) die(path);
    }
}

static int uio = -1;
static int msix;          // interrupts from /dev/shmbell (MSI-X), not /dev/uio0 (INTx)
static int config = -1;   // the function's configuration space (sysfs)
static uint8_t command_hi;  // the command register's high byte, Interrupt Disable (bit 10) clear

// Waits for one interrupt, clears the device's status (INTx is level-triggered) and re-enables
// INTx, which uio_pci_generic's handler disabled in the command register (the driver has no
// irqcontrol: user space clears Interrupt Disable through the configuration space itself).
// With MSI-X (/dev/shmbell) the read is all: the interrupt is an edge and sets no status.
static void wait_irq(void) {
    uint32_t count;
    if (read(uio, &count, sizeof count) != sizeof count) die("read the interrupt device");
    if (msix) return;
    (void)bar0[kIntrStatus];
    if (pwrite(config, &command_hi, 1, 5) != 1) die("write config");
}

static void ring(uint32_t peer) { bar0[kDoorbell] = peer << 16; }

static int cmp_double(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return x < y ? -1 : x > y;
}

static int rr(char role, int count, const char* bdf) {
    map_device(bdf);
    uio = open(msix ? "/dev/shmbell" : "/dev/uio0", O_RDWR);
    if (uio < 0) die(msix ? "/dev/shmbell" : "/dev/uio0");
    if (!msix) {  // INTx is re-enabled through the configuration space (wait_irq)
        char path[128];
        snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/config", bdf);
        config = open(path, O_RDWR);
        if (config < 0 || pread(config, &command_hi, 1, 5) != 1) die(path);
        command_hi &= (uint8_t)~0x04;
    }
    bar0[kIntrMask] = 0xffffffff;
    (void)bar0[kIntrStatus];
    uint32_t me = bar0[kIvPosition];
    printf("SHM_PEER=%u SHM_REGION_MIB=%zu\n", me, region_size >> 20);
    if (role == 'b') {
        uint32_t a = me == 0 ? 1 : 0;  // the other of two peers
        region[kReady] = READY_MAGIC;
        for (int i = 1; i <= count; ++i) {
            wait_irq();
            if (region[kSeq] != (uint32_t)i) {
                fprintf(stderr, "shmbench: B expected %d, region says %u\n", i, region[kSeq]);
                return 1;
            }
            region[kAnswer] = (uint32_t)i;
            ring(a);
        }
        return 0;
    }
    uint32_t b = me == 0 ? 1 : 0;
    for (int n = 0; region[kReady] != READY_MAGIC; ++n) {
        if (n > 600) {
            fprintf(stderr, "shmbench: B never became ready\n");
            return 1;
        }
        usleep(100000);
    }
    region[kReady] = 0;
    double* lat = calloc((size_t)count, sizeof *lat);
    double total = 0;
    for (int i = 1; i <= count; ++i) {
        double t = now();
        region[kSeq] = (uint32_t)i;
        ring(b);
        wait_irq();
        lat[i - 1] = (now() - t) * 1e6;
        total += lat[i - 1];
        if (region[kAnswer] != (uint32_t)i) {
            fprintf(stderr, "shmbench: A expected answer %d, region says %u\n", i,
                    region[kAnswer]);
            return 1;
        }
    }
    qsort(lat, (size_t)count, sizeof *lat, cmp_double);
    printf("SHM_RR_P50_US=%.1f SHM_RR_P99_US=%.1f SHM_RR_MEAN_US=%.1f\n", lat[count / 2],
           lat[count * 99 / 100], total / count);
    return 0;
}

// MB/s of copying `total` bytes from src to dst in chunks of `chunk`.
static double copy_rate(void* dst, const void* src, size_t chunk, size_t total) {
    double t = now();
    for (size_t done = 0; done < total; done += chunk)
        memcpy(dst, src, chunk);
    return (double)total / (now() - t) / 1e6;
}

// The three copies take turns, eight rounds of MIB/8 each, and each reports its best round: a
// nested guest's speed drifts with the host's load, and turns keep the drift out of the ratios.
static int copy(size_t mib, const char* bdf) {
    map_device(bdf);
    size_t chunk = region_size < (8u << 20) ? region_size : (8u << 20);
    size_t round = (mib << 20) / 8 < chunk ? chunk : (mib << 20) / 8;
    char* a = malloc(chunk);
    char* b = malloc(chunk);
    if (!a || !b) die("malloc");
    memset(a, 0x5a, chunk);
    memset(b, 0xa5, chunk);
    memcpy((void*)region, a, chunk);  // every page faulted in before timing
    double ram = 0, to = 0, from = 0;
    for (int i = 0; i < 8; ++i) {
        double r = copy_rate(b, a, chunk, round);
        double t = copy_rate((void*)region, a, chunk, round);
        double f = copy_rate(b, (const void*)region, chunk, round);
        ram = r > ram ? r : ram;
        to = t > to ? t : to;
        from = f > from ? f : from;
    }
    printf("COPY_RAM_MBPS=%.0f COPY_TO_SHM_MBPS=%.0f COPY_FROM_SHM_MBPS=%.0f CHUNK_KIB=%zu\n", ram,
           to, from, chunk >> 10);
    return 0;
}

int main(int argc, char** argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 4 && !strcmp(argv[1], "rr") && (argv[2][0] == 'a' || argv[2][0] == 'b')) {
        msix = argc > 5 && !strcmp(argv[5], "msix");
        return rr(argv[2][0], atoi(argv[3]) > 0 ? atoi(argv[3]) : 1,
                  argc > 4 ? argv[4] : "0000:00:01.0");
    }
    if (argc >= 3 && !strcmp(argv[1], "copy"))
        return copy(strtoul(argv[2], 0, 0), argc > 3 ? argv[3] : "0000:00:01.0");
    fprintf(stderr, "usage: shmbench rr a|b COUNT [BDF [intx|msix]] | copy MIB [BDF]\n");
    return 2;
}
