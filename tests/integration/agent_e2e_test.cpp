// The real vane binary, simulator → schema → buffer → Apache Kafka (one
// KRaft node, a JVM of its own; support/kafka_cluster.h), read back with a
// read_committed librdkafka consumer and counted by vane-seq. The broker is
// real, so an idempotent producer's retried batches are deduplicated by it:
// an outage without a vane crash must land every reading exactly once.
#include <time.h>

#include <cstdio>

#include <nlohmann/json.hpp>

#include "agent_test_util.h"
#include "schema.h"

namespace vane::test {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

// "2024-05-01T12:00:00.123456Z" (the payload's timestamp) in microseconds
// since the epoch; -1 if it is not in that form.
std::int64_t iso_to_us(const std::string& s) {
  struct tm tm = {};
  int frac_len = 0;
  long long frac = 0;
  char z = 0;
  if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d.%lld%n%c", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                  &tm.tm_min, &tm.tm_sec, &frac, &frac_len, &z) != 8 ||
      z != 'Z' || frac_len != 26)
    return -1;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return static_cast<std::int64_t>(timegm(&tm)) * 1000000 + frac;
}

// Per key (device): one partition, and the first copy of each vane-seq in
// increasing order with the offset (copies of a seq already seen are
// duplicates, counted by check_seqs). Returns how many messages break that;
// names the first in *first.
std::size_t key_order_violations(const std::vector<ConsumedMessage>& msgs, std::string* first) {
  std::map<std::string, std::pair<int, std::uint64_t>> last;  // key -> partition, seq
  std::set<std::uint64_t> seen;
  std::size_t bad = 0;
  for (const auto& m : msgs) {
    if (!seen.insert(seq_of(m)).second) continue;
    auto [it, fresh] = last.try_emplace(m.key, m.partition, 0);
    if (it->second.first != m.partition || seq_of(m) <= it->second.second) {
      if (bad++ == 0 && first)
        *first = m.key + ": seq " + std::to_string(seq_of(m)) + " on partition " + std::to_string(m.partition) +
                 " after seq " + std::to_string(it->second.second) + " on partition " +
                 std::to_string(it->second.first);
    }
    it->second = {m.partition, std::max(it->second.second, seq_of(m))};
  }
  return bad;
}

class AgentE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    buffer_ = dir_.path() + "/buffer.db";
    config_ = dir_.path() + "/vane.jsonc";
  }

  // The broker, with telemetry (3 partitions) and telemetry.dlq (1) created
  // before vane starts. Call as ASSERT_NO_FATAL_FAILURE(start_broker()).
  void start_broker() {
    kafka_ = start_kafka();
    ASSERT_TRUE(kafka_);
    bootstrap_ = kafka_->bootstrap();
  }

  std::unique_ptr<ChildProcess> start_vane(const std::string& sim_knobs, const std::string& buffer_extra = "",
                                          const std::string& kafka_extra = "") {
    write_file(config_, sim_config(buffer_, bootstrap_, sim_knobs, buffer_extra, kafka_extra));
    return std::make_unique<ChildProcess>(std::vector<std::string>{vane_bin(), "run", "-c", config_},
                                          dir_.path() + "/vane.stderr");
  }

  static void stop_vane(ChildProcess& p) {
    p.send_signal(SIGTERM);
    auto rc = p.wait_exit(std::chrono::steady_clock::now() + 20s);
    ASSERT_TRUE(rc.has_value()) << "vane did not exit after SIGTERM";
    EXPECT_EQ(*rc, 0) << p.captured_stderr();
  }

  TempDir dir_;
  std::unique_ptr<KafkaCluster> kafka_;
  std::string bootstrap_, buffer_, config_;
};

