// The uplink against a three-node Apache Kafka cluster as operators run one
// (support/kafka_cluster.h: three combined KRaft broker+controller nodes in
// child JVMs), the topics with replication factor 3 and
// min.insync.replicas 2, created before vane starts. The real vane binary,
// simulator source, its HTTP endpoint on a port it picks; what landed is
// counted by vane-seq with a read_committed consumer.
//
// (a) One node SIGKILLed at a steady 3000 readings/s and restarted later:
//     the two others keep a controller quorum and min.insync.replicas,
//     leadership moves, vane keeps delivering: 0 lost, 0 duplicates (the
//     new leaders dedupe the producer's retried batches from the
//     replicated producer state).
// (b) Two nodes SIGKILLed: the survivor alone is below min.insync.replicas,
//     and, every node being a controller too, the quorum is gone with them,
//     so no ISR shrinks and no leader moves: produce requests to the
//     survivor wait for replicas that never answer, those to the dead
//     leaders find nobody. Rows stay buffered; /health, /metrics and the
//     log name the uplink's state and reason (the test accepts
//     NOT_ENOUGH_REPLICAS or what an unreachable quorum looks like, and
//     prints which it saw); both nodes return: everything drains, 0 lost,
//     0 duplicates.
//
// Figures are printed on lines starting "FIGURE" (docs/RELIABILITY.md).
#include <httplib.h>
#include <signal.h>

#include <cinttypes>
#include <cstdio>
#include <map>
#include <memory>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "fault/seq_counter.h"
#include "integration/agent_test_util.h"
#include "integration/http_agent.h"
#include "support/kafka_cluster.h"

namespace vane::test {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

double seconds_since(SteadyClock::time_point t) {
  return std::chrono::duration<double>(SteadyClock::now() - t).count();
}

long next_seq(const std::string& buffer) { return buffer_stat(buffer, "next seq:"); }

// The leader node of each partition of `topic`, from the cluster's
// metadata; empty when it cannot be had within the timeout.
std::map<int, int> leaders(const std::string& bootstrap, const std::string& topic) {
  RdKafkaConfPtr conf(rd_kafka_conf_new());
  char err[512];
  rd_kafka_conf_set(conf.get(), "bootstrap.servers", bootstrap.c_str(), err, sizeof err);
  rd_kafka_conf_set(conf.get(), "log_level", "0", err, sizeof err);
  RdKafkaPtr rk(rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), err, sizeof err));
  if (!rk) return {};
  conf.release();
  std::unique_ptr<rd_kafka_topic_t, void (*)(rd_kafka_topic_t*)> rkt(rd_kafka_topic_new(rk.get(), topic.c_str(), nullptr),
                                                                     rd_kafka_topic_destroy);
  const rd_kafka_metadata_t* raw = nullptr;
  if (rd_kafka_metadata(rk.get(), 0, rkt.get(), &raw, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR) return {};
  RdKafkaMetadataPtr md(raw);
  std::map<int, int> out;
  if (md->topic_cnt != 1) return out;
  for (int p = 0; p < md->topics[0].partition_cnt; ++p)
    out[md->topics[0].partitions[p].id] = md->topics[0].partitions[p].leader;
  return out;
}

// True when `bootstrap` answers metadata within a few seconds and lists
// broker `id`.
bool lists_broker(const std::string& bootstrap, int id) {
  RdKafkaConfPtr conf(rd_kafka_conf_new());
  char err[512];
  rd_kafka_conf_set(conf.get(), "bootstrap.servers", bootstrap.c_str(), err, sizeof err);
  rd_kafka_conf_set(conf.get(), "log_level", "0", err, sizeof err);
  RdKafkaPtr rk(rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), err, sizeof err));
  if (!rk) return false;
  conf.release();
  const rd_kafka_metadata_t* raw = nullptr;
  if (rd_kafka_metadata(rk.get(), 0, nullptr, &raw, 3000) != RD_KAFKA_RESP_ERR_NO_ERROR) return false;
  RdKafkaMetadataPtr md(raw);
  for (int b = 0; b < md->broker_cnt; ++b)
    if (md->brokers[b].id == id) return true;
  return false;
}

