#include "virtio/vsock/device.hpp"

#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>

#include "base/log.hpp"
#include "base/split.hpp"
#include "virtio/virtio.hpp"

namespace vireo::virtio {

enum class VsockDevice::Op : uint16_t {
    Request = 1,
    Response = 2,
    Rst = 3,
    Shutdown = 4,
    Rw = 5,
    CreditUpdate = 6,
    CreditRequest = 7,
};

namespace {

constexpr uint16_t kTypeStream = 1;
constexpr uint32_t kShutdownRecv = 1;  // the sender will receive no more data
constexpr uint32_t kShutdownSend = 2;  // the sender will send no more data
constexpr size_t kHdr = sizeof(VsockHeader);
constexpr size_t kMaxHandshake = 32;  // "CONNECT 4294967295\n" and then some

}  // namespace

struct VsockDevice::Conn {
    enum class State { Handshake, Connecting, Established } state = State::Handshake;
    UniqueFd fd;
    uint32_t host_port = 0, guest_port = 0;
    // Packets owed to the guest.
    bool owe_request = false, owe_response = false, owe_credit = false, owe_rst = false;
    uint32_t owe_shutdown = 0;  // flags of a SHUTDOWN to send
    // The guest's receive credit, and what we have sent it.
    uint32_t peer_buf_alloc = 0, peer_fwd_cnt = 0, rx_cnt = 0;
    // Ours: bytes of the guest's payload handed to the socket.
    uint32_t fwd_cnt = 0, fwd_cnt_sent = 0;
    std::vector<uint8_t> pending;  // guest payload the socket has not taken yet
    bool readable = false;         // the socket has data (or EOF) we have not read
    bool host_done = false;        // no more reading: EOF, or the guest stopped receiving
    bool hup = false;              // the host side is gone both ways
    bool guest_done = false;       // the guest will send no more (shut the socket's write side)
    bool reset_when_drained = false;
    bool closed = false;
    bool in_epoll = false;
    uint32_t interest = 0;
    std::string line;   // the handshake
    PoolCharge charge;  // kConnCost + pending's capacity

    uint32_t credit() const noexcept {
        const uint32_t used = rx_cnt - peer_fwd_cnt;
        return used >= peer_buf_alloc ? 0 : peer_buf_alloc - used;
    }
};

VsockDevice::VsockDevice(std::shared_ptr<VsockListener> listener, std::shared_ptr<MemoryPool> pool)
    : listener_(std::move(listener)), pool_(std::move(pool)), chain_(kMaxChain) {
    const uint64_t cid = listener_->cid();
    std::memcpy(config_.data(), &cid, 8);
    resets_.reserve(64);
}

VsockDevice::~VsockDevice() = default;

uint32_t VsockDevice::device_id() const noexcept {
    return kDeviceVsock;
}

uint64_t VsockDevice::device_features() const noexcept {
    return kFeatureIndirectDesc | kFeatureEventIdx;
}

Result<void> VsockDevice::attach_loop(EventLoop& loop) {
    epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
    if (!epoll_) return fail_errno(errno, "vsock: epoll_create1");
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = nullptr;  // the listener
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, listener_->fd(), &ev) != 0)
        return fail_errno(errno, "vsock: epoll_ctl(listener)");
    return loop.add(epoll_.get(), [this] {
        std::lock_guard lock(mutex());
        on_events();
    });
}

Result<void> VsockDevice::activate(const memory::GuestMemory&, std::span<Queue> queues, uint64_t,
                                   Transport& transport) {
    if (queues.size() != 3 || !queues[0].active() || !queues[1].active())
        return fail(ErrorCode::InvalidArgument, "receive and transmit queues not set up");
    rx_ = &queues[0];
    tx_ = &queues[1];
    event_ = queues[2].active() ? &queues[2] : nullptr;  // only for transport resets (restore)
    transport_ = &transport;
    rx_starved_ = false;
    return ok();
}

