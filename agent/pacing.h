// Paced replay (kafka.max_drain_rate): a token bucket for the backlog's rows.
//
// The bucket fills at `rate` tokens per second up to `burst` (at most one
// second of rate), starts empty, and hands out whole tokens. Time is passed
// in, so tests drive it with their own clock. Not thread-safe: the
// forwarder's thread owns it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace vane {

class TokenBucket {
 public:
  using Clock = std::chrono::steady_clock;

  // The burst a rate gets: a tenth of a second of it, at least one token.
  static std::size_t burst_for(std::uint64_t rate);

  // rate > 0 tokens/s; burst in [1, rate] (clamped).
  TokenBucket(std::uint64_t rate, std::size_t burst, Clock::time_point now);

  // Whole tokens available at `now`.
  std::size_t available(Clock::time_point now);
  // Spends n tokens (n <= available(now) at the last call).
  void take(std::size_t n);
  // How long from `now` until n tokens (clamped to the burst) are available; 0 if they are.
  Clock::duration time_until(std::size_t n, Clock::time_point now);
  // Empties the bucket and restarts its clock at `now`.
  void reset(Clock::time_point now);

  std::uint64_t rate() const { return rate_; }
  std::size_t burst() const { return burst_; }

 private:
  void refill(Clock::time_point now);

  std::uint64_t rate_;
  std::size_t burst_;
  // Tokens in units of 1/rate_ token-seconds: nanosecond-exact, no drift.
  // tokens = credit_ns_ * rate_ / 1e9, kept as the time it stands for.
  std::int64_t credit_ns_ = 0;
  Clock::time_point last_;
};

}  // namespace vane
