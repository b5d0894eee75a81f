// The uplink state against Apache Kafka itself (support/kafka_cluster.h): a
// topic whose in-sync replicas are fewer than its min.insync.replicas
// refuses every produce with NOT_ENOUGH_REPLICAS. vane names that on /health
// and /metrics and once in its log, keeps every row buffered, and once the
// topic accepts again drains them, exactly once, and is up.
//
// Kafka caps min.insync.replicas at the replication factor (Partition.
// effectiveMinIsr): a topic with replication factor 1 and
// min.insync.replicas 2 accepts every write. The refusal needs replicas that
// are really gone: three nodes, replication factor 3, one node killed (the
// ISR shrinks to two and writes go on at min.insync.replicas 2), then
// min.insync.replicas 3 (refused), then 1 (drains).
#include <httplib.h>

#include <map>
#include <regex>
#include <sstream>

#include <nlohmann/json.hpp>

#include "agent_test_util.h"
#include "http_agent.h"
#include "support/temp_dir.h"

namespace vane::test {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;
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

std::size_t occurrences(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// vane run with its HTTP endpoint on a port it picked itself.
class Agent {
 public:
  Agent(const std::string& config, const std::string& log)
      : proc_({vane_bin(), "run", "--config", config}, log), port_(wait_http_port(proc_, 30s)) {}
  int port() const { return port_; }
  std::string log() const { return proc_.captured_stderr(); }
  std::pair<int, json> health() {
    auto r = client().Get("/health");
    if (!r) return {0, json()};
    return {r->status, json::parse(r->body, nullptr, false)};
  }
  Samples metrics() {
    auto r = client().Get("/metrics");
    return r && r->status == 200 ? parse_samples(r->body) : Samples{};
  }
  bool stop() {
    proc_.send_signal(SIGTERM);
    auto rc = proc_.wait_exit(deadline_in(30s));
    return rc && *rc == 0;
  }

 private:
  httplib::Client client() {
    httplib::Client c("127.0.0.1", port_);
    c.set_connection_timeout(2);
    c.set_read_timeout(5);
    return c;
  }
  ChildProcess proc_;
  int port_ = 0;
};

// In-sync replicas per partition of `topic`, from the cluster's metadata;
// empty when it could not be had.
std::vector<int> isr_sizes(rd_kafka_t* rk, const std::string& topic) {
  std::unique_ptr<rd_kafka_topic_t, void (*)(rd_kafka_topic_t*)> rkt(rd_kafka_topic_new(rk, topic.c_str(), nullptr),
                                                                     rd_kafka_topic_destroy);
  const rd_kafka_metadata_t* raw = nullptr;
  if (rd_kafka_metadata(rk, 0, rkt.get(), &raw, 2000) != RD_KAFKA_RESP_ERR_NO_ERROR) return {};
  RdKafkaMetadataPtr md(raw);
  std::vector<int> out;
  if (md->topic_cnt != 1) return out;
  for (int p = 0; p < md->topics[0].partition_cnt; ++p) out.push_back(md->topics[0].partitions[p].isr_cnt);
  return out;
}

class UplinkStateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string why = kafka_unavailable_reason();
    ASSERT_EQ(why, "") << "no real Kafka for this test: " << why;
  }
};

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

