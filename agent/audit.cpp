#include "audit.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <optional>
#include <set>

#include "kafka_uplink.h"

namespace vane {

// --- SeqSet ------------------------------------------------------------------

bool SeqSet::insert(std::uint64_t seq) {
  Chunk& c = chunks_[seq / kBits];
  if (c.empty()) c.assign(kBits / 64, 0);
  const std::uint64_t bit = seq % kBits;
  std::uint64_t& word = c[bit / 64];
  const std::uint64_t mask = std::uint64_t{1} << (bit % 64);
  if (word & mask) return false;
  word |= mask;
  ++size_;
  max_ = std::max(max_, seq);
  return true;
}

bool SeqSet::contains(std::uint64_t seq) const {
  auto it = chunks_.find(seq / kBits);
  if (it == chunks_.end()) return false;
  const std::uint64_t bit = seq % kBits;
  return (it->second[bit / 64] >> (bit % 64)) & 1;
}

void SeqSet::gaps(std::uint64_t from, std::uint64_t to,
                  const std::function<void(std::uint64_t, std::uint64_t)>& f) const {
  if (from > to) return;
  std::uint64_t run = 0;  // first seq of the open gap; 0: none
  auto missing = [&](std::uint64_t s) {
    if (run == 0) run = s;
  };
  auto present = [&](std::uint64_t s) {
    if (run != 0) f(run, s - 1);
    run = 0;
  };
  std::uint64_t s = from;
  while (s <= to) {
    auto it = chunks_.find(s / kBits);
    const std::uint64_t chunk_end = std::min(to, (s / kBits + 1) * kBits - 1);
    if (it == chunks_.end()) {  // not one seq of this chunk
      missing(s);
      s = chunk_end + 1;
      continue;
    }
    const Chunk& c = it->second;
    while (s <= chunk_end) {
      const std::uint64_t bit = s % kBits;
      const std::uint64_t word = c[bit / 64];
      if (bit % 64 == 0 && s + 63 <= chunk_end && (word == ~std::uint64_t{0} || word == 0)) {
        if (word == 0) missing(s);
        else present(s);
        s += 64;
        continue;
      }
      if ((word >> (bit % 64)) & 1) present(s);
      else missing(s);
      ++s;
    }
  }
  if (run != 0) f(run, to);
}

// --- Ledger ------------------------------------------------------------------

namespace {

// Adds [first, last] to a set of disjoint ranges, merging what touches it.
void add_range(std::map<std::uint64_t, std::uint64_t>& m, std::uint64_t first, std::uint64_t last) {
  auto it = m.upper_bound(first);
  if (it != m.begin() && std::prev(it)->second + 1 >= first) {
    --it;
    first = it->first;
    last = std::max(last, it->second);
    it = m.erase(it);
  }
  while (it != m.end() && it->first <= last + 1) {
    last = std::max(last, it->second);
    it = m.erase(it);
  }
  m.emplace(first, last);
}

// The end of the range holding `s`, if one does.
std::optional<std::uint64_t> end_of(const std::map<std::uint64_t, std::uint64_t>& m, std::uint64_t s) {
  auto it = m.upper_bound(s);
  if (it == m.begin()) return std::nullopt;
  --it;
  if (it->second >= s) return it->second;
  return std::nullopt;
}

// The first range start above `s`, if any.
std::optional<std::uint64_t> next_start(const std::map<std::uint64_t, std::uint64_t>& m, std::uint64_t s) {
  auto it = m.upper_bound(s);
  if (it == m.end()) return std::nullopt;
  return it->first;
}

std::optional<std::uint64_t> seq_field(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_unsigned()) return std::nullopt;
  return it->get<std::uint64_t>();
}

}  // namespace

void Ledger::received(const std::string& gateway, std::uint64_t seq) {
  Gateway& g = gateways_[gateway];
  if (!g.seqs.insert(seq)) ++g.duplicates;
}

