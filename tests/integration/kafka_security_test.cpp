// vane's secure uplink against Apache Kafka itself: mutual TLS, SASL PLAIN
// over TLS, SCRAM (on the 3.x line; see ScramAgainstFourXNamesTheCause for
// 4.x), and what an operator sees when the broker refuses: a wrong CA, a
// wrong password, a missing password file, an ACL that denies the
// dead-letter topic. Rows are never lost to a refusal, and the password is
// in no output.
#include <httplib.h>
#include <signal.h>

#include <regex>
#include <string>

#include <nlohmann/json.hpp>

#include "integration/agent_test_util.h"
#include "integration/http_agent.h"
#include "support/kafka_cluster.h"

namespace vane::test {
namespace {

using namespace std::chrono_literals;

constexpr const char* kPassword = "gw-test-secret";

using SecureAgent = HttpAgent;

class KafkaSecurity : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(kafka_unavailable_reason(), "") << "no real Kafka for this test"; }

  // Starts the cluster (security listeners on) with telemetry:3, telemetry.dlq:1.
  void start_cluster(KafkaClusterOptions opt = {}) {
    opt.security = true;
    kafka_ = std::make_unique<KafkaCluster>(opt);
    kafka_->create_topic("telemetry", 3);
    kafka_->create_topic("telemetry.dlq", 1);
    write_file(dir_.file("password"), std::string(kPassword) + "\n");
  }

  // vane's config: `security` is spliced into the kafka object.
  std::string write_config(const std::string& brokers, const std::string& security, const std::string& sim) {
    std::string c = sim_config(dir_.file("buffer.db"), brokers, sim, "", ", " + security);
    const std::string off = "\"http\": { \"listen\": \"\" }";
    c.replace(c.find(off), off.size(), "\"http\": { \"listen\": \"127.0.0.1:0\" }");
    write_file(dir_.file("vane.jsonc"), c);
    return dir_.file("vane.jsonc");
  }

  std::string tls(const std::string& ca, bool client_cert = true) const {
    std::string t = "\"tls\": { \"ca_file\": \"" + ca + "\"";
    if (client_cert)
      t += ", \"cert_file\": \"" + kafka_->client_cert_file() + "\", \"key_file\": \"" + kafka_->client_key_file() + "\"";
    return t + " }";
  }
  std::string sasl(const std::string& mechanism, const std::string& password_file) const {
    return "\"sasl\": { \"mechanism\": \"" + mechanism + "\", \"username\": \"gw-test\", \"password_file\": \"" +
           password_file + "\" }";
  }

  // Runs vane with `n` readings and asserts every seq 1..n landed once.
  void expect_all_delivered(const std::string& brokers, const std::string& security, int n) {
    const std::string cfg = write_config(brokers, security, "\"devices\": 3, \"rate\": 500, \"limit\": " +
                                                                std::to_string(n));
    SecureAgent vane(cfg, dir_.file("vane.stderr"));
    KafkaReader reader(kafka_->bootstrap());
    const auto msgs = reader.read_until({"telemetry", "telemetry.dlq"}, static_cast<std::size_t>(n), deadline_in(60s));
    const SeqCheck c = check_seqs(msgs);
    EXPECT_EQ(c.distinct, static_cast<std::size_t>(n)) << vane.proc().captured_stderr();
    EXPECT_EQ(c.duplicates, 0u);
    EXPECT_EQ(c.missing, 0u);
    EXPECT_EQ(vane.all_output().find(kPassword), std::string::npos) << "the password leaked";
    EXPECT_EQ(vane.stop(), 0);
  }

