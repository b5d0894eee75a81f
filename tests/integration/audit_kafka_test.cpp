// vane audit against Apache Kafka itself: after a real vane ran, every seq
// is accounted for (exit 0); records deleted behind vane's back
// (DeleteRecords) are a loss it names by seq range (exit 1).
#include <nlohmann/json.hpp>

#include <set>

#include "agent_test_util.h"

namespace vane::test {
namespace {

using namespace std::chrono_literals;

CommandOutcome audit(const std::string& config, const TempDir& dir, std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"audit", "-c", config};
  args.insert(args.end(), extra.begin(), extra.end());
  return run_vane(std::move(args), dir);
}

class AuditKafka : public ::testing::Test {
 protected:
  void SetUp() override {
    kafka_ = start_kafka({{"telemetry", 3, {}}, {"telemetry.dlq", 1, {}}, {"vane.events", 1, {}}});
    ASSERT_TRUE(kafka_);
    config_ = dir_.path() + "/vane.jsonc";
    buffer_ = dir_.path() + "/buffer.db";
    // Some readings fail the schema (dead letters): one seq space over both topics.
    write_file(config_, sim_config(buffer_, kafka_->bootstrap(), R"("devices": 6, "rate": 2000, "limit": 3000, "faults": 0.05)"));
    ChildProcess vane({vane_bin(), "run", "-c", config_}, dir_.path() + "/vane.stderr");
    ASSERT_TRUE(wait_until([&] { return buffer_stat(buffer_, "next seq:") == kN + 1 && buffer_rows(buffer_) == 0; }, 60s))
        << vane.captured_stderr();
    vane.send_signal(SIGTERM);
    ASSERT_EQ(vane.wait_exit(deadline_in(20s)), 0) << vane.captured_stderr();
  }

  static constexpr std::uint64_t kN = 3000;
  TempDir dir_;
  std::unique_ptr<KafkaCluster> kafka_;
  std::string config_, buffer_;
};

TEST_F(AuditKafka, EverySeqOfARealRunIsAccountedFor) {
  CommandOutcome o = audit(config_, dir_);
  EXPECT_EQ(o.rc, 0) << o.out << o.err;
  EXPECT_NE(o.out.find("gateway gw-test: seqs 1..3000"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("every seq is received or declared"), std::string::npos) << o.out;
  o = audit(config_, dir_, {"--json"});
  ASSERT_EQ(o.rc, 0) << o.out << o.err;
  const auto j = nlohmann::json::parse(o.out);
  ASSERT_EQ(j["gateways"].size(), 1u) << o.out;
  EXPECT_EQ(j["gateways"][0]["received"], kN);
  EXPECT_EQ(j["gateways"][0]["unexplained"], 0);
  EXPECT_EQ(j["records_without_seq"], 0);
  EXPECT_TRUE(j["ok"]);
  // A gateway with nothing in Kafka is not a clean audit.
  o = audit(config_, dir_, {"--gateway", "gw-elsewhere"});
  EXPECT_EQ(o.rc, 1) << o.out;
  EXPECT_NE(o.out.find("gw-elsewhere: no records"), std::string::npos) << o.out;
}

TEST_F(AuditKafka, RecordsDeletedBehindVanesBackAreALossNamedBySeqRange) {
  // The seqs on telemetry partition 1 below its middle offset: what DeleteRecords removes.
  KafkaReader reader(kafka_->bootstrap());
  const auto msgs = reader.read_until({"telemetry", "telemetry.dlq"}, kN, deadline_in(30s));
  std::vector<std::int64_t> offsets;
  for (const auto& m : msgs)
    if (m.topic == "telemetry" && m.partition == 1) offsets.push_back(m.offset);
  ASSERT_GT(offsets.size(), 100u);
  const std::int64_t cut = static_cast<std::int64_t>(offsets.size() / 2);
  std::set<std::uint64_t> deleted;
  for (const auto& m : msgs)
    if (m.topic == "telemetry" && m.partition == 1 && m.offset < cut) deleted.insert(seq_of(m));
  kafka_->delete_records("telemetry", 1, cut);

  CommandOutcome o = audit(config_, dir_, {"--json"});
  EXPECT_EQ(o.rc, 1) << o.out << o.err;
  const auto j = nlohmann::json::parse(o.out);
  const auto& g = j["gateways"][0];
  EXPECT_EQ(g["unexplained"], deleted.size());
  std::set<std::uint64_t> named;
  for (const auto& r : g["unexplained_ranges"])
    for (std::uint64_t s = r[0]; s <= r[1].get<std::uint64_t>(); ++s) named.insert(s);
  EXPECT_EQ(named, deleted) << "the audit must name exactly the deleted seqs";
  o = audit(config_, dir_);
  EXPECT_EQ(o.rc, 1);
  EXPECT_NE(o.out.find("unexplained:  " + std::to_string(deleted.size()) + " seqs (lost): " + std::to_string(*deleted.begin())),
            std::string::npos)
      << o.out;
  EXPECT_NE(o.out.find("NOT every seq is accounted for"), std::string::npos) << o.out;
}

TEST_F(AuditKafka, ABrokerThatIsNotThereIsAnErrorNamingIt) {
  std::string cfg = sim_config(buffer_, "127.0.0.1:1", R"("devices": 1)");
  write_file(dir_.path() + "/nowhere.jsonc", cfg);
  const CommandOutcome o = audit(dir_.path() + "/nowhere.jsonc", dir_, {"--timeout-ms", "3000"});
  EXPECT_EQ(o.rc, 2) << o.out;
  EXPECT_NE(o.err.find("127.0.0.1:1"), std::string::npos) << o.err;
}

}  // namespace
}  // namespace vane::test
