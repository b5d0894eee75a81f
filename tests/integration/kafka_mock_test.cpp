// The test support itself, and what the other integration tests may rely on
// from it: vane-kafka-mock in its own process takes an idempotent acks=all
// producer; KafkaReader reads every message back once with key, timestamp
// and headers; an outage ("down all" ... "up all") delays messages without
// losing any, and without duplicating any unless requests were in flight
// when it began (see OutageWithRequestsInFlightLosesNothing). Also
// ChildProcess and wait_until basics.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "support/kafka_reader.h"
#include "support/process.h"
#include "support/rdkafka_ptr.h"
#include "support/wait.h"

namespace vane::test {
namespace {

using namespace std::chrono_literals;

constexpr std::int64_t kBaseTs = 1'700'000'000'000;  // fixed, so the test can check it came through
const std::string kBinary("a\0b\xff", 4);

std::string key_of(int seq) { return "dev-" + std::to_string(seq % 7); }
std::string value_of(int seq) { return "value-" + std::to_string(seq); }

// An idempotent acks=all producer that remembers the delivery report of each
// message by its sequence number and every error librdkafka raised.
class TestProducer {
 public:
  explicit TestProducer(const std::string& bootstrap, const std::map<std::string, std::string>& extra = {}) {
    RdKafkaConfPtr conf(rd_kafka_conf_new());
    std::map<std::string, std::string> settings{
        {"bootstrap.servers", bootstrap},
        {"enable.idempotence", "true"},
        {"acks", "all"},
        {"linger.ms", "5"},
        // Long enough that nothing expires during the outages below.
        {"message.timeout.ms", "120000"},
        {"reconnect.backoff.ms", "100"},
        {"reconnect.backoff.max.ms", "1000"},
    };
    for (const auto& [k, v] : extra) settings[k] = v;
    char err[512];
    for (const auto& [k, v] : settings)
      if (rd_kafka_conf_set(conf.get(), k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK)
        throw std::runtime_error(k + ": " + err);
    rd_kafka_conf_set_opaque(conf.get(), this);
    rd_kafka_conf_set_dr_msg_cb(conf.get(), [](rd_kafka_t*, const rd_kafka_message_t* m, void* self) {
      static_cast<TestProducer*>(self)->on_report(m);
    });
    rd_kafka_conf_set_error_cb(conf.get(), [](rd_kafka_t*, int e, const char* reason, void* self) {
      static_cast<TestProducer*>(self)->on_error(static_cast<rd_kafka_resp_err_t>(e), reason);
    });
    // Logs come from librdkafka's threads; kept for failure messages.
    rd_kafka_conf_set_log_cb(conf.get(), [](const rd_kafka_t* rk, int, const char* fac, const char* buf) {
      static_cast<TestProducer*>(rd_kafka_opaque(rk))->on_log(fac, buf);
    });
    rk_.reset(rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), err, sizeof err));
    if (!rk_) throw std::runtime_error(err);
    conf.release();
  }
  ~TestProducer() {
    // Whatever is still queued is not this test's concern any more.
    if (rk_) rd_kafka_purge(rk_.get(), RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
  }

  // Produces seq first..last-1 to `topic`.
  void produce(const std::string& topic, int first, int last) {
    for (int seq = first; seq < last; ++seq) {
      const std::string key = key_of(seq), value = value_of(seq), s = std::to_string(seq);
      RdKafkaHeadersPtr hdrs(rd_kafka_headers_new(3));
      rd_kafka_header_add(hdrs.get(), "vane-seq", -1, s.data(), static_cast<ssize_t>(s.size()));
      rd_kafka_header_add(hdrs.get(), "source", -1, "kafka_mock_test", -1);
      rd_kafka_header_add(hdrs.get(), "bin", -1, kBinary.data(), static_cast<ssize_t>(kBinary.size()));
      rd_kafka_vu_t vu[7];
      vu[0].vtype = RD_KAFKA_VTYPE_TOPIC;
      vu[0].u.cstr = topic.c_str();
      vu[1].vtype = RD_KAFKA_VTYPE_KEY;
      vu[1].u.mem = {const_cast<char*>(key.data()), key.size()};
      vu[2].vtype = RD_KAFKA_VTYPE_VALUE;
      vu[2].u.mem = {const_cast<char*>(value.data()), value.size()};
      vu[3].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
      vu[3].u.i = RD_KAFKA_MSG_F_COPY;
      vu[4].vtype = RD_KAFKA_VTYPE_TIMESTAMP;
      vu[4].u.i64 = kBaseTs + seq;
      vu[5].vtype = RD_KAFKA_VTYPE_HEADERS;
      vu[5].u.headers = hdrs.get();
      vu[6].vtype = RD_KAFKA_VTYPE_OPAQUE;
      vu[6].u.ptr = reinterpret_cast<void*>(static_cast<std::intptr_t>(seq));
      std::unique_ptr<rd_kafka_error_t, void (*)(rd_kafka_error_t*)> e(rd_kafka_produceva(rk_.get(), vu, 7),
                                                                      rd_kafka_error_destroy);
      if (e) throw std::runtime_error("produce " + s + ": " + rd_kafka_error_string(e.get()));
      hdrs.release();  // the message owns them now
    }
    rd_kafka_poll(rk_.get(), 0);
  }

  // Serves delivery reports and errors until pred() holds or the deadline.
  template <class Pred>
  bool serve_until(Pred pred, Deadline deadline) {
    while (!pred()) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) return false;
      rd_kafka_poll(rk_.get(), static_cast<int>(std::min<long long>(left, 50)));
    }
    return true;
  }
  void serve() { rd_kafka_poll(rk_.get(), 0); }

