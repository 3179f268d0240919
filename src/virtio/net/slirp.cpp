#include "virtio/net/slirp.hpp"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <poll.h>
#include <pthread.h>
#include <slirp/libslirp.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "base/event_fd.hpp"
#include "base/log.hpp"
#include "base/thread_class.hpp"
#include "virtio/net/guest_flow.hpp"

namespace vireo::virtio {

namespace {

/// Frames waiting for the guest: enough for a full TCP window burst at 1500 bytes.
constexpr size_t kRingFrames = 256;

// libslirp, loaded on first use: Debian ships it only as a shared library that pulls in glib
// and pcre2, which every `vireo run` would otherwise load (and keep resident) for nothing.
struct SlirpLib {
    decltype(&::slirp_new) new_ = nullptr;
    decltype(&::slirp_cleanup) cleanup = nullptr;
    decltype(&::slirp_input) input = nullptr;
    decltype(&::slirp_add_hostfwd) add_hostfwd = nullptr;
    decltype(&::slirp_pollfds_fill) pollfds_fill = nullptr;
    decltype(&::slirp_pollfds_poll) pollfds_poll = nullptr;
    decltype(&::slirp_handle_timer) handle_timer = nullptr;
};

Result<const SlirpLib*> slirp_lib() {
    static SlirpLib lib;
    static std::string error;
    static std::once_flag once;
    std::call_once(once, [] {
        void* h = ::dlopen("libslirp.so.0", RTLD_NOW | RTLD_LOCAL);
        if (h == nullptr) {
            error = ::dlerror();
            return;
        }
        auto sym = [&](auto& fn, const char* name) {
            fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(::dlsym(h, name));
            if (fn == nullptr && error.empty()) error = std::string(name) + " not found";
        };
        sym(lib.new_, "slirp_new");
        sym(lib.cleanup, "slirp_cleanup");
        sym(lib.input, "slirp_input");
        sym(lib.add_hostfwd, "slirp_add_hostfwd");
        sym(lib.pollfds_fill, "slirp_pollfds_fill");
        sym(lib.pollfds_poll, "slirp_pollfds_poll");
        sym(lib.handle_timer, "slirp_handle_timer");
    });
    if (!error.empty())
        return fail(ErrorCode::Unsupported,
                    "user-mode networking needs libslirp (apt install libslirp0): {}", error);
    return &lib;
}

int64_t now_ns() {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

class SlirpBackend final : public NetBackend {
  public:
    struct Timer {
        SlirpTimerId id;
        void* cb_opaque;
        int64_t expire_ms = -1;
    };

    SlirpBackend(EventFd rx_event, EventFd wake, uint16_t mtu)
        : rx_event_(std::move(rx_event)),
          wake_(std::move(wake)),
          tcp_cost_(slirp_tcp_cost(mtu)),
          fragment_cost_(slirp_fragment_cost(mtu)),
          slot_size_(kNetHdrSize + mtu + 14 + 4),
          ring_(kRingFrames * slot_size_),
          lens_(kRingFrames),
          tx_buf_(kNetHdrSize + kMaxFrame) {
        pollfds_.reserve(64);
    }

    ~SlirpBackend() override {
        stop_.store(true, std::memory_order_release);
        (void)wake_.signal();
        if (thread_.joinable()) thread_.join();
        if (slirp_ != nullptr) lib_->cleanup(slirp_);
        for (const auto& [fd, socket] : sockets_)
            if (socket.charged != 0) pool_->give(socket.charged);
        for (const uint64_t charge : fragments_)
            if (charge != 0) pool_->give(charge);
    }

    const char* kind() const noexcept override { return "user"; }
    int rx_fd() const noexcept override { return rx_event_.fd(); }
    uint64_t offloads() const noexcept override { return 0; }

    ssize_t receive(const iovec* iov, int count) override {
        std::lock_guard lock(ring_mu_);
        if (ring_count_ == 0) {
            (void)rx_event_.consume();
            return -EAGAIN;
        }
        const uint8_t* src = ring_.data() + ring_head_ * slot_size_;
        size_t left = lens_[ring_head_], done = 0;
        for (int i = 0; i < count && left > 0; ++i) {
            const size_t n = std::min(left, iov[i].iov_len);
            // SAFETY: n <= iov_len; the iovecs are the device's receive buffers (guest slices).
            std::memcpy(iov[i].iov_base, src + done, n);
            done += n;
            left -= n;
        }
        const size_t len = lens_[ring_head_];
        ring_head_ = (ring_head_ + 1) % kRingFrames;
        if (--ring_count_ == 0) (void)rx_event_.consume();
        // Larger than the buffers: report it so (the device drops it, as with a tap).
        return left > 0 ? static_cast<ssize_t>(len + 1) : static_cast<ssize_t>(done);
    }

    int send(const iovec* iov, int count) override {
        size_t len = 0;
        for (int i = 0; i < count; ++i) {
            if (len + iov[i].iov_len > tx_buf_.size()) return -EMSGSIZE;
            // SAFETY: the iovecs are the device's transmit buffers (guest slices, checked).
            std::memcpy(tx_buf_.data() + len, iov[i].iov_base, iov[i].iov_len);
            len += iov[i].iov_len;
        }
        if (len <= kNetHdrSize) return -EINVAL;
        const uint8_t* frame = tx_buf_.data() + kNetHdrSize;
        const size_t frame_len = len - kNetHdrSize;
        const GuestFlow flow = guest_flow(std::span(frame, frame_len));
        // A frame that may open a host socket reserves its cost first; one that would need
        // a socket the pool has no room for never reaches slirp.
        const bool metered = flow.opens != Opens::Nothing && pool_ != nullptr;
        const uint64_t cost = flow.opens == Opens::TcpSyn ? tcp_cost_ : kSlirpDatagramCost;
        const bool reserved = metered && pool_->try_take(cost);
        {
            std::lock_guard lock(slirp_mu_);
            if ((metered && !reserved && !known(flow)) ||
                (flow.opens == Opens::Fragment && pool_ != nullptr && !take_fragment())) {
                if (reserved) pool_->give(cost);
                refuse(flow, frame, frame_len);
                return 0;
            }
            if (flow.opens == Opens::Nothing && !in_order_allowance(frame, frame_len)) {
                (void)count_refusal();
                return 0;
            }
            input_ = &flow;
            reservation_ = reserved ? cost : 0;
            lib_->input(slirp_, frame, static_cast<int>(frame_len));
            input_ = nullptr;
            if (reservation_ != 0) pool_->give(reservation_);  // it opened none
            reservation_ = 0;
        }
        (void)wake_.signal();  // slirp may have opened a socket the poll thread must watch
        return 0;
    }

    void attach_pool(std::shared_ptr<MemoryPool> pool) override {
        std::lock_guard lock(slirp_mu_);
        if (pool_ == nullptr && sockets_.empty()) pool_ = std::move(pool);
    }
    std::optional<NetBackendStats> backend_stats() const noexcept override {
        return NetBackendStats{host_sockets_.load(std::memory_order_relaxed),
                               refused_.load(std::memory_order_relaxed)};
    }

    void start() override {
        if (!thread_.joinable()) thread_ = std::thread([this] { poll_loop(); });
    }

    Result<void> open(const NetOptions& o) {
        SlirpConfig cfg{};
        cfg.version = 4;
        cfg.in_enabled = true;
        cfg.vnetwork.s_addr = htonl(0x0a000200);  // 10.0.2.0
        cfg.vnetmask.s_addr = htonl(0xffffff00);
        cfg.vhost.s_addr = htonl(0x0a000202);        // 10.0.2.2
        cfg.vdhcp_start.s_addr = htonl(0x0a00020f);  // 10.0.2.15
        cfg.vnameserver.s_addr = htonl(0x0a000203);  // 10.0.2.3
        cfg.vhostname = "vireo-guest";
        cfg.if_mtu = o.mtu;
        cfg.if_mru = o.mtu;
        cfg.disable_host_loopback = false;
        static const SlirpCb callbacks = {
            .send_packet = &SlirpBackend::on_send_packet,
            .guest_error = &SlirpBackend::on_guest_error,
            .clock_get_ns = [](void*) -> int64_t { return now_ns(); },
            .timer_new = nullptr,
            .timer_free = &SlirpBackend::on_timer_free,
            .timer_mod = &SlirpBackend::on_timer_mod,
            .register_poll_fd = &SlirpBackend::on_register_fd,
            .unregister_poll_fd = &SlirpBackend::on_unregister_fd,
            .notify = [](void* self) { (void)static_cast<SlirpBackend*>(self)->wake_.signal(); },
            .init_completed = nullptr,
            .timer_new_opaque = &SlirpBackend::on_timer_new,
        };
        VIREO_TRY_ASSIGN(lib_, slirp_lib());
        slirp_ = lib_->new_(&cfg, &callbacks, this);
        if (slirp_ == nullptr) return fail(ErrorCode::System, "user network: slirp_new failed");
        for (const auto& f : o.forwards) {
            in_addr host{htonl(f.host_addr)}, guest{htonl(f.guest_addr)};
            if (lib_->add_hostfwd(slirp_, f.udp ? 1 : 0, host, f.host_port, guest, f.guest_port) !=
                0) {
                char a[INET_ADDRSTRLEN] = {};
                ::inet_ntop(AF_INET, &host, a, sizeof a);
                return fail(ErrorCode::AlreadyExists,
                            "user network: cannot forward {} {}:{} (port in use or address not "
                            "local)",
                            f.udp ? "udp" : "tcp", a, f.host_port);
            }
        }
        return ok();
    }

  private:
    struct HostSocket {
        GuestFlow flow;
        uint64_t charged = 0;    // bytes of the VMM pool
        bool forwarded = false;  // a forwarded port's connection: the host's side opened it
    };

    // A guest's segment that may go into slirp's reassembly queue (it starts past slirp's last
    // ACK on the connection: one the guest opened or a forwarded port's) takes one of the
    // connection's kSlirpMaxOutOfOrder places until an ACK passes it (ack_from_slirp); with none
    // left it is dropped. Data before slirp's first ACK is dropped too. Under slirp_mu_.
    bool in_order_allowance(const uint8_t* frame, size_t len) {
        const auto seg = tcp_segment(std::span(frame, len), true);
        if (!seg || seg->length == 0) return true;
        const auto it = flows_.find(seg->flow);
        if (it == flows_.end()) return true;  // no connection slirp has: it answers with a reset
        Reorder& r = it->second;
        if (r.acked && !seq_after(seg->seq, *r.acked)) return true;
        if (!r.acked || r.held == kSlirpMaxOutOfOrder) {
            if (!reorder_logged_)
                log::warn(
                    "user network: a connection's segments past slirp's acknowledgement are "
                    "dropped beyond {} (its out-of-order queue has no bound of its own; counted "
                    "as pool_refused)",
                    kSlirpMaxOutOfOrder);
            reorder_logged_ = true;
            return false;
        }
        r.starts[r.held++] = seg->seq;
        return true;
    }
    // slirp acknowledged the guest's data up to `ack`: the segments starting there or before
    // are not in its queue. Under slirp_mu_ (slirp sends frames only inside calls into it).
    void ack_from_slirp(const uint8_t* frame, size_t len) {
        const auto seg = tcp_segment(std::span(frame, len), false);
        if (!seg) return;
        if ((seg->flags & (kTcpSynFlag | kTcpAckFlag)) == kTcpSynFlag && accepted_fd_ >= 0) {
            // slirp opens a forwarded port's connection to the guest: the socket it accepted.
            auto [it, added] = sockets_.try_emplace(std::exchange(accepted_fd_, -1));
            HostSocket& socket = it->second;
            if (!added) {  // slirp never said it closed the socket that had this descriptor
                flows_.erase(socket.flow);
                if (!socket.forwarded) guest_sockets_ -= 1;
                if (socket.charged != 0) pool_->give(std::exchange(socket.charged, 0));
            }
            socket.flow = seg->flow;
            socket.forwarded = true;
            flows_[seg->flow] = Reorder{};
            return;
        }
        if (!(seg->flags & kTcpAckFlag)) return;
        const auto it = flows_.find(seg->flow);
        if (it == flows_.end()) return;
        Reorder& r = it->second;
        if (r.acked && !seq_after(seg->ack, *r.acked)) return;
        r.acked = seg->ack;
        for (uint32_t i = 0; i < r.held;)
            if (!seq_after(r.starts[i], seg->ack))
                r.starts[i] = r.starts[--r.held];
            else
                ++i;
    }

    // Whether slirp has the socket this frame's flow needs (a repeated SYN, a UDP flow's next
    // datagram). Under slirp_mu_.
    bool known(const GuestFlow& f) const {
        return (f.opens == Opens::TcpSyn || f.opens == Opens::UdpFlow) && flows_.contains(f);
    }

    // Counts a frame dropped for the pool's sake (the device's pool_refused and the pool's own
    // count); returns how many were before it.
    uint64_t count_refusal() {
        if (pool_ != nullptr) pool_->count_refusal();
        return refused_.fetch_add(1, std::memory_order_relaxed);
    }
    // Under slirp_mu_ (and so before ring_mu_, as in on_send_packet).
    void refuse(const GuestFlow& f, const uint8_t* frame, size_t len) {
        if (count_refusal() == 0)
            log::warn(
                "user network: the VMM pool ({} KiB) has no room for another host socket: "
                "new connections are reset, new UDP flows, pings and fragments dropped "
                "(counted as pool_refused)",
                pool_->limit() >> 10);
        if (f.opens == Opens::TcpSyn) {
            const auto reset = tcp_reset_for(std::span(frame, len));
            (void)on_send_packet(reset.data(), reset.size(), this);
        }
    }

    // Charges a fragment for kSlirpFragmentSeconds (longer than slirp keeps one). Under
    // slirp_mu_.
    bool take_fragment() {
        const int64_t now = now_ns() / 1000000000;
        age_fragments(now);
        if (!pool_->try_take(fragment_cost_)) return false;
        fragments_[static_cast<size_t>(now % kSlirpFragmentSeconds)] += fragment_cost_;
        return true;
    }
    // Gives back the fragments' charges older than kSlirpFragmentSeconds: each second's slot is
    // emptied before it is used again. Under slirp_mu_.
    void age_fragments(int64_t now) {
        if (now <= fragment_second_) return;
        const int64_t from = std::max(fragment_second_, now - kSlirpFragmentSeconds) + 1;
        for (int64_t s = from; s <= now; ++s) {
            uint64_t& charge = fragments_[static_cast<size_t>(s % kSlirpFragmentSeconds)];
            if (charge != 0) pool_->give(std::exchange(charge, 0));
        }
        fragment_second_ = now;
    }

    // An integer socket option of `fd` (-1 if it cannot be read).
    static int socket_option(int fd, int option) {
        int value = 0;
        socklen_t len = sizeof value;
        return ::getsockopt(fd, SOL_SOCKET, option, &value, &len) == 0 ? value : -1;
    }

    // Caps what the kernel buffers for a socket the guest opened (a peer that never reads
    // would otherwise make it grow to megabytes) and returns what the socket costs the pool.
    uint64_t cap_buffers(int fd) {
        const bool stream = socket_option(fd, SO_TYPE) == SOCK_STREAM;
        const int size = static_cast<int>(stream ? kSlirpKernelBuffer : kSlirpKernelBuffer / 4);
        if (::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size) != 0 ||
            ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size) != 0) {
            if (!cap_failed_logged_)
                log::warn("user network: cannot cap a host socket's buffers: {}",
                          std::strerror(errno));
            cap_failed_logged_ = true;
        }
        return stream ? tcp_cost_ : kSlirpDatagramCost;
    }

