// Token buckets for I/O rate limits (a disk's bytes and operations per second, as Firecracker's
// and QEMU's block throttling): a rate, a bucket that holds a tenth of a second of it (QEMU's
// default burst) and starts empty — so an idle disk saves up little, and a transfer of N
// seconds' worth takes N seconds — and a one-time burst on top that is spent first and never
// refilled. Time is passed in (nanoseconds of the
// steady clock), so the arithmetic is testable and the hot path reads the clock once.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>

namespace vireo {

/// The steady clock in nanoseconds (what the buckets count in).
inline int64_t steady_ns() noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

class TokenBucket {
  public:
    TokenBucket() = default;  ///< unlimited
    /// `rate` tokens per second (0: unlimited); `burst` tokens once, on top.
    TokenBucket(uint64_t rate, uint64_t burst, int64_t now_ns)
        : rate_(rate),
          cap_(static_cast<int64_t>(std::max<uint64_t>(std::min(rate, kMax) / 10, 1))),
          burst_(static_cast<int64_t>(std::min(burst, kMax))),
          last_ns_(now_ns) {}

    bool limited() const noexcept { return rate_ != 0; }
    uint64_t rate() const noexcept { return rate_; }

    /// Whether `n` tokens may be taken now: when the bucket (and burst) hold them, or — for a
    /// request larger than the bucket — when it is full. Taking them may leave the bucket
    /// in debt, which the next requests wait out: the long-run rate is exact either way.
    bool ready(uint64_t n, int64_t now_ns) noexcept {
        if (!limited()) return true;
        refill(now_ns);
        return tokens_ + burst_ >= need(n);
    }
    /// Takes `n` tokens (after ready()).
    void take(uint64_t n) noexcept {
        if (!limited()) return;
        const int64_t from_burst = std::min(burst_, static_cast<int64_t>(std::min(n, kMax)));
        burst_ -= from_burst;
        tokens_ -= static_cast<int64_t>(std::min(n, kMax)) - from_burst;
    }
    /// Nanoseconds until ready(n) (0 if now).
    int64_t wait_ns(uint64_t n, int64_t now_ns) noexcept {
        if (ready(n, now_ns)) return 0;
        const int64_t missing = need(n) - tokens_ - burst_;
        // missing * 1e9 / rate, rounded up, in 128 bits (missing and rate are below 2^54).
        return static_cast<int64_t>(static_cast<unsigned __int128>(missing) * kNs / rate_) + 1;
    }

  private:
    static constexpr uint64_t kMax = uint64_t{1} << 53;  // tokens beyond are not worth counting
    static constexpr uint64_t kNs = 1'000'000'000;

    int64_t need(uint64_t n) const noexcept {
        return std::min(static_cast<int64_t>(std::min(n, kMax)), cap_);
    }
    void refill(int64_t now_ns) noexcept {
        if (now_ns <= last_ns_) return;
        // Integer arithmetic in 128 bits (no floating point on the I/O path): the elapsed time
        // is capped at what fills the bucket from its deepest debt, so nothing overflows.
        const uint64_t dt = static_cast<uint64_t>(now_ns - last_ns_);
        const unsigned __int128 scaled = static_cast<unsigned __int128>(dt) * rate_;  // x 1e9
        // Full again (the usual case under a limit far above the rate): decided by multiplying
        // instead of dividing, so an unreached limit costs two multiplications per request.
        if (scaled >= static_cast<unsigned __int128>(cap_ - tokens_) * kNs) {
            tokens_ = cap_;  // full: the time beyond is not saved up
            last_ns_ = now_ns;
            return;
        }
        const unsigned __int128 add = scaled / kNs;
        if (add == 0) return;  // keep last_ns_: the fraction accrues until a whole token
        const int64_t whole = static_cast<int64_t>(add);
        tokens_ += whole;
        // The time the whole tokens stand for (so no fraction is lost to rounding).
        last_ns_ += static_cast<int64_t>(static_cast<unsigned __int128>(whole) * kNs / rate_);
    }

    uint64_t rate_ = 0;
    int64_t cap_ = 0;  // what the bucket holds: a tenth of a second's worth
    int64_t burst_ = 0;
    int64_t tokens_ = 0;  // may be negative: a large request's debt
    int64_t last_ns_ = 0;
};

/// A disk's or a network direction's limits: bytes and operations per second, each with a
/// one-time burst (0: unlimited).
struct IoLimits {
    uint64_t bps = 0, ops = 0, bps_burst = 0, ops_burst = 0;
    bool any() const noexcept { return bps != 0 || ops != 0; }
    bool operator==(const IoLimits&) const = default;
};

/// Both buckets of one I/O path.
class IoThrottle {
  public:
    IoThrottle() = default;
    IoThrottle(const IoLimits& l, int64_t now_ns)
        : bytes_(l.bps, l.bps_burst, now_ns), ops_(l.ops, l.ops_burst, now_ns) {}
    bool limited() const noexcept { return bytes_.limited() || ops_.limited(); }
    /// Nanoseconds until an operation of `bytes` may start (0: now, and it is taken).
    int64_t admit(uint64_t bytes, int64_t now_ns) noexcept {
        if (!limited()) return 0;
        const int64_t wait = std::max(bytes_.wait_ns(bytes, now_ns), ops_.wait_ns(1, now_ns));
        if (wait > 0) return wait;
        bytes_.take(bytes);
        ops_.take(1);
        return 0;
    }
    /// For an operation whose size is known only once it is done (a received frame):
    /// nanoseconds until the next may start (0: now); charge() it afterwards, which may leave
    /// the buckets in debt for the following ones to wait out.
    int64_t wait_any(int64_t now_ns) noexcept {
        if (!limited()) return 0;
        return std::max(bytes_.wait_ns(1, now_ns), ops_.wait_ns(1, now_ns));
    }
    void charge(uint64_t bytes) noexcept {
        bytes_.take(bytes);
        ops_.take(1);
    }

  private:
    TokenBucket bytes_, ops_;
};

}  // namespace vireo
