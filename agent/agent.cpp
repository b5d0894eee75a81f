#include "agent.h"

#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <set>

#include "buffer/sqlite_buffer.h"
#include "config.h"
#include "forwarder.h"
#include "http_server.h"
#include "live_view.h"
#include "kafka_uplink.h"
#include "core/log.h"
#include "metrics.h"
#include "notify.h"
#include "progress.h"
#include "pipeline.h"
#include "schema.h"
#include "sources.h"
#include "status_report.h"

namespace vane {
namespace {

// The account the unit runs as (systemd/vane.service User=, vane.sysusers).
constexpr const char* kServiceUser = "vane";

void print_issues(const ConfigLoad& load) {
  for (const auto& w : load.warnings) std::fprintf(stderr, "%s\n", w.to_string().c_str());
  for (const auto& e : load.errors) std::fprintf(stderr, "%s\n", e.to_string().c_str());
}

std::string human_bytes(std::uint64_t b) {
  char buf[32];
  if (b < 1024) std::snprintf(buf, sizeof buf, "%" PRIu64 " B", b);
  else if (b < (1ULL << 20)) std::snprintf(buf, sizeof buf, "%.1f KiB", static_cast<double>(b) / 1024);
  else if (b < (1ULL << 30)) std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(b) / (1 << 20));
  else std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(b) / (1ULL << 30));
  return buf;
}

// Compiles every schema the config names; errors name the schema file.
bool compile_schemas(const Config& cfg, std::map<std::string, std::unique_ptr<CompiledSchema>>& out,
                     const std::function<void(const std::string&)>& report = [](const std::string& m) {
                       std::fprintf(stderr, "%s\n", m.c_str());
                     }) {
  bool ok = true;
  for (const auto& [name, path] : cfg.schemas) {
    auto s = CompiledSchema::load(name, path);
    if (!s) {
      report(s.status().message());
      ok = false;
      continue;
    }
    out[name] = std::move(s.value());
  }
  return ok;
}

// What a reload cannot change while running: the settings the buffer, the
// uplink and the identity were built from.
std::vector<std::string> restart_only_changes(const Config& a, const Config& b) {
  std::vector<std::string> changed;
  if (a.gateway_id != b.gateway_id) changed.push_back("gateway.id");
  if (a.buffer != b.buffer) changed.push_back("buffer");
  if (a.kafka != b.kafka) changed.push_back("kafka");
  if (a.http != b.http) changed.push_back("http");
  return changed;
}

std::unique_ptr<Origin> make_origin(const SourceConfig& sc) {
  auto o = std::make_unique<Origin>();
  o->source = sc.name;
  o->schema = sc.schema;
  o->device_field = sc.device_field;
  return o;
}

bool same_source(const SourceConfig& a, const SourceConfig& b) {
  return a.type == b.type && a.raw == b.raw && a.schema == b.schema && a.device_field == b.device_field;
}

// What SIGHUP may change while running: the sources and the schemas.
struct LiveSet {
  Config config;  // as last applied
  std::map<std::string, std::unique_ptr<CompiledSchema>> schemas;
  std::vector<std::unique_ptr<Origin>> origins;  // never freed: queued readings point at them
  std::vector<std::unique_ptr<Source>> sources;
};

// Re-reads the config and applies what changed in sources and schemas. A
// config that does not load, a schema that does not compile or a source that
// cannot be built refuses the whole reload: vane goes on as it was.
// Publishes `sources` (those of `cfg`) to the HTTP threads.
void publish_sources(AgentView& view, const std::vector<std::unique_ptr<Source>>& sources, const Config& cfg) {
  std::vector<AgentView::SourceEntry> entries;
  for (const auto& src : sources) {
    std::string type;
    for (const auto& sc : cfg.sources)
      if (sc.name == src->name()) type = sc.type;
    entries.push_back({type, src.get()});
  }
  std::lock_guard<std::mutex> lock(view.mu);
  view.sources = std::move(entries);
}

