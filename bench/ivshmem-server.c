// ivshmem-server: a minimal server for QEMU's ivshmem-doorbell, speaking QEMU's protocol
// (docs/specs/ivshmem-spec.rst), for bench/shm.sh: Debian's QEMU packages do not ship QEMU's
// own contrib/ivshmem-server. Static, no dependencies; runs in the test host.
//
//   ivshmem-server SOCKET SHM_FILE SIZE VECTORS
//
// Creates SHM_FILE (it must not exist; mode 0600) of SIZE bytes and listens on the Unix socket
// SOCKET. Each client (a QEMU process) gets the lowest free ID (0-15) and VECTORS eventfds of
// its own. Every message is one native int64, with at most one file descriptor:
//   to the new client: 0 (protocol version); its ID; -1 with the region's fd; for each other
//   client, that client's ID VECTORS times with its eventfds; its own ID VECTORS times with
//   its own eventfds;
//   to every other client: the new ID VECTORS times with the new client's eventfds;
//   when a client goes: its ID without a descriptor to every other client.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

enum { kMaxClients = 16, kMaxVectors = 16 };

struct client {
    int sock;  // -1: free
    int fds[kMaxVectors];
};

static struct client clients[kMaxClients];
static int vectors;

static void die(const char* what) {
    fprintf(stderr, "ivshmem-server: %s: %s\n", what, strerror(errno));
    exit(1);
}

// One message: a native int64, with `fd` attached unless it is -1. 0 on success.
static int send_msg(int sock, int64_t value, int fd) {
    struct iovec iov = {.iov_base = &value, .iov_len = sizeof value};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } control;
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    if (fd >= 0) {
        memset(&control, 0, sizeof control);
        m.msg_control = control.buf;
        m.msg_controllen = sizeof control.buf;
        struct cmsghdr* c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof fd);
    }
    return sendmsg(sock, &m, MSG_NOSIGNAL) == (ssize_t)sizeof value ? 0 : -1;
}

static void drop(int id) {
    close(clients[id].sock);
    clients[id].sock = -1;
    for (int v = 0; v < vectors; ++v)
        close(clients[id].fds[v]);
    for (int o = 0; o < kMaxClients; ++o)
        if (clients[o].sock >= 0) send_msg(clients[o].sock, id, -1);
    printf("client %d gone\n", id);
}

static void admit(int sock, int shm) {
    int id = 0;
    while (id < kMaxClients && clients[id].sock >= 0)
        ++id;
    if (id == kMaxClients) {
        fprintf(stderr, "ivshmem-server: more than %d clients; refusing one\n", kMaxClients);
        close(sock);
        return;
    }
    struct client* c = &clients[id];
    for (int v = 0; v < vectors; ++v)
        if ((c->fds[v] = eventfd(0, EFD_CLOEXEC)) < 0) die("eventfd");
    int bad = send_msg(sock, 0, -1) || send_msg(sock, id, -1) || send_msg(sock, -1, shm);
    for (int o = 0; o < kMaxClients && !bad; ++o)
        for (int v = 0; v < vectors && clients[o].sock >= 0 && !bad; ++v)
            bad = send_msg(sock, o, clients[o].fds[v]);
    for (int v = 0; v < vectors && !bad; ++v)
        bad = send_msg(sock, id, c->fds[v]);
    c->sock = sock;
    if (bad) {
        fprintf(stderr, "ivshmem-server: client %d: %s\n", id, strerror(errno));
        drop(id);
        return;
    }
    for (int o = 0; o < kMaxClients; ++o)
        for (int v = 0; v < vectors && o != id && clients[o].sock >= 0; ++v)
            send_msg(clients[o].sock, id, c->fds[v]);
    printf("client %d connected\n", id);
}

int main(int argc, char** argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc != 5) {
        fprintf(stderr, "usage: ivshmem-server SOCKET SHM_FILE SIZE VECTORS\n");
        return 2;
    }
    long long size = strtoll(argv[3], NULL, 0);
    vectors = atoi(argv[4]);
    if (size <= 0 || vectors < 1 || vectors > kMaxVectors) {
        fprintf(stderr, "ivshmem-server: SIZE must be > 0, VECTORS 1-%d\n", kMaxVectors);
        return 2;
    }
    int shm = open(argv[2], O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (shm < 0) die(argv[2]);
    if (ftruncate(shm, size)) die("ftruncate");
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(argv[1]) >= sizeof a.sun_path) {
        fprintf(stderr, "ivshmem-server: socket path too long\n");
        return 2;
    }
    strcpy(a.sun_path, argv[1]);
    int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l < 0 || bind(l, (struct sockaddr*)&a, sizeof a) || listen(l, 16)) die(argv[1]);
    for (int i = 0; i < kMaxClients; ++i)
        clients[i].sock = -1;
    printf("LISTENING %s\n", argv[1]);
    for (;;) {
        struct pollfd p[kMaxClients + 1];
        int ids[kMaxClients + 1], n = 0;
        p[n] = (struct pollfd){.fd = l, .events = POLLIN};
        ids[n++] = -1;
        for (int i = 0; i < kMaxClients; ++i)
            if (clients[i].sock >= 0) {
                p[n] = (struct pollfd){.fd = clients[i].sock, .events = POLLIN};
                ids[n++] = i;
            }
        if (poll(p, (nfds_t)n, -1) < 0) {
            if (errno == EINTR) continue;
            die("poll");
        }
        for (int i = 1; i < n; ++i)
            if (p[i].revents) {
                char b[64];  // clients send nothing: what comes is dropped, EOF ends the client
                if (read(p[i].fd, b, sizeof b) <= 0) drop(ids[i]);
            }
        if (p[0].revents & POLLIN) {
            int s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
            if (s >= 0) admit(s, shm);
        }
    }
}