  // Runs vane against a broker that refuses it: it keeps running, says why
  // in the log (matching `reason`), keeps every reading buffered, and the
  // password is nowhere in what it shows.
  void expect_refused_and_kept(const std::string& brokers, const std::string& security, const std::regex& reason) {
    constexpr int kN = 300;
    const std::string cfg =
        write_config(brokers, security, "\"devices\": 3, \"rate\": 500, \"limit\": " + std::to_string(kN));
    SecureAgent vane(cfg, dir_.file("vane.stderr"));
    ASSERT_TRUE(wait_until([&] { return std::regex_search(vane.proc().captured_stderr(), reason); }, 60s))
        << "the log does not say why:\n" << vane.proc().captured_stderr();
    ASSERT_TRUE(wait_until([&] { return buffer_rows(dir_.file("buffer.db")) == kN; }, 30s))
        << "rows " << buffer_rows(dir_.file("buffer.db"));
    EXPECT_TRUE(vane.proc().running());
    const std::string health = vane.get("/health");
    EXPECT_EQ(health.find("\"state\":\"up\""), std::string::npos) << "the uplink claims up: " << health;
    EXPECT_EQ(vane.all_output().find(kPassword), std::string::npos) << "the password leaked";
    KafkaReader reader(kafka_->bootstrap());
    EXPECT_EQ(reader.read_until({"telemetry"}, 1, deadline_in(3s)).size(), 0u);
    EXPECT_EQ(vane.stop(), 0);
    EXPECT_EQ(buffer_rows(dir_.file("buffer.db")), kN) << "rows must stay for the next start";
  }

  TempDir dir_{"vane-sec-"};
  std::unique_ptr<KafkaCluster> kafka_;
};

TEST_F(KafkaSecurity, MutualTlsDeliversEveryReadingOnce) {
  start_cluster();
  expect_all_delivered(kafka_->bootstrap_ssl(), tls(kafka_->ca_file()), 600);
}

TEST_F(KafkaSecurity, SaslPlainOverTlsDeliversEveryReadingOnce) {
  start_cluster();
  expect_all_delivered(kafka_->bootstrap_sasl_ssl(),
                       tls(kafka_->ca_file(), false) + ", " + sasl("PLAIN", dir_.file("password")), 600);
}

// SCRAM against the 3.x line, which accepts librdkafka 2.0.2's SCRAM.
TEST_F(KafkaSecurity, ScramSha512DeliversEveryReadingOnce) {
  KafkaClusterOptions opt;
  opt.version = "3.9.1";
  ASSERT_EQ(kafka_unavailable_reason(opt.version), "");
  start_cluster(opt);
  expect_all_delivered(kafka_->bootstrap_sasl_ssl(),
                       tls(kafka_->ca_file(), false) + ", " + sasl("SCRAM-SHA-512", dir_.file("password")), 600);
}

TEST_F(KafkaSecurity, WrongCaIsLoggedAndRowsAreKept) {
  start_cluster();
  expect_refused_and_kept(kafka_->bootstrap_ssl(), tls(kafka_->other_ca_file()),
                          std::regex("certificate verify failed|SSL handshake failed", std::regex::icase));
}

TEST_F(KafkaSecurity, WrongPasswordIsLoggedAndRowsAreKept) {
  start_cluster();
  write_file(dir_.file("wrong-password"), "not-" + std::string(kPassword) + "\n");
  expect_refused_and_kept(kafka_->bootstrap_sasl_ssl(),
                          tls(kafka_->ca_file(), false) + ", " + sasl("PLAIN", dir_.file("wrong-password")),
                          std::regex("authentication", std::regex::icase));
}

// librdkafka before 2.6.1 (Debian 12 has 2.0.2) cannot SCRAM-authenticate
// to a 4.x broker: the broker answers "invalid credentials" to a correct
// password. vane must say so, not leave the operator hunting a password.
TEST_F(KafkaSecurity, ScramAgainstFourXNamesTheCause) {
  if (rd_kafka_version() >= 0x020601ff) GTEST_SKIP() << "librdkafka " << rd_kafka_version_str() << " has the fix";
  start_cluster();
  expect_refused_and_kept(kafka_->bootstrap_sasl_ssl(),
                          tls(kafka_->ca_file(), false) + ", " + sasl("SCRAM-SHA-512", dir_.file("password")),
                          std::regex("librdkafka.*2\\.6\\.1"));
}