void reload(const std::string& path, LiveSet& live, Pipeline& pipeline, Metrics& metrics, AgentView& view) {
  VANE_LOG_INFO("SIGHUP: reloading %s", path.c_str());
  auto refuse = [](const std::string& why) {
    VANE_LOG_ERROR("SIGHUP: %s", why.c_str());
    VANE_LOG_ERROR("SIGHUP: config refused; vane goes on with the running config");
  };
  ConfigLoad next = load_config(path);
  if (!next.ok()) {
    for (const ConfigIssue& e : next.errors) VANE_LOG_ERROR("SIGHUP: %s", e.to_string().c_str());
    refuse(std::to_string(next.errors.size()) + " errors in the config");
    return;
  }
  std::map<std::string, std::unique_ptr<CompiledSchema>> schemas;
  std::string schema_errors;
  if (!compile_schemas(next.config, schemas, [&](const std::string& m) { schema_errors += m + "; "; })) {
    refuse(schema_errors);
    return;
  }
  for (const std::string& what : restart_only_changes(live.config, next.config))
    VANE_LOG_WARN("SIGHUP: changes to %s take effect at the next restart; not applied now", what.c_str());

  // Build (not start) every source that is new or changed.
  std::map<std::string, const SourceConfig*> old_by_name;
  for (const auto& sc : live.config.sources) old_by_name[sc.name] = &sc;
  std::vector<std::unique_ptr<Origin>> new_origins;
  std::vector<std::pair<std::string, std::unique_ptr<Source>>> fresh;  // name -> source to start
  std::set<std::string> keep, names;
  for (const auto& sc : next.config.sources) {
    names.insert(sc.name);
    auto it = old_by_name.find(sc.name);
    if (it != old_by_name.end() && same_source(*it->second, sc)) {
      keep.insert(sc.name);
      continue;
    }
    auto o = make_origin(sc);
    auto src = make_source(sc, o.get());
    if (!src) {
      refuse("source " + sc.name + ": " + src.status().message());
      return;
    }
    fresh.emplace_back(sc.name, std::move(src.value()));
    new_origins.push_back(std::move(o));
  }

  // The writer takes the new schemas and counters between two batches.
  std::map<std::string, const CompiledSchema*> ptrs;
  for (const auto& [name, sch] : schemas) ptrs[name] = sch.get();
  pipeline.reconfigure(std::move(ptrs), [&] {
    std::lock_guard<std::mutex> lock(metrics.sources_mu);
    for (const auto& [name, src] : fresh)
      if (!metrics.sources.count(name)) metrics.sources[name] = std::make_unique<SourceCounters>();
  });
  live.schemas = std::move(schemas);  // the old ones are no longer used by the writer

  // Stop what is gone or changed, start what is new or changed. The HTTP
  // threads stop seeing a source before it stops.
  std::size_t removed = 0, changed = 0, added = 0;
  std::vector<std::unique_ptr<Source>> running;
  for (auto& src : live.sources)
    if (keep.count(src->name())) running.push_back(std::move(src));
  publish_sources(view, running, live.config);
  for (auto& src : live.sources) {
    if (!src) continue;  // kept: moved to running
    src->stop();
    if (names.count(src->name())) ++changed;
    else ++removed;
  }
  for (auto& [name, src] : fresh) {
    if (Status s = src->start(pipeline); !s) {
      VANE_LOG_ERROR("SIGHUP: source %s does not start: %s", name.c_str(), s.message().c_str());
      continue;
    }
    if (!old_by_name.count(name)) ++added;
    running.push_back(std::move(src));
  }
  live.sources = std::move(running);
  for (auto& o : new_origins) live.origins.push_back(std::move(o));
  live.config = std::move(next.config);
  publish_sources(view, live.sources, live.config);
  VANE_LOG_INFO("SIGHUP: applied: %zu sources running (%zu added, %zu changed, %zu removed), %zu schemas",
                live.sources.size(), added, changed, removed, live.schemas.size());
}

