// What the HTTP endpoint reports, rendered from the running agent's state:
// the Prometheus exposition and the /health answer. Separate from the
// server so that tests can render them without a socket.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "buffer/buffer.h"
#include "core/source.h"
#include "metrics.h"
#include "progress.h"

namespace vane {

// The running sources and the latest progress verdict, as the main thread
// last set them. The HTTP threads read them under mu; a reload swaps
// sources under mu, so a reader never sees a source being destroyed.
struct AgentView {
  struct SourceEntry {
    std::string type;
    const Source* source;
  };
  mutable std::mutex mu;
  std::vector<SourceEntry> sources;  // guarded by mu
  ProgressWatch::Verdict verdict;    // guarded by mu
};

struct ReportContext {
  const Metrics& metrics;
  Buffer& buffer;
  const AgentView& view;
  std::string gateway;
  std::string version;
  std::uint64_t buffer_max_bytes = 0;
  std::chrono::steady_clock::time_point started;
};

// GET /metrics: Prometheus text format 0.0.4.
std::string render_metrics(const ReportContext& ctx);

// GET /health: the HTTP status (200 while the pipeline makes progress, 503
// otherwise) and the JSON body.
std::pair<int, std::string> render_health(const ReportContext& ctx);

// This process's resident set and CPU time, from /proc/self.
struct ProcessStats {
  std::uint64_t rss_bytes = 0;
  double cpu_seconds = 0;
  double start_time_s = 0;  // since the epoch
};
ProcessStats process_stats();

}  // namespace vane