// Sample values of one scrape, by the sample as written ("name{labels}").
using Samples = std::map<std::string, double>;

Samples parse_samples(const std::string& text) {
  Samples s;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    const auto sp = line.rfind(' ');
    s[line.substr(0, sp)] = std::stod(line.substr(sp + 1));
  }
  return s;
}

// The label value of the one sample of `family` (a 0/1 gauge per label
// value) that is 1, or "" when none is (or more than one).
std::string current_label(const Samples& s, const std::string& family, const std::string& label) {
  const std::string prefix = family + "{" + label + "=\"";
  std::string found;
  int ones = 0;
  for (auto it = s.lower_bound(prefix); it != s.end() && it->first.rfind(prefix, 0) == 0; ++it) {
    if (it->second != 1) continue;
    ++ones;
    found = it->first.substr(prefix.size(), it->first.find('"', prefix.size()) - prefix.size());
  }
  return ones == 1 ? found : "";
}

// What vane says about its uplink: /health's uplink object and the
// /metrics gauges, read one after the other.
struct UplinkView {
  int http_status = 0;        // of /health; 0: no answer
  std::string state, reason;  // /health uplink.state, uplink.reason ("" for null)
  std::string code, detail;
  std::string metric_state, metric_reason;  // the labels of vane_uplink_state / vane_uplink_reason at 1
  bool agrees() const { return http_status != 0 && state == metric_state && (reason.empty() ? "none" : reason) == metric_reason; }
  std::string str() const {
    return "health " + std::to_string(http_status) + " state=" + state + " reason=" + (reason.empty() ? "null" : reason) +
           " code=" + code + " detail=\"" + detail + "\"; metrics state=" + metric_state + " reason=" + metric_reason;
  }
};

// vane run with its HTTP endpoint on a port it picked itself.
class Vane {
 public:
  Vane(const std::string& config, const std::string& log)
      : proc_({vane_bin(), "run", "-c", config}, log), port_(wait_http_port(proc_, 30s)) {}
  int port() const { return port_; }
  ChildProcess& proc() { return proc_; }
  std::string log() const { return proc_.captured_stderr(); }

  UplinkView uplink() {
    UplinkView v;
    httplib::Client c("127.0.0.1", port_);
    c.set_connection_timeout(2);
    c.set_read_timeout(5);
    if (auto r = c.Get("/health")) {
      const json h = json::parse(r->body, nullptr, false);
      if (!h.is_discarded() && h.contains("uplink")) {
        v.http_status = r->status;
        const json& u = h["uplink"];
        auto str = [&](const char* k) { return u.contains(k) && u[k].is_string() ? u[k].get<std::string>() : ""; };
        v.state = str("state");
        v.reason = str("reason");
        v.code = str("code");
        v.detail = str("detail");
      }
    }
    if (auto r = c.Get("/metrics"); r && r->status == 200) {
      const Samples s = parse_samples(r->body);
      v.metric_state = current_label(s, "vane_uplink_state", "state");
      v.metric_reason = current_label(s, "vane_uplink_reason", "reason");
    }
    return v;
  }

  // SIGTERM; exit 0 expected. Returns the log.
  std::string stop() {
    proc_.send_signal(SIGTERM);
    const auto rc = proc_.wait_exit(SteadyClock::now() + 30s);
    EXPECT_TRUE(rc.has_value()) << "vane did not exit after SIGTERM\n" << tail(log());
    if (rc) {
      EXPECT_EQ(*rc, 0) << tail(log());
    }
    return log();
  }

 private:
  ChildProcess proc_;
  int port_ = 0;
};

