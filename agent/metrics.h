// Counters shared by the pipeline, the forwarder and whoever reports them
// (status line, systemd STATUS=, later /metrics). Lock-free: every member is
// an atomic written by one component and read by any thread.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

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
};

enum class UplinkState { kConnecting = 0, kUp = 1, kDown = 2 };

struct Metrics {
  // Per source; the map is filled before threads start and never changes.
  std::map<std::string, std::unique_ptr<SourceCounters>> sources;

  Counter readings_in{0};
  Counter accepted{0};
  Counter rejected{0};
  Counter dropped_oldest{0};       // buffer cap, drop_oldest policy
  Counter dropped_newest{0};       // buffer cap, drop_newest policy (or no room at all)
  Counter dropped_ingest_timeout{0};  // a source could not hand over in time
  Counter dropped_disk_full{0};    // part of the two dropped_ above: the filesystem was full, not the cap
  Counter buffer_quarantined{0};   // unusable buffer files moved aside at start
  Counter buffer_salvaged{0};      // rows read back from them
  Counter buffer_errors{0};        // failed buffer transactions (retried)
  Counter delivered{0};            // acknowledged by Kafka and deleted
  Counter delivery_errors{0};      // failed delivery attempts (rows stay buffered)
  Counter last_progress_ns{0};     // steady-clock ns of the last commit or ack
  Counter taken{0};                // readings the writer took from its queue (readings_in counts them once committed)
  Counter last_commit_ns{0};       // steady-clock ns of the last successful buffer commit
  Counter last_delivery_ns{0};     // steady-clock ns of the last acknowledged delivery
  std::atomic<int> uplink{static_cast<int>(UplinkState::kConnecting)};

  SourceCounters& source(const std::string& name) { return *sources.at(name); }
};

const char* to_string(UplinkState s);

// Steady-clock nanoseconds, the unit of Metrics::last_progress_ns.
inline std::uint64_t steady_ns() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::steady_clock::now().time_since_epoch())
                                        .count());
}

}  // namespace vane