void Ledger::event(const std::string& gateway, const std::string& value) {
  Declared& d = gateways_[gateway].declared;
  ++d.events;
  const nlohmann::json j = nlohmann::json::parse(value, nullptr, false);
  const std::string kind = j.is_object() && j.contains("event") && j["event"].is_string() ? j["event"].get<std::string>() : "";
  const auto first = j.is_object() ? seq_field(j, "first_seq") : std::nullopt;
  const auto last = j.is_object() ? seq_field(j, "last_seq") : std::nullopt;
  std::map<std::uint64_t, std::uint64_t>* into = kind == "dropped"       ? &d.dropped
                                                 : kind == "quarantined" ? &d.quarantined
                                                 : kind == "parked"      ? &d.parked
                                                                         : nullptr;
  if (!into || !first || !last || *first > *last || *first == 0) {
    // A quarantine of a file whose seqs are unknown declares no range: understood, nothing to add.
    if (kind == "quarantined" && first && last && *first == 0 && *last == 0) return;
    ++d.not_understood;
    return;
  }
  add_range(*into, *first, *last);
  if (kind == "dropped") {
    const std::string reason = j.value("reason", std::string("unknown"));
    const auto count = seq_field(j, "count");
    d.dropped_by_reason[reason] += count ? *count : *last - *first + 1;
  }
}

std::vector<std::string> Ledger::gateways() const {
  std::vector<std::string> out;
  for (const auto& [name, g] : gateways_) out.push_back(name);
  return out;
}

GatewayAudit Ledger::report(const std::string& gateway, std::uint64_t from_seq) const {
  GatewayAudit a;
  a.gateway = gateway;
  a.from_seq = std::max<std::uint64_t>(from_seq, 1);
  auto it = gateways_.find(gateway);
  if (it == gateways_.end()) return a;
  const Gateway& g = it->second;
  a.max_seq = g.seqs.max();
  a.duplicates = g.duplicates;
  a.events = g.declared.events;
  a.events_not_understood = g.declared.not_understood;
  a.dropped_by_reason = g.declared.dropped_by_reason;
  const Declared& d = g.declared;
  g.seqs.gaps(a.from_seq, a.max_seq, [&](std::uint64_t first, std::uint64_t last) {
    // Each piece of the gap: dropped (final: a parked row may be dropped
    // later, after a restart) before quarantined before parked (still at the
    // gateway); what no declaration covers is unexplained.
    std::uint64_t s = first;
    while (s <= last) {
      std::uint64_t* bucket = nullptr;
      std::optional<std::uint64_t> end;
      if ((end = end_of(d.dropped, s))) bucket = &a.dropped;
      else if ((end = end_of(d.quarantined, s))) bucket = &a.quarantined;
      else if ((end = end_of(d.parked, s))) bucket = &a.parked;
      if (bucket) {
        // Up to where another declaration starts: it may rank higher.
        std::uint64_t e = std::min(*end, last);
        for (const auto* m : {&d.dropped, &d.quarantined, &d.parked})
          if (auto n = next_start(*m, s)) e = std::min(e, *n - 1);
        *bucket += e - s + 1;
        s = e + 1;
        continue;
      }
      std::uint64_t e = last;
      for (const auto* m : {&d.dropped, &d.quarantined, &d.parked})
        if (auto n = next_start(*m, s)) e = std::min(e, *n - 1);
      a.unexplained += e - s + 1;
      if (!a.unexplained_ranges.empty() && a.unexplained_ranges.back().last + 1 == s) a.unexplained_ranges.back().last = e;
      else a.unexplained_ranges.push_back({s, e});
      s = e + 1;
    }
  });
  std::uint64_t in_range = 0;
  if (a.max_seq >= a.from_seq) {
    const std::uint64_t missing = a.parked + a.dropped + a.quarantined + a.unexplained;
    in_range = a.max_seq - a.from_seq + 1 - missing;
  }
  a.received = in_range;
  return a;
}