class ClusterFaults : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string why = kafka_unavailable_reason();
    ASSERT_EQ(why, "") << "no real Kafka for this test: " << why;
    const auto asked = SteadyClock::now();
    try {
      KafkaClusterOptions opt;
      opt.nodes = 3;
      // Three JVMs starting at once on a small shared machine: up to a few
      // minutes when it is busy (20-30 s when it is not).
      kafka_ = std::make_unique<KafkaCluster>(opt, 180s);
      kafka_->create_topic("telemetry", 3, 3, {{"min.insync.replicas", "2"}});
      kafka_->create_topic("telemetry.dlq", 1, 3, {{"min.insync.replicas", "2"}});
    } catch (const std::exception& e) {
      FAIL() << e.what();
    }
    std::printf("cluster of 3 nodes serving, topics created, after %.1f s\n", seconds_since(asked));
    bootstrap_ = kafka_->bootstrap();
    buffer_ = dir_.file("buffer.db");
  }

  std::unique_ptr<Vane> start_vane(const std::string& sim_knobs) {
    std::string c = sim_config(buffer_, bootstrap_, sim_knobs);
    const std::string off = "\"http\": { \"listen\": \"\" }";
    c.replace(c.find(off), off.size(), "\"http\": { \"listen\": \"127.0.0.1:0\" }");
    write_file(dir_.file("vane.jsonc"), c);
    return std::make_unique<Vane>(dir_.file("vane.jsonc"), dir_.file("vane.stderr"));
  }

  // Polls the counter for `d` (the deliberate way to let time pass), and
  // about once a second what vane says about its uplink.
  static void hold(SeqCounter& landed, Vane& vane, SteadyClock::duration d, std::set<std::string>& seen) {
    const auto until = SteadyClock::now() + d;
    auto next_look = SteadyClock::now();
    while (SteadyClock::now() < until) {
      if (SteadyClock::now() >= next_look) {
        const UplinkView v = vane.uplink();
        seen.insert(v.state + (v.reason.empty() ? "" : "/" + v.reason));
        next_look = SteadyClock::now() + 1s;
      }
      landed.poll(std::min<std::chrono::milliseconds>(
          200ms, std::chrono::ceil<std::chrono::milliseconds>(until - SteadyClock::now())));
    }
  }

  // Node `id` answers metadata on its own listener and lists itself: it is
  // up and registered (the cluster's view may list a dead node while there
  // is no quorum to fence it).
  bool node_serves(int id) const { return lists_broker(kafka_->address(id), id); }

  static std::string joined(const std::set<std::string>& s) {
    std::string out;
    for (const auto& x : s) out += (out.empty() ? "" : ", ") + x;
    return out;
  }

  // Every seq 1..accepted landed exactly once, nothing else did.
  static void expect_exactly_once(SeqCounter& landed, long accepted, std::size_t& lost) {
    const std::vector<std::uint64_t> missing = landed.missing(static_cast<std::uint64_t>(accepted));
    lost = missing.size();
    EXPECT_TRUE(missing.empty()) << missing.size() << " readings lost, first seq " << missing.front();
    EXPECT_EQ(landed.distinct(), static_cast<std::size_t>(accepted));
    EXPECT_EQ(landed.landed_above(static_cast<std::uint64_t>(accepted)), 0u);
    EXPECT_EQ(landed.no_seq(), 0u);
    EXPECT_EQ(landed.mismatched_copies(), 0u);
    EXPECT_EQ(landed.duplicates(), 0u) << "a retried batch landed twice: the brokers should have dropped it\n"
                                       << landed.duplicate_summary();
  }

  TempDir dir_{"vane-cluster-"};
  std::unique_ptr<KafkaCluster> kafka_;
  std::string bootstrap_, buffer_;
};

