// Counters shared by the pipeline, the forwarder and whoever reports them
// (status line, systemd STATUS=, /metrics, /health). Lock-free: every member
// is an atomic written by one component and read by any thread, but for the
// sources map and the uplink's state (each guards its own).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "buffer/buffer.h"
#include "uplink_state.h"

namespace vane {

using Counter = std::atomic<std::uint64_t>;

// Rejections are counted per rule; index i is schema_rules()[i].
inline constexpr std::size_t kMaxRules = 32;

struct SourceCounters {
  Counter readings{0};   // handed to the pipeline
  Counter accepted{0};   // passed the schema check and committed to the buffer
  Counter rejected{0};   // failed the schema check: committed as dead letters
  // Readings rejected with at least one violation of rule i.
  std::array<Counter, kMaxRules> rejected_by_rule{};
  // Wall-clock µs since the epoch when the source's last reading was
  // committed; 0 before the first.
  Counter last_commit_us{0};
};

// Reading timestamp to Kafka acknowledgement. Buckets in seconds, fixed:
// 1 ms to 1 h, so a gateway's whole range (live to an outage's backlog)
// lands in a bucket. Counts are per bucket (not cumulative); /metrics sums.
struct LatencyHistogram {
  static constexpr std::array<double, 18> kBounds{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                  1,     2.5,    5,     10,   30,    60,   300, 900, 3600};
  std::array<Counter, kBounds.size() + 1> buckets{};  // last: above every bound
  Counter count{0};
  Counter sum_us{0};

  void observe_us(std::int64_t us) {
    if (us < 0) us = 0;  // a device clock ahead of the gateway's
    const double s = static_cast<double>(us) / 1e6;
    std::size_t i = 0;
    while (i < kBounds.size() && s > kBounds[i]) ++i;
    buckets[i].fetch_add(1, std::memory_order_relaxed);
    count.fetch_add(1, std::memory_order_relaxed);
    sum_us.fetch_add(static_cast<std::uint64_t>(us), std::memory_order_relaxed);
  }
};

struct Metrics {
  // Per source; filled before threads start; a reload (SIGHUP) adds entries
  // on the writer thread between batches, under sources_mu, and never
  // removes one. Readers on other threads take sources_mu.
  mutable std::mutex sources_mu;
  std::map<std::string, std::unique_ptr<SourceCounters>> sources;

  Counter readings_in{0};
  Counter accepted{0};
  Counter rejected{0};
  Counter dropped_oldest{0};       // buffer cap, drop_oldest policy
  Counter dropped_newest{0};       // buffer cap, drop_newest policy (or no room at all)
  Counter dropped_ingest_timeout{0};  // a source could not hand over in time
  Counter dropped_disk_full{0};    // part of the two dropped_ above: the filesystem was full, not the cap
  Counter dropped_shutdown{0};     // queued readings given up at stop because the buffer could not be written
  Counter buffer_quarantined{0};   // unusable buffer files moved aside at start
  Counter buffer_salvaged{0};      // rows read back from them
  Counter buffer_errors{0};        // failed buffer transactions (retried)
  Counter delivered{0};            // acknowledged by Kafka and deleted
  Counter delivery_errors{0};      // failed delivery attempts (rows stay buffered)
  Counter rerouted{0};             // readings Kafka refused for themselves, sent to the dead-letter topic instead
  Counter parked_rows{0};          // dead letters the dead-letter topic refused for themselves, kept back (gauge)
  // Paced replay (kafka.max_drain_rate), written by the forwarder: the
  // configured rate (0: unlimited), backlog rows not yet delivered (0: no
  // backlog is paced), and the backlog's last seq (gauges).
  Counter max_drain_rate{0};
  Counter backlog_rows{0};
  Counter backlog_mark{0};
  Counter backlog_start_ns{0};  // steady-clock ns when its jitter runs out (progress.h: no stall before)
  Counter last_progress_ns{0};     // steady-clock ns of the last commit or ack
  Counter taken{0};                // readings the writer took from its queue (readings_in counts them once committed)
  Counter last_commit_ns{0};       // steady-clock ns of the last successful buffer commit
  Counter last_delivery_ns{0};     // steady-clock ns of the last acknowledged delivery
  UplinkTracker uplink;               // written by the forwarder
  // Rows held back per stream (Stream) because the brokers refuse its topic
  // (an ACL, a missing topic), and why; written by the forwarder.
  std::array<Counter, kStreams> held_rows{};
  void hold_cause(Stream s, const UplinkCause& c) {
    std::lock_guard<std::mutex> lock(held_mu);
    held[static_cast<std::size_t>(s)] = c;
    if (c.reason != UplinkReason::kNone && held_since[static_cast<std::size_t>(s)] == std::chrono::steady_clock::time_point{})
      held_since[static_cast<std::size_t>(s)] = std::chrono::steady_clock::now();
    if (c.reason == UplinkReason::kNone) held_since[static_cast<std::size_t>(s)] = {};
  }
  // The cause a stream's topic is held for (reason kNone: not held), and since when.
  std::pair<UplinkCause, std::chrono::steady_clock::time_point> hold_of(Stream s) const {
    std::lock_guard<std::mutex> lock(held_mu);
    return {held[static_cast<std::size_t>(s)], held_since[static_cast<std::size_t>(s)]};
  }
  LatencyHistogram delivery_latency;  // reading timestamp -> Kafka ack
  std::atomic<bool> progress_ok{true};  // the last ProgressWatch verdict
  Counter progress_stalls{0};           // times that verdict went from ok to not ok

  // Every reading lost on purpose: overflow policy, ingest timeout, shutdown.
  std::uint64_t dropped_total() const {
    return dropped_oldest.load() + dropped_newest.load() + dropped_ingest_timeout.load() + dropped_shutdown.load();
  }

  SourceCounters& source(const std::string& name) { return *sources.at(name); }

  // Failed deliveries by the code Kafka or the client gave (delivery_errors
  // is their sum): a code vane has no rule for is retried like any
  // transient error, and shows up here by name. At most kMaxErrorCodes
  // codes; the rest count as "other".
  void count_delivery_error(const std::string& code, std::uint64_t n) {
    if (n == 0) return;
    delivery_errors.fetch_add(n, std::memory_order_relaxed);
    std::lock_guard<std::mutex> lock(errors_mu);
    auto it = errors_by_code.find(code);
    if (it == errors_by_code.end())
      it = errors_by_code.size() < kMaxErrorCodes ? errors_by_code.emplace(code.empty() ? "unknown" : code, 0).first
                                                  : errors_by_code.try_emplace("other", 0).first;
    it->second += n;
  }
  std::map<std::string, std::uint64_t> delivery_errors_by_code() const {
    std::lock_guard<std::mutex> lock(errors_mu);
    return errors_by_code;
  }
  static constexpr std::size_t kMaxErrorCodes = 64;

 private:
  mutable std::mutex errors_mu;
  std::map<std::string, std::uint64_t> errors_by_code;
  mutable std::mutex held_mu;
  std::array<UplinkCause, kStreams> held{};
  std::array<std::chrono::steady_clock::time_point, kStreams> held_since{};
};

// Steady-clock nanoseconds, the unit of Metrics::last_progress_ns.
inline std::uint64_t steady_ns() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::steady_clock::now().time_since_epoch())
                                        .count());
}

}  // namespace vane
