// The real vane binary, simulator → schema → buffer → Kafka mock cluster in
// its own process, read back with a librdkafka consumer and counted by
// vane-seq.
#include <nlohmann/json.hpp>

#include "agent_test_util.h"
#include "schema.h"

namespace vane::test {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

class AgentE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    bootstrap_ = kafka_.start(1, {"telemetry:3", "telemetry.dlq:1"});
    ASSERT_FALSE(bootstrap_.empty());
    buffer_ = dir_.path() + "/buffer.db";
    config_ = dir_.path() + "/vane.jsonc";
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
  MockKafka kafka_;
  std::string bootstrap_, buffer_, config_;
};

TEST_F(AgentE2E, EveryReadingLandsOnceInOrderWithHeaders) {
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
  for (const auto& m : msgs) {
    devices.insert(m.key);
    auto [it, fresh] = last.try_emplace(m.key, m.partition, 0);
    EXPECT_EQ(it->second.first, m.partition) << m.key << " moved partitions";
    EXPECT_GT(seq_of(m), it->second.second) << m.key << " out of order";
    it->second.second = seq_of(m);

    EXPECT_EQ(m.headers.at("vane-gateway"), "gw-test");
    EXPECT_EQ(m.headers.at("vane-source"), "sim");
    EXPECT_EQ(m.headers.at("vane-schema"), "turbine");
    EXPECT_EQ(m.headers.count("vane-error"), 0u);

    const json v = json::parse(m.value);
    EXPECT_EQ(v["turbine_id"], m.key);
    ASSERT_TRUE(v["timestamp"].is_string());
    EXPECT_TRUE(is_rfc3339_date_time(v["timestamp"].get<std::string>()));
    for (const char* f : {"wind_speed", "pitch_angle", "power_output", "temperature", "vibration"})
      EXPECT_TRUE(v[f].is_number()) << f << " in " << m.value;
    EXPECT_EQ(v.size(), 7u) << m.value;
    EXPECT_GE(v["power_output"].get<double>(), 0.0);
    EXPECT_LE(v["power_output"].get<double>(), 5000.0);
  }
  EXPECT_EQ(devices.size(), 10u);
  // The message timestamp is the reading's time.
  const json first = json::parse(msgs.front().value);
  EXPECT_GT(msgs.front().timestamp_ms, 0);

  EXPECT_TRUE(wait_until([&] { return buffer_rows(buffer_) == 0; }, 20s)) << "buffer did not drain";
  stop_vane(*vane);
  EXPECT_EQ(buffer_rows(buffer_), 0);
  // Nothing more arrives after the stop: exactly kN.
  EXPECT_EQ(reader.read_until({"telemetry"}, kN + 1, std::chrono::steady_clock::now() + 1s).size(), kN);
}

TEST_F(AgentE2E, BrokerOutageBuffersAndLosesNothing) {
  constexpr std::size_t kN = 8000;
  auto vane = start_vane(R"("devices": 8, "rate": 1000, "limit": 8000)");
  KafkaReader reader(bootstrap_);
  ASSERT_GE(reader.read_until({"telemetry"}, 1000, std::chrono::steady_clock::now() + 30s).size(), 1000u)
      << vane->captured_stderr();

  kafka_.down("all");
  // Readings keep being accepted and buffered while the broker is down.
  EXPECT_TRUE(wait_until([&] { return buffer_rows(buffer_) >= 2000; }, 30s)) << "buffer did not grow";
  const std::size_t during = reader.read_until({"telemetry"}, kN, std::chrono::steady_clock::now() + 500ms).size();
  EXPECT_LT(during, kN);

  kafka_.up("all");
  std::vector<ConsumedMessage> msgs;
  ASSERT_TRUE(wait_until(
      [&] {
        msgs = reader.read_until({"telemetry"}, kN + 100000, std::chrono::steady_clock::now() + 200ms);
        return check_seqs(msgs).distinct >= kN;
      },
      90s))
      << check_seqs(msgs).distinct << " of " << kN << "\n" << vane->captured_stderr();
  const SeqCheck c = check_seqs(msgs);
  EXPECT_EQ(c.distinct, kN);
  EXPECT_EQ(c.missing, 0u);
  // A real broker drops an idempotent producer's retried batch; librdkafka
  // 2.0.2's mock cluster does so only for transactional producers, so a batch
  // in flight when the broker went down may land twice here. Every copy
  // carries its vane-seq; the count stays within the in-flight window.
  EXPECT_LE(c.duplicates, 10000u);
  std::printf("outage: %zu readings, %zu duplicates from the mock's retried batches\n", c.distinct, c.duplicates);
  EXPECT_TRUE(wait_until([&] { return buffer_rows(buffer_) == 0; }, 30s)) << "buffer did not drain";
  stop_vane(*vane);
}

TEST_F(AgentE2E, ExactlyTheInvalidReadingsGoToTheDeadLetterTopic) {
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

TEST_F(AgentE2E, KillNineLosesNothingAndDuplicatesStayWithinTheInFlightWindow) {
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
  ASSERT_GT(committed, 3000);
  constexpr long kMore = 2000;
  vane = start_vane(R"("devices": 6, "rate": 4000, "limit": 2000)", "", kafka);
  const std::size_t total = static_cast<std::size_t>(committed + kMore);
  std::vector<ConsumedMessage> msgs;
  ASSERT_TRUE(wait_until(
      [&] {
        msgs = reader.read_until({"telemetry"}, total + kWindow, std::chrono::steady_clock::now() + 200ms);
        return check_seqs(msgs).distinct >= total && buffer_rows(buffer_) == 0;
      },
      60s))
      << check_seqs(msgs).distinct << " of " << total << "\n" << vane->captured_stderr();
  const SeqCheck c = check_seqs(msgs);
  EXPECT_EQ(c.missing, 0u) << "readings committed before kill -9 were lost";
  EXPECT_EQ(c.max, static_cast<std::uint64_t>(total));
  // Only rows in flight at the kill can arrive twice.
  EXPECT_LE(c.duplicates, static_cast<std::size_t>(kWindow));
  std::printf("kill -9: %ld committed before the kill, %zu duplicates (window %ld)\n", committed, c.duplicates,
              kWindow);
  stop_vane(*vane);
}

TEST_F(AgentE2E, UnreachableBrokersKeepRunningAndBuffering) {
  // Port 1 on loopback: nothing listens there.
  bootstrap_ = "127.0.0.1:1";
  auto vane = start_vane(R"("devices": 2, "rate": 1000, "limit": 500)");
  EXPECT_TRUE(wait_until([&] { return buffer_rows(buffer_) == 500; }, 30s)) << vane->captured_stderr();
  stop_vane(*vane);
  EXPECT_EQ(buffer_rows(buffer_), 500);
}

}  // namespace
}  // namespace vane::test