    // slirp opened a socket (in slirp_input for the guest's frame, or on the poll thread for a
    // forwarded port's connection, which the host's side owns and is not charged). Called with
    // slirp_mu_ held, as every call into slirp.
    static void on_register_fd(int fd, void* opaque) {
        auto* self = static_cast<SlirpBackend*>(opaque);
        if (fd < 0) return;
        if (self->input_ == nullptr) {
            // A forwarded port's connection, accepted on the poll thread (or its listener, at
            // start): its SYN to the guest, which slirp sends next, names its flow.
            if (socket_option(fd, SO_TYPE) == SOCK_STREAM && socket_option(fd, SO_ACCEPTCONN) == 0)
                self->accepted_fd_ = fd;
            return;
        }
        auto [it, added] = self->sockets_.try_emplace(fd);
        if (!added) self->flows_.erase(it->second.flow);  // slirp never said it closed it
        if (added || it->second.forwarded) self->guest_sockets_ += 1;
        it->second.forwarded = false;
        it->second.flow = *self->input_;
        // What it costs follows from what it is; the frame's reservation guessed the same.
        const uint64_t cost = self->cap_buffers(fd);
        if (it->second.charged == 0) {
            const uint64_t reserved = std::exchange(self->reservation_, 0);
            if (reserved >= cost) {
                if (reserved > cost) self->pool_->give(reserved - cost);
                it->second.charged = cost;
            } else if (self->pool_ != nullptr && self->pool_->try_take(cost - reserved)) {
                it->second.charged = cost;  // opened without (or with too small) a reservation
            } else {
                it->second.charged = reserved;  // a known flow slirp reopened: not refused
            }
        }
        if (it->second.flow.opens == Opens::TcpSyn || it->second.flow.opens == Opens::UdpFlow)
            self->flows_[it->second.flow] = Reorder{};
        self->host_sockets_.store(self->guest_sockets_, std::memory_order_relaxed);
    }
    static void on_unregister_fd(int fd, void* opaque) {
        auto* self = static_cast<SlirpBackend*>(opaque);
        if (self->accepted_fd_ == fd) self->accepted_fd_ = -1;
        auto it = self->sockets_.find(fd);
        if (it == self->sockets_.end()) return;
        if (it->second.charged != 0) self->pool_->give(it->second.charged);
        self->flows_.erase(it->second.flow);
        if (!it->second.forwarded) self->guest_sockets_ -= 1;
        self->sockets_.erase(it);
        self->host_sockets_.store(self->guest_sockets_, std::memory_order_relaxed);
    }