  std::size_t delivered_ok(int first, int last) const {
    std::size_t n = 0;
    for (int s = first; s < last; ++s) {
      auto it = reports_.find(s);
      n += it != reports_.end() && it->second == RD_KAFKA_RESP_ERR_NO_ERROR;
    }
    return n;
  }
  std::size_t reported(int first, int last) const {
    std::size_t n = 0;
    for (int s = first; s < last; ++s) n += reports_.count(s);
    return n;
  }
  std::size_t duplicate_reports() const { return duplicate_reports_; }
  int out_queue() const { return rd_kafka_outq_len(rk_.get()); }
  std::string fatal_error() const {
    char buf[512];
    return rd_kafka_fatal_error(rk_.get(), buf, sizeof buf) ? buf : "";
  }
  const std::vector<std::string>& errors() const { return errors_; }
  std::string diagnostics() const {
    std::string out = "producer errors:\n";
    for (const auto& e : errors_) out += "  " + e + "\n";
    std::lock_guard<std::mutex> lock(log_mu_);
    out += "producer log:\n";
    for (const auto& l : log_) out += "  " + l + "\n";
    return out;
  }
  rd_kafka_t* get() const { return rk_.get(); }

 private:
  void on_report(const rd_kafka_message_t* m) {
    const int seq = static_cast<int>(reinterpret_cast<std::intptr_t>(m->_private));
    if (!reports_.emplace(seq, m->err).second) ++duplicate_reports_;
  }
  void on_error(rd_kafka_resp_err_t e, const char* reason) {
    errors_.push_back(std::string(rd_kafka_err2name(e)) + ": " + reason);
  }
  void on_log(const char* fac, const char* buf) {
    std::lock_guard<std::mutex> lock(log_mu_);
    if (log_.size() < 200) log_.push_back(std::string(fac) + ": " + buf);
  }

  RdKafkaPtr rk_;
  std::map<int, rd_kafka_resp_err_t> reports_;
  std::size_t duplicate_reports_ = 0;
  std::vector<std::string> errors_;
  mutable std::mutex log_mu_;
  std::vector<std::string> log_;
};

