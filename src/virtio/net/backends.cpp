// The tap and socketpair back-ends of virtio-net.
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/log.hpp"
#include "virtio/net/backend.hpp"

namespace vireo::virtio {

namespace {

class TapBackend final : public NetBackend {
  public:
    TapBackend(UniqueFd fd, uint64_t offloads) : fd_(std::move(fd)), offloads_(offloads) {}
    const char* kind() const noexcept override { return "tap"; }
    int rx_fd() const noexcept override { return fd_.get(); }
    uint64_t offloads() const noexcept override { return offloads_; }

    void set_guest_features(uint64_t f) override {
        if (offloads_ == 0) return;
        unsigned flags = 0;
        if (f & kNetFGuestCsum) {
            flags |= TUN_F_CSUM;
            if (f & kNetFGuestTso4) flags |= TUN_F_TSO4;
            if (f & kNetFGuestTso6) flags |= TUN_F_TSO6;
            if ((f & kNetFGuestEcn) && (flags & (TUN_F_TSO4 | TUN_F_TSO6))) flags |= TUN_F_TSO_ECN;
        }
        if (::ioctl(fd_.get(), TUNSETOFFLOAD, flags) != 0)
            log::warn("tap: TUNSETOFFLOAD {:#x}: {}", flags, std::strerror(errno));
    }

    ssize_t receive(const iovec* iov, int count) override {
        const ssize_t n = ::readv(fd_.get(), iov, count);
        return n < 0 ? -errno : n;
    }

    int send(const iovec* iov, int count) override {
        for (;;) {
            if (::writev(fd_.get(), iov, count) >= 0) return 0;
            if (errno != EINTR) return -errno;
        }
    }

  private:
    UniqueFd fd_;
    uint64_t offloads_;
};

class SocketBackend final : public NetBackend {
  public:
    explicit SocketBackend(UniqueFd fd) : fd_(std::move(fd)) {}
    const char* kind() const noexcept override { return "socket"; }
    int rx_fd() const noexcept override { return fd_.get(); }
    uint64_t offloads() const noexcept override { return 0; }
    ssize_t receive(const iovec* iov, int count) override {
        msghdr msg{};
        msg.msg_iov = const_cast<iovec*>(iov);
        msg.msg_iovlen = static_cast<size_t>(count);
        const ssize_t n = ::recvmsg(fd_.get(), &msg, MSG_DONTWAIT | MSG_TRUNC);
        return n < 0 ? -errno : n;  // MSG_TRUNC: a frame larger than the buffers says so
    }
    int send(const iovec* iov, int count) override {
        msghdr msg{};
        msg.msg_iov = const_cast<iovec*>(iov);
        msg.msg_iovlen = static_cast<size_t>(count);
        return ::sendmsg(fd_.get(), &msg, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 ? -errno : 0;
    }

  private:
    UniqueFd fd_;
};

}  // namespace

Result<std::pair<std::shared_ptr<NetBackend>, UniqueFd>> socketpair_backend() {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0)
        return fail_errno(errno, "socketpair");
    UniqueFd ours(fds[0]), wire(fds[1]);
    for (int fd : fds) {
        int size = 4 << 20;  // room for a burst of 64 KiB frames
        (void)::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
        (void)::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    }
    return std::pair<std::shared_ptr<NetBackend>, UniqueFd>(
        std::make_shared<SocketBackend>(std::move(ours)), std::move(wire));
}

Result<std::shared_ptr<NetBackend>> open_tap(const std::string& name, uint16_t mtu) {
    UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
    if (!fd) return fail_errno(errno, "tap {}: cannot open /dev/net/tun", name);
    unsigned features = 0;
    if (::ioctl(fd.get(), TUNGETFEATURES, &features) != 0 || (features & IFF_VNET_HDR) == 0)
        return fail(ErrorCode::Unsupported, "tap {}: the kernel's tun driver lacks IFF_VNET_HDR",
                    name);
    ifreq ifr{};
    std::memcpy(ifr.ifr_name, name.data(), std::min<size_t>(name.size(), IFNAMSIZ - 1));
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    if (::ioctl(fd.get(), TUNSETIFF, &ifr) != 0) {
        const int e = errno;
        if (e == EPERM)
            return fail_errno(e,
                              "tap {}: cannot attach (it does not exist and creating one needs "
                              "CAP_NET_ADMIN, or it belongs to another user)",
                              name);
        if (e == EBUSY) return fail_errno(e, "tap {}: in use by another process", name);
        return fail_errno(e, "tap {}: cannot attach", name);
    }
    int hdr = static_cast<int>(kNetHdrSize);
    if (::ioctl(fd.get(), TUNSETVNETHDRSZ, &hdr) != 0)
        return fail_errno(errno, "tap {}: TUNSETVNETHDRSZ", name);
    // Offloads: offered to the guest only if the tap takes them.
    uint64_t offloads = 0;
    if (::ioctl(fd.get(), TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN) ==
        0) {
        offloads = kNetFCsum | kNetFGuestCsum | kNetFGuestTso4 | kNetFGuestTso6 | kNetFGuestEcn |
                   kNetFHostTso4 | kNetFHostTso6 | kNetFHostEcn;
        (void)::ioctl(fd.get(), TUNSETOFFLOAD, 0);
    }
    // Bring the link up and set its MTU when allowed (a tap made for us by an administrator
    // may already be configured; then this is not needed).
    UniqueFd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (sock) {
        ifreq q{};
        std::memcpy(q.ifr_name, ifr.ifr_name, IFNAMSIZ);
        if (mtu != 1500) {
            q.ifr_mtu = mtu;
            if (::ioctl(sock.get(), SIOCSIFMTU, &q) != 0)
                log::warn("tap {}: cannot set MTU {}: {}", name, mtu, std::strerror(errno));
        }
        if (::ioctl(sock.get(), SIOCGIFFLAGS, &q) == 0 && (q.ifr_flags & IFF_UP) == 0) {
            q.ifr_flags |= IFF_UP;
            if (::ioctl(sock.get(), SIOCSIFFLAGS, &q) != 0)
                log::debug("tap {}: cannot bring the link up: {}", name, std::strerror(errno));
        }
    }
    return std::shared_ptr<NetBackend>(std::make_shared<TapBackend>(std::move(fd), offloads));
}

}  // namespace vireo::virtio
