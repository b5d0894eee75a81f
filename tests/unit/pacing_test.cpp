// The token bucket behind kafka.max_drain_rate, on an injected clock: the
// average holds exactly, the burst is bounded, waits are what they say.
#include <gtest/gtest.h>

#include "pacing.h"

namespace vane {
namespace {

using namespace std::chrono_literals;
using Clock = TokenBucket::Clock;

TEST(TokenBucket, StartsEmptyAndFillsAtTheRate) {
  const Clock::time_point t0{};
  TokenBucket b(20000, TokenBucket::burst_for(20000), t0);
  EXPECT_EQ(b.burst(), 2000u);
  EXPECT_EQ(b.available(t0), 0u);
  EXPECT_EQ(b.available(t0 + 1ms), 20u);
  EXPECT_EQ(b.available(t0 + 50ms), 1000u);
}

TEST(TokenBucket, BurstIsBoundedBelowOneSecondOfRate) {
  const Clock::time_point t0{};
  TokenBucket b(20000, TokenBucket::burst_for(20000), t0);
  EXPECT_EQ(b.available(t0 + 60s), 2000u) << "an idle minute must not bank a minute of rows";
  EXPECT_EQ(TokenBucket::burst_for(5), 1u);
  EXPECT_LE(TokenBucket::burst_for(1000000), 1000000u);
  TokenBucket clamped(100, 1000, t0);
  EXPECT_EQ(clamped.burst(), 100u) << "burst above one second of rate";
}

TEST(TokenBucket, AverageHoldsOverTenSecondsWhateverTheTakeSize) {
  for (const std::size_t chunk : {1u, 7u, 200u, 1000u}) {  // the forwarder takes 10 ms of rate, a tenth of the burst
    Clock::time_point t{};
    TokenBucket b(20000, TokenBucket::burst_for(20000), t);
    std::uint64_t taken = 0;
    const auto end = t + 10s;
    // A consumer that polls every 3 ms and takes what it may, in chunks.
    for (; t <= end; t += 3ms) {
      std::size_t n = b.available(t);
      n -= n % chunk;
      b.take(n);
      taken += n;
    }
    EXPECT_GE(taken, 200000u - 2000u) << "chunk " << chunk;
    EXPECT_LE(taken, 200000u) << "chunk " << chunk;
  }
}

TEST(TokenBucket, TimeUntilSaysWhenTokensAreThere) {
  const Clock::time_point t0{};
  TokenBucket b(1000, 100, t0);
  EXPECT_EQ(b.time_until(10, t0), 10ms);
  EXPECT_EQ(b.time_until(5000, t0), 100ms) << "more than the burst waits for the burst";
  EXPECT_EQ(b.time_until(10, t0 + 10ms), Clock::duration::zero());
  b.take(10);
  EXPECT_EQ(b.available(t0 + 10ms), 0u);
  EXPECT_EQ(b.time_until(1, t0 + 10ms), 1ms);
}

TEST(TokenBucket, ResetEmptiesAndStartsLater) {
  const Clock::time_point t0{};
  TokenBucket b(1000, 100, t0);
  EXPECT_EQ(b.available(t0 + 1s), 100u);
  b.reset(t0 + 2s);  // e.g. after a reconnect jitter
  EXPECT_EQ(b.available(t0 + 1500ms), 0u) << "nothing before the start";
  EXPECT_EQ(b.available(t0 + 2s), 0u);
  EXPECT_EQ(b.available(t0 + 2010ms), 10u);
}

TEST(TokenBucket, OverspendingIsPaidBackBeforeMoreTokens) {
  const Clock::time_point t0{};
  TokenBucket b(1000, 100, t0);
  b.take(50);  // released backlog rows claimed again beyond the budget
  EXPECT_EQ(b.available(t0 + 40ms), 0u);
  EXPECT_EQ(b.available(t0 + 60ms), 10u);
}

}  // namespace
}  // namespace vane