void VsockDevice::restored() {
    // VIRTIO_VSOCK_EVENT_TRANSPORT_RESET (id 0): the driver drops every connection and
    // re-reads the guest CID (a clone's may differ).
    auto got = event_ != nullptr ? event_->pop(chain_) : Result<bool>(false);
    if (!got || !*got || chain_.writable_bytes() < 4) {
        if (got && *got) event_->push_used(chain_.head(), 0);
        log::warn("virtio-vsock: no event buffer for the transport reset after the restore");
        return;
    }
    const uint8_t reset_event[4] = {0, 0, 0, 0};
    scatter(chain_.writable(), reset_event);
    event_->push_used(chain_, 4);
    if (event_->needs_interrupt()) transport_->signal_used();
}

void VsockDevice::reset() {
    rx_ = tx_ = event_ = nullptr;
    for (auto& [key, c] : conns_)
        close_conn(*c);
    for (auto& c : handshaking_)
        close_conn(*c);
    resets_.clear();
    drop_closed();
}

VsockDevice::Conn* VsockDevice::find(uint32_t host_port, uint32_t guest_port) {
    auto it = conns_.find((uint64_t{host_port} << 32) | guest_port);
    return it == conns_.end() || it->second->closed ? nullptr : it->second.get();
}

uint32_t VsockDevice::alloc_host_port() {
    for (;;) {
        const uint32_t p = next_host_port_++;
        if (next_host_port_ == 0) next_host_port_ = 1u << 30;
        bool used = false;
        for (const auto& [key, c] : conns_)
            used = used || c->host_port == p;
        if (!used) return p;
    }
}

void VsockDevice::update_interest(Conn& c) {
    if (c.closed || !c.fd) return;
    uint32_t ev = 0;
    if (c.state == Conn::State::Handshake) ev = EPOLLIN;
    if (c.state == Conn::State::Established) {
        if (!c.host_done && !c.hup && !c.readable && !rx_starved_ && c.credit() > 0)
            ev |= EPOLLIN | EPOLLRDHUP;
        if (!c.pending.empty() && !c.hup) ev |= EPOLLOUT;
    }
    if (c.hup) ev = 0;  // gone: epoll would report HUP forever
    if (c.in_epoll && ev == c.interest) return;
    if (c.hup && !c.in_epoll) return;
    epoll_event e{};
    e.events = ev;
    e.data.ptr = &c;
    if (!c.in_epoll) {
        if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, c.fd.get(), &e) == 0) c.in_epoll = true;
    } else if (c.hup) {
        ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, c.fd.get(), nullptr);
        c.in_epoll = false;
    } else {
        ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, c.fd.get(), &e);
    }
    c.interest = ev;
}

std::unique_ptr<VsockDevice::Conn> VsockDevice::new_conn() {
    auto c = std::make_unique<Conn>();
    c->charge.attach(pool_.get());
    if (!c->charge.set(kConnCost)) {
        ++stats_.pool_refused;
        return nullptr;
    }
    return c;
}

bool VsockDevice::grow_pending(Conn& c, size_t more) {
    const size_t need = c.pending.size() + more;
    if (need <= c.pending.capacity()) return true;
    // Doubling up to the credit we give (kBufAlloc), each step taken from the pool first.
    const size_t cap = std::max(need, std::min<size_t>(2 * c.pending.capacity(), kBufAlloc));
    if (!c.charge.set(kConnCost + cap)) {
        ++stats_.pool_refused;
        return false;
    }
    c.pending.reserve(cap);
    return true;
}

void VsockDevice::close_conn(Conn& c) {
    if (c.closed) return;
    c.closed = true;
    if (c.in_epoll) ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, c.fd.get(), nullptr);
    c.in_epoll = false;
    c.fd.reset();
    c.pending.clear();
    c.pending.shrink_to_fit();
    (void)c.charge.set(0);
}

void VsockDevice::drop_closed() {
    std::erase_if(conns_, [](const auto& kv) { return kv.second->closed; });
    std::erase_if(handshaking_, [](const auto& c) { return c->closed; });
}