TEST_F(KafkaSecurity, MissingPasswordFileIsAConfigErrorNamingIt) {
  start_cluster();
  const std::string missing = dir_.file("no-such-password");
  const std::string cfg = write_config(kafka_->bootstrap_sasl_ssl(),
                                       tls(kafka_->ca_file(), false) + ", " + sasl("PLAIN", missing),
                                       "\"devices\": 1, \"rate\": 10, \"limit\": 10");
  for (const char* verb : {"run", "check-config"}) {
    ChildProcess p({vane_bin(), verb, "-c", cfg}, dir_.file(std::string(verb) + ".stderr"));
    std::string out;
    while (auto line = p.read_line(deadline_in(20s))) out += *line + "\n";
    auto rc = p.wait_exit(deadline_in(20s));
    ASSERT_TRUE(rc.has_value());
    EXPECT_EQ(*rc, 2) << verb;
    const std::string all = out + p.captured_stderr();
    EXPECT_NE(all.find(missing), std::string::npos) << verb << ": " << all;
    EXPECT_NE(all.find("/kafka/sasl/password_file"), std::string::npos) << verb << ": " << all;
  }
}

// An ACL denies this gateway writes to the dead-letter topic only:
// telemetry keeps flowing, dead letters stay buffered, counted, with the
// broker's reason in the log.
TEST_F(KafkaSecurity, AclDenyingTheDeadLetterTopicOnlyKeepsTelemetryFlowing) {
  KafkaClusterOptions opt;
  opt.acls = true;
  start_cluster(opt);
  kafka_->add_topic_acl("User:gw-test", "telemetry.dlq", "WRITE", false);
  constexpr int kN = 1000;
  const std::string cfg = write_config(kafka_->bootstrap_ssl(), tls(kafka_->ca_file()),
                                       "\"devices\": 5, \"rate\": 500, \"faults\": 0.05, \"limit\": " +
                                           std::to_string(kN));
  SecureAgent vane(cfg, dir_.file("vane.stderr"));
  KafkaReader reader(kafka_->bootstrap());
  const std::string buffer = dir_.file("buffer.db");
  // Every reading either landed on telemetry or is a dead letter still buffered.
  // Settled: most of it on telemetry, and the sum holding for three looks
  // in a row (a row acknowledged but not yet read back, or read back but
  // not yet deleted, breaks the sum for a moment).
  std::vector<ConsumedMessage> msgs;
  int steady = 0;
  const bool settled = wait_until(
      [&] {
        msgs = reader.read_until({"telemetry"}, kN, deadline_in(500ms));
        const long rows = buffer_rows(buffer);
        const bool sums = msgs.size() >= kN / 2 && static_cast<long>(msgs.size()) + rows == kN;
        steady = sums ? steady + 1 : 0;
        return steady >= 3;
      },
      90s, 500ms);
  const long parked = buffer_rows(buffer);
  ASSERT_TRUE(settled) << msgs.size() << " on telemetry, " << parked << " buffered\n"
                       << vane.proc().captured_stderr();
  const SeqCheck c = check_seqs(msgs);
  EXPECT_EQ(c.duplicates, 0u);
  EXPECT_GT(parked, 0) << "faults 0.05 should make dead letters";
  EXPECT_LT(parked, kN / 4);
  EXPECT_EQ(reader.read_until({"telemetry.dlq"}, 1, deadline_in(2s)).size(), 0u);
  EXPECT_TRUE(std::regex_search(vane.proc().captured_stderr(),
                                std::regex("TOPIC_AUTHORIZATION_FAILED|not authori[sz]ed", std::regex::icase)))
      << vane.proc().captured_stderr();
  const std::string metrics = vane.get("/metrics");
  EXPECT_TRUE(std::regex_search(metrics, std::regex(R"(vane_kafka_refusals_total\{reason="authori[sz]ation"\} [1-9])")))
      << metrics;
  EXPECT_NE(metrics.find("vane_kafka_topic_held{stream=\"dead_letter\"} 1\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("vane_kafka_topic_held{stream=\"telemetry\"} 0\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("vane_buffer_held_rows{stream=\"dead_letter\"} " + std::to_string(parked) + "\n"),
            std::string::npos)
      << "every buffered row is a held dead letter\n" << metrics;
  const auto health = nlohmann::json::parse(vane.get("/health"));
  ASSERT_EQ(health["uplink"]["held"].size(), 1u) << health.dump();
  EXPECT_EQ(health["uplink"]["held"][0]["stream"], "dead_letter");
  EXPECT_EQ(health["uplink"]["held"][0]["code"], "TOPIC_AUTHORIZATION_FAILED");
  EXPECT_EQ(vane.stop(), 0);
  EXPECT_EQ(buffer_rows(buffer), parked) << "the dead letters stay for the next start";
}

}  // namespace
}  // namespace vane::test