// Rates for the status line and systemd STATUS=, from counter deltas.
class StatusReporter {
 public:
  StatusReporter(Metrics& m, Buffer& b) : m_(m), b_(b), last_(std::chrono::steady_clock::now()) {}

  std::string line() {
    const auto now = std::chrono::steady_clock::now();
    const double dt = std::max(1e-3, std::chrono::duration<double>(now - last_).count());
    const std::uint64_t in = m_.readings_in.load(), out = m_.delivered.load();
    const BufferStats st = b_.stats();
    const std::uint64_t dropped = m_.dropped_total();
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "in %.0f/s, delivered %.0f/s, buffer %" PRIu64 " rows (%s), rejected %" PRIu64
                  ", dropped %" PRIu64 ", uplink %s",
                  static_cast<double>(in - last_in_) / dt, static_cast<double>(out - last_out_) / dt,
                  st.rows, human_bytes(st.bytes).c_str(), m_.rejected.load(), dropped,
                  m_.uplink.summary().c_str());
    last_ = now;
    last_in_ = in;
    last_out_ = out;
    return buf;
  }

 private:
  Metrics& m_;
  Buffer& b_;
  std::chrono::steady_clock::time_point last_;
  std::uint64_t last_in_ = 0, last_out_ = 0;
};

}  // namespace

int check_config(const std::string& path) {
  // Outside the unit, its credentials do not exist yet; as root, also judge
  // whether the service user could read the uplink's files.
  LoadOptions options;
  options.outside_service = std::getenv("CREDENTIALS_DIRECTORY") == nullptr;
  if (geteuid() == 0 && getpwnam(kServiceUser) != nullptr) options.service_user = kServiceUser;
  ConfigLoad load = load_config(path, options);
  print_issues(load);
  if (!load.ok()) return 2;
  std::map<std::string, std::unique_ptr<CompiledSchema>> schemas;
  if (!compile_schemas(load.config, schemas)) return 2;
  std::printf("%s: OK (%zu sources, %zu schemas)\n", path.c_str(), load.config.sources.size(),
              schemas.size());
  const KafkaConfig& k = load.config.kafka;
  if (const std::string protocol = kafka_security_protocol(k); !protocol.empty()) {
    std::printf("kafka: %s", protocol.c_str());
    if (k.sasl) std::printf(", %s as user %s", k.sasl->mechanism.c_str(), k.sasl->username.c_str());
    if (k.tls) std::printf(", %s, host name %s", k.tls->cert_file.empty() ? "no client certificate" : "client certificate",
                           k.tls->verify_hostname ? "verified" : "NOT verified");
    if (!options.service_user.empty()) std::printf("; file access checked for user %s", options.service_user.c_str());
    std::printf("\n");
  }
  for (const auto& s : load.config.sources) {
    const std::string d = describe_source(s);
    if (!d.empty()) std::printf("source %s (%s): %s", s.name.c_str(), s.type.c_str(), d.c_str());
  }
  return 0;
}

