/* blkbench: the guest side of bench/blk.sh (also run on the test host itself for its own
 * figure). Static, no dependencies.
 *   blkbench seqread  DEV MIB   sequential 1 MiB reads   -> SEQREAD_MBPS=
 *   blkbench seqwrite DEV MIB   sequential 1 MiB writes + fsync -> SEQWRITE_MBPS=
 *   blkbench randread DEV SECS  random 4 KiB reads, queue depth 1 -> RANDREAD_IOPS=
 *   blkbench all      DEV MIB SECS   the three above, in that order
 * O_DIRECT where the file supports it (block devices); buffered otherwise (tmpfs), said in a
 * DIRECT= line. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int open_dev(const char *dev, int flags) {
    int fd = open(dev, flags | O_DIRECT);
    if (fd < 0 && errno == EINVAL) {
        fd = open(dev, flags);
        printf("DIRECT=0\n");
    } else if (fd >= 0) {
        printf("DIRECT=1\n");
    }
    if (fd < 0) {
        perror(dev);
        exit(1);
    }
    return fd;
}

static void *buffer(size_t size) {
    void *p = NULL;
    if (posix_memalign(&p, 4096, size) != 0) exit(1);
    memset(p, 0x5a, size);
    return p;
}

static void seq(const char *dev, long mib, int write_mode) {
    int fd = open_dev(dev, write_mode ? O_WRONLY : O_RDONLY);
    char *buf = buffer(1 << 20);
    double t0 = now();
    for (long i = 0; i < mib; ++i) {
        ssize_t n = write_mode ? pwrite(fd, buf, 1 << 20, (off_t)i << 20)
                               : pread(fd, buf, 1 << 20, (off_t)i << 20);
        if (n != 1 << 20) {
            fprintf(stderr, "%s at %ld MiB: %s\n", write_mode ? "write" : "read", i,
                    n < 0 ? strerror(errno) : "short");
            exit(1);
        }
    }
    if (write_mode && fsync(fd) != 0) perror("fsync");
    double secs = now() - t0;
    printf("%s=%.1f\n", write_mode ? "SEQWRITE_MBPS" : "SEQREAD_MBPS", (double)mib / secs);
    close(fd);
    free(buf);
}

static void randread(const char *dev, double seconds) {
    int fd = open_dev(dev, O_RDONLY);
    off_t size = lseek(fd, 0, SEEK_END);
    char *buf = buffer(4096);
    uint64_t x = 88172645463325252ull, n = 0;
    uint64_t blocks = (uint64_t)size / 4096;
    double t0 = now(), t = t0;
    while (t - t0 < seconds) {
        for (int i = 0; i < 64; ++i) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if (pread(fd, buf, 4096, (off_t)((x % blocks) * 4096)) != 4096) {
                perror("pread");
                exit(1);
            }
            ++n;
        }
        t = now();
    }
    printf("RANDREAD_IOPS=%.0f\n", (double)n / (t - t0));
    close(fd);
    free(buf);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: blkbench seqread|seqwrite|randread|all DEV N [SECS]\n");
        return 2;
    }
    const char *mode = argv[1], *dev = argv[2];
    if (!strcmp(mode, "seqread")) {
        seq(dev, atol(argv[3]), 0);
    } else if (!strcmp(mode, "seqwrite")) {
        seq(dev, atol(argv[3]), 1);
    } else if (!strcmp(mode, "randread")) {
        randread(dev, atof(argv[3]));
    } else if (!strcmp(mode, "all") && argc >= 5) {
        seq(dev, atol(argv[3]), 0);
        randread(dev, atof(argv[4]));
        seq(dev, atol(argv[3]), 1);
    } else {
        fprintf(stderr, "blkbench: unknown mode %s\n", mode);
        return 2;
    }
    fflush(stdout);
    return 0;
}