    static ssize_t on_send_packet(const void* buf, size_t len, void* opaque) {
        auto* self = static_cast<SlirpBackend*>(opaque);
        self->ack_from_slirp(static_cast<const uint8_t*>(buf), len);
        std::lock_guard lock(self->ring_mu_);
        if (self->ring_count_ == kRingFrames || kNetHdrSize + len > self->slot_size_) {
            ++self->dropped_;
            return static_cast<ssize_t>(len);  // dropped: TCP retransmits
        }
        const size_t slot = (self->ring_head_ + self->ring_count_) % kRingFrames;
        uint8_t* dst = self->ring_.data() + slot * self->slot_size_;
        std::memset(dst, 0, kNetHdrSize);  // no offloads: a plain frame
        std::memcpy(dst + kNetHdrSize, buf, len);
        self->lens_[slot] = kNetHdrSize + len;
        if (self->ring_count_++ == 0) (void)self->rx_event_.signal();
        return static_cast<ssize_t>(len);
    }

    static void on_guest_error(const char* msg, void* opaque) {
        auto* self = static_cast<SlirpBackend*>(opaque);
        if (self->errors_logged_++ < 10) log::warn("user network: guest error: {}", msg);
    }

    static void* on_timer_new(SlirpTimerId id, void* cb_opaque, void* opaque) {
        auto* self = static_cast<SlirpBackend*>(opaque);
        self->timers_.push_back(std::make_unique<Timer>(Timer{id, cb_opaque}));
        return self->timers_.back().get();
    }
    static void on_timer_free(void* timer, void* opaque) {
        auto& timers = static_cast<SlirpBackend*>(opaque)->timers_;
        std::erase_if(timers, [timer](const auto& t) { return t.get() == timer; });
    }
    static void on_timer_mod(void* timer, int64_t expire_ms, void*) {
        static_cast<Timer*>(timer)->expire_ms = expire_ms;
    }