nlohmann::ordered_json GatewayAudit::to_json() const {
  nlohmann::ordered_json ranges = nlohmann::ordered_json::array();
  for (const SeqRange& r : unexplained_ranges) ranges.push_back({r.first, r.last});
  return {{"gateway", gateway},
          {"first_seq", from_seq},
          {"last_seq", max_seq},
          {"received", received},
          {"duplicates", duplicates},
          {"declared", {{"dropped", dropped}, {"quarantined", quarantined}, {"parked", parked}}},
          {"dropped_by_reason", dropped_by_reason},
          {"unexplained", unexplained},
          {"unexplained_ranges", ranges},
          {"events", events},
          {"events_not_understood", events_not_understood},
          {"ok", ok()}};
}

// --- reading Kafka -------------------------------------------------------------

namespace {

struct KafkaDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
  void operator()(rd_kafka_conf_t* c) const { rd_kafka_conf_destroy(c); }
  void operator()(rd_kafka_topic_partition_list_t* l) const { rd_kafka_topic_partition_list_destroy(l); }
  void operator()(const rd_kafka_metadata_t* m) const { rd_kafka_metadata_destroy(m); }
};
using KafkaPtr = std::unique_ptr<rd_kafka_t, KafkaDeleter>;
using ConfPtr = std::unique_ptr<rd_kafka_conf_t, KafkaDeleter>;
using PartsPtr = std::unique_ptr<rd_kafka_topic_partition_list_t, KafkaDeleter>;
using MetaPtr = std::unique_ptr<const rd_kafka_metadata_t, KafkaDeleter>;

std::optional<std::string> header(const rd_kafka_message_t* m, const char* name) {
  rd_kafka_headers_t* h = nullptr;
  if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR || !h) return std::nullopt;
  const void* v = nullptr;
  std::size_t n = 0;
  if (rd_kafka_header_get_last(h, name, &v, &n) != RD_KAFKA_RESP_ERR_NO_ERROR || !v) return std::nullopt;
  return std::string(static_cast<const char*>(v), n);
}

