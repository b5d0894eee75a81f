// Records the brokers refuse for themselves, against Apache Kafka itself
// (one node): a batch larger than the topic's max.message.bytes is sent
// again record by record, so every reading still lands once; a reading that
// is too large on its own goes to the dead-letter topic with the broker's
// reason, its value cut, and holds nothing back; a dead letter the
// dead-letter topic refuses too is parked in the buffer, declared on the
// event topic, and sent once an operator fixed the topic and unparked it.
// Counted by vane-seq.
#include <nlohmann/json.hpp>

#include <cstdio>
#include <regex>

#include "agent_test_util.h"
#include "http_agent.h"
#ifdef VANE_TEST_MQTT
#include "mosquitto.h"
#endif

namespace vane::test {
namespace {

using namespace std::chrono_literals;

class KafkaRefusals : public ::testing::Test {
 protected:
  void SetUp() override {
    buffer_ = dir_.path() + "/buffer.db";
    config_ = dir_.path() + "/vane.jsonc";
  }

  std::unique_ptr<ChildProcess> start_vane(const std::string& sim_knobs) {
    write_file(config_, sim_config(buffer_, kafka_->bootstrap(), sim_knobs));
    return std::make_unique<ChildProcess>(std::vector<std::string>{vane_bin(), "run", "-c", config_},
                                          dir_.path() + "/vane.stderr");
  }

  // Seqs 1..n, each once.
  static void expect_each_once(const std::vector<ConsumedMessage>& msgs, std::size_t n) {
    const SeqCheck c = check_seqs(msgs);
    EXPECT_EQ(c.distinct, n);
    EXPECT_EQ(c.duplicates, 0u);
    EXPECT_EQ(c.max, n);
  }