// (a) One of three nodes SIGKILLed mid-run, restarted 15 s later.
TEST_F(ClusterFaults, OneNodeKilledMidRunLosesAndDuplicatesNothing) {
  constexpr long kRate = 3000;
  // Long enough to run through the kill, the 15 s without the node and its
  // restart, and on for a while with all three.
  constexpr long kLimit = kRate * 45;
  constexpr auto kDown = 15s;
  const auto t0 = SteadyClock::now();
  auto vane = start_vane("\"devices\": 10, \"rate\": " + std::to_string(kRate) + ", \"limit\": " + std::to_string(kLimit));
  ASSERT_GT(vane->port(), 0) << tail(vane->log());
  SeqCounter landed(bootstrap_, {"telemetry", "telemetry.dlq"});
  ASSERT_TRUE(landed.poll_until([&] { return landed.distinct() >= 3000; }, 60s))
      << landed.distinct() << " landed\n" << tail(vane->log());
  std::set<std::string> seen_before, seen_down, seen_after;
  hold(landed, *vane, 3s, seen_before);

  // The victim leads telemetry[0]: rows in flight to it at the kill must
  // reach the partition's next leader, once.
  const std::map<int, int> before = leaders(bootstrap_, "telemetry");
  ASSERT_EQ(before.size(), 3u);
  const int victim = before.at(0);
  ASSERT_GE(victim, 1);
  std::printf("leaders before the kill: telemetry[0]=%d [1]=%d [2]=%d; killing node %d\n", before.at(0), before.at(1),
              before.at(2), victim);
  const long seq_at_kill = next_seq(buffer_) - 1;
  kafka_->kill(victim);
  const auto down_at = SteadyClock::now();
  // The fault: the node stays dead for kDown while readings keep coming.
  hold(landed, *vane, kDown, seen_down);
  ASSERT_TRUE(vane->proc().running()) << "vane died\n" << tail(vane->log());
  // Readings committed after the kill that landed while the node was down.
  const std::size_t landed_while_down = landed.landed_above(static_cast<std::uint64_t>(seq_at_kill));
  const long seq_at_restart = next_seq(buffer_) - 1;
  const std::map<int, int> moved = leaders(bootstrap_, "telemetry");
  // Two of three in sync still make min.insync.replicas: the cluster keeps
  // taking rows without the node, and vane keeps delivering.
  EXPECT_GT(landed_while_down, static_cast<std::size_t>(kRate * 5))
      << "delivery stalled without one node of three\n" << tail(vane->log());
  for (const auto& [p, leader] : moved) EXPECT_NE(leader, victim) << "telemetry[" << p << "] still led by the dead node";

  const auto restart_at = SteadyClock::now();
  try {
    kafka_->start(victim);
  } catch (const std::exception& e) {
    FAIL() << e.what();
  }
  const double restart_s = seconds_since(restart_at);
  const double node_down_s = seconds_since(down_at);
  hold(landed, *vane, 3s, seen_after);

  // Drained: every reading the source made landed and the buffer is empty.
  EXPECT_TRUE(landed.poll_until(
      [&] { return landed.covered() >= static_cast<std::uint64_t>(kLimit) && buffer_rows(buffer_) == 0; }, 120s))
      << "covered " << landed.covered() << " of " << kLimit << ", buffer rows " << buffer_rows(buffer_) << "\n"
      << tail(vane->log());
  const UplinkView end = vane->uplink();
  EXPECT_EQ(end.state, "up") << end.str();
  EXPECT_TRUE(end.agrees()) << end.str();
  const std::string log = vane->stop();
  EXPECT_EQ(buffer_rows(buffer_), 0);
  const long accepted = next_seq(buffer_) - 1;
  EXPECT_EQ(accepted, kLimit);
  ASSERT_TRUE(landed.catch_up(SteadyClock::now() + 30s)) << "could not read everything back";
  std::size_t lost = 0;
  expect_exactly_once(landed, accepted, lost);

  std::printf(
      "FIGURE cluster one node: 3 nodes, RF 3, min.insync.replicas 2, node %d (leader of telemetry[0]) SIGKILLed "
      "at %ld readings/s for %.1f s (restart %.1f s): accepted=%ld (%ld committed while it was down), landed "
      "distinct=%zu (%zu of those committed after the kill landed while it was down), lost=%zu, duplicates=%zu; "
      "uplink before: %s; while down: %s; after: %s; "
      "test_s=%.0f\n",
      victim, kRate, node_down_s, restart_s, accepted, seq_at_restart - seq_at_kill, landed.distinct(),
      landed_while_down, lost, landed.duplicates(), joined(seen_before).c_str(), joined(seen_down).c_str(),
      joined(seen_after).c_str(), seconds_since(t0));
}