TEST_F(AgentE2E, EveryReadingLandsOnceInOrderWithHeaders) {
  ASSERT_NO_FATAL_FAILURE(start_broker());
  constexpr std::size_t kN = 5000;
  auto vane = start_vane(R"("devices": 10, "rate": 2500, "limit": 5000)");
  KafkaReader reader(bootstrap_);
  auto msgs = reader.read_until({"telemetry"}, kN, std::chrono::steady_clock::now() + 60s);
  ASSERT_EQ(msgs.size(), kN) << vane->captured_stderr();

  const SeqCheck c = check_seqs(msgs);
  EXPECT_EQ(c.distinct, kN);
  EXPECT_EQ(c.duplicates, 0u);
  EXPECT_EQ(c.missing, 0u);
  EXPECT_EQ(c.max, kN);

  // Per key: one partition, seq increasing with offset.
  std::map<std::string, std::pair<int, std::uint64_t>> last;  // key -> partition, seq
  std::set<std::string> devices;
  std::set<int> partitions;
  for (const auto& m : msgs) {
    devices.insert(m.key);
    partitions.insert(m.partition);
    auto [it, fresh] = last.try_emplace(m.key, m.partition, 0);
    EXPECT_EQ(it->second.first, m.partition) << m.key << " moved partitions";
    EXPECT_GT(seq_of(m), it->second.second) << m.key << " out of order";
    it->second.second = seq_of(m);

    EXPECT_EQ(m.headers.at("vane-gateway"), "gw-test");
    EXPECT_EQ(m.headers.at("vane-source"), "sim");
    EXPECT_EQ(m.headers.at("vane-schema"), "turbine");
    EXPECT_EQ(m.headers.count("vane-seq"), 1u);
    EXPECT_EQ(m.headers.count("vane-error"), 0u);

    const json v = json::parse(m.value);
    EXPECT_EQ(v["turbine_id"], m.key);
    ASSERT_TRUE(v["timestamp"].is_string());
    EXPECT_TRUE(is_rfc3339_date_time(v["timestamp"].get<std::string>()));
    // The message timestamp (CreateTime, as the broker stored it) is the
    // reading's time, to the millisecond.
    const std::int64_t us = iso_to_us(v["timestamp"].get<std::string>());
    ASSERT_GT(us, 0) << v["timestamp"];
    EXPECT_EQ(m.timestamp_ms, us / 1000) << v["timestamp"] << " seq " << seq_of(m);
    for (const char* f : {"wind_speed", "pitch_angle", "power_output", "temperature", "vibration"})
      EXPECT_TRUE(v[f].is_number()) << f << " in " << m.value;
    EXPECT_EQ(v.size(), 7u) << m.value;
    EXPECT_GE(v["power_output"].get<double>(), 0.0);
    EXPECT_LE(v["power_output"].get<double>(), 5000.0);
  }
  EXPECT_EQ(devices.size(), 10u);
  EXPECT_EQ(partitions.size(), 3u) << "10 devices over the 3 partitions the topic was created with";

  EXPECT_TRUE(wait_until([&] { return buffer_rows(buffer_) == 0; }, 20s)) << "buffer did not drain";
  stop_vane(*vane);
  EXPECT_EQ(buffer_rows(buffer_), 0);
  // Nothing more arrives after the stop: exactly kN.
  EXPECT_EQ(reader.read_until({"telemetry"}, kN + 1, std::chrono::steady_clock::now() + 1s).size(), kN);
}

TEST_F(AgentE2E, BrokerKilledAndRestartedLosesNothingAndDuplicatesNothing) {
  ASSERT_NO_FATAL_FAILURE(start_broker());
  constexpr std::size_t kN = 8000;
  auto vane = start_vane(R"("devices": 8, "rate": 1000, "limit": 8000)");
  KafkaReader reader(bootstrap_);
  ASSERT_GE(reader.read_until({"telemetry"}, 1000, std::chrono::steady_clock::now() + 30s).size(), 1000u)
      << vane->captured_stderr();

  // SIGKILL with produce requests in flight: the broker never answers them.
  const auto down_at = std::chrono::steady_clock::now();
  kafka_->kill(1);
  // Readings keep being accepted and buffered while the broker is down.
  EXPECT_TRUE(wait_until([&] { return buffer_rows(buffer_) >= 2000; }, 30s)) << "buffer did not grow";
  const std::size_t during = reader.read_until({"telemetry"}, kN, std::chrono::steady_clock::now() + 500ms).size();
  EXPECT_LT(during, kN);
  EXPECT_TRUE(vane->running()) << vane->captured_stderr();

  // Same ports and data: the broker recovers its log and the producer state
  // (ids, sequence numbers), so the client's retries of the batches that
  // were in flight are recognised and not appended twice.
  kafka_->start(1);
  const auto up_at = std::chrono::steady_clock::now();
  std::vector<ConsumedMessage> msgs;
  ASSERT_TRUE(wait_until(
      [&] {
        msgs = reader.read_until({"telemetry"}, kN + 100000, std::chrono::steady_clock::now() + 200ms);
        return check_seqs(msgs).distinct >= kN;
      },
      90s))
      << check_seqs(msgs).distinct << " of " << kN << "\n" << vane->captured_stderr();
  const auto drained_at = std::chrono::steady_clock::now();
  EXPECT_TRUE(wait_until([&] { return buffer_rows(buffer_) == 0; }, 30s)) << "buffer did not drain";
  stop_vane(*vane);
  // Everything is in now: a late copy would show here.
  msgs = reader.read_until({"telemetry"}, kN + 1, std::chrono::steady_clock::now() + 1s);
  const SeqCheck c = check_seqs(msgs);
  EXPECT_EQ(c.distinct, kN);
  EXPECT_EQ(c.missing, 0u);
  EXPECT_EQ(c.max, kN);
  EXPECT_EQ(c.duplicates, 0u) << "an outage without a vane crash must not land a reading twice";
  EXPECT_EQ(msgs.size(), kN);
  std::string first;
  EXPECT_EQ(key_order_violations(msgs, &first), 0u) << first;
  std::printf("outage: %zu readings, %zu duplicates; broker down %.1f s, all landed %.1f s after it was back\n",
              c.distinct, c.duplicates, std::chrono::duration<double>(up_at - down_at).count(),
              std::chrono::duration<double>(drained_at - up_at).count());
}