TEST_F(UplinkStateTest, NotEnoughReplicasIsNamedRowsStayBufferedAndDrainOnceTheTopicAccepts) {
  const auto t0 = Clock::now();
  std::unique_ptr<KafkaCluster> kafka;
  try {
    KafkaClusterOptions o;
    o.nodes = 3;
    kafka = std::make_unique<KafkaCluster>(o);
    kafka->create_topic("telemetry", 3, 3, {{"min.insync.replicas", "2"}});
    kafka->create_topic("telemetry.dlq", 1, 3, {{"min.insync.replicas", "2"}});
  } catch (const std::exception& e) {
    FAIL() << e.what();
  }
  const double cluster_s = seconds_since(t0);
  TempDir dir("vane-uplink-state-");
  const std::string buffer = dir.file("buffer.db");
  std::string cfg = sim_config(buffer, kafka->bootstrap(), "\"devices\": 5, \"rate\": 200");
  const std::string off = "\"http\": { \"listen\": \"\" }";
  cfg.replace(cfg.find(off), off.size(), "\"http\": { \"listen\": \"127.0.0.1:0\" }");
  write_file(dir.file("vane.jsonc"), cfg);
  Agent vane(dir.file("vane.jsonc"), dir.file("vane.stderr"));
  ASSERT_GT(vane.port(), 0) << vane.log();

  std::pair<int, json> h;
  Samples s;
  auto uplink = [&] { return h.second.is_object() ? h.second["uplink"] : json(); };
  ASSERT_TRUE(wait_until([&] {
    h = vane.health();
    return uplink().value("state", "") == "up" && uplink().value("delivered", 0) > 100;
  }, 60s)) << h.second.dump() << "\n" << vane.log();

  // One node gone: the ISR shrinks to two, which min.insync.replicas 2 takes.
  kafka->kill(3);
  RdKafkaPtr meta = make_test_consumer(kafka->bootstrap(), "uplink-state-isr");
  ASSERT_TRUE(wait_until([&] { return isr_sizes(meta.get(), "telemetry") == std::vector<int>{2, 2, 2}; }, 60s, 200ms))
      << "the ISR did not shrink";
  destroy_test_consumer(meta);
  const double delivered_before = uplink().value("delivered", 0.0);
  ASSERT_TRUE(wait_until([&] {
    h = vane.health();
    return uplink().value("state", "") == "up" && uplink().value("delivered", 0.0) > delivered_before + 200;
  }, 60s)) << "not delivering with two of three replicas: " << h.second.dump() << "\n" << vane.log();
  const std::size_t warnings_before = occurrences(vane.log(), "kafka: uplink refused (NOT_ENOUGH_REPLICAS)");
  EXPECT_EQ(warnings_before, 0u) << vane.log();

  // Now every produce is below min.insync.replicas.
  const auto refused_at = Clock::now();
  kafka->set_topic_configs("telemetry", {{"min.insync.replicas", "3"}});
  ASSERT_TRUE(wait_until([&] {
    h = vane.health();
    return uplink().value("state", "") == "refused" && uplink().value("reason", "") == "not_enough_replicas";
  }, 120s, 200ms)) << h.second.dump() << "\n" << vane.log();  // a produce already waiting for the third replica
                                                              // answers only at the broker's request timeout (30 s)
  const double named_after_s = seconds_since(refused_at);
  EXPECT_EQ(h.first, 200) << "an outage the broker explains is not a stall";
  EXPECT_EQ(uplink()["code"], "NOT_ENOUGH_REPLICAS");
  const std::string detail = uplink().value("detail", "");
  EXPECT_NE(detail.find("Not enough in-sync replicas"), std::string::npos) << detail;
  EXPECT_NE(detail.find("telemetry ["), std::string::npos) << "names the partition: " << detail;
  s = vane.metrics();
  EXPECT_EQ(s.at("vane_uplink_up"), 0);
  EXPECT_EQ(s.at(R"(vane_uplink_state{state="refused"})"), 1);
  EXPECT_EQ(s.at(R"(vane_uplink_state{state="up"})"), 0);
  EXPECT_EQ(s.at(R"(vane_uplink_reason{reason="not_enough_replicas"})"), 1);
  EXPECT_EQ(s.at(R"(vane_uplink_reason{reason="none"})"), 0);
  EXPECT_GT(s.at(R"(vane_kafka_refusals_total{reason="not_enough_replicas"})"), 0);

  // Rows stay buffered: they keep coming, none leave.
  const double delivered_refused = s.at("vane_kafka_delivered_total");
  const double rows_refused = s.at("vane_buffer_rows");
  ASSERT_TRUE(wait_until([&] {
    s = vane.metrics();
    return s.count("vane_buffer_rows") && s.at("vane_buffer_rows") > rows_refused + 600;
  }, 30s)) << "rows " << rows_refused << " -> " << s["vane_buffer_rows"];
  EXPECT_EQ(s.at("vane_kafka_delivered_total"), delivered_refused) << "nothing was taken";
  EXPECT_EQ(s.at(R"(vane_uplink_state{state="refused"})"), 1);
  EXPECT_GT(s.at(R"(vane_kafka_refusals_total{reason="not_enough_replicas"})"), 10) << "retried, and counted";
  h = vane.health();
  EXPECT_EQ(h.first, 200);
  EXPECT_GT(uplink().value("since_s", 0.0), 0);
  EXPECT_EQ(occurrences(vane.log(), "kafka: uplink refused (NOT_ENOUGH_REPLICAS)"), 1u)
      << "one line per episode\n" << vane.log();

  // The topic accepts again: everything drains and the uplink is up.
  const double buffered_rows = s.at("vane_buffer_rows");
  const auto accepts_at = Clock::now();
  kafka->set_topic_configs("telemetry", {{"min.insync.replicas", "1"}});
  ASSERT_TRUE(wait_until([&] {
    h = vane.health();
    return uplink().value("state", "") == "up" && h.second["buffer"].value("rows", 1e9) < 100;
  }, 90s, 200ms)) << h.second.dump() << "\n" << vane.log();
  const double drained_s = seconds_since(accepts_at);
  EXPECT_TRUE(uplink()["reason"].is_null());
  s = vane.metrics();
  EXPECT_EQ(s.at("vane_uplink_up"), 1);
  EXPECT_EQ(s.at(R"(vane_uplink_reason{reason="none"})"), 1);
  const std::string log = vane.log();
  EXPECT_EQ(occurrences(log, "kafka: uplink refused (NOT_ENOUGH_REPLICAS)"), 1u) << log;
  const auto back = log.find("kafka: delivering again after ");
  ASSERT_NE(back, std::string::npos) << log;
  const std::string back_line = log.substr(back, log.find('\n', back) - back);
  EXPECT_NE(back_line.find("NOT_ENOUGH_REPLICAS"), std::string::npos) << back_line;
  EXPECT_EQ(occurrences(log, "kafka: delivering again after "), 1u) << log;
  EXPECT_EQ(occurrences(log, "Not enough in-sync replicas"), 1u) << "the broker's words, once\n" << log;

  // Every seq is in Kafka exactly once, or still in the buffer.
  ASSERT_TRUE(vane.stop()) << vane.log();
  const long accepted = buffer_stat(buffer, "next seq:") - 1;
  const long left = buffer_rows(buffer);
  ASSERT_GT(accepted, 0);
  ASSERT_GE(left, 0);
  KafkaReader reader(kafka->bootstrap());
  const auto got = reader.read_until({"telemetry", "telemetry.dlq"}, static_cast<std::size_t>(accepted - left),
                                     deadline_in(60s));
  const SeqCheck c = check_seqs(got);
  EXPECT_EQ(c.duplicates, 0u);
  EXPECT_EQ(static_cast<long>(c.distinct), accepted - left) << "left in the buffer: " << left;
  EXPECT_LE(c.max, static_cast<std::uint64_t>(accepted));
  std::printf("uplink state: cluster up in %.1f s; refused (NOT_ENOUGH_REPLICAS) named %.1f s after min.insync.replicas "
              "3; %.0f rows buffered, drained %.1f s after min.insync.replicas 1; %ld accepted, %zu in Kafka, %ld left, "
              "%zu duplicates; test %.0f s\n  %s\n",
              cluster_s, named_after_s, buffered_rows, drained_s, accepted, c.distinct, left, c.duplicates,
              seconds_since(t0), back_line.c_str());
}

}  // namespace
}  // namespace vane::test
