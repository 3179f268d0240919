// netbench: stream, echo and round-trip tool for vireo's network and vsock tests and benchmarks.
// Static, no dependencies; runs in the guest (appended to its initramfs) and on the host.
//
// Endpoints:  tcp:HOST:PORT  vsock:CID:PORT  unix:PATH  fc:PATH:PORT (Firecracker-style vsock
//             host side: connect to PATH, send "CONNECT PORT\n", expect "OK ...\n")
// Listeners:  tcp:PORT  vsock:PORT  unix:PATH
//
//   netbench sink LISTEN             accept one connection, read to EOF:
//                                    SINK_BYTES= SINK_HASH= SINK_MBPS=
//   netbench echo LISTEN [N]         accept N connections (default 1), echo each to EOF
//   netbench send ENDPOINT BYTES     send BYTES of a fixed pattern, half-close, read back to EOF:
//                                    SEND_BYTES= SEND_HASH= SEND_MBPS= BACK_BYTES= BACK_MATCH=
//   netbench rr ENDPOINT COUNT       COUNT 1-byte round trips against an echo server:
//                                    RR_P50_US= RR_P99_US=
//   netbench relay LISTEN ENDPOINT   accept one connection, connect it to ENDPOINT and copy
//                                    both ways until either side closes (two guests' vsock
//                                    through the host)
//   netbench hold ENDPOINT N SECS    open N connections (vsock:CID:PORT or tcp:HOST:PORT) one
//                                    after another, keeping those that succeed, for SECS
//                                    seconds; then close them: HOLD_OK= HOLD_FAILED=
//                                    HOLD_REFUSED= (ECONNREFUSED among the failed) HOLD_MS=
//                                    (the N attempts), later HOLD_CLOSED
//   netbench accept LISTEN SECS      accept every connection for SECS seconds, keeping them
//                                    open: ACCEPTED=
//   netbench ready-file PATH ...     (option before the mode) create PATH once listening
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static const char* ready_file;
static int no_hash;  // NETBENCH_NOHASH=1: benchmarks skip hashing (it costs more than the copy)

static void die(const char* what) {
    fprintf(stderr, "netbench: %s: %s\n", what, strerror(errno));
    exit(1);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static uint8_t pattern(uint64_t i) {
    i &= 0xffff;
    return (uint8_t)((i * 2654435761u) >> 13);
}

static uint64_t fnv(uint64_t h, const uint8_t* p, size_t n) {
    if (no_hash) return h;
    for (size_t i = 0; i < n; ++i) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}
#define FNV_INIT 1469598103934665603ull

// connect() with retries: a listener that has just printed LISTENING may not be reachable
// through every transport yet.
static int connect_retry(int fd, const struct sockaddr* a, socklen_t len) {
    for (int i = 0; i < 50; ++i) {
        if (connect(fd, a, len) == 0) return 0;
        if (errno != ETIMEDOUT && errno != ECONNREFUSED && errno != ECONNRESET && errno != ENOENT)
            return -1;
        usleep(100000);
    }
    return -1;
}

static int connect_to(const char* ep) {
    int fd = -1;
    if (!strncmp(ep, "tcp:", 4)) {
        char host[64];
        const char* colon = strrchr(ep + 4, ':');
        if (!colon || (size_t)(colon - ep - 4) >= sizeof host) die("bad tcp endpoint");
        memcpy(host, ep + 4, (size_t)(colon - ep - 4));
        host[colon - ep - 4] = 0;
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)atoi(colon + 1))};
        if (inet_pton(AF_INET, host, &a.sin_addr) != 1) die("bad address");
        fd = socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect_retry(fd, (struct sockaddr*)&a, sizeof a)) die("connect");
    } else if (!strncmp(ep, "vsock:", 6)) {
        unsigned cid, port;
        if (sscanf(ep + 6, "%u:%u", &cid, &port) != 2) die("bad vsock endpoint");
        struct sockaddr_vm a = {.svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port};
        fd = socket(AF_VSOCK, SOCK_STREAM, 0);
        if (fd < 0) die("socket(AF_VSOCK)");
        if (connect_retry(fd, (struct sockaddr*)&a, sizeof a)) {
            // A timed-out vsock socket cannot be reused: retry on fresh ones.
            for (int i = 0; i < 20; ++i) {
                close(fd);
                fd = socket(AF_VSOCK, SOCK_STREAM, 0);
                if (connect(fd, (struct sockaddr*)&a, sizeof a) == 0) break;
                if (i == 19) die("connect");
                usleep(200000);
            }
        }
    } else if (!strncmp(ep, "unix:", 5) || !strncmp(ep, "fc:", 3)) {
        int fc = ep[0] == 'f';
        char path[108];
        const char* p = ep + (fc ? 3 : 5);
        const char* end = fc ? strrchr(p, ':') : p + strlen(p);
        if (!end || (size_t)(end - p) >= sizeof path) die("bad unix endpoint");
        memcpy(path, p, (size_t)(end - p));
        path[end - p] = 0;
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        strcpy(a.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (connect(fd, (struct sockaddr*)&a, sizeof a)) die("connect");
        if (fc) {
            char line[64];
            int n = snprintf(line, sizeof line, "CONNECT %s\n", end + 1);
            if (write(fd, line, (size_t)n) != n) die("write CONNECT");
            size_t got = 0;
            while (got < sizeof line - 1) {  // byte by byte: nothing after the line is ours
                ssize_t r = read(fd, line + got, 1);
                if (r <= 0) {
                    fprintf(stderr, "netbench: no OK from the vsock host side\n");
                    exit(1);
                }
                if (line[got++] == '\n') break;
            }
            if (strncmp(line, "OK ", 3)) {
                fprintf(stderr, "netbench: vsock handshake failed\n");
                exit(1);
            }
        }
    } else {
        fprintf(stderr, "netbench: unknown endpoint %s\n", ep);
        exit(2);
    }
    return fd;
}