TEST_F(AgentE2E, ExactlyTheInvalidReadingsGoToTheDeadLetterTopic) {
  ASSERT_NO_FATAL_FAILURE(start_broker());
  constexpr std::size_t kN = 4000;
  auto vane = start_vane(R"("devices": 5, "rate": 4000, "limit": 4000, "faults": 0.05)");
  KafkaReader reader(bootstrap_);
  std::vector<ConsumedMessage> all;
  ASSERT_TRUE(wait_until(
      [&] {
        all = reader.read_until({"telemetry", "telemetry.dlq"}, kN, std::chrono::steady_clock::now() + 200ms);
        return all.size() >= kN;
      },
      60s))
      << all.size() << " of " << kN << "\n" << vane->captured_stderr();
  stop_vane(*vane);

  // The simulator's own tally, from its summary line at stop.
  const std::string log = vane->captured_stderr();
  const auto at = log.find("source sim: 4000 readings, ");
  ASSERT_NE(at, std::string::npos) << log;
  const std::size_t injected = std::stoul(log.substr(at + std::string("source sim: 4000 readings, ").size()));

  // One seq space over both topics: together gap-free, nothing twice.
  const SeqCheck c = check_seqs(all);
  EXPECT_EQ(c.distinct, kN);
  EXPECT_EQ(c.duplicates, 0u);
  EXPECT_EQ(c.missing, 0u);

  auto schema = CompiledSchema::load("turbine", source_dir() + "/examples/schemas/turbine.schema.json");
  ASSERT_TRUE(schema.is_ok()) << schema.status().message();
  std::size_t dlq = 0, telemetry = 0;
  for (const auto& m : all) {
    std::vector<SchemaViolation> v;
    const bool valid = schema.value()->validate(json::parse(m.value), v);
    if (m.topic == "telemetry") {
      ++telemetry;
      EXPECT_TRUE(valid) << "invalid reading on the telemetry topic: " << m.value << ": " << join_violations(v);
      EXPECT_EQ(m.headers.count("vane-error"), 0u);
      continue;
    }
    ++dlq;
    EXPECT_FALSE(valid) << "valid reading on the dead-letter topic: " << m.value;
    ASSERT_EQ(m.headers.count("vane-error"), 1u);
    const std::string& err = m.headers.at("vane-error");
    EXPECT_EQ(err.front(), '/') << err;  // names the field first
    EXPECT_EQ(m.headers.at("vane-schema"), "turbine");
    EXPECT_EQ(m.headers.at("vane-source"), "sim");
  }
  EXPECT_EQ(dlq, injected);
  EXPECT_EQ(telemetry, kN - injected);
  EXPECT_GT(injected, kN / 40);  // ~5%
  EXPECT_LT(injected, kN / 10);
  std::printf("faults: %zu injected, %zu on the dead-letter topic, %zu on telemetry\n", injected, dlq, telemetry);
}

TEST_F(AgentE2E, SequenceContinuesAcrossRestart) {
  ASSERT_NO_FATAL_FAILURE(start_broker());
  auto vane = start_vane(R"("devices": 4, "rate": 2000, "limit": 1000)");
  KafkaReader reader(bootstrap_);
  ASSERT_EQ(reader.read_until({"telemetry"}, 1000, std::chrono::steady_clock::now() + 30s).size(), 1000u);
  stop_vane(*vane);
  vane = start_vane(R"("devices": 4, "rate": 2000, "limit": 1000)");
  auto msgs = reader.read_until({"telemetry"}, 2000, std::chrono::steady_clock::now() + 30s);
  ASSERT_EQ(msgs.size(), 2000u) << vane->captured_stderr();
  const SeqCheck c = check_seqs(msgs);
  EXPECT_EQ(c.distinct, 2000u);
  EXPECT_EQ(c.max, 2000u);
  EXPECT_EQ(c.duplicates, 0u);
  stop_vane(*vane);
}