int seq_of(const ConsumedMessage& m) {
  auto it = m.headers.find("vane-seq");
  return it == m.headers.end() ? -1 : std::stoi(it->second);
}

// Every seq in [0, n) exactly once, with the key, value, timestamp and
// headers it was produced with; per partition offsets 0.. without gaps; per
// key one partition and seq increasing with offset.
void expect_exactly(const std::vector<ConsumedMessage>& msgs, int n) {
  EXPECT_EQ(msgs.size(), static_cast<std::size_t>(n));
  std::map<int, int> count;
  std::map<std::string, int32_t> partition_of_key;
  std::map<std::string, std::pair<std::int64_t, int>> last_of_key;  // offset, seq
  std::map<int32_t, std::vector<std::int64_t>> offsets;
  for (const auto& m : msgs) {
    const int seq = seq_of(m);
    ++count[seq];
    EXPECT_EQ(m.key, key_of(seq));
    EXPECT_EQ(m.value, value_of(seq));
    EXPECT_EQ(m.timestamp_ms, kBaseTs + seq);
    EXPECT_EQ(m.headers.size(), 3u);
    EXPECT_EQ(m.headers.count("source") ? m.headers.at("source") : "", "kafka_mock_test");
    EXPECT_EQ(m.headers.count("bin") ? m.headers.at("bin") : "", kBinary);
    auto [it, fresh] = partition_of_key.emplace(m.key, m.partition);
    EXPECT_EQ(it->second, m.partition) << "key " << m.key << " in two partitions";
    auto& last = last_of_key[m.key];
    if (!fresh) {
      EXPECT_GT(m.offset, last.first);
      EXPECT_GT(seq, last.second) << "key " << m.key << " out of order";
    }
    last = {m.offset, seq};
    offsets[m.partition].push_back(m.offset);
  }
  std::size_t missing = 0, duplicated = 0;
  for (int s = 0; s < n; ++s) {
    const int c = count.count(s) ? count[s] : 0;
    missing += c == 0;
    duplicated += c > 1;
  }
  EXPECT_EQ(missing, 0u);
  EXPECT_EQ(duplicated, 0u);
  EXPECT_EQ(count.count(-1), 0u) << "messages without vane-seq";
  for (auto& [p, offs] : offsets) {
    std::sort(offs.begin(), offs.end());
    for (std::size_t i = 0; i < offs.size(); ++i) {
      EXPECT_EQ(offs[i], static_cast<std::int64_t>(i)) << "partition " << p;
      if (offs[i] != static_cast<std::int64_t>(i)) break;
    }
  }
}