static int listen_on(const char* ep) {
    int fd;
    int one = 1;
    if (!strncmp(ep, "tcp:", 4)) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(ep + 4))};
        fd = socket(AF_INET, SOCK_STREAM, 0);
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, (struct sockaddr*)&a, sizeof a)) die("bind");
    } else if (!strncmp(ep, "vsock:", 6)) {
        struct sockaddr_vm a = {
            .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = (unsigned)atoi(ep + 6)};
        fd = socket(AF_VSOCK, SOCK_STREAM, 0);
        if (fd < 0) die("socket(AF_VSOCK)");
        if (bind(fd, (struct sockaddr*)&a, sizeof a)) die("bind");
    } else if (!strncmp(ep, "unix:", 5)) {
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        snprintf(a.sun_path, sizeof a.sun_path, "%s", ep + 5);
        unlink(a.sun_path);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (bind(fd, (struct sockaddr*)&a, sizeof a)) die("bind");
    } else {
        fprintf(stderr, "netbench: unknown listener %s\n", ep);
        exit(2);
    }
    if (listen(fd, 16)) die("listen");
    if (ready_file) close(open(ready_file, O_CREAT | O_WRONLY, 0644));
    printf("LISTENING %s\n", ep);
    fflush(stdout);
    return fd;
}

static int accept_one(int l) {
    int c = accept(l, NULL, NULL);
    if (c < 0) die("accept");
    int one = 1;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // fails harmlessly on non-TCP
    return c;
}

static uint8_t buf[1 << 20];

