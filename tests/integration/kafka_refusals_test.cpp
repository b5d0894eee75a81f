// Records the brokers refuse for themselves, against Apache Kafka itself
// (one node): a batch larger than the topic's max.message.bytes is sent
// again record by record, so every reading still lands once; a reading that
// is too large on its own goes to the dead-letter topic with the broker's
// reason, its value cut, and holds nothing back. Counted by vane-seq.
#include <cstdio>

#include "agent_test_util.h"

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

}  // namespace
}  // namespace vane::test
