#include "pacing.h"

#include <algorithm>

namespace vane {
namespace {

constexpr std::int64_t kNsPerS = 1'000'000'000;

}  // namespace

std::size_t TokenBucket::burst_for(std::uint64_t rate) { return static_cast<std::size_t>(std::max<std::uint64_t>(1, rate / 10)); }

TokenBucket::TokenBucket(std::uint64_t rate, std::size_t burst, Clock::time_point now)
    : rate_(std::max<std::uint64_t>(1, rate)),
      burst_(std::clamp<std::size_t>(burst, 1, static_cast<std::size_t>(std::max<std::uint64_t>(1, rate)))),
      last_(now) {}

void TokenBucket::refill(Clock::time_point now) {
  if (now <= last_) return;
  // The credit is time: each token stands for kNsPerS / rate_ ns. Capped at
  // the burst's worth of time.
  const std::int64_t cap_ns = static_cast<std::int64_t>(burst_) * kNsPerS / static_cast<std::int64_t>(rate_);
  credit_ns_ = std::min(cap_ns, credit_ns_ + std::chrono::duration_cast<std::chrono::nanoseconds>(now - last_).count());
  last_ = now;
}

std::size_t TokenBucket::available(Clock::time_point now) {
  refill(now);
  const auto tokens = static_cast<std::uint64_t>(std::max<std::int64_t>(0, credit_ns_)) * rate_ / kNsPerS;
  return static_cast<std::size_t>(std::min<std::uint64_t>(tokens, burst_));
}

void TokenBucket::take(std::size_t n) {
  // Exactly n tokens' worth of time, rounded up so that rounding never adds tokens.
  const auto ns = static_cast<std::int64_t>((static_cast<std::uint64_t>(n) * kNsPerS + rate_ - 1) / rate_);
  credit_ns_ -= ns;
}

TokenBucket::Clock::duration TokenBucket::time_until(std::size_t n, Clock::time_point now) {
  refill(now);
  n = std::min(n, burst_);
  const auto need_ns = static_cast<std::int64_t>((static_cast<std::uint64_t>(n) * kNsPerS + rate_ - 1) / rate_);
  if (credit_ns_ >= need_ns) return Clock::duration::zero();
  return std::chrono::duration_cast<Clock::duration>(std::chrono::nanoseconds(need_ns - credit_ns_));
}

void TokenBucket::reset(Clock::time_point now) {
  credit_ns_ = 0;
  last_ = now;
}

}  // namespace vane
