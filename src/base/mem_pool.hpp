// A domain's VMM-side memory budget (`vmm_pool`): what a guest or a client can make vireo
// allocate — vsock connections and the guest payload their host sockets have not taken yet,
// queued frames, ... — is taken from it before it is allocated and given back when freed. Over
// the budget, the take is refused and counted, and the device drops or refuses that work (a
// connection reset, a frame dropped): never an allocation that could get the domain OOM-killed
// by its cgroup (whose memory.max is guest memory + the pool + the process's fixed share:
// host/config.hpp, domain_memory_budget). Lock-free: one compare-exchange per take; the
// high-water mark is kept for `vireo info`.
#pragma once

#include <atomic>
#include <cstdint>

namespace vireo {

/// The default VMM pool follows the domain's devices (what they can make it hold at most):
/// 8 MiB for the VMM's working memory that the pool does not meter (frames and requests in
/// flight, API replies) — counted by admission and memory.max all the same; with vsock, 72 MiB
/// more (256 connections each holding its whole credit); per user-mode network, 80 MiB more
/// (102 TCP connections or 393 UDP flows with everything buffered that they may hold, at MTU
/// 1500: virtio/net/slirp.hpp, slirp_tcp_cost and kSlirpDatagramCost).
inline constexpr uint64_t kPlainVmmPool = uint64_t{8} << 20;
inline constexpr uint64_t kDefaultVmmPool = uint64_t{80} << 20;  // with vsock
inline constexpr uint64_t kUserNetVmmPool = uint64_t{80} << 20;
inline constexpr uint64_t default_vmm_pool(bool vsock, uint64_t user_nets = 0) noexcept {
    return (vsock ? kDefaultVmmPool : kPlainVmmPool) + user_nets * kUserNetVmmPool;
}
inline constexpr uint64_t kMinVmmPool = uint64_t{256} << 10;  // 64 idle vsock connections
inline constexpr uint64_t kMaxVmmPool = uint64_t{64} << 30;
/// The one check of a pool's size (flags and host configuration alike), and its range as error
/// messages say it.
constexpr bool vmm_pool_ok(uint64_t bytes) noexcept {
    return bytes >= kMinVmmPool && bytes <= kMaxVmmPool;
}
inline constexpr const char* kVmmPoolRange = "256K to 64G";

class MemoryPool {
  public:
    explicit MemoryPool(uint64_t limit) noexcept : limit_(limit) {}
    MemoryPool(const MemoryPool&) = delete;
    MemoryPool& operator=(const MemoryPool&) = delete;

    /// Takes `n` bytes; false (and counted) if that would go over the limit.
    bool take(uint64_t n) noexcept {
        if (try_take(n)) return true;
        count_refusal();
        return false;
    }
    /// Takes `n` bytes if they fit, without counting a refusal (for a reservation the caller may
    /// not need after all: it counts the refusals that refuse work).
    bool try_take(uint64_t n) noexcept {
        uint64_t cur = used_.load(std::memory_order_relaxed);
        do {
            if (n > limit_ - cur) return false;
        } while (!used_.compare_exchange_weak(cur, cur + n, std::memory_order_relaxed));
        const uint64_t now = cur + n;
        uint64_t high = high_.load(std::memory_order_relaxed);
        while (now > high && !high_.compare_exchange_weak(high, now, std::memory_order_relaxed)) {
        }
        return true;
    }
    void count_refusal() noexcept { refused_.fetch_add(1, std::memory_order_relaxed); }
    /// Gives back `n` bytes taken before.
    void give(uint64_t n) noexcept { used_.fetch_sub(n, std::memory_order_relaxed); }

    uint64_t limit() const noexcept { return limit_; }
    uint64_t used() const noexcept { return used_.load(std::memory_order_relaxed); }
    uint64_t high_water() const noexcept { return high_.load(std::memory_order_relaxed); }
    uint64_t refused() const noexcept { return refused_.load(std::memory_order_relaxed); }

  private:
    const uint64_t limit_;  // used_ <= limit_ always
    std::atomic<uint64_t> used_{0}, high_{0}, refused_{0};
};

/// Bytes one owner holds from a pool (none without a pool), given back when it goes.
class PoolCharge {
  public:
    PoolCharge() = default;
    explicit PoolCharge(MemoryPool* pool) noexcept : pool_(pool) {}
    PoolCharge(const PoolCharge&) = delete;
    PoolCharge& operator=(const PoolCharge&) = delete;
    ~PoolCharge() { set(0); }
    /// Draws from `pool` from now on (before anything is held).
    void attach(MemoryPool* pool) noexcept {
        if (held_ == 0) pool_ = pool;
    }

    /// Holds `n` bytes in all from now on (more taken, or the difference given back); false if
    /// the pool refused more (what was held stays held).
    bool set(uint64_t n) noexcept {
        if (pool_ == nullptr) return true;
        if (n > held_) {
            if (!pool_->take(n - held_)) return false;
        } else {
            pool_->give(held_ - n);
        }
        held_ = n;
        return true;
    }
    uint64_t held() const noexcept { return held_; }

  private:
    MemoryPool* pool_ = nullptr;
    uint64_t held_ = 0;
};

}  // namespace vireo