// (b) Two of three nodes SIGKILLed together; both restarted once vane has
// said why nothing is delivered.
TEST_F(ClusterFaults, TwoNodesDownKeepRowsBufferedSayWhyAndDrainOnReturn) {
  constexpr long kRate = 2000;
  // The source runs through the outage (about 30 s until the broker's
  // request timeout names the reason, and 5 s more) and stops around the
  // restart.
  constexpr long kLimit = kRate * 60;
  const auto t0 = SteadyClock::now();
  auto vane = start_vane("\"devices\": 10, \"rate\": " + std::to_string(kRate) + ", \"limit\": " + std::to_string(kLimit));
  ASSERT_GT(vane->port(), 0) << tail(vane->log());
  SeqCounter landed(bootstrap_, {"telemetry", "telemetry.dlq"});
  ASSERT_TRUE(landed.poll_until([&] { return landed.distinct() >= 2000; }, 60s))
      << landed.distinct() << " landed\n" << tail(vane->log());
  UplinkView v = vane->uplink();
  ASSERT_EQ(v.state, "up") << v.str();

  // The survivor is node 1; 2 and 3 die together.
  const long rows_at_kill = buffer_rows(buffer_);
  const long seq_at_kill = next_seq(buffer_) - 1;
  kafka_->kill(2);
  kafka_->kill(3);
  const auto down_at = SteadyClock::now();

  // Nothing is delivered; vane must say so, and why, in the broker's words,
  // the same on /health and /metrics. With combined nodes the quorum went
  // with them: no ISR shrinks, so the survivor never answers
  // NOT_ENOUGH_REPLICAS; its produce requests wait for replicas that never
  // fetch and time out at the broker (REQUEST_TIMED_OUT, after the
  // producer's request.timeout.ms, 30 s), and the dead leaders refuse
  // connections. Accepted: NOT_ENOUGH_REPLICAS (a cluster whose controllers
  // survive gives it) or that timeout; the figure says which was seen.
  std::set<std::string> seen_down;
  double left_up_s = -1;  // when /health first stopped saying "up"
  auto look = [&] {
    v = vane->uplink();
    seen_down.insert(v.state + (v.reason.empty() ? "" : "/" + v.reason));
    if (left_up_s < 0 && v.state != "up") left_up_s = seconds_since(down_at);
    return v;
  };
  const bool said = landed.poll_until(
      [&] {
        const UplinkView u = look();
        return u.agrees() && u.state == "refused" &&
               (u.reason == "not_enough_replicas" || (u.reason == "timeout" && !u.code.empty()));
      },
      90s);
  const double said_after_s = seconds_since(down_at);
  const UplinkView observed = v;
  EXPECT_TRUE(said) << "the uplink state does not say, in the broker's words, why nothing is delivered: "
                    << observed.str() << "\nseen: " << joined(seen_down) << "\n" << tail(vane->log());
  if (observed.reason == "timeout") {
    EXPECT_EQ(observed.code, "REQUEST_TIMED_OUT") << observed.str();
  }
  // The log says it too, once per episode.
  const std::string entered = "kafka: uplink refused (";
  EXPECT_NE(vane->log().find(entered), std::string::npos) << tail(vane->log());
  // An outage the buffer absorbs is no stall: /health stays 200.
  EXPECT_EQ(observed.http_status, 200) << observed.str();
  const auto hold_until = SteadyClock::now() + 5s;
  while (SteadyClock::now() < hold_until) {
    look();
    landed.poll(200ms);
  }
  ASSERT_TRUE(vane->proc().running()) << "vane died\n" << tail(vane->log());

  // Rows stay buffered and keep coming; what lands meanwhile is what the
  // consumer had not read yet at the kill (committed before it), nothing newer.
  const long rows_before_return = buffer_rows(buffer_);
  const long seq_before_return = next_seq(buffer_) - 1;
  const std::size_t committed_while_down = landed.landed_above(static_cast<std::uint64_t>(seq_at_kill));
  EXPECT_GT(rows_before_return, rows_at_kill + kRate * 10) << "rows did not stay buffered";
  std::printf("two nodes down %.1f s: buffer %ld -> %ld rows; %zu seqs above the %ld committed at the kill landed "
              "meanwhile; uplink left \"up\" after %.1f s; seen: %s\n",
              seconds_since(down_at), rows_at_kill, rows_before_return, committed_while_down, seq_at_kill, left_up_s,
              joined(seen_down).c_str());

  // Both back. start_all() cannot tell when they serve (the survivor, without
  // a quorum, still lists them), so each is asked itself.
  const auto restart_at = SteadyClock::now();
  try {
    kafka_->start_all();
  } catch (const std::exception& e) {
    FAIL() << e.what();
  }
  EXPECT_TRUE(landed.poll_until([&] { return node_serves(2) && node_serves(3); }, 120s))
      << "nodes 2 and 3 do not serve after their restart";
  const double restart_s = seconds_since(restart_at);
  const double down_s = seconds_since(down_at);
  const auto up_at = SteadyClock::now();
  double drain_s = -1;
  const bool drained = landed.poll_until(
      [&] { return landed.covered() >= static_cast<std::uint64_t>(seq_before_return); }, 120s);
  if (drained) drain_s = seconds_since(up_at);
  EXPECT_TRUE(drained) << "covered " << landed.covered() << " of " << seq_before_return << "\n" << tail(vane->log());
  EXPECT_TRUE(landed.poll_until(
      [&] { return landed.covered() >= static_cast<std::uint64_t>(kLimit) && buffer_rows(buffer_) == 0; }, 120s))
      << "covered " << landed.covered() << " of " << kLimit << ", buffer rows " << buffer_rows(buffer_) << "\n"
      << tail(vane->log());
  UplinkView end;
  EXPECT_TRUE(wait_until([&] { end = vane->uplink(); return end.state == "up" && end.agrees(); }, 30s, 200ms))
      << end.str();
  EXPECT_NE(vane->log().find("kafka: delivering again after"), std::string::npos) << tail(vane->log());
  const std::string log = vane->stop();
  EXPECT_EQ(buffer_rows(buffer_), 0);
  const long accepted = next_seq(buffer_) - 1;
  EXPECT_EQ(accepted, kLimit);
  ASSERT_TRUE(landed.catch_up(SteadyClock::now() + 30s)) << "could not read everything back";
  std::size_t lost = 0;
  expect_exactly_once(landed, accepted, lost);

  std::printf(
      "FIGURE cluster two nodes: 3 nodes, RF 3, min.insync.replicas 2, nodes 2 and 3 SIGKILLed at %ld readings/s "
      "for %.1f s (restart %.1f s): uplink left up after %.1f s, said \"%s (%s)\" after %.1f s (code %s: %s), "
      "health %d; buffered %ld -> %ld rows, %zu committed while down; accepted=%ld, landed distinct=%zu, lost=%zu, "
      "duplicates=%zu, drain_s=%.1f (from both serving), test_s=%.0f\n",
      kRate, down_s, restart_s, left_up_s, observed.state.c_str(), observed.reason.c_str(), said_after_s,
      observed.code.c_str(), observed.detail.c_str(), observed.http_status, rows_at_kill, rows_before_return,
      committed_while_down, accepted, landed.distinct(), lost, landed.duplicates(), drain_s, seconds_since(t0));
  // What vane logged about the uplink, for the reader of the test log.
  std::istringstream lines(log);
  int shown = 0;
  for (std::string line; std::getline(lines, line) && shown < 20;)
    if (line.find("kafka: ") != std::string::npos) std::printf("vane: %s\n", line.c_str()), ++shown;
}

}  // namespace
}  // namespace vane::test
