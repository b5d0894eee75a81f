#include "progress.h"

#include <algorithm>

namespace vane {
namespace {

std::string seconds(std::chrono::steady_clock::duration d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::seconds>(d).count()) + " s";
}

std::chrono::steady_clock::time_point at_ns(std::uint64_t ns) {
  return std::chrono::steady_clock::time_point(std::chrono::nanoseconds(ns));
}

}  // namespace

ProgressWatch::ProgressWatch(const Metrics& metrics, Buffer& buffer, std::vector<const Source*> sources,
                             std::chrono::milliseconds window)
    : metrics_(metrics), buffer_(buffer), window_(window) {
  const auto now = Clock::now();
  for (const Source* s : sources) sources_.push_back({s, s->heartbeat(), now});
}

ProgressWatch::Verdict ProgressWatch::check(Clock::time_point now) {
  Verdict v;
  auto fail = [&](std::string why) {
    if (!v.ok) return;
    v.ok = false;
    v.why = std::move(why);
  };
  for (Watched& w : sources_) {
    const std::uint64_t beat = w.source->heartbeat();
    if (beat != w.beat) {
      w.beat = beat;
      w.changed = now;
      continue;
    }
    const auto gap = w.source->expected_gap();
    if (gap.count() == 0 || w.source->finished()) {
      w.changed = now;
      continue;
    }
    const auto limit = std::max<Clock::duration>(window_, 3 * gap);
    if (now - w.changed <= limit) continue;
    v.stalled_sources.push_back(w.source->name());
    fail("source " + w.source->name() + " has not gone round its loop for " + seconds(now - w.changed));
  }
  const std::uint64_t taken = metrics_.taken.load(std::memory_order_relaxed);
  const std::uint64_t committed = metrics_.readings_in.load(std::memory_order_relaxed);
  const auto last_commit = at_ns(metrics_.last_commit_ns.load(std::memory_order_relaxed));
  if (taken > committed && now - last_commit > window_)
    fail(std::to_string(taken - committed) + " readings wait and nothing was committed for " +
         seconds(now - last_commit));
  // Refused or down for a reason the client or a broker gave is an outage
  // the buffer absorbs; up, or refused only because nothing comes back, is
  // vane's to explain.
  const UplinkState uplink = metrics_.uplink.state();
  if (uplink == UplinkState::kUp || (uplink == UplinkState::kRefused && !metrics_.uplink.explained())) {
    // A paced backlog waiting out its reconnect jitter holds rows back on purpose.
    const auto last_delivery = std::max(at_ns(metrics_.last_delivery_ns.load(std::memory_order_relaxed)),
                                        at_ns(metrics_.backlog_start_ns.load(std::memory_order_relaxed)));
    // Rows held back for their topic or parked wait for the brokers or an
    // operator, said on /health and /metrics: a restart would not send them.
    std::uint64_t waiting = metrics_.parked_rows.load(std::memory_order_relaxed);
    for (const auto& h : metrics_.held_rows) waiting += h.load(std::memory_order_relaxed);
    if (now - last_delivery > window_ && buffer_.rows_now() > waiting)
      fail(std::string(uplink == UplinkState::kUp ? "the uplink is up but" : "Kafka names no reason, and") +
           " nothing was delivered for " + seconds(now - last_delivery));
  }
  return v;
}

}  // namespace vane