  TempDir dir_;
  std::unique_ptr<KafkaCluster> kafka_;
  std::string buffer_, config_;
};

// max.message.bytes 2000: one turbine reading (about 230 bytes of value,
// headers and key) fits, a batch of ten does not. librdkafka batches at
// this rate, the broker refuses the batches whole (MESSAGE_TOO_LARGE), and
// vane sends those rows again each alone: all land, none twice, none on the
// dead-letter topic.
TEST_F(KafkaRefusals, BatchesTooLargeForTheTopicAreSentAgainRecordByRecord) {
  kafka_ = start_kafka({{"telemetry", 3, {{"max.message.bytes", "2000"}}}, {"telemetry.dlq", 1, {}}});
  ASSERT_TRUE(kafka_);
  constexpr std::size_t kN = 3000;
  auto vane = start_vane(R"("devices": 10, "rate": 3000, "limit": 3000)");
  KafkaReader reader(kafka_->bootstrap());
  const auto msgs = reader.read_until({"telemetry"}, kN, deadline_in(90s));
  ASSERT_EQ(msgs.size(), kN) << vane->captured_stderr();
  expect_each_once(msgs, kN);
  EXPECT_TRUE(wait_until([&] { return buffer_rows(buffer_) == 0; }, 30s));
  EXPECT_EQ(reader.read_until({"telemetry.dlq"}, 1, deadline_in(2s)).size(), 0u);
  vane->send_signal(SIGTERM);
  EXPECT_EQ(vane->wait_exit(deadline_in(20s)), 0) << vane->captured_stderr();
  // The broker did refuse batches (else this test proves nothing), and vane said so.
  EXPECT_NE(vane->captured_stderr().find("MSG_SIZE_TOO_LARGE"), std::string::npos) << vane->captured_stderr();
  const std::size_t said = vane->captured_stderr().find("refused the reading");
  EXPECT_EQ(said, std::string::npos) << "a reading that fits alone was dead-lettered";
}

// max.message.bytes 300: no turbine reading fits even alone. Each goes to
// the dead-letter topic, seq kept, with vane-error naming the broker's
// refusal and the reading's size; the buffer empties, nothing is lost.
TEST_F(KafkaRefusals, AReadingTooLargeOnItsOwnGoesToTheDeadLetterTopicWithTheBrokersReason) {
  kafka_ = start_kafka({{"telemetry", 3, {{"max.message.bytes", "300"}}}, {"telemetry.dlq", 1, {}}});
  ASSERT_TRUE(kafka_);
  constexpr std::size_t kN = 200;
  auto vane = start_vane(R"("devices": 2, "rate": 200, "limit": 200)");
  KafkaReader reader(kafka_->bootstrap());
  const auto dlq = reader.read_until({"telemetry.dlq"}, kN, deadline_in(90s));
  ASSERT_EQ(dlq.size(), kN) << vane->captured_stderr();
  expect_each_once(dlq, kN);
  for (const auto& m : dlq) {
    const std::string& err = m.headers.at("vane-error");
    EXPECT_NE(err.find("kafka refused the reading: MSG_SIZE_TOO_LARGE"), std::string::npos) << err;
    EXPECT_NE(err.find(" bytes"), std::string::npos) << err;
    EXPECT_EQ(m.headers.at("vane-source"), "sim");
    EXPECT_FALSE(m.value.empty());
  }
  EXPECT_EQ(reader.read_until({"telemetry"}, 1, deadline_in(2s)).size(), 0u);
  EXPECT_TRUE(wait_until([&] { return buffer_rows(buffer_) == 0; }, 30s));
  std::printf("dead letters: %zu, e.g. vane-error: %s\n", dlq.size(), dlq.front().headers.at("vane-error").c_str());
  vane->send_signal(SIGTERM);
  EXPECT_EQ(vane->wait_exit(deadline_in(20s)), 0) << vane->captured_stderr();
}

// Both topics take at most 300 bytes: a reading is refused alone, and so is
// its dead letter (its value cut to 1 KiB plus vane-error). Each is parked:
// kept in the buffer and counted, declared on vane.events, no stall on
// /health; `vane buffer unpark` after the fix sends every one, once.
TEST_F(KafkaRefusals, ADeadLetterRefusedTooIsParkedDeclaredAndSentAfterUnpark) {
  kafka_ = start_kafka({{"telemetry", 3, {{"max.message.bytes", "300"}}},
                        {"telemetry.dlq", 1, {{"max.message.bytes", "300"}}},
                        {"vane.events", 1, {}}});
  ASSERT_TRUE(kafka_);
  constexpr std::size_t kN = 50;
  std::string cfg = sim_config(buffer_, kafka_->bootstrap(), R"("devices": 2, "rate": 100, "limit": 50)");
  const std::string off = "\"http\": { \"listen\": \"\" }";
  cfg.replace(cfg.find(off), off.size(), "\"http\": { \"listen\": \"127.0.0.1:0\", \"stall_after_ms\": 2000 }");
  write_file(config_, cfg);
  HttpAgent vane(config_, dir_.path() + "/vane.stderr");
  ASSERT_GT(vane.port(), 0) << vane.proc().captured_stderr();
  auto health = [&] {
    const std::string body = vane.get("/health");
    return body.empty() ? nlohmann::json::object() : nlohmann::json::parse(body, nullptr, false);
  };
  ASSERT_TRUE(wait_until([&] { return health()["buffer"]["parked"] == kN; }, 90s))
      << health().dump() << "\n" << vane.proc().captured_stderr();
  EXPECT_NE(vane.get("/metrics").find("vane_buffer_parked_rows " + std::to_string(kN) + "\n"), std::string::npos);
  EXPECT_EQ(buffer_stat(buffer_, "parked:"), static_cast<long>(kN));
  // Parked rows wait for an operator: no stall, no watchdog restart.
  EXPECT_FALSE(wait_until([&] { return vane.status("/health") != 200; }, 4s)) << health().dump();
  EXPECT_NE(vane.proc().captured_stderr().find("vane buffer unpark"), std::string::npos) << vane.proc().captured_stderr();

  // Declared: the event topic names every parked seq.
  KafkaReader reader(kafka_->bootstrap());
  std::set<std::uint64_t> parked, event_seqs;
  ASSERT_TRUE(wait_until(
      [&] {
        for (const auto& m : reader.read_until({"vane.events"}, 1000, deadline_in(1s))) {
          if (!event_seqs.insert(seq_of(m)).second) continue;
          const auto ev = nlohmann::json::parse(m.value);
          EXPECT_EQ(m.key, "gw-test");
          if (ev["event"] != "parked") continue;
          EXPECT_EQ(ev["reason"], "MSG_SIZE_TOO_LARGE") << m.value;
          for (std::uint64_t s = ev["first_seq"]; s <= ev["last_seq"].get<std::uint64_t>(); ++s) parked.insert(s);
        }
        return parked.size() >= kN;
      },
      30s))
      << parked.size() << " parked seqs declared";
  EXPECT_EQ(reader.read_until({"telemetry", "telemetry.dlq"}, 1, deadline_in(1s)).size(), 0u);

  // The fix, then unpark while vane runs.
  kafka_->set_topic_configs("telemetry.dlq", {{"max.message.bytes", "1048576"}});
  ChildProcess unpark({vane_bin(), "buffer", "unpark", buffer_}, dir_.path() + "/unpark.err");
  std::string said;
  while (auto line = unpark.read_line(deadline_in(20s))) said += *line + "\n";
  EXPECT_EQ(unpark.wait_exit(deadline_in(20s)), 0) << unpark.captured_stderr();
  EXPECT_NE(said.find(std::to_string(kN) + " parked rows returned"), std::string::npos) << said;
  const auto dlq = reader.read_until({"telemetry.dlq"}, kN, deadline_in(60s));
  ASSERT_EQ(dlq.size(), kN) << vane.proc().captured_stderr();
  std::set<std::uint64_t> all = event_seqs;
  for (const auto& m : dlq) {
    EXPECT_TRUE(parked.contains(seq_of(m))) << seq_of(m);
    EXPECT_TRUE(all.insert(seq_of(m)).second) << "seq " << seq_of(m) << " twice";
    EXPECT_NE(m.headers.at("vane-error").find("MSG_SIZE_TOO_LARGE"), std::string::npos);
  }
  // One seq space: readings and declarations, 1..max, none missing.
  EXPECT_EQ(*all.begin(), 1u);
  EXPECT_EQ(*all.rbegin(), all.size());
  EXPECT_TRUE(wait_until([&] { return health()["buffer"]["parked"] == 0 && buffer_rows(buffer_) == 0; }, 30s))
      << health().dump();
  EXPECT_EQ(vane.stop(), 0) << vane.proc().captured_stderr();
}

#ifdef VANE_TEST_MQTT
// Readings of every size from MQTT devices: 600 small ones (about 100 bytes)
// and, among them, 6 of 6 KB, into a topic that takes at most 3000 bytes
// per batch. The batches holding a large one are refused whole, sent again
// record by record: every small reading lands on the telemetry topic, each
// large one on the dead-letter topic with the broker's reason and its size,
// none lost, none twice, and none waits behind a refused one.
TEST_F(KafkaRefusals, AnOversizedReadingAmongSmallOnesIsDeadLetteredAndHoldsNothingBack) {
  kafka_ = start_kafka({{"telemetry", 3, {{"max.message.bytes", "3000"}}}, {"telemetry.dlq", 1, {}}});
  ASSERT_TRUE(kafka_);
  Mosquitto broker(dir_, free_port());
  ASSERT_TRUE(broker.ready());
  write_file(config_, "{\n \"gateway\": { \"id\": \"gw-test\" },\n \"buffer\": { \"path\": \"" + buffer_ +
                          "\" },\n \"kafka\": { \"brokers\": \"" + kafka_->bootstrap() +
                          "\", \"shutdown_timeout_ms\": 3000 },\n \"http\": { \"listen\": \"\" },\n"
                          " \"sources\": [ { \"name\": \"env\", \"type\": \"mqtt\", \"url\": \"" + broker.url() +
                          "\", \"client_id\": \"vane-refusals\", \"topics\": [\"sensors/+/telemetry\"], \"qos\": 1,"
                          " \"device_id\": \"{topic[1]}\" } ]\n}\n");
  ChildProcess vane({vane_bin(), "run", "-c", config_}, dir_.path() + "/vane.stderr");
  ASSERT_TRUE(wait_until([&] { return vane.captured_stderr().find("connected to") != std::string::npos; }, 30s))
      << vane.captured_stderr();
  constexpr int kSmall = 600, kLarge = 6;
  ChildProcess pub({"mosquitto_pub", "-L", broker.url().replace(0, 6, "mqtt://") + "/sensors/s1/telemetry", "-q", "1",
                    "-l"},
                   dir_.path() + "/pub.stderr");
  std::set<int> large;
  for (int i = 0; i < kSmall + kLarge; ++i) {
    const bool big = i % ((kSmall + kLarge) / kLarge) == 50;
    if (big) large.insert(i);
    ASSERT_TRUE(pub.write_line("{\"n\": " + std::to_string(i) + ", \"pad\": \"" + std::string(big ? 6000 : 40, 'p') +
                               "\"}"));
  }
  ASSERT_EQ(large.size(), static_cast<std::size_t>(kLarge));
  pub.close_stdin();
  EXPECT_EQ(pub.wait_exit(deadline_in(30s)), 0) << pub.captured_stderr();
  const auto published = std::chrono::steady_clock::now();

  KafkaReader reader(kafka_->bootstrap());
  const auto msgs = reader.read_until({"telemetry", "telemetry.dlq"}, kSmall + kLarge, deadline_in(60s));
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - published).count();
  ASSERT_EQ(msgs.size(), static_cast<std::size_t>(kSmall + kLarge)) << vane.captured_stderr();
  expect_each_once(msgs, kSmall + kLarge);
  std::size_t dead = 0;
  for (const auto& m : msgs) {
    // A dead letter's value is cut: read "n" from its first bytes.
    std::smatch at;
    const int n = std::regex_search(m.value, at, std::regex(R"("n":\s*([0-9]+))")) ? std::stoi(at[1]) : -1;
    if (m.topic == "telemetry.dlq") {
      ++dead;
      EXPECT_TRUE(large.contains(n)) << "a reading that fits was dead-lettered: " << m.value.substr(0, 80);
      const std::string& err = m.headers.at("vane-error");
      EXPECT_NE(err.find("MSG_SIZE_TOO_LARGE"), std::string::npos) << err;
      EXPECT_NE(err.find("bytes, the first 1024 kept"), std::string::npos) << err;
    } else {
      EXPECT_FALSE(large.contains(n)) << "reading " << n << " is larger than the topic takes";
    }
  }
  EXPECT_EQ(dead, static_cast<std::size_t>(kLarge));
  // Each refusal costs one retry alone, not a back-off per row.
  EXPECT_LT(took, 30.0) << "the small readings waited behind the large ones";
  std::printf("%d small and %d large readings: all landed %.1f s after the last was published\n", kSmall, kLarge, took);
  EXPECT_TRUE(wait_until([&] { return buffer_rows(buffer_) == 0; }, 30s));
  vane.send_signal(SIGTERM);
  EXPECT_EQ(vane.wait_exit(deadline_in(20s)), 0) << vane.captured_stderr();
}
#endif

}  // namespace
}  // namespace vane::test