std::optional<std::uint64_t> parse_seq(const std::string& s) {
  if (s.empty() || s.size() > 20 || s.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  errno = 0;
  const unsigned long long v = std::strtoull(s.c_str(), nullptr, 10);
  if (errno != 0 || v == 0) return std::nullopt;
  return static_cast<std::uint64_t>(v);
}

struct Reading {
  std::vector<std::string> missing_topics;
  std::uint64_t records = 0, without_seq = 0;
};

// Reads every partition of `topics` from its start to the end it had when
// the read began; what it finds goes into `ledger`.
Status read_topics(const Config& cfg, const std::vector<std::string>& topics, const std::string& gateway, int timeout_ms,
                   Ledger& ledger, Reading& out) {
  ConfPtr conf(rd_kafka_conf_new());
  for (const KafkaProperty& p : kafka_connection_properties(cfg.kafka, cfg.kafka.brokers))
    if (Status s = set_kafka_property(conf.get(), p); !s) return s;
  char err[512];
  for (const auto& [k, v] : std::initializer_list<std::pair<const char*, std::string>>{
           {"client.id", "vane-audit"},
           {"group.id", "vane-audit"},
           {"enable.auto.commit", "false"},
           {"enable.partition.eof", "true"},
           {"isolation.level", cfg.kafka.exactly_once ? "read_committed" : "read_uncommitted"},
           {"log_level", "3"}}) {
    if (rd_kafka_conf_set(conf.get(), k, v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK)
      return Status::invalid(std::string("kafka: ") + err);
  }
  KafkaPtr rk(rd_kafka_new(RD_KAFKA_CONSUMER, conf.get(), err, sizeof err));
  if (!rk) return Status::invalid(std::string("kafka: ") + err);
  conf.release();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  auto left_ms = [&] {
    return static_cast<int>(std::max<std::int64_t>(
        100, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count()));
  };

  PartsPtr parts(rd_kafka_topic_partition_list_new(8));
  std::map<std::pair<std::string, int>, std::int64_t> ends;  // (topic, partition) -> offset to read up to
  for (const std::string& topic : topics) {
    rd_kafka_topic_t* t = rd_kafka_topic_new(rk.get(), topic.c_str(), nullptr);
    const rd_kafka_metadata_t* md = nullptr;
    const rd_kafka_resp_err_t e = rd_kafka_metadata(rk.get(), 0, t, &md, std::min(left_ms(), 10000));
    rd_kafka_topic_destroy(t);
    MetaPtr meta(md);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
      return Status::unavailable("kafka: cannot reach " + cfg.kafka.brokers + " (" + rd_kafka_err2str(e) + ")");
    if (meta->topic_cnt < 1 || meta->topics[0].err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
        meta->topics[0].partition_cnt == 0) {
      out.missing_topics.push_back(topic);
      continue;
    }
    if (meta->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR)
      return Status::unavailable("kafka: topic " + topic + ": " + rd_kafka_err2str(meta->topics[0].err));
    for (int i = 0; i < meta->topics[0].partition_cnt; ++i) {
      const int p = meta->topics[0].partitions[i].id;
      std::int64_t lo = 0, hi = 0;
      const rd_kafka_resp_err_t w = rd_kafka_query_watermark_offsets(rk.get(), topic.c_str(), p, &lo, &hi, left_ms());
      if (w != RD_KAFKA_RESP_ERR_NO_ERROR)
        return Status::unavailable("kafka: " + topic + " [" + std::to_string(p) + "]: " + rd_kafka_err2str(w));
      if (hi <= lo) continue;
      ends[{topic, p}] = hi;
      rd_kafka_topic_partition_list_add(parts.get(), topic.c_str(), p)->offset = lo;
    }
  }
  if (ends.empty()) return Status::ok();
  if (rd_kafka_resp_err_t e = rd_kafka_assign(rk.get(), parts.get()); e != RD_KAFKA_RESP_ERR_NO_ERROR)
    return Status::unavailable(std::string("kafka: ") + rd_kafka_err2str(e));
  const std::string& events = cfg.kafka.event_topic;
  while (!ends.empty()) {
    if (std::chrono::steady_clock::now() >= deadline) {
      std::string which;
      for (const auto& [tp, end] : ends) which += " " + tp.first + "[" + std::to_string(tp.second) + "]";
      rd_kafka_consumer_close(rk.get());
      return Status::unavailable("kafka: timed out reading up to the end of" + which + " (--timeout-ms " +
                                 std::to_string(timeout_ms) + ")");
    }
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk.get(), 200);
    if (!m) continue;
    const std::string topic = m->rkt ? rd_kafka_topic_name(m->rkt) : "";
    const auto key = std::make_pair(topic, static_cast<int>(m->partition));
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      ends.erase(key);
    } else if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      const std::string why = rd_kafka_message_errstr(m);
      const bool fatal = m->err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
                         m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE;
      rd_kafka_message_destroy(m);
      if (fatal) {
        rd_kafka_consumer_close(rk.get());
        return Status::unavailable("kafka: " + topic + ": " + why);
      }
      continue;
    } else {
      ++out.records;
      const auto gw = header(m, "vane-gateway");
      const auto seq_text = header(m, "vane-seq");
      const auto seq = seq_text ? parse_seq(*seq_text) : std::nullopt;
      if (!gw || !seq) {
        ++out.without_seq;
      } else if (gateway.empty() || *gw == gateway) {
        ledger.received(*gw, *seq);
        if (topic == events)
          ledger.event(*gw, m->payload ? std::string(static_cast<const char*>(m->payload), m->len) : std::string());
      }
      if (auto it = ends.find(key); it != ends.end() && m->offset + 1 >= it->second) ends.erase(it);
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(rk.get());
  return Status::ok();
}

std::string ranges_text(const std::vector<SeqRange>& ranges) {
  constexpr std::size_t kShown = 20;
  std::string out;
  for (std::size_t i = 0; i < ranges.size() && i < kShown; ++i) {
    const SeqRange& r = ranges[i];
    out += i ? ", " : "";
    out += r.first == r.last ? std::to_string(r.first) : std::to_string(r.first) + "-" + std::to_string(r.last);
  }
  if (ranges.size() > kShown) out += " ... and " + std::to_string(ranges.size() - kShown) + " more ranges";
  return out;
}

void print_text(const GatewayAudit& a) {
  std::printf("gateway %s: seqs %" PRIu64 "..%" PRIu64 "\n", a.gateway.c_str(), a.from_seq, a.max_seq);
  std::printf("  received:     %" PRIu64 " (%" PRIu64 " duplicated copies)\n", a.received, a.duplicates);
  std::string reasons;
  for (const auto& [reason, n] : a.dropped_by_reason) reasons += (reasons.empty() ? "" : ", ") + reason + " " + std::to_string(n);
  std::printf("  declared:     %" PRIu64 " dropped%s, %" PRIu64 " lost with a quarantined buffer\n", a.dropped,
              reasons.empty() ? "" : (" (declared: " + reasons + ")").c_str(), a.quarantined);
  std::printf("  parked:       %" PRIu64 " (still in the gateway's buffer)\n", a.parked);
  if (a.events_not_understood)
    std::printf("  events not understood: %" PRIu64 " of %" PRIu64 "\n", a.events_not_understood, a.events);
  if (a.unexplained)
    std::printf("  unexplained:  %" PRIu64 " seqs (lost): %s\n", a.unexplained, ranges_text(a.unexplained_ranges).c_str());
  else
    std::printf("  unexplained:  0\n");
}

}  // namespace