static int sink(const char* ep) {
    int c = accept_one(listen_on(ep));
    uint64_t total = 0, h = FNV_INIT;
    double t0 = 0;
    for (;;) {
        ssize_t n = read(c, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        if (total == 0) t0 = now();
        h = fnv(h, buf, (size_t)n);
        total += (uint64_t)n;
    }
    double s = now() - t0;
    printf("SINK_BYTES=%llu SINK_HASH=%016llx SINK_MBPS=%.1f\n", (unsigned long long)total,
           (unsigned long long)h, s > 0 ? (double)total / s / 1e6 : 0);
    return 0;
}

static int echo(const char* ep, int count) {
    int l = listen_on(ep);
    for (int i = 0; i < count; ++i) {
        int c = accept_one(l);
        for (;;) {
            ssize_t n = read(c, buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            for (ssize_t off = 0; off < n;) {
                ssize_t w = write(c, buf + off, (size_t)(n - off));
                if (w <= 0) die("echo write");
                off += w;
            }
        }
        close(c);
    }
    return 0;
}

static int send_bytes(const char* ep, uint64_t bytes) {
    int fd = connect_to(ep);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    // The pattern repeats every 64 KiB; twice that, so any 64 KiB window is contiguous.
    static uint8_t pat[2 << 16];
    for (size_t i = 0; i < sizeof pat; ++i)
        pat[i] = pattern(i);
    uint64_t sent = 0, back = 0, hs = FNV_INIT, hb = FNV_INIT;
    int half_closed = 0;
    double t0 = now(), t_sent = 0;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN | (sent < bytes ? POLLOUT : 0)};
        if (sent == bytes && !half_closed) {
            shutdown(fd, SHUT_WR);
            half_closed = 1;
            t_sent = now();
        }
        if (poll(&p, 1, 30000) <= 0) {
            fprintf(stderr, "netbench: stalled after %llu sent, %llu back\n",
                    (unsigned long long)sent, (unsigned long long)back);
            return 1;
        }
        if (p.revents & POLLOUT) {
            const uint8_t* out = pat + (sent & 0xffff);
            size_t n = bytes - sent < (1 << 16) ? (size_t)(bytes - sent) : (1 << 16);
            ssize_t w = write(fd, out, n);
            if (w > 0) {
                hs = fnv(hs, out, (size_t)w);
                sent += (uint64_t)w;
            } else if (w < 0 && errno != EAGAIN) {
                die("write");
            }
        }
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = read(fd, buf, sizeof buf);
            if (n == 0 && half_closed) break;
            if (n == 0) {
                fprintf(stderr, "netbench: peer closed early\n");
                return 1;
            }
            if (n < 0 && errno != EAGAIN) die("read");
            if (n > 0) {
                hb = fnv(hb, buf, (size_t)n);
                back += (uint64_t)n;
            }
        }
    }
    double s = t_sent - t0;
    printf("SEND_BYTES=%llu SEND_HASH=%016llx SEND_MBPS=%.1f BACK_BYTES=%llu BACK_MATCH=%d\n",
           (unsigned long long)sent, (unsigned long long)hs, s > 0 ? (double)sent / s / 1e6 : 0,
           (unsigned long long)back, back == sent && hb == hs);
    return 0;
}

static int cmp_double(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return x < y ? -1 : x > y;
}

static int rr(const char* ep, int count) {
    int fd = connect_to(ep);
    double* lat = calloc((size_t)count, sizeof *lat);
    for (int i = 0; i < count; ++i) {
        char c = 'x';
        double t = now();
        if (write(fd, &c, 1) != 1 || read(fd, &c, 1) != 1) die("round trip");
        lat[i] = (now() - t) * 1e6;
    }
    qsort(lat, (size_t)count, sizeof *lat, cmp_double);
    printf("RR_P50_US=%.1f RR_P99_US=%.1f\n", lat[count / 2], lat[count * 99 / 100]);
    return 0;
}

static int relay(const char* listen_ep, const char* ep) {
    int a = accept_one(listen_on(listen_ep));
    int b = connect_to(ep);
    int one = 1;
    setsockopt(b, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    for (;;) {
        struct pollfd p[2] = {{.fd = a, .events = POLLIN}, {.fd = b, .events = POLLIN}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR) continue;
            die("poll");
        }
        for (int i = 0; i < 2; ++i) {
            if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            ssize_t n = read(p[i].fd, buf, sizeof buf);
            if (n <= 0) return 0;
            int to = i ? a : b;
            for (ssize_t off = 0; off < n;) {
                ssize_t w = write(to, buf + off, (size_t)(n - off));
                if (w <= 0) return 0;
                off += w;
            }
        }
    }
}