    static int add_poll(int fd, int events, void* opaque) {
        auto* self = static_cast<SlirpBackend*>(opaque);
        short ev = 0;
        if (events & SLIRP_POLL_IN) ev |= POLLIN;
        if (events & SLIRP_POLL_OUT) ev |= POLLOUT;
        if (events & SLIRP_POLL_PRI) ev |= POLLPRI;
        self->pollfds_.push_back({fd, ev, 0});
        return static_cast<int>(self->pollfds_.size() - 1);
    }
    static int get_revents(int idx, void* opaque) {
        auto* self = static_cast<SlirpBackend*>(opaque);
        const short r = self->pollfds_[static_cast<size_t>(idx)].revents;
        int ev = 0;
        if (r & POLLIN) ev |= SLIRP_POLL_IN;
        if (r & POLLOUT) ev |= SLIRP_POLL_OUT;
        if (r & POLLPRI) ev |= SLIRP_POLL_PRI;
        if (r & POLLERR) ev |= SLIRP_POLL_ERR;
        if (r & POLLHUP) ev |= SLIRP_POLL_HUP;
        return ev;
    }

    void poll_loop() {
        ::pthread_setname_np(::pthread_self(), "vireo-slirp");
        confine_thread(ThreadClass::Slirp);
        while (!stop_.load(std::memory_order_acquire)) {
            uint32_t timeout = 1000;
            {
                std::lock_guard lock(slirp_mu_);
                pollfds_.clear();
                pollfds_.push_back({wake_.fd(), POLLIN, 0});
                lib_->pollfds_fill(slirp_, &timeout, &SlirpBackend::add_poll, this);
                const int64_t now = now_ns() / 1000000;
                for (const auto& t : timers_)
                    if (t->expire_ms >= 0)
                        timeout = static_cast<uint32_t>(
                            std::clamp<int64_t>(t->expire_ms - now, 0, timeout));
            }
            const int n = ::poll(pollfds_.data(), pollfds_.size(), static_cast<int>(timeout));
            if (pollfds_[0].revents & POLLIN) (void)wake_.consume();
            std::lock_guard lock(slirp_mu_);
            lib_->pollfds_poll(slirp_, n < 0 ? 1 : 0, &SlirpBackend::get_revents, this);
            accepted_fd_ = -1;  // its SYN comes within the call that accepted it, or never
            const int64_t now = now_ns() / 1000000;
            if (pool_ != nullptr) age_fragments(now / 1000);
            for (size_t i = 0; i < timers_.size(); ++i) {
                Timer* t = timers_[i].get();
                if (t->expire_ms < 0 || t->expire_ms > now) continue;
                t->expire_ms = -1;
                lib_->handle_timer(slirp_, t->id, t->cb_opaque);  // may add or free timers
            }
        }
    }

