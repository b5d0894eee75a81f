#include "status_report.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/prom_text.h"
#include "schema.h"

namespace vane {
namespace {

using json = nlohmann::json;
using T = PromText::Type;

// Waits at most this long for the buffer: a commit stuck on the disk must
// not hang a scrape or a health check (both then report what they can).
constexpr std::chrono::milliseconds kBufferWait{200};

double now_s() { return static_cast<double>(now_us().time_since_epoch().count()) / 1e6; }

double age_s(std::uint64_t wall_us) {
  if (wall_us == 0) return 0;
  return std::max(0.0, now_s() - static_cast<double>(wall_us) / 1e6);
}

const char* source_state(const AgentView::SourceEntry& e, const std::vector<std::string>& stalled,
                         std::uint64_t last_us) {
  const Source& s = *e.source;
  if (std::find(stalled.begin(), stalled.end(), s.name()) != stalled.end()) return "stalled";
  if (s.finished()) return "finished";
  const auto gap = s.expected_gap();
  if (gap.count() == 0) return s.connected() ? "up" : "no_data";
  if (last_us == 0) return "no_data";
  return age_s(last_us) <= 3 * std::chrono::duration<double>(gap).count() ? "up" : "no_data";
}

void buffer_metrics(PromText& p, const ReportContext& ctx) {
  p.family("vane_buffer_rows", T::kGauge, "Rows waiting in the buffer (telemetry and dead letters).");
  p.family("vane_buffer_bytes", T::kGauge, "Logical size of the buffered rows (what buffer.max_bytes caps).");
  p.family("vane_buffer_max_bytes", T::kGauge, "buffer.max_bytes; 0: no cap.");
  p.family("vane_buffer_file_bytes", T::kGauge, "Buffer database plus WAL on disk.");
  p.family("vane_buffer_in_flight_rows", T::kGauge, "Rows handed to Kafka and not yet acknowledged.");
  p.family("vane_buffer_oldest_age_seconds", T::kGauge, "Age of the oldest buffered reading; 0 when empty.");
  p.sample("vane_buffer_max_bytes", static_cast<double>(ctx.buffer_max_bytes));
  const std::optional<BufferStats> st = ctx.buffer.try_stats(kBufferWait);
  if (!st) {  // the buffer is busy (a hung disk): what is known without it
    p.sample("vane_buffer_rows", static_cast<double>(ctx.buffer.rows_now()));
    return;
  }
  p.sample("vane_buffer_rows", static_cast<double>(st->rows));
  p.sample("vane_buffer_bytes", static_cast<double>(st->bytes));
  p.sample("vane_buffer_file_bytes", static_cast<double>(st->file_bytes));
  p.sample("vane_buffer_in_flight_rows", static_cast<double>(st->in_flight));
  p.sample("vane_buffer_oldest_age_seconds", st->rows ? age_s(static_cast<std::uint64_t>(st->oldest_ts_us)) : 0.0);
}

void uplink_metrics(PromText& p, const UplinkTracker& u) {
  // One reading of the state: the three gauges agree within a scrape.
  const UplinkTracker::Snapshot s = u.snapshot();
  p.family("vane_uplink_up", T::kGauge, "1 while the Kafka uplink delivers (state up).");
  p.family("vane_uplink_state", T::kGauge, "The uplink's state: 1 for the current one (connecting, up, refused, down).");
  p.family("vane_uplink_reason", T::kGauge, "Why the uplink does not deliver: 1 for the current reason (none while up).");
  p.family("vane_kafka_refusals_total", T::kCounter,
           "Refusals and connection failures by reason: failed deliveries, a broker's answers to retried requests, failed handshakes.");
  p.sample("vane_uplink_up", s.state == UplinkState::kUp ? 1 : 0);
  for (std::size_t i = 0; i < kUplinkStates; ++i) {
    const auto st = static_cast<UplinkState>(i);
    p.sample("vane_uplink_state", {{"state", to_string(st)}}, st == s.state ? 1 : 0);
  }
  for (std::size_t i = 0; i < kUplinkReasons; ++i) {
    const auto r = static_cast<UplinkReason>(i);
    p.sample("vane_uplink_reason", {{"reason", to_string(r)}}, r == s.reason ? 1 : 0);
    if (r != UplinkReason::kNone)
      p.sample("vane_kafka_refusals_total", {{"reason", to_string(r)}}, static_cast<double>(u.refusals(r)));
  }
}

void latency_metrics(PromText& p, const LatencyHistogram& h) {
  const char* name = "vane_delivery_latency_seconds";
  p.family(name, T::kHistogram, "Reading timestamp to Kafka acknowledgement.");
  std::uint64_t cumulative = 0;
  char le[32];
  for (std::size_t i = 0; i < LatencyHistogram::kBounds.size(); ++i) {
    cumulative += h.buckets[i].load(std::memory_order_relaxed);
    std::snprintf(le, sizeof le, "%g", LatencyHistogram::kBounds[i]);
    p.sample(name, {{"le", le}}, static_cast<double>(cumulative), "_bucket");
  }
  cumulative += h.buckets.back().load(std::memory_order_relaxed);
  // The count is the sum of the buckets read here, so that the +Inf bucket
  // equals _count even while observations race the scrape.
  p.sample(name, {{"le", "+Inf"}}, static_cast<double>(cumulative), "_bucket");
  p.sample(name, {}, static_cast<double>(h.sum_us.load(std::memory_order_relaxed)) / 1e6, "_sum");
  p.sample(name, {}, static_cast<double>(cumulative), "_count");
}

// The streams whose topic the brokers refuse, with why and how many rows wait.
json held_topics(const Metrics& m) {
  json out = json::array();
  for (const Stream s : {Stream::kTelemetry, Stream::kDeadLetter, Stream::kEvent}) {
    const auto [cause, since] = m.hold_of(s);
    if (cause.reason == UplinkReason::kNone) continue;
    out.push_back({{"stream", stream_name(s)},
                   {"reason", to_string(cause.reason)},
                   {"code", cause.code},
                   {"detail", cause.detail},
                   {"rows", m.held_rows[static_cast<std::size_t>(s)].load()},
                   {"since_s", std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count()}});
  }
  return out;
}

}  // namespace

ProcessStats process_stats() {
  ProcessStats ps;
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const long page = sysconf(_SC_PAGESIZE);
  {
    std::ifstream in("/proc/self/statm");
    std::uint64_t size = 0, resident = 0;
    if (in >> size >> resident) ps.rss_bytes = resident * static_cast<std::uint64_t>(page);
  }
  std::ifstream in("/proc/self/stat");
  std::string line;
  std::getline(in, line);
  // Fields after the command name (which may hold spaces) in parentheses.
  const auto close = line.rfind(')');
  if (close == std::string::npos) return ps;
  std::istringstream rest(line.substr(close + 2));
  std::vector<std::string> f;
  for (std::string x; rest >> x;) f.push_back(x);
  // f[0] is field 3 (state): utime is field 14, stime 15, starttime 22.
  if (f.size() < 20) return ps;
  ps.cpu_seconds = (std::stod(f[11]) + std::stod(f[12])) / ticks;
  std::ifstream stat("/proc/stat");
  for (std::string key; stat >> key;) {
    if (key == "btime") {
      double btime = 0;
      stat >> btime;
      ps.start_time_s = btime + std::stod(f[19]) / ticks;
      break;
    }
    std::getline(stat, line);
  }
  return ps;
}

std::string render_metrics(const ReportContext& ctx) {
  const Metrics& m = ctx.metrics;
  PromText p;
  p.family("vane_build_info", T::kGauge, "Always 1; the labels say which vane and gateway.");
  p.sample("vane_build_info", {{"version", ctx.version}, {"gateway", ctx.gateway}}, 1);

  // Per source: what the pipeline counted, and what the driver counts.
  p.family("vane_readings_total", T::kCounter, "Readings committed to the buffer, by source and outcome (rejected ones as dead letters).");
  p.family("vane_rejections_total", T::kCounter, "Rejected readings with at least one violation of the rule.");
  p.family("vane_source_last_reading_timestamp_seconds", T::kGauge, "When the source's last reading was committed; 0: none yet.");
  p.family("vane_source_expected_interval_seconds", T::kGauge, "Longest normal gap between two readings of the source; 0: event-driven.");
  p.family("vane_source_stalled", T::kGauge, "1 while the source's loop does not go round (what /health and the watchdog use).");
  const auto& rules = schema_rules();
  {
    std::lock_guard<std::mutex> view_lock(ctx.view.mu);
    std::lock_guard<std::mutex> sources_lock(m.sources_mu);
    for (const auto& [name, c] : m.sources) {
      p.sample("vane_readings_total", {{"source", name}, {"outcome", "accepted"}}, static_cast<double>(c->accepted.load()));
      p.sample("vane_readings_total", {{"source", name}, {"outcome", "rejected"}}, static_cast<double>(c->rejected.load()));
      for (std::size_t i = 0; i < rules.size() && i < kMaxRules; ++i)
        p.sample("vane_rejections_total", {{"source", name}, {"rule", rules[i]}},
                 static_cast<double>(c->rejected_by_rule[i].load()));
    }
    const auto& stalled = ctx.view.verdict.stalled_sources;
    for (const auto& e : ctx.view.sources) {
      const Source& s = *e.source;
      const PromText::Labels l{{"source", s.name()}};
      auto it = m.sources.find(s.name());
      const std::uint64_t last = it != m.sources.end() ? it->second->last_commit_us.load() : 0;
      p.sample("vane_source_last_reading_timestamp_seconds", l, static_cast<double>(last) / 1e6);
      p.sample("vane_source_expected_interval_seconds", l, std::chrono::duration<double>(s.expected_gap()).count());
      p.sample("vane_source_stalled", l,
               std::find(stalled.begin(), stalled.end(), s.name()) != stalled.end() ? 1 : 0);
      s.export_metrics(p);
    }
  }

  p.family("vane_readings_dropped_total", T::kCounter, "Readings lost on purpose, by reason: the overflow policy, an ingest timeout, a bounded shutdown.");
  const std::uint64_t disk = m.dropped_disk_full.load();
  const std::uint64_t policy = m.dropped_oldest.load() + m.dropped_newest.load();
  p.sample("vane_readings_dropped_total", {{"reason", "buffer_cap"}}, static_cast<double>(policy - std::min(policy, disk)));
  p.sample("vane_readings_dropped_total", {{"reason", "disk_full"}}, static_cast<double>(disk));
  p.sample("vane_readings_dropped_total", {{"reason", "ingest_timeout"}}, static_cast<double>(m.dropped_ingest_timeout.load()));
  p.sample("vane_readings_dropped_total", {{"reason", "shutdown"}}, static_cast<double>(m.dropped_shutdown.load()));

  buffer_metrics(p, ctx);
  p.family("vane_buffer_errors_total", T::kCounter, "Failed buffer transactions (retried).");
  p.family("vane_buffer_quarantined_total", T::kCounter, "Unusable buffer files moved aside at start.");
  p.family("vane_buffer_salvaged_rows_total", T::kCounter, "Rows read back from quarantined buffer files.");
  p.sample("vane_buffer_errors_total", static_cast<double>(m.buffer_errors.load()));
  p.sample("vane_buffer_quarantined_total", static_cast<double>(m.buffer_quarantined.load()));
  p.sample("vane_buffer_salvaged_rows_total", static_cast<double>(m.buffer_salvaged.load()));

  p.family("vane_kafka_delivered_total", T::kCounter, "Rows acknowledged by Kafka and deleted from the buffer.");
  p.family("vane_kafka_delivery_errors_total", T::kCounter,
           "Failed delivery attempts by the code Kafka or the client gave; the rows stay buffered unless refused for good.");
  p.sample("vane_kafka_delivered_total", static_cast<double>(m.delivered.load()));
  for (const auto& [code, n] : m.delivery_errors_by_code())
    p.sample("vane_kafka_delivery_errors_total", {{"code", code}}, static_cast<double>(n));
  p.family("vane_kafka_rerouted_total", T::kCounter,
           "Readings Kafka refused for themselves (too large, invalid), sent to the dead-letter topic instead with the broker's reason.");
  p.family("vane_buffer_parked_rows", T::kGauge,
           "Rows no topic takes (dead letters the dead-letter topic refused for themselves): kept in the buffer, not sent, until `vane buffer unpark`.");
  p.sample("vane_kafka_rerouted_total", static_cast<double>(m.rerouted.load()));
  p.sample("vane_buffer_parked_rows", static_cast<double>(m.parked_rows.load()));
  p.family("vane_kafka_max_drain_rate", T::kGauge,
           "kafka.max_drain_rate: backlog rows/s after an outage or at start; 0: unlimited.");
  p.family("vane_buffer_backlog_rows", T::kGauge,
           "Rows of the paced backlog (buffered when the uplink became usable) not yet delivered; 0: nothing is paced.");
  p.sample("vane_kafka_max_drain_rate", static_cast<double>(m.max_drain_rate.load()));
  p.sample("vane_buffer_backlog_rows", static_cast<double>(m.backlog_rows.load()));
  uplink_metrics(p, m.uplink);
  p.family("vane_kafka_topic_held", T::kGauge,
           "1 while the brokers refuse a stream's topic for good (an ACL, a missing topic): its rows are held back, the other stream flows.");
  p.family("vane_buffer_held_rows", T::kGauge, "Rows held back because the brokers refuse their topic; they stay buffered.");
  for (const Stream s : {Stream::kTelemetry, Stream::kDeadLetter, Stream::kEvent}) {
    const char* name = stream_name(s);
    p.sample("vane_kafka_topic_held", {{"stream", name}}, m.hold_of(s).first.reason != UplinkReason::kNone ? 1 : 0);
    p.sample("vane_buffer_held_rows", {{"stream", name}},
             static_cast<double>(m.held_rows[static_cast<std::size_t>(s)].load()));
  }
  latency_metrics(p, m.delivery_latency);

  p.family("vane_progress_ok", T::kGauge, "1 while the pipeline makes progress (the /health and watchdog verdict).");
  p.family("vane_progress_stalls_total", T::kCounter, "Times progress was lost (watchdog pings withheld).");
  p.sample("vane_progress_ok", m.progress_ok.load() ? 1 : 0);
  p.sample("vane_progress_stalls_total", static_cast<double>(m.progress_stalls.load()));

  const ProcessStats ps = process_stats();
  p.family("vane_process_resident_memory_bytes", T::kGauge, "Resident set size.");
  p.family("vane_process_cpu_seconds_total", T::kCounter, "User plus system CPU time.");
  p.family("vane_process_start_time_seconds", T::kGauge, "Start time of the process, seconds since the epoch.");
  p.sample("vane_process_resident_memory_bytes", static_cast<double>(ps.rss_bytes));
  p.sample("vane_process_cpu_seconds_total", ps.cpu_seconds);
  p.sample("vane_process_start_time_seconds", ps.start_time_s);
  return p.render();
}

std::pair<int, std::string> render_health(const ReportContext& ctx) {
  const Metrics& m = ctx.metrics;
  json sources = json::array();
  bool ok;
  std::string why;
  {
    std::lock_guard<std::mutex> view_lock(ctx.view.mu);
    std::lock_guard<std::mutex> sources_lock(m.sources_mu);
    ok = ctx.view.verdict.ok;
    why = ctx.view.verdict.why;
    for (const auto& e : ctx.view.sources) {
      const Source& s = *e.source;
      json j = {{"name", s.name()}, {"type", e.type}};
      auto it = m.sources.find(s.name());
      const std::uint64_t last = it != m.sources.end() ? it->second->last_commit_us.load() : 0;
      j["state"] = source_state(e, ctx.view.verdict.stalled_sources, last);
      if (it != m.sources.end()) {
        j["readings"] = it->second->readings.load();
        j["accepted"] = it->second->accepted.load();
        j["rejected"] = it->second->rejected.load();
      }
      j["errors"] = s.errors();
      j["connected"] = s.connected();
      j["last_reading_age_s"] = last ? json(age_s(last)) : json(nullptr);
      j["expected_interval_s"] = std::chrono::duration<double>(s.expected_gap()).count();
      sources.push_back(std::move(j));
    }
  }
  json buffer = {{"max_bytes", ctx.buffer_max_bytes}};
  if (const std::optional<BufferStats> st = ctx.buffer.try_stats(kBufferWait)) {
    buffer["rows"] = st->rows;
    buffer["bytes"] = st->bytes;
    buffer["file_bytes"] = st->file_bytes;
    buffer["in_flight"] = st->in_flight;
    buffer["oldest_age_s"] = st->rows ? age_s(static_cast<std::uint64_t>(st->oldest_ts_us)) : 0.0;
  } else {
    buffer["rows"] = ctx.buffer.rows_now();
    buffer["busy"] = true;  // a commit holds it: the other figures are not to be had now
  }
  buffer["dropped"] = m.dropped_total();
  // Rows no topic takes: kept until an operator runs `vane buffer unpark`.
  buffer["parked"] = m.parked_rows.load();
  // Paced replay: null when no backlog is paced.
  if (const std::uint64_t left = m.backlog_rows.load(); left > 0)
    buffer["paced_backlog"] = {{"rows", left}, {"up_to_seq", m.backlog_mark.load()}, {"rate", m.max_drain_rate.load()}};
  else
    buffer["paced_backlog"] = nullptr;
  const auto last_delivery = std::chrono::steady_clock::time_point(std::chrono::nanoseconds(m.last_delivery_ns.load()));
  const UplinkTracker::Snapshot us = m.uplink.snapshot();
  const bool named = us.reason != UplinkReason::kNone;
  std::uint64_t refusals = 0;
  for (std::size_t i = 0; i < kUplinkReasons; ++i) refusals += m.uplink.refusals(static_cast<UplinkReason>(i));
  json uplink = {{"state", to_string(us.state)},
                 {"reason", named ? json(to_string(us.reason)) : json(nullptr)},
                 {"code", named && !us.code.empty() ? json(us.code) : json(nullptr)},
                 {"detail", named && !us.detail.empty() ? json(us.detail) : json(nullptr)},
                 {"since_s", std::chrono::duration<double>(std::chrono::steady_clock::now() - us.since).count()},
                 {"refusals", refusals},
                 {"delivered", m.delivered.load()},
                 {"delivery_errors", m.delivery_errors.load()},
                 {"held", held_topics(m)},
                 {"last_delivery_age_s",
                  m.delivered.load() ? json(std::chrono::duration<double>(std::chrono::steady_clock::now() - last_delivery).count())
                                     : json(nullptr)}};
  json body = {{"status", ok ? "ok" : "stalled"},
               {"why", why},
               {"version", ctx.version},
               {"gateway", ctx.gateway},
               {"uptime_s", std::chrono::duration<double>(std::chrono::steady_clock::now() - ctx.started).count()},
               {"sources", std::move(sources)},
               {"buffer", std::move(buffer)},
               {"uplink", std::move(uplink)},
               {"readings",
                {{"in", m.readings_in.load()},
                 {"accepted", m.accepted.load()},
                 {"rejected", m.rejected.load()},
                 {"dropped", m.dropped_total()}}}};
  return {ok ? 200 : 503, body.dump(2) + "\n"};
}

}  // namespace vane