TEST_F(AgentE2E, KillNineLosesNothingAndDuplicatesStayWithinTheInFlightWindowAndOneDeleteBatch) {
  ASSERT_NO_FATAL_FAILURE(start_broker());
  constexpr long kWindow = 300;
  const std::string kafka = ", \"max_in_flight\": " + std::to_string(kWindow);
  auto vane = start_vane(R"("devices": 6, "rate": 4000, "limit": 1000000)", "", kafka);
  KafkaReader reader(bootstrap_);
  ASSERT_GE(reader.read_until({"telemetry"}, 3000, std::chrono::steady_clock::now() + 30s).size(), 3000u)
      << vane->captured_stderr();
  vane->send_signal(SIGKILL);
  ASSERT_EQ(vane->wait_exit(std::chrono::steady_clock::now() + 10s), 128 + SIGKILL);

  // Everything committed before the kill has a seq below next_seq.
  const long committed = buffer_stat(buffer_, "next seq:") - 1;
  const long buffered = buffer_rows(buffer_);
  ASSERT_GT(committed, 3000);
  constexpr long kMore = 2000;
  vane = start_vane(R"("devices": 6, "rate": 4000, "limit": 2000)", "", kafka);
  const std::size_t total = static_cast<std::size_t>(committed + kMore);
  // Counted by distinct seq: the resent rows make the message count run ahead
  // of what landed. Then read to the end, for the duplicates behind.
  auto landed = [&](const std::vector<ConsumedMessage>& m) { return check_seqs(m).distinct >= total; };
  std::vector<ConsumedMessage> msgs;
  ASSERT_TRUE(wait_until(
      [&] {
        msgs = reader.read_until({"telemetry"}, landed, std::chrono::steady_clock::now() + 200ms);
        return landed(msgs) && buffer_rows(buffer_) == 0;
      },
      60s))
      << check_seqs(msgs).distinct << " of " << total << " landed (max seq " << check_seqs(msgs).max << ", "
      << check_seqs(msgs).missing << " missing below it), " << buffer_rows(buffer_) << " rows still buffered\n"
      << vane->captured_stderr();
  ASSERT_TRUE(reader.catch_up(std::chrono::steady_clock::now() + 30s));
  msgs = reader.read_until({"telemetry"}, 0, std::chrono::steady_clock::now());
  const SeqCheck c = check_seqs(msgs);
  EXPECT_EQ(c.missing, 0u) << "readings committed before kill -9 were lost";
  EXPECT_EQ(c.max, static_cast<std::uint64_t>(total));
  // Only rows in flight at the kill (at most max_in_flight) and rows
  // acknowledged but not yet deleted (deletes are batched: at most 1000 rows
  // or 50 ms) can arrive twice: the restarted vane is a new producer, so the
  // broker cannot tell its resends from new readings.
  constexpr long kAckBatch = 1000;
  EXPECT_LE(c.duplicates, static_cast<std::size_t>(kWindow + kAckBatch))
      << "more than the in-flight window and one delete batch arrived twice; " << buffered
      << " rows were buffered at the kill";
  std::string first;
  EXPECT_EQ(key_order_violations(msgs, &first), 0u) << first;
  std::printf("kill -9: %ld committed before the kill, %ld of them still buffered, %zu duplicates (window %ld + "
              "delete batch %ld)\n",
              committed, buffered, c.duplicates, kWindow, kAckBatch);
  stop_vane(*vane);
}

TEST_F(AgentE2E, UnreachableBrokersKeepRunningAndBuffering) {
  // Port 1 on loopback: nothing listens there (no broker at all).
  bootstrap_ = "127.0.0.1:1";
  auto vane = start_vane(R"("devices": 2, "rate": 1000, "limit": 500)");
  EXPECT_TRUE(wait_until([&] { return buffer_rows(buffer_) == 500; }, 30s)) << vane->captured_stderr();
  EXPECT_TRUE(vane->running()) << vane->captured_stderr();
  stop_vane(*vane);
  EXPECT_EQ(buffer_rows(buffer_), 500);
}

}  // namespace
}  // namespace vane::test