    EventFd rx_event_, wake_;
    std::mutex slirp_mu_;  // every call into libslirp
    const SlirpLib* lib_ = nullptr;
    Slirp* slirp_ = nullptr;
    std::vector<pollfd> pollfds_;
    std::vector<std::unique_ptr<Timer>> timers_;
    std::thread thread_;
    std::atomic<bool> stop_{false};
    int errors_logged_ = 0;
    bool cap_failed_logged_ = false;  // under slirp_mu_

    // The guest's host sockets (under slirp_mu_): by descriptor, and the flows they serve.
    std::shared_ptr<MemoryPool> pool_;
    const GuestFlow* input_ = nullptr;  // the frame in slirp_input
    uint64_t reservation_ = 0;          // its reserved cost, not yet a socket's
    std::unordered_map<int, HostSocket> sockets_;
    // What slirp's reassembly may hold of a connection (the guest's, or a forwarded port's).
    struct Reorder {
        std::optional<uint32_t> acked;  // slirp's last ACK to the guest
        uint32_t held = 0;
        std::array<uint32_t, kSlirpMaxOutOfOrder> starts{};
    };
    std::unordered_map<GuestFlow, Reorder, GuestFlowHash> flows_;  // and the guest's UDP flows
    bool reorder_logged_ = false;
    int accepted_fd_ = -1;        // a forwarded port's connection slirp accepted, flow not yet seen
    uint64_t guest_sockets_ = 0;  // the sockets the guest opened (sockets_ has forwarded ones too)
    std::atomic<uint64_t> host_sockets_{0}, refused_{0};
    // The guest's fragments slirp may still hold: their charges by the second they came in.
    const uint64_t tcp_cost_, fragment_cost_;
    std::array<uint64_t, kSlirpFragmentSeconds> fragments_{};
    int64_t fragment_second_ = 0;

    std::mutex ring_mu_;  // frames for the guest
    const size_t slot_size_;
    std::vector<uint8_t> ring_;
    std::vector<size_t> lens_;
    size_t ring_head_ = 0, ring_count_ = 0;
    uint64_t dropped_ = 0;

    std::vector<uint8_t> tx_buf_;  // event loop only
};

}  // namespace

Result<std::shared_ptr<NetBackend>> open_user_network(const NetOptions& options) {
    VIREO_TRY_ASSIGN(auto rx, EventFd::create());
    VIREO_TRY_ASSIGN(auto wake, EventFd::create());
    auto backend = std::make_shared<SlirpBackend>(std::move(rx), std::move(wake), options.mtu);
    VIREO_TRY(backend->open(options));
    return std::shared_ptr<NetBackend>(std::move(backend));
}

}  // namespace vireo::virtio