long long ms_since(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

TEST(KafkaMock, IdempotentProducerSurvivesOutageWithoutLossOrDuplicates) {
  MockKafka kafka;
  const std::string bootstrap = kafka.start(1, {"telemetry:3", "telemetry.dlq:1"});
  ASSERT_FALSE(bootstrap.empty()) << kafka.last_error();
  TestProducer producer(bootstrap);
  KafkaReader reader(bootstrap);

  producer.produce("telemetry", 0, 1000);
  ASSERT_TRUE(producer.serve_until([&] { return producer.reported(0, 1000) == 1000; }, deadline_in(30s)))
      << producer.diagnostics();
  ASSERT_EQ(producer.delivered_ok(0, 1000), 1000u) << producer.diagnostics();
  auto msgs = reader.read_until({"telemetry"}, 1000, deadline_in(30s));
  expect_exactly(msgs, 1000);

  // Outage: the broker drops its connections and refuses new ones.
  ASSERT_TRUE(kafka.down("all")) << kafka.last_error();
  const auto down_at = Clock::now();
  producer.produce("telemetry", 1000, 1500);
  const auto quiet_until = deadline_in(1500ms);
  while (Clock::now() < quiet_until) {
    msgs = reader.read_until({"telemetry"}, 1001, std::min(quiet_until, deadline_in(100ms)));
    producer.serve();
  }
  EXPECT_EQ(msgs.size(), 1000u) << "messages landed while the broker was down";
  EXPECT_EQ(producer.delivered_ok(1000, 1500), 0u);
  EXPECT_EQ(producer.reported(1000, 1500), 0u) << "reports during the outage (message.timeout.ms is 120 s)";
  EXPECT_GE(producer.out_queue(), 500);  // plus any error events not served yet
  EXPECT_EQ(producer.fatal_error(), "");
  std::printf("[ info     ] during %lld ms down: producer errors:", ms_since(down_at));
  for (const auto& e : producer.errors()) std::printf(" [%s]", e.c_str());
  std::printf("\n");

  ASSERT_TRUE(kafka.up("all")) << kafka.last_error();
  const auto up_at = Clock::now();
  ASSERT_TRUE(producer.serve_until([&] { return producer.reported(1000, 1500) == 500; }, deadline_in(60s)))
      << producer.diagnostics();
  const long long delivered_ms = ms_since(up_at);
  EXPECT_EQ(producer.delivered_ok(1000, 1500), 500u) << producer.diagnostics();
  EXPECT_EQ(producer.duplicate_reports(), 0u);
  EXPECT_EQ(producer.fatal_error(), "");
  msgs = reader.read_until({"telemetry"}, 1500, deadline_in(60s));
  std::printf("[ info     ] after up: all delivered in %lld ms, all read back in %lld ms\n", delivered_ms,
              ms_since(up_at));
  // Nothing more trickles in.
  msgs = reader.read_until({"telemetry"}, 1501, deadline_in(1s));
  expect_exactly(msgs, 1500);
  // The other topic stayed empty.
  EXPECT_TRUE(reader.read_until({"telemetry.dlq"}, 1, deadline_in(1s)).empty());
}

// Down while produce requests are in flight (responses delayed by rtt): the
// broker appended batches whose responses never arrived, and the producer
// retries them after up. librdkafka's mock (2.0.2) checks producer sequence
// numbers only for transactional producers, so those retries are appended a
// second time: through the mock an idempotent producer is at-least-once, not
// exactly-once, when a broker goes down with requests in flight (a real
// broker would drop the retried duplicates). Nothing may be lost, though, and
// the producer must neither fail nor raise a fatal error.
TEST(KafkaMock, OutageWithRequestsInFlightLosesNothing) {
  MockKafka kafka;
  const std::string bootstrap = kafka.start(1, {"telemetry:3"});
  ASSERT_FALSE(bootstrap.empty()) << kafka.last_error();
  TestProducer producer(bootstrap, {{"batch.num.messages", "20"}, {"linger.ms", "0"}});
  KafkaReader reader(bootstrap);
  constexpr int kN = 3000;

  ASSERT_TRUE(kafka.rtt("all", 100)) << kafka.last_error();
  producer.produce("telemetry", 0, kN);
  ASSERT_TRUE(producer.serve_until([&] { return producer.delivered_ok(0, kN) >= 100; }, deadline_in(30s)))
      << producer.diagnostics();
  ASSERT_TRUE(kafka.down("all")) << kafka.last_error();
  const std::size_t acked_before_down = producer.delivered_ok(0, kN);
  // Wait until the producer noticed, then end the outage.
  ASSERT_TRUE(producer.serve_until([&] { return !producer.errors().empty(); }, deadline_in(10s)))
      << producer.diagnostics();
  ASSERT_TRUE(kafka.rtt("all", 0)) << kafka.last_error();
  ASSERT_TRUE(kafka.up("all")) << kafka.last_error();
  ASSERT_TRUE(producer.serve_until([&] { return producer.reported(0, kN) == kN; }, deadline_in(60s)))
      << producer.diagnostics();
  EXPECT_EQ(producer.delivered_ok(0, kN), static_cast<std::size_t>(kN)) << producer.diagnostics();
  EXPECT_EQ(producer.duplicate_reports(), 0u);
  EXPECT_EQ(producer.fatal_error(), "");

  // Every seq at least once; copies only of whole retried batches.
  auto msgs = reader.read_until(
      {"telemetry"},
      [&](const std::vector<ConsumedMessage>& all) {
        std::set<int> seqs;
        for (const auto& m : all) seqs.insert(seq_of(m));
        return seqs.size() == static_cast<std::size_t>(kN);
      },
      deadline_in(60s));
  msgs = reader.read_until({"telemetry"}, msgs.size() + 1, deadline_in(1s));  // and whatever else is there
  std::map<int, int> count;
  for (const auto& m : msgs) {
    ++count[seq_of(m)];
    EXPECT_EQ(m.value, value_of(seq_of(m)));
  }
  EXPECT_EQ(count.size(), static_cast<std::size_t>(kN));
  EXPECT_EQ(count.count(-1), 0u);
  std::size_t copies = 0;
  for (const auto& [seq, c] : count) {
    EXPECT_LE(c, 2) << "seq " << seq;
    copies += static_cast<std::size_t>(c - 1);
  }
  std::printf("[ info     ] acked before down: %zu of %d; duplicates in the log: %zu\n", acked_before_down, kN,
              copies);
}

// Three brokers, one down: partitions it leads stall (leadership does not
// move), the others keep taking messages; after up, everything lands once.
// Then leadership moves and the producer follows it.
TEST(KafkaMock, OneOfThreeBrokersDownStallsOnlyItsPartitions) {
  MockKafka kafka;
  const std::string bootstrap = kafka.start(3, {"telemetry:3"});
  ASSERT_FALSE(bootstrap.empty()) << kafka.last_error();
  TestProducer producer(bootstrap);
  KafkaReader reader(bootstrap);

  // The helper makes broker P % N + 1 lead partition P.
  {
    const rd_kafka_metadata_t* raw = nullptr;
    std::unique_ptr<rd_kafka_topic_t, void (*)(rd_kafka_topic_t*)> rkt(
        rd_kafka_topic_new(producer.get(), "telemetry", nullptr), rd_kafka_topic_destroy);
    ASSERT_EQ(rd_kafka_metadata(producer.get(), 0, rkt.get(), &raw, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    RdKafkaMetadataPtr md(raw);
    ASSERT_EQ(md->broker_cnt, 3);
    ASSERT_EQ(md->topic_cnt, 1);
    ASSERT_EQ(md->topics[0].partition_cnt, 3);
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(md->topics[0].partitions[i].leader, md->topics[0].partitions[i].id + 1);
      EXPECT_EQ(md->topics[0].partitions[i].replica_cnt, 3);
    }
  }
  auto leader = [](int32_t partition) { return partition + 1; };

  producer.produce("telemetry", 0, 300);
  ASSERT_TRUE(producer.serve_until([&] { return producer.reported(0, 300) == 300; }, deadline_in(30s)));
  ASSERT_EQ(reader.read_until({"telemetry"}, 300, deadline_in(30s)).size(), 300u);

  // Where each key went while all brokers were up; the victim leads one of
  // the partitions in use, and not all of them.
  std::map<std::string, int32_t> partition_of_key;
  std::map<int32_t, std::size_t> before;
  for (const auto& m : reader.seen()) {
    partition_of_key[m.key] = m.partition;
    ++before[m.partition];
  }
  ASSERT_GE(before.size(), 2u) << "all keys in one partition";
  const int32_t victim = leader(before.begin()->first);
  std::size_t expected_elsewhere = 0;
  for (int seq = 300; seq < 600; ++seq) expected_elsewhere += leader(partition_of_key.at(key_of(seq))) != victim;

  ASSERT_TRUE(kafka.down(victim)) << kafka.last_error();
  producer.produce("telemetry", 300, 600);
  // Partitions led by the others take their share; the victim's stay where
  // they were.
  auto grown = [&](const std::vector<ConsumedMessage>& all, bool on_victim) {
    std::map<int32_t, std::size_t> now;
    for (const auto& m : all) ++now[m.partition];
    std::size_t n = 0;
    for (const auto& [p, c] : now)
      if ((leader(p) == victim) == on_victim) n += c - before[p];
    return n;
  };
  auto msgs = reader.read_until(
      {"telemetry"},
      [&](const std::vector<ConsumedMessage>& all) {
        producer.serve();
        return grown(all, false) == expected_elsewhere && producer.reported(300, 600) >= expected_elsewhere;
      },
      deadline_in(30s));
  EXPECT_EQ(grown(msgs, false), expected_elsewhere) << producer.diagnostics();
  EXPECT_EQ(grown(msgs, true), 0u) << "broker " << victim << " took messages while down";
  EXPECT_EQ(producer.reported(300, 600), expected_elsewhere);
  EXPECT_EQ(producer.delivered_ok(300, 600), expected_elsewhere);
  std::printf("[ info     ] broker %d down: %zu of 300 went to the other brokers' partitions\n", victim,
              expected_elsewhere);

  ASSERT_TRUE(kafka.up(victim)) << kafka.last_error();
  ASSERT_TRUE(producer.serve_until([&] { return producer.reported(300, 600) == 300; }, deadline_in(60s)))
      << producer.diagnostics();
  EXPECT_EQ(producer.delivered_ok(0, 600), 600u) << producer.diagnostics();

  // Leadership of every partition moves to the next broker.
  for (int32_t p = 0; p < 3; ++p)
    ASSERT_TRUE(kafka.leader("telemetry", p, (p + 1) % 3 + 1)) << kafka.last_error();
  producer.produce("telemetry", 600, 900);
  ASSERT_TRUE(producer.serve_until([&] { return producer.reported(600, 900) == 300; }, deadline_in(60s)))
      << producer.diagnostics();
  EXPECT_EQ(producer.delivered_ok(600, 900), 300u) << producer.diagnostics();
  EXPECT_EQ(producer.fatal_error(), "");

  reader.read_until({"telemetry"}, 900, deadline_in(60s));
  expect_exactly(reader.read_until({"telemetry"}, 901, deadline_in(1s)), 900);
}

TEST(KafkaMockHelper, ExitsWhenStdinCloses) {
  ChildProcess p({kafka_mock_path()});
  auto line = p.read_line(deadline_in(20s));
  ASSERT_TRUE(line.has_value());
  EXPECT_EQ(line->rfind("BOOTSTRAP 127.0.0.1:", 0), 0u) << *line;
  p.close_stdin();
  EXPECT_EQ(p.wait_exit(deadline_in(10s)), std::optional<int>(0));
}

TEST(KafkaMockHelper, ExitsOnSigterm) {
  ChildProcess p({kafka_mock_path(), "--brokers", "2"});
  auto line = p.read_line(deadline_in(20s));
  ASSERT_TRUE(line.has_value());
  EXPECT_NE(line->find(','), std::string::npos) << "two brokers: " << *line;
  ASSERT_TRUE(p.send_signal(SIGTERM));
  EXPECT_EQ(p.wait_exit(deadline_in(10s)), std::optional<int>(0));
}

TEST(KafkaMockHelper, AnswersEveryCommand) {
  TempDir dir;
  ChildProcess p({kafka_mock_path(), "--brokers", "3", "--topic", "a:2", "--topic", "b:1"}, dir.file("stderr"));
  ASSERT_TRUE(p.read_line(deadline_in(20s)).has_value()) << p.captured_stderr();
  const std::vector<std::pair<std::string, std::string>> dialogue{
      {"down 2", "OK down 2"},       {"up 2", "OK up 2"},           {"down all", "OK down all"},
      {"up", "OK up"},               {"rtt 1 50", "OK rtt 1 50"},   {"rtt all 0", "OK rtt all 0"},
      {"leader a 1 3", "OK leader a 1 3"}, {"leader a 0 none", "OK leader a 0 none"},
      {"leader a 2 1", "ERR "},      {"leader c 0 1", "ERR "},
      {"down 4", "ERR "},            {"down x", "ERR "},            {"rtt 1", "ERR "},
      {"frobnicate", "ERR "},        {"quit", "OK quit"},
  };
  for (const auto& [cmd, want] : dialogue) {
    ASSERT_TRUE(p.write_line(cmd));
    auto reply = p.read_line(deadline_in(10s));
    ASSERT_TRUE(reply.has_value()) << cmd;
    EXPECT_EQ(reply->rfind(want, 0), 0u) << cmd << " -> " << *reply;
  }
  EXPECT_EQ(p.wait_exit(deadline_in(10s)), std::optional<int>(0));
  EXPECT_FALSE(p.write_line("up")) << "stdin of an exited child";
}

TEST(KafkaMockHelper, RejectsBadArguments) {
  TempDir dir;
  ChildProcess p({kafka_mock_path(), "--topic", "a:0"}, dir.file("stderr"));
  EXPECT_EQ(p.wait_exit(deadline_in(10s)), std::optional<int>(2));
  EXPECT_NE(p.captured_stderr().find("usage:"), std::string::npos) << p.captured_stderr();
  EXPECT_FALSE(p.read_line(deadline_in(1s)).has_value());
}

TEST(ChildProcess, ExitCodeStdoutAndStderr) {
  TempDir dir;
  ChildProcess p({"/bin/sh", "-c", "read x; echo \"got $x\"; printf tail; echo oops >&2; exit 3"}, dir.file("err"));
  ASSERT_TRUE(p.write_line("hello"));
  EXPECT_EQ(p.read_line(deadline_in(10s)), std::optional<std::string>("got hello"));
  EXPECT_EQ(p.read_line(deadline_in(10s)), std::optional<std::string>("tail"));
  EXPECT_EQ(p.read_line(deadline_in(10s)), std::nullopt);
  EXPECT_TRUE(p.stdout_closed());
  EXPECT_EQ(p.wait_exit(deadline_in(10s)), std::optional<int>(3));
  EXPECT_EQ(p.captured_stderr(), "oops\n");
}

TEST(ChildProcess, SignalDeadlineAndMissingProgram) {
  ChildProcess p({"/bin/sh", "-c", "read x"});
  EXPECT_EQ(p.read_line(deadline_in(200ms)), std::nullopt);  // nothing written: deadline
  EXPECT_EQ(p.wait_exit(deadline_in(200ms)), std::nullopt);
  EXPECT_TRUE(p.running());
  ASSERT_TRUE(p.send_signal(SIGTERM));
  EXPECT_EQ(p.wait_exit(deadline_in(10s)), std::optional<int>(128 + SIGTERM));
  EXPECT_FALSE(p.send_signal(SIGTERM));
  EXPECT_THROW(ChildProcess({"/nonexistent/vane-no-such-program"}), std::system_error);
}

TEST(Wait, WaitUntilRechecksUntilTheDeadline) {
  int calls = 0;
  const auto t0 = Clock::now();
  EXPECT_FALSE(wait_until([&] { return ++calls < 0; }, 100ms, 10ms));
  EXPECT_GE(Clock::now() - t0, 100ms);
  EXPECT_GE(calls, 3);
  calls = 0;
  EXPECT_TRUE(wait_until([&] { return ++calls == 3; }, 10s, 1ms));
  std::string path;
  {
    TempDir d;
    path = d.path();
    std::ofstream(d.file("x")) << "x";
    EXPECT_TRUE(std::filesystem::exists(d.file("x")));
  }
  EXPECT_FALSE(std::filesystem::exists(path));
}

}  // namespace
}  // namespace vane::test