int buffer_stats(const std::string& path) {
  auto st = SqliteBuffer::inspect(path);
  if (!st) {
    std::fprintf(stderr, "vane: %s\n", st.status().message().c_str());
    return 1;
  }
  const BufferStats& s = st.value();
  std::printf("path:        %s\n", path.c_str());
  std::printf("rows:        %" PRIu64 "\n", s.rows);
  std::printf("bytes:       %" PRIu64 " (%s)\n", s.bytes, human_bytes(s.bytes).c_str());
  std::printf("file bytes:  %" PRIu64 " (%s)\n", s.file_bytes, human_bytes(s.file_bytes).c_str());
  std::printf("next seq:    %" PRIu64 "\n", s.next_seq);
  if (s.rows > 0) {
    const auto age = now_us().time_since_epoch().count() - s.oldest_ts_us;
    std::printf("oldest seq:  %" PRIu64 "\n", s.oldest_seq);
    std::printf("oldest age:  %.1f s\n", static_cast<double>(age) / 1e6);
  }
  std::printf("parked:      %" PRIu64 "%s\n", s.parked,
              s.parked ? " (no topic takes them; `vane buffer unpark PATH` returns them to the queue)" : "");
  if (s.parked > 0) {
    constexpr std::size_t kShown = 10;
    if (auto rows = SqliteBuffer::parked_rows(path, kShown)) {
      for (const ParkedRow& r : *rows) {
        const auto age = now_us().time_since_epoch().count() - r.since_us;
        std::printf("  seq %" PRIu64 ", parked %.0f s ago: %s\n", r.seq, static_cast<double>(age) / 1e6,
                    r.reason.c_str());
      }
      if (s.parked > kShown) std::printf("  ... and %" PRIu64 " more\n", s.parked - kShown);
    }
  }
  return 0;
}

int buffer_unpark(const std::string& path, const std::vector<std::uint64_t>& seqs) {
  auto n = SqliteBuffer::unpark_file(path, seqs);
  if (!n) {
    std::fprintf(stderr, "vane: %s\n", n.status().message().c_str());
    return 1;
  }
  std::printf("%s: %zu parked rows returned to the queue%s\n", path.c_str(), *n,
              *n ? "; a running vane sends them within a second, otherwise the next start does" : "");
  return 0;
}