int audit_main(const AuditOptions& opts) {
  ConfigLoad load = load_config(opts.config_path);
  if (!load.ok()) {
    for (const auto& e : load.errors) std::fprintf(stderr, "%s\n", e.to_string().c_str());
    return 2;
  }
  const Config& cfg = load.config;
  if (cfg.kafka.brokers == "embedded") {
    std::fprintf(stderr, "%s: /kafka/brokers: \"embedded\" is an in-process cluster that lives and dies with vane run; "
                         "there is nothing to audit\n", cfg.file.c_str());
    return 2;
  }
  Ledger ledger;
  Reading reading;
  const std::vector<std::string> topics = {cfg.kafka.topic, cfg.kafka.dead_letter_topic, cfg.kafka.event_topic};
  if (Status s = read_topics(cfg, topics, opts.gateway, opts.timeout_ms, ledger, reading); !s) {
    std::fprintf(stderr, "vane audit: %s\n", s.message().c_str());
    return 2;
  }
  std::vector<std::string> gateways = opts.gateway.empty() ? ledger.gateways() : std::vector<std::string>{opts.gateway};
  std::vector<GatewayAudit> reports;
  for (const std::string& g : gateways) reports.push_back(ledger.report(g, opts.from_seq));
  const bool ok = !reports.empty() && std::all_of(reports.begin(), reports.end(), [](const GatewayAudit& a) { return a.ok(); });
  if (opts.json) {
    nlohmann::ordered_json j = {{"topics", topics},
                                {"topics_missing", reading.missing_topics},
                                {"records", reading.records},
                                {"records_without_seq", reading.without_seq},
                                {"gateways", nlohmann::ordered_json::array()},
                                {"ok", ok}};
    for (const GatewayAudit& a : reports) j["gateways"].push_back(a.to_json());
    std::printf("%s\n", j.dump(2).c_str());
    return ok ? 0 : 1;
  }
  for (const std::string& t : reading.missing_topics) std::printf("topic %s: does not exist (nothing read)\n", t.c_str());
  if (reading.without_seq)
    std::printf("records without vane-gateway and vane-seq headers: %" PRIu64 " (not counted)\n", reading.without_seq);
  for (const GatewayAudit& a : reports) {
    if (a.max_seq == 0) {
      std::printf("gateway %s: no records in %s, %s or %s\n", a.gateway.c_str(), topics[0].c_str(), topics[1].c_str(),
                  topics[2].c_str());
      continue;
    }
    print_text(a);
  }
  if (reports.empty()) std::printf("no gateway's records found\n");
  std::printf("%s\n", ok ? "every seq is received or declared" : "NOT every seq is accounted for");
  return ok ? 0 : 1;
}

}  // namespace vane