void VsockDevice::accept_host() {
    for (;;) {
        UniqueFd fd(::accept4(listener_->fd(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
        if (!fd) return;
        if (conns_.size() + handshaking_.size() >= kMaxConnections) {
            ++stats_.dropped;
            continue;  // closed: the host client sees EOF
        }
        auto c = new_conn();
        if (!c) continue;  // closed: the host client sees EOF
        c->fd = std::move(fd);
        update_interest(*c);
        handshaking_.push_back(std::move(c));
    }
}

void VsockDevice::on_conn_event(Conn& c, uint32_t events) {
    if (c.closed) return;
    if (c.state == Conn::State::Handshake) {
        char buf[kMaxHandshake];
        const ssize_t n = ::recv(c.fd.get(), buf, kMaxHandshake - c.line.size(), 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        if (n <= 0) return close_conn(c);
        c.line.append(buf, static_cast<size_t>(n));
        const size_t nl = c.line.find('\n');
        if (nl == std::string::npos) {
            if (c.line.size() >= kMaxHandshake) close_conn(c);
            return;
        }
        uint32_t port = 0;
        const std::string_view cmd(c.line.data(), nl);
        if (cmd.rfind("CONNECT ", 0) != 0 ||
            std::from_chars(cmd.data() + 8, cmd.data() + cmd.size(), port).ptr !=
                cmd.data() + cmd.size() ||
            nl + 1 != c.line.size()) {
            const char err[] = "ERROR expected CONNECT <port>\n";
            (void)::send(c.fd.get(), err, sizeof err - 1, MSG_NOSIGNAL);
            return close_conn(c);
        }
        c.line.clear();
        c.line.shrink_to_fit();
        c.state = Conn::State::Connecting;
        c.host_port = alloc_host_port();
        c.guest_port = port;
        c.owe_request = true;
        update_interest(c);
        for (auto it = handshaking_.begin(); it != handshaking_.end(); ++it) {
            if (it->get() != &c) continue;
            conns_[(uint64_t{c.host_port} << 32) | port] = std::move(*it);
            handshaking_.erase(it);
            break;
        }
        ++stats_.connections;
        return;
    }
    if (events & (EPOLLHUP | EPOLLERR)) c.hup = true;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) c.readable = true;
    if ((events & EPOLLOUT) && !c.pending.empty()) {
        const ssize_t n = ::send(c.fd.get(), c.pending.data(), c.pending.size(), MSG_NOSIGNAL);
        if (n > 0) {
            c.pending.erase(c.pending.begin(), c.pending.begin() + n);
            c.fwd_cnt += static_cast<uint32_t>(n);
            if (c.fwd_cnt - c.fwd_cnt_sent >= kBufAlloc / 4) c.owe_credit = true;
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
            c.owe_rst = true;
        }
        if (c.pending.empty()) {
            // Drained: its memory goes back to the pool (taken again if the socket lags again).
            c.pending.shrink_to_fit();
            (void)c.charge.set(kConnCost);
            if (c.guest_done) ::shutdown(c.fd.get(), SHUT_WR);
            if (c.reset_when_drained) c.owe_rst = true;
        }
    }
    update_interest(c);
}

void VsockDevice::on_events() {
    epoll_event events[64];
    const int n = ::epoll_wait(epoll_.get(), events, 64, 0);
    for (int i = 0; i < n; ++i) {
        if (events[i].data.ptr == nullptr) {
            accept_host();
        } else {
            on_conn_event(*static_cast<Conn*>(events[i].data.ptr), events[i].events);
        }
    }
    flush_rx();
    drop_closed();
}

Result<void> VsockDevice::process(size_t index) {
    if (rx_ == nullptr) return ok();
    if (index == 1) VIREO_TRY(handle_tx());
    if (index == 0 && rx_starved_) {
        rx_starved_ = false;
        for (auto& [key, c] : conns_)
            update_interest(*c);
    }
    flush_rx();
    drop_closed();
    return ok();
}

Result<void> VsockDevice::handle_tx() {
    bool used = false;
    for (;;) {
        VIREO_TRY_ASSIGN(bool got, tx_->pop(chain_));
        if (!got) break;
        used = true;
        VsockHeader h{};
        if (chain_.writable_bytes() != 0 || chain_.readable_bytes() < kHdr)
            return fail(ErrorCode::InvalidArgument,
                        "vsock packet with {} readable and {} writable bytes",
                        chain_.readable_bytes(), chain_.writable_bytes());
        gather(chain_.readable(), 0, std::span(reinterpret_cast<uint8_t*>(&h), kHdr));
        if (h.len > kMaxPayload || h.len > chain_.readable_bytes() - kHdr) {
            ++stats_.dropped;  // a length the buffer does not hold
        } else {
            VIREO_TRY(handle_packet(h, chain_.readable(), kHdr));
        }
        tx_->push_used(chain_.head(), 0);
    }
    if (used && tx_->needs_interrupt()) transport_->signal_used();
    return ok();
}

bool VsockDevice::send_reset(const VsockHeader& to) {
    if (static_cast<Op>(to.op) == Op::Rst) return false;  // never answer a reset
    if (resets_.size() < resets_.capacity()) resets_.push_back(to);
    return true;
}

Result<void> VsockDevice::handle_packet(const VsockHeader& h, std::span<const Segment> segs,
                                        uint32_t off) {
    const uint64_t guest_cid = listener_->cid();
    if (h.src_cid != guest_cid || h.dst_cid != kVsockHostCid) {
        ++stats_.dropped;
        return ok();
    }
    if (h.type != kTypeStream) {
        send_reset(h);
        return ok();
    }
    Conn* c = find(h.dst_port, h.src_port);
    const auto op = static_cast<Op>(h.op);
    if (c != nullptr) {
        const bool had_credit = c->credit() > 0;
        c->peer_buf_alloc = h.buf_alloc;
        c->peer_fwd_cnt = h.fwd_cnt;
        if (!had_credit && c->credit() > 0) update_interest(*c);
    }
    switch (op) {
        case Op::Request: {
            if (c != nullptr) return ok();  // duplicate
            if (conns_.size() + handshaking_.size() >= kMaxConnections) {
                ++stats_.dropped;
                send_reset(h);
                return ok();
            }
            auto conn = new_conn();  // the pool first: a refused one never reaches the host
            if (!conn) {
                send_reset(h);
                return ok();
            }
            UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
            const sockaddr_un a = unix_address(fmt::format("{}_{}", listener_->path(), h.dst_port));
            if (!fd || ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) {
                send_reset(h);  // nobody listens on the host for that port
                return ok();
            }
            conn->state = Conn::State::Established;
            conn->fd = std::move(fd);
            conn->host_port = h.dst_port;
            conn->guest_port = h.src_port;
            conn->peer_buf_alloc = h.buf_alloc;
            conn->peer_fwd_cnt = h.fwd_cnt;
            conn->owe_response = true;
            update_interest(*conn);
            conns_[(uint64_t{h.dst_port} << 32) | h.src_port] = std::move(conn);
            ++stats_.connections;
            return ok();
        }
        case Op::Rst:
            if (c != nullptr) close_conn(*c);
            return ok();
        default:
            break;
    }
    if (c == nullptr) {
        send_reset(h);
        return ok();
    }
    switch (op) {
        case Op::Response: {
            if (c->state != Conn::State::Connecting) {
                c->owe_rst = true;
                return ok();
            }
            c->state = Conn::State::Established;
            const std::string okline = fmt::format("OK {}\n", c->host_port);
            if (::send(c->fd.get(), okline.data(), okline.size(), MSG_NOSIGNAL) !=
                static_cast<ssize_t>(okline.size()))
                c->owe_rst = true;
            update_interest(*c);
            return ok();
        }
        case Op::Rw: {
            if (c->state != Conn::State::Established || c->guest_done) {
                c->owe_rst = true;
                return ok();
            }
            if (h.len == 0) return ok();
            if (c->pending.size() + h.len > kBufAlloc) {
                c->owe_rst = true;  // more than the credit we gave
                ++stats_.resets;
                return ok();
            }
            stats_.tx_bytes += h.len;
            uint32_t written = 0;
            if (c->pending.empty() && !c->hup) {
                iovec iov[kMaxChain];
                const size_t n = to_iovecs(segs, off, h.len, iov);
                msghdr msg{};
                msg.msg_iov = iov;
                msg.msg_iovlen = n;
                const ssize_t w = ::sendmsg(c->fd.get(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (w < 0 && errno != EAGAIN && errno != EINTR) {
                    c->owe_rst = true;
                    return ok();
                }
                written = w > 0 ? static_cast<uint32_t>(w) : 0;
            }
            if (written < h.len) {
                if (!grow_pending(*c, h.len - written)) {
                    c->owe_rst = true;  // the domain's pool is spent: this connection goes
                    ++stats_.resets;
                    return ok();
                }
                const size_t at = c->pending.size();
                c->pending.resize(at + h.len - written);
                gather(segs, off + written, std::span(c->pending).subspan(at));
                update_interest(*c);
            }
            c->fwd_cnt += written;
            if (c->fwd_cnt - c->fwd_cnt_sent >= kBufAlloc / 4) c->owe_credit = true;
            return ok();
        }
        case Op::CreditUpdate:
            return ok();
        case Op::CreditRequest:
            c->owe_credit = true;
            return ok();
        case Op::Shutdown:
            if (h.flags & kShutdownRecv) c->host_done = true;
            if (h.flags & kShutdownSend) {
                c->guest_done = true;
                if (c->pending.empty() && c->fd) ::shutdown(c->fd.get(), SHUT_WR);
            }
            if ((h.flags & (kShutdownRecv | kShutdownSend)) == (kShutdownRecv | kShutdownSend)) {
                // The guest is closing: reset once the host has taken what it sent.
                if (c->pending.empty())
                    c->owe_rst = true;
                else
                    c->reset_when_drained = true;
            }
            update_interest(*c);
            return ok();
        default:
            c->owe_rst = true;
            return ok();
    }
}

Result<bool> VsockDevice::send_to_guest(Conn& c) {
    // What to send, decided before a buffer is taken.
    Op op{};
    uint32_t flags = 0;
    size_t want = 0;
    if (c.owe_rst) {
        op = Op::Rst;
    } else if (c.owe_request) {
        op = Op::Request;
    } else if (c.owe_response) {
        op = Op::Response;
    } else if (c.state == Conn::State::Established && c.readable && !c.host_done &&
               c.credit() > 0) {
        int avail = 0;
        if (::ioctl(c.fd.get(), FIONREAD, &avail) != 0) avail = 0;
        if (avail > 0) {
            op = Op::Rw;
            want = std::min<size_t>({static_cast<size_t>(avail), c.credit(), kMaxPayload});
        } else {
            char b;
            const ssize_t p = ::recv(c.fd.get(), &b, 1, MSG_PEEK | MSG_DONTWAIT);
            c.readable = false;
            if (p == 0 || (p < 0 && errno != EAGAIN && errno != EINTR) || c.hup) {
                c.host_done = true;  // EOF: the host will send no more
                c.owe_shutdown = c.hup ? (kShutdownRecv | kShutdownSend) : kShutdownSend;
            }
            update_interest(c);
            return send_to_guest(c);
        }
    } else if (c.owe_shutdown != 0) {
        op = Op::Shutdown;
        flags = c.owe_shutdown;
    } else if (c.owe_credit) {
        op = Op::CreditUpdate;
    } else {
        return true;  // nothing owed
    }
    VIREO_TRY_ASSIGN(bool got, rx_->pop(chain_));
    if (!got) return false;
    if (chain_.readable_bytes() != 0 || chain_.writable_bytes() < kHdr)
        return fail(ErrorCode::InvalidArgument,
                    "vsock receive buffer with {} readable and {} writable bytes",
                    chain_.readable_bytes(), chain_.writable_bytes());
    uint32_t len = 0;
    if (op == Op::Rw) {
        iovec iov[kMaxChain];
        want = std::min<size_t>(want, chain_.writable_bytes() - kHdr);
        const size_t n = to_iovecs(chain_.writable(), kHdr, want, iov);
        const ssize_t r = want == 0 ? 0 : ::readv(c.fd.get(), iov, static_cast<int>(n));
        if (r <= 0) {
            // Raced away (cannot happen with one reader); send a credit update instead.
            op = Op::CreditUpdate;
            c.readable = false;
            update_interest(c);
        } else {
            len = static_cast<uint32_t>(r);
            c.rx_cnt += len;
            stats_.rx_bytes += len;
        }
    }
    VsockHeader h{};
    h.src_cid = kVsockHostCid;
    h.dst_cid = listener_->cid();
    h.src_port = c.host_port;
    h.dst_port = c.guest_port;
    h.len = len;
    h.type = kTypeStream;
    h.op = static_cast<uint16_t>(op);
    h.flags = flags;
    h.buf_alloc = kBufAlloc;
    h.fwd_cnt = c.fwd_cnt;
    scatter(chain_.writable(), std::span(reinterpret_cast<const uint8_t*>(&h), kHdr));
    rx_->push_used(chain_, static_cast<uint32_t>(kHdr) + len);
    interrupt_pending_ = true;
    c.fwd_cnt_sent = c.fwd_cnt;
    c.owe_credit = false;
    switch (op) {
        case Op::Rst:
            ++stats_.resets;
            close_conn(c);
            break;
        case Op::Request:
            c.owe_request = false;
            break;
        case Op::Response:
            c.owe_response = false;
            break;
        case Op::Shutdown:
            c.owe_shutdown = 0;
            break;
        default:
            break;
    }
    if (op == Op::Rw && c.credit() == 0) update_interest(c);
    return true;
}

void VsockDevice::flush_rx() {
    if (rx_ == nullptr || rx_starved_) return;
    auto starve = [this] {
        rx_starved_ = true;  // the guest notifies the receive queue when it adds buffers
        for (auto& [key, c] : conns_)
            update_interest(*c);
    };
    while (!resets_.empty()) {
        auto got = rx_->pop(chain_);
        if (!got) {
            transport_->device_error(got.error().message());
            return;
        }
        if (!*got) return starve();
        const VsockHeader& to = resets_.back();
        VsockHeader h{};
        h.src_cid = kVsockHostCid;
        h.dst_cid = to.src_cid;
        h.src_port = to.dst_port;
        h.dst_port = to.src_port;
        h.type = kTypeStream;
        h.op = static_cast<uint16_t>(Op::Rst);
        if (chain_.writable_bytes() < kHdr) {
            transport_->device_error("vsock receive buffer smaller than a header");
            return;
        }
        scatter(chain_.writable(), std::span(reinterpret_cast<const uint8_t*>(&h), kHdr));
        rx_->push_used(chain_, static_cast<uint32_t>(kHdr));
        interrupt_pending_ = true;
        resets_.pop_back();
    }
    // Round-robin over connections, one packet each per pass, until nothing is owed.
    for (bool progress = true; progress;) {
        progress = false;
        for (auto& [key, c] : conns_) {
            if (c->closed) continue;
            const bool owes = c->owe_rst || c->owe_request || c->owe_response ||
                              c->owe_shutdown != 0 || c->owe_credit ||
                              (c->state == Conn::State::Established && c->readable &&
                               !c->host_done && c->credit() > 0);
            if (!owes) continue;
            auto sent = send_to_guest(*c);
            if (!sent) {
                transport_->device_error(sent.error().message());
                return;
            }
            if (!*sent) {
                if (interrupt_pending_ && rx_->needs_interrupt()) transport_->signal_used();
                interrupt_pending_ = false;
                return starve();
            }
            progress = true;
        }
        if (interrupt_pending_ && rx_->needs_interrupt()) transport_->signal_used();
        interrupt_pending_ = false;
    }
}

}  // namespace vireo::virtio