int run_agent(const std::string& path) {
  ConfigLoad load = load_config(path);
  print_issues(load);
  if (!load.ok()) return 2;
  const Config& cfg = load.config;

  LiveSet live;
  live.config = cfg;
  if (!compile_schemas(cfg, live.schemas)) return 2;

  // Signals are taken synchronously by the main thread; block them before any
  // thread starts so none of them is interrupted.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  SqliteBufferOptions bopts;
  bopts.path = cfg.buffer.path;
  bopts.max_bytes = cfg.buffer.max_bytes;
  bopts.overflow = cfg.buffer.overflow;
  bopts.sync = cfg.buffer.sync;
  bopts.replay = cfg.buffer.replay;
  bopts.gateway = cfg.gateway_id;
  auto opened = SqliteBuffer::open(bopts);
  if (!opened) {
    std::fprintf(stderr, "%s: /buffer/path: %s\n", cfg.file.c_str(), opened.status().message().c_str());
    return 2;
  }
  std::unique_ptr<SqliteBuffer> buffer = std::move(opened.value());
  Metrics metrics;
  metrics.last_commit_ns = steady_ns();
  metrics.last_delivery_ns = steady_ns();
  if (const Quarantine& q = buffer->quarantine(); !q.moved_to.empty()) {
    metrics.buffer_quarantined.fetch_add(1, std::memory_order_relaxed);
    metrics.buffer_salvaged.fetch_add(q.salvaged, std::memory_order_relaxed);
    VANE_LOG_ERROR("buffer %s was unusable (%s): moved aside to %s; a fresh buffer starts with the %" PRIu64
                   " rows still readable from it%s",
                   cfg.buffer.path.c_str(), q.reason.c_str(), q.moved_to.c_str(), q.salvaged,
                   q.next_seq_from ? "" : " (its sequence was unreadable: seqs continue after the highest salvaged)");
  }
  {
    const BufferStats st = buffer->stats();
    VANE_LOG_INFO("buffer %s: %" PRIu64 " rows waiting, next seq %" PRIu64, cfg.buffer.path.c_str(),
                  st.rows, st.next_seq);
  }

  std::unique_ptr<EmbeddedKafka> embedded;
  std::string bootstrap = cfg.kafka.brokers;
  if (bootstrap == "embedded") {
    auto e = EmbeddedKafka::start(cfg.kafka);
    if (!e) {
      VANE_LOG_ERROR("%s", e.status().message().c_str());
      return 1;
    }
    embedded = std::move(e.value());
    bootstrap = embedded->bootstrap();
    VANE_LOG_INFO("embedded Kafka cluster at %s (in memory: what lands there is gone at exit)",
                  bootstrap.c_str());
  }

  const auto started = std::chrono::steady_clock::now();
  for (const auto& s : cfg.sources) {
    metrics.sources[s.name] = std::make_unique<SourceCounters>();
    live.origins.push_back(make_origin(s));
  }

  ForwarderOptions fopts;
  fopts.max_in_flight = static_cast<std::size_t>(cfg.kafka.max_in_flight);
  fopts.shutdown_timeout_ms = cfg.kafka.shutdown_timeout_ms;
  fopts.max_drain_rate = cfg.kafka.max_drain_rate;
  fopts.reconnect_jitter = std::chrono::milliseconds(cfg.kafka.reconnect_jitter_ms);
  Forwarder forwarder(
      *buffer, [&] { return make_kafka_uplink(cfg.kafka, bootstrap, cfg.gateway_id); }, metrics, fopts);
  if (Status s = forwarder.start(); !s) {
    std::fprintf(stderr, "%s: %s\n", cfg.file.c_str(), s.message().c_str());
    return 2;
  }

  std::map<std::string, const CompiledSchema*> schema_ptrs;
  for (const auto& [name, s] : live.schemas) schema_ptrs[name] = s.get();
  Pipeline pipeline(*buffer, schema_ptrs, metrics, PipelineOptions{}, [&] { forwarder.notify(); });
  LiveView live_view;
  pipeline.set_observer(&live_view);
  pipeline.start();
  AgentView view;

  auto& sources = live.sources;
  int rc = 0;
  for (std::size_t i = 0; i < cfg.sources.size(); ++i) {
    auto src = make_source(cfg.sources[i], live.origins[i].get());
    if (!src) {
      std::fprintf(stderr, "%s: %s\n", cfg.file.c_str(), src.status().message().c_str());
      rc = 2;
      break;
    }
    if (Status s = src.value()->start(pipeline); !s) {
      VANE_LOG_ERROR("source %s: %s", cfg.sources[i].name.c_str(), s.message().c_str());
      rc = 1;
      break;
    }
    sources.push_back(std::move(src.value()));
  }

  std::unique_ptr<HttpServer> http;
  if (rc == 0 && !cfg.http.listen.empty()) {
    publish_sources(view, sources, cfg);
    http = std::make_unique<HttpServer>(
        HttpServerOptions{cfg.http.listen, cfg.http.basic_auth, cfg.http.bearer_token},
        ReportContext{metrics, *buffer, view, cfg.gateway_id, VANE_VERSION, cfg.buffer.max_bytes, started}, live_view);
    // The pipeline matters more than its dashboard: vane runs on without
    // the endpoint, and says so.
    if (Status s = http->start(); !s) {
      VANE_LOG_ERROR("%s; running without /metrics and /health", s.message().c_str());
      http.reset();
    }
  }

  if (rc == 0) {
    VANE_LOG_INFO("version %s running: gateway %s, %zu sources, kafka %s, topic %s", VANE_VERSION,
                  cfg.gateway_id.c_str(), sources.size(), bootstrap.c_str(), cfg.kafka.topic.c_str());
    notify_ready();
    StatusReporter reporter(metrics, *buffer);
    const bool tty = isatty(STDERR_FILENO);
    auto next_status = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    // WATCHDOG=1 at half the timeout, and only while the pipeline makes
    // progress (progress.h): a hung pipeline gets restarted by systemd, an
    // outage the buffer absorbs does not.
    // The same verdict answers /health: its window is the watchdog's when
    // systemd set one, http.stall_after_ms otherwise.
    const auto wd = std::chrono::duration_cast<std::chrono::milliseconds>(watchdog_timeout());
    const auto window = wd.count() > 0 ? wd : std::chrono::milliseconds(cfg.http.stall_after_ms);
    auto watch = [&] {
      std::vector<const Source*> watched;
      for (const auto& src : sources) watched.push_back(src.get());
      return std::make_unique<ProgressWatch>(metrics, *buffer, watched, window);
    };
    std::unique_ptr<ProgressWatch> progress = watch();
    const auto tick = std::min<std::chrono::milliseconds>(std::chrono::milliseconds(1000), window / 2);
    bool stalled = false;
    for (;;) {
      const timespec ts{static_cast<time_t>(tick.count() / 1000), static_cast<long>(tick.count() % 1000) * 1000000};
      const int sig = sigtimedwait(&sigs, nullptr, &ts);
      if (sig == SIGINT || sig == SIGTERM) {
        VANE_LOG_INFO("%s: stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
        break;
      }
      if (sig == SIGHUP) {
        notify_reloading();
        reload(path, live, pipeline, metrics, view);
        progress = watch();
        notify_ready();
      }
      {
        ProgressWatch::Verdict v = progress->check();
        if (v.ok && wd.count() > 0) notify_watchdog();
        if (!v.ok && !stalled) {
          metrics.progress_stalls.fetch_add(1, std::memory_order_relaxed);
          VANE_LOG_ERROR("no progress: %s (%s)", v.why.c_str(),
                         wd.count() > 0 ? "watchdog pings withheld" : "/health answers 503");
        }
        if (v.ok && stalled) VANE_LOG_NOTICE("progress again%s", wd.count() > 0 ? ": watchdog pings resume" : "");
        stalled = !v.ok;
        metrics.progress_ok.store(v.ok, std::memory_order_relaxed);
        std::lock_guard<std::mutex> lock(view.mu);
        view.verdict = std::move(v);
      }
      if (std::chrono::steady_clock::now() >= next_status) {
        next_status += std::chrono::seconds(5);
        const std::string line = reporter.line();
        notify_status(line);
        if (tty) std::fprintf(stderr, "vane: %s\n", line.c_str());
      }
    }
  }

  // Stop intake first, then commit what is queued, then bound the wait for
  // in-flight deliveries; everything else stays in the buffer.
  notify_stopping();
  http.reset();  // before the sources it reports on go
  for (auto& s : sources) s->stop();
  pipeline.stop();
  for (auto& s : sources) {
    const std::string summary = s->summary();
    if (!summary.empty()) VANE_LOG_INFO("source %s: %s", s->name().c_str(), summary.c_str());
    const SourceCounters& c = metrics.source(s->name());
    std::string by_rule;
    for (std::size_t i = 0; i < schema_rules().size() && i < kMaxRules; ++i) {
      if (const std::uint64_t n = c.rejected_by_rule[i].load())
        by_rule += std::string(by_rule.empty() ? "" : ", ") + schema_rules()[i] + " " + std::to_string(n);
    }
    VANE_LOG_INFO("source %s: %" PRIu64 " accepted, %" PRIu64 " rejected%s%s", s->name().c_str(),
                  c.accepted.load(), c.rejected.load(), by_rule.empty() ? "" : " (by rule: ",
                  by_rule.empty() ? "" : (by_rule + ")").c_str());
  }
  forwarder.stop();
  const BufferStats st = buffer->stats();
  VANE_LOG_INFO("stopped: %" PRIu64 " readings in, %" PRIu64 " delivered, %" PRIu64 " rejected, %" PRIu64
                " dropped, %" PRIu64 " rows left in the buffer",
                metrics.readings_in.load(), metrics.delivered.load(), metrics.rejected.load(),
                metrics.dropped_total(),
                st.rows);
  return rc;
}

}  // namespace vane
