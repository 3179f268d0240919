// Token buckets (I/O rate limits): the rate over time, the one-time burst, a request larger
// than the bucket, and the wait the limiter arms its timer with.
#include "base/token_bucket.hpp"

#include <gtest/gtest.h>

namespace vireo {
namespace {

constexpr int64_t kSec = 1'000'000'000;

TEST(TokenBucket, UnlimitedNeverWaits) {
    TokenBucket b;
    EXPECT_FALSE(b.limited());
    EXPECT_TRUE(b.ready(uint64_t{1} << 62, 0));
    IoThrottle t;
    EXPECT_FALSE(t.limited());
    EXPECT_EQ(t.admit(uint64_t{1} << 40, 0), 0);
}

TEST(TokenBucket, StartsEmptyHoldsATenthOfASecondAndRefillsAtTheRate) {
    TokenBucket b(1000, 0, 0);
    EXPECT_FALSE(b.ready(1, 0));
    EXPECT_EQ(b.wait_ns(50, 0), kSec / 20 + 1);
    EXPECT_FALSE(b.ready(50, kSec / 20 - 1000));
    EXPECT_TRUE(b.ready(50, kSec / 20));
    b.take(50);
    // Idle time beyond a tenth of a second does not pile up: 100 tokens, then a debt.
    EXPECT_TRUE(b.ready(1000, 10 * kSec));
    b.take(1000);
    EXPECT_FALSE(b.ready(1, 10 * kSec + kSec / 2));
    EXPECT_TRUE(b.ready(1, 10 * kSec + 9 * kSec / 10 + kSec / 1000));
}

TEST(TokenBucket, NoFractionIsLostToRounding) {
    // 30 tokens a second (a bucket of 3), taken one at a time as they come, polled every
    // 1/300 s: exactly 300 in 10 s — the fractions between polls add up.
    TokenBucket b(30, 0, 0);
    int got = 0;
    for (int64_t t = 0; t <= 10 * kSec + kSec / 300; t += kSec / 300)
        if (b.ready(1, t)) b.take(1), ++got;
    EXPECT_EQ(got, 300);
}

TEST(TokenBucket, TheBurstIsSpentFirstAndOnce) {
    TokenBucket b(100, 500, 0);
    EXPECT_TRUE(b.ready(100, 0));
    b.take(500);  // the burst
    EXPECT_FALSE(b.ready(1, 0));
    EXPECT_TRUE(b.ready(10, kSec));  // refilled: the bucket (10), never the burst
    b.take(10);
    EXPECT_FALSE(b.ready(1, kSec));
}

TEST(TokenBucket, ARequestLargerThanTheBucketGoesWhenItIsFullAndIsPaidFor) {
    TokenBucket b(1000, 0, 0);
    EXPECT_FALSE(b.ready(5000, kSec / 20));
    EXPECT_TRUE(b.ready(5000, kSec / 10));  // a full bucket (100) lets it go ...
    b.take(5000);
    EXPECT_FALSE(b.ready(1, 4 * kSec));  // ... and the next waits out the debt of 4900
    EXPECT_TRUE(b.ready(1, 5 * kSec + kSec / 100));
}

TEST(IoThrottle, BytesAndOperationsBothHold) {
    IoThrottle t(IoLimits{.bps = 1 << 20, .ops = 100}, 0);
    ASSERT_TRUE(t.limited());
    for (int i = 0; i < 10; ++i)  // the bucket's tenth of a second: 10 operations
        EXPECT_EQ(t.admit(4096, kSec), 0) << i;
    const int64_t wait = t.admit(4096, kSec);  // the 11th waits for the next: 10 ms
    EXPECT_GT(wait, kSec / 100 - kSec / 10000);
    EXPECT_LE(wait, kSec / 100 + 1);
    EXPECT_EQ(t.admit(4096, kSec + wait), 0);
    // 1 MiB/s: a 1 MiB read leaves the bytes bucket a debt of 0.9 s whatever the operations say;
    // the next read waits it out and a tenth of a second more.
    IoThrottle bytes(IoLimits{.bps = 1 << 20}, 0);
    EXPECT_EQ(bytes.admit(1 << 20, kSec), 0);
    EXPECT_NEAR(static_cast<double>(bytes.admit(1 << 19, kSec)), kSec * 1.0, kSec / 1000.0);
}

// 50 MB read in 1 MiB requests at 10 MB/s: the simulated clock, advanced to each admission,
// ends within a request of 5 s — what the Debian test measures end to end (4.5 to 5.5 s).
TEST(IoThrottle, ALongTransferTakesWhatTheRateSays) {
    IoThrottle t(IoLimits{.bps = 10'000'000}, 0);
    int64_t now = 0;
    for (uint64_t done = 0; done < 50'000'000; done += 1 << 20)
        while (const int64_t w = t.admit(1 << 20, now))
            now += w;
    EXPECT_NEAR(static_cast<double>(now) / kSec, 5.0, 0.15);
}

}  // namespace
}  // namespace vireo