// A flood of connections that stay open (the VMM pool's test): no retries, failures counted.
static int hold(const char* ep, int count, int secs) {
    struct sockaddr_storage ss = {0};
    socklen_t len = 0;
    int family;
    unsigned cid, port;
    char host[64];
    const char* colon = strrchr(ep, ':');
    if (!strncmp(ep, "vsock:", 6) && sscanf(ep + 6, "%u:%u", &cid, &port) == 2) {
        struct sockaddr_vm* a = (struct sockaddr_vm*)&ss;
        a->svm_family = AF_VSOCK;
        a->svm_cid = cid;
        a->svm_port = port;
        len = sizeof *a;
        family = AF_VSOCK;
    } else if (!strncmp(ep, "tcp:", 4) && colon > ep + 4 && (size_t)(colon - ep - 4) < sizeof host) {
        struct sockaddr_in* a = (struct sockaddr_in*)&ss;
        memcpy(host, ep + 4, (size_t)(colon - ep - 4));
        host[colon - ep - 4] = 0;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)atoi(colon + 1));
        if (inet_pton(AF_INET, host, &a->sin_addr) != 1) die("hold: bad address");
        len = sizeof *a;
        family = AF_INET;
    } else {
        die("hold: expected vsock:CID:PORT or tcp:HOST:PORT");
    }
    if (count < 1) die("hold: bad count");
    int* fds = calloc((size_t)count, sizeof *fds);
    if (!fds) die("calloc");
    int ok = 0, failed = 0, refused = 0;
    const double t0 = now();
    for (int i = 0; i < count; ++i) {
        int fd = socket(family, SOCK_STREAM, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr*)&ss, len) == 0) {
            fds[ok++] = fd;
        } else {
            if (errno == ECONNREFUSED) ++refused;
            if (fd >= 0) close(fd);
            ++failed;
        }
    }
    printf("HOLD_OK=%d HOLD_FAILED=%d HOLD_REFUSED=%d HOLD_MS=%.0f\n", ok, failed, refused,
           (now() - t0) * 1000);
    sleep((unsigned)secs);
    for (int i = 0; i < ok; ++i)
        close(fds[i]);
    free(fds);
    printf("HOLD_CLOSED\n");
    return 0;
}

static int accept_all(const char* ep, int secs) {
    int l = listen_on(ep);
    if (listen(l, 4096)) die("listen");  // a deeper backlog: a flood is what is tested
    enum { kMax = 65536 };
    static int fds[kMax];
    int n = 0;
    const double end = now() + secs;
    for (double left; (left = end - now()) > 0;) {
        struct pollfd p = {.fd = l, .events = POLLIN};
        if (poll(&p, 1, (int)(left * 1000) + 1) <= 0) continue;
        int c = accept(l, NULL, NULL);
        if (c >= 0 && n < kMax) fds[n++] = c;
        else if (c >= 0) close(c);
    }
    printf("ACCEPTED=%d\n", n);
    for (int i = 0; i < n; ++i)
        close(fds[i]);
    return 0;
}

int main(int argc, char** argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    no_hash = getenv("NETBENCH_NOHASH") != NULL;
    if (argc > 2 && !strcmp(argv[1], "ready-file")) {
        ready_file = argv[2];
        argv += 2;
        argc -= 2;
    }
    if (argc >= 3 && !strcmp(argv[1], "sink")) return sink(argv[2]);
    if (argc >= 3 && !strcmp(argv[1], "echo")) return echo(argv[2], argc > 3 ? atoi(argv[3]) : 1);
    if (argc >= 4 && !strcmp(argv[1], "send")) return send_bytes(argv[2], strtoull(argv[3], 0, 0));
    if (argc >= 4 && !strcmp(argv[1], "rr")) return rr(argv[2], atoi(argv[3]));
    if (argc >= 4 && !strcmp(argv[1], "relay")) return relay(argv[2], argv[3]);
    if (argc >= 5 && !strcmp(argv[1], "hold")) return hold(argv[2], atoi(argv[3]), atoi(argv[4]));
    if (argc >= 4 && !strcmp(argv[1], "accept")) return accept_all(argv[2], atoi(argv[3]));
    fprintf(stderr,
            "usage: netbench [ready-file PATH] sink LISTEN | echo LISTEN [N] | send ENDPOINT "
            "BYTES | rr ENDPOINT COUNT | relay LISTEN ENDPOINT | hold vsock:CID:PORT N SECS | "
            "accept LISTEN SECS\n");
    return 2;
}
