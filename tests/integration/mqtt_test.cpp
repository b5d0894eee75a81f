// The MQTT driver against a real mosquitto started by each test on a free
// loopback port, with vane-sim mqtt and mosquitto_pub as publishers.
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <set>

#include <nlohmann/json.hpp>

#include "agent_test_util.h"
#include "mosquitto.h"

namespace vane::test {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

class MqttTest : public ::testing::Test {
 protected:
  void SetUp() override {
    bootstrap_ = kafka_.start(1, {"telemetry:3", "telemetry.dlq:1"});
    ASSERT_FALSE(bootstrap_.empty());
    broker_ = std::make_unique<Mosquitto>(dir_, free_port());
    ASSERT_TRUE(broker_->ready());
  }

  std::unique_ptr<ChildProcess> start_vane(const std::string& source_extra) {
    const std::string cfg =
        "{\n \"gateway\": { \"id\": \"gw-test\" },\n"
        " \"buffer\": { \"path\": \"" + dir_.path() + "/buffer.db\" },\n"
        " \"kafka\": { \"brokers\": \"" + bootstrap_ + "\", \"shutdown_timeout_ms\": 3000 },\n"
        " \"sources\": [ { \"name\": \"env\", \"type\": \"mqtt\", \"url\": \"" + broker_->url() + "\","
        " \"client_id\": \"vane-test\", \"topics\": [\"sensors/+/telemetry\"], \"qos\": 1, \"device_field\": \"sensor_id\", " +
        source_extra + " } ]\n}\n";
    write_file(dir_.path() + "/vane.jsonc", cfg);
    return std::make_unique<ChildProcess>(std::vector<std::string>{vane_bin(), "run", "-c", dir_.path() + "/vane.jsonc"},
                                          dir_.path() + "/vane.stderr");
  }

  static void stop_vane(ChildProcess& p) {
    p.send_signal(SIGTERM);
    auto rc = p.wait_exit(std::chrono::steady_clock::now() + 20s);
    ASSERT_TRUE(rc.has_value());
    EXPECT_EQ(*rc, 0) << p.captured_stderr();
  }

  // Waits for "connected" in vane's log: subscribed before anyone publishes.
  static bool connected(ChildProcess& vane, int times = 1) {
    return wait_until(
        [&] {
          const std::string log = vane.captured_stderr();
          int n = 0;
          for (std::size_t at = log.find("connected to"); at != std::string::npos; at = log.find("connected to", at + 1)) ++n;
          return n >= times;
        },
        20s);
  }

  std::unique_ptr<ChildProcess> sim(int sensors, double rate, int count, double faults = 0) {
    return std::make_unique<ChildProcess>(
        std::vector<std::string>{std::string(VANE_BINARY_DIR) + "/simulator/vane-sim", "mqtt", "--broker", broker_->url(),
                                 "--sensors", std::to_string(sensors), "--rate", std::to_string(rate), "--count",
                                 std::to_string(count), "--faults", std::to_string(faults)},
        dir_.path() + "/sim.stderr");
  }

  static long published(ChildProcess& sim) {
    auto line = sim.read_line(std::chrono::steady_clock::now() + 60s);
    if (!line || line->rfind("PUBLISHED ", 0) != 0) return -1;
    return std::stol(line->substr(10));
  }

  // (device, n) pairs, to count every published message exactly.
  static std::map<std::pair<std::string, long>, int> tally(const std::vector<ConsumedMessage>& msgs) {
    std::map<std::pair<std::string, long>, int> t;
    for (const auto& m : msgs) {
      const json v = json::parse(m.value);
      t[{m.key, v["n"].get<long>()}]++;
    }
    return t;
  }

  TempDir dir_;
  MockKafka kafka_;
  std::string bootstrap_;
  std::unique_ptr<Mosquitto> broker_;
};

const std::string kMapping =
    R"("device_id": "{topic[1]}", "timestamp": {"field": "/timestamp", "format": "iso8601"},
       "fields": {"temperature": "/temperature", "humidity": "/humidity", "latitude": "/location/latitude",
                  "status": "/status", "n": "/n"})";

TEST_F(MqttTest, EveryPublishedMessageLandsOnceMapped) {
  auto vane = start_vane(kMapping);
  ASSERT_TRUE(connected(*vane)) << vane->captured_stderr();
  auto pub = sim(3, 100, 600);
  ASSERT_EQ(published(*pub), 600);
  KafkaReader reader(bootstrap_);
  auto msgs = reader.read_until({"telemetry"}, 600, std::chrono::steady_clock::now() + 30s);
  ASSERT_EQ(msgs.size(), 600u) << vane->captured_stderr();
  const auto t = tally(msgs);
  EXPECT_EQ(t.size(), 600u);
  for (const auto& [k, n] : t) EXPECT_EQ(n, 1) << k.first << " #" << k.second;
  const json v = json::parse(msgs.front().value);
  EXPECT_EQ(v["sensor_id"], msgs.front().key);
  EXPECT_EQ(msgs.front().key.rfind("S-00", 0), 0u);
  EXPECT_TRUE(v["latitude"].is_number());
  EXPECT_TRUE(v["temperature"].is_number());
  EXPECT_EQ(v["status"], "ok");
  EXPECT_EQ(v.size(), 7u) << msgs.front().value;  // sensor_id, timestamp + 5 mapped
  stop_vane(*vane);
}

TEST_F(MqttTest, PersistentSessionKeepsWhatWasPublishedWhileVaneWasDown) {
  auto vane = start_vane(kMapping);
  ASSERT_TRUE(connected(*vane)) << vane->captured_stderr();
  auto pub = sim(3, 20, 600);  // ~10 s of publishing
  KafkaReader reader(bootstrap_);
  ASSERT_GE(reader.read_until({"telemetry"}, 60, std::chrono::steady_clock::now() + 20s).size(), 60u);
  stop_vane(*vane);
  // The publisher goes on while vane is down; the broker queues for vane's session.
  const std::size_t before = reader.read_until({"telemetry"}, 100000, std::chrono::steady_clock::now() + 500ms).size();
  {
    // Keep vane down until another subscriber has seen 60 more messages go by.
    ChildProcess watch({"mosquitto_sub", "-L", broker_->url().replace(0, 6, "mqtt://") + "/sensors/+/telemetry", "-C",
                        "60", "-q", "0"},
                       dir_.path() + "/sub.stderr");
    ASSERT_TRUE(watch.wait_exit(std::chrono::steady_clock::now() + 20s).has_value());
  }
  vane = start_vane(kMapping);
  const long n = published(*pub);
  ASSERT_EQ(n, 600);
  std::vector<ConsumedMessage> msgs;
  ASSERT_TRUE(wait_until(
      [&] {
        msgs = reader.read_until({"telemetry"}, 100000, std::chrono::steady_clock::now() + 200ms);
        return tally(msgs).size() >= 600;
      },
      30s))
      << tally(msgs).size() << " of 600\n" << vane->captured_stderr();
  EXPECT_LT(before, 600u) << "vane was not down while publishing went on";
  EXPECT_EQ(tally(msgs).size(), 600u);
  stop_vane(*vane);
}

TEST_F(MqttTest, BrokerRestartReconnectsAndResubscribes) {
  auto vane = start_vane(kMapping);
  ASSERT_TRUE(connected(*vane)) << vane->captured_stderr();
  auto a = sim(2, 100, 200);
  ASSERT_EQ(published(*a), 200);
  broker_->stop();
  broker_->start();
  ASSERT_TRUE(broker_->ready());
  ASSERT_TRUE(connected(*vane, 2)) << vane->captured_stderr();
  // Same sensors, a second publisher: n starts at 0 again, so count messages.
  auto b = sim(2, 100, 200);
  ASSERT_EQ(published(*b), 200);
  KafkaReader reader(bootstrap_);
  // QoS 1 is at-least-once: a message whose PUBACK the broker had not
  // processed when it stopped is redelivered from its persistence file. Count
  // distinct payloads (each carries its publish time) and bound the repeats by
  // the broker's in-flight window.
  std::vector<ConsumedMessage> msgs;
  auto distinct = [&] {
    std::set<std::string> d;
    for (const auto& m : msgs) d.insert(m.key + ' ' + m.value);
    return d.size();
  };
  ASSERT_TRUE(wait_until(
      [&] {
        msgs = reader.read_until({"telemetry"}, 100000, std::chrono::steady_clock::now() + 200ms);
        return distinct() >= 400;
      },
      30s))
      << distinct() << " of 400\n" << vane->captured_stderr();
  stop_vane(*vane);
  msgs = reader.read_until({"telemetry"}, 100000, std::chrono::steady_clock::now() + 300ms);
  EXPECT_EQ(distinct(), 400u);
  EXPECT_LE(msgs.size() - distinct(), 20u) << "more repeats than one in-flight window after the restart";
  EXPECT_NE(vane->captured_stderr().find("1 reconnects"), std::string::npos) << vane->captured_stderr();
}

TEST_F(MqttTest, MalformedPayloadsGoToTheDeadLetterTopicWithTheirReason) {
  auto vane = start_vane(R"("device_id": "/sensor_id", "max_payload_bytes": 65536)");
  ASSERT_TRUE(connected(*vane)) << vane->captured_stderr();
  const std::string big = "{\"sensor_id\": \"S-9\", \"blob\": \"" + std::string(1 << 20, 'x') + "\"}";
  write_file(dir_.path() + "/big.txt", big);
  write_file(dir_.path() + "/bad-utf8.txt", "{\"sensor_id\": \"S-9\", \"s\": \"\xff\xfe\"}");
  auto pub = [&](std::vector<std::string> args) {
    std::vector<std::string> argv{"mosquitto_pub", "-L", broker_->url().replace(0, 6, "mqtt://") + "/sensors/S-9/telemetry",
                                  "-q", "1"};
    argv.insert(argv.end(), args.begin(), args.end());
    ChildProcess p(argv, dir_.path() + "/pub.stderr");
    return p.wait_exit(std::chrono::steady_clock::now() + 10s);
  };
  ASSERT_EQ(pub({"-m", "not json"}), 0);
  ASSERT_EQ(pub({"-m", "[1, 2]"}), 0);
  ASSERT_EQ(pub({"-m", "{\"temperature\": 1}"}), 0);
  ASSERT_EQ(pub({"-f", dir_.path() + "/big.txt"}), 0);
  ASSERT_EQ(pub({"-f", dir_.path() + "/bad-utf8.txt"}), 0);
  ASSERT_EQ(pub({"-m", "{\"sensor_id\": \"S-9\", \"temperature\": 21.5}"}), 0);  // and life goes on
  KafkaReader reader(bootstrap_);
  auto dlq = reader.read_until({"telemetry.dlq"}, 5, std::chrono::steady_clock::now() + 20s);
  ASSERT_EQ(dlq.size(), 5u) << vane->captured_stderr();
  std::vector<std::string> reasons;
  for (const auto& m : dlq) reasons.push_back(m.headers.at("vane-error"));
  EXPECT_EQ(reasons[0], "payload is not JSON (or not valid UTF-8)");
  EXPECT_EQ(dlq[0].value, "not json");  // the original payload
  EXPECT_EQ(reasons[1], "payload is a JSON array, not an object");
  EXPECT_EQ(reasons[2], "no device id at /sensor_id");
  EXPECT_EQ(reasons[3], "payload of " + std::to_string(big.size()) + " bytes exceeds max_payload_bytes 65536");
  EXPECT_EQ(dlq[3].value.size(), 65536u);
  EXPECT_EQ(reasons[4], "payload is not JSON (or not valid UTF-8)");
  auto ok = reader.read_until({"telemetry"}, 1, std::chrono::steady_clock::now() + 20s);
  ASSERT_EQ(ok.size(), 1u);
  EXPECT_EQ(json::parse(ok[0].value)["temperature"], 21.5);
  stop_vane(*vane);
}

}  // namespace
}  // namespace vane::test

namespace vane::test {
namespace {

// Generates a CA, a server certificate for 127.0.0.1 and a client
// certificate with openssl, runs mosquitto with TLS and required client
// certificates, and checks vane connects — and refuses a broker its CA did
// not sign, saying so.
class MqttTlsTest : public ::testing::Test {
 protected:
  bool sh(const std::string& cmd) {
    ChildProcess p({"/bin/sh", "-c", cmd}, dir_.path() + "/openssl.log");
    auto rc = p.wait_exit(std::chrono::steady_clock::now() + 60s);
    return rc && *rc == 0;
  }
  void SetUp() override {
    const std::string d = dir_.path();
    write_file(d + "/san.ext", "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
    for (const char* ca : {"ca", "otherca"})
      ASSERT_TRUE(sh("cd " + d + " && openssl req -x509 -newkey rsa:2048 -nodes -keyout " + ca + ".key -out " + ca +
                     ".crt -days 2 -subj /CN=vane-test-" + ca));
    for (const char* who : {"server", "client"})
      ASSERT_TRUE(sh("cd " + d + " && openssl req -newkey rsa:2048 -nodes -keyout " + who + ".key -out " + who +
                     ".csr -subj /CN=" + who + " && openssl x509 -req -in " + who +
                     ".csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext -out " + who + ".crt"))
          << ChildProcess({"/bin/cat", d + "/openssl.log"}).captured_stderr();
    // Started as root, mosquitto drops to its own user: it must read its files.
    ASSERT_TRUE(sh("chmod 755 " + d + " && chmod 644 " + d + "/*.key"));
    port_ = free_port();
    write_file(d + "/mosquitto.conf", "listener " + std::to_string(port_) + " 127.0.0.1\n" + "cafile " + d +
                                          "/ca.crt\ncertfile " + d + "/server.crt\nkeyfile " + d +
                                          "/server.key\nrequire_certificate true\nallow_anonymous true\n");
    broker_ = std::make_unique<ChildProcess>(std::vector<std::string>{"mosquitto", "-c", d + "/mosquitto.conf"},
                                             d + "/mosquitto.log");
    bootstrap_ = kafka_.start(1, {"telemetry:3", "telemetry.dlq:1"});
    ASSERT_FALSE(bootstrap_.empty());
  }

  std::unique_ptr<ChildProcess> start_vane(const std::string& ca) {
    const std::string d = dir_.path();
    const std::string cfg =
        "{\n \"gateway\": { \"id\": \"gw-test\" },\n \"buffer\": { \"path\": \"" + d + "/buffer.db\" },\n"
        " \"kafka\": { \"brokers\": \"" + bootstrap_ + "\", \"shutdown_timeout_ms\": 3000 },\n"
        " \"sources\": [ { \"name\": \"env\", \"type\": \"mqtt\", \"url\": \"mqtts://127.0.0.1:" + std::to_string(port_) +
        "\", \"topics\": [\"sensors/+/telemetry\"], \"device_id\": \"{topic[1]}\", \"ca_file\": \"" + d + "/" + ca +
        ".crt\", \"cert_file\": \"" + d + "/client.crt\", \"key_file\": \"" + d + "/client.key\" } ]\n}\n";
    write_file(d + "/vane.jsonc", cfg);
    return std::make_unique<ChildProcess>(std::vector<std::string>{vane_bin(), "run", "-c", d + "/vane.jsonc"},
                                          d + "/vane.stderr");
  }

  TempDir dir_;
  MockKafka kafka_;
  std::string bootstrap_;
  int port_ = 0;
  std::unique_ptr<ChildProcess> broker_;
};

TEST_F(MqttTlsTest, ConnectsWithClientCertificateAndRefusesAWrongCa) {
  auto vane = start_vane("ca");
  ASSERT_TRUE(wait_until([&] { return vane->captured_stderr().find("connected to ssl://") != std::string::npos; }, 20s))
      << vane->captured_stderr();
  const std::string d = dir_.path();
  ChildProcess pub({"mosquitto_pub", "-h", "127.0.0.1", "-p", std::to_string(port_), "--cafile", d + "/ca.crt", "--cert",
                    d + "/client.crt", "--key", d + "/client.key", "-t", "sensors/S-7/telemetry", "-q", "1", "-m",
                    "{\"temperature\": 19.5}"},
                   d + "/pub.stderr");
  ASSERT_EQ(pub.wait_exit(std::chrono::steady_clock::now() + 10s), 0) << pub.captured_stderr();
  KafkaReader reader(bootstrap_);
  auto msgs = reader.read_until({"telemetry"}, 1, std::chrono::steady_clock::now() + 20s);
  ASSERT_EQ(msgs.size(), 1u) << vane->captured_stderr();
  EXPECT_EQ(msgs[0].key, "S-7");
  vane->send_signal(SIGTERM);
  EXPECT_EQ(vane->wait_exit(std::chrono::steady_clock::now() + 20s), 0);

  // A CA that did not sign the broker's certificate: refused, and said so.
  auto wrong = start_vane("otherca");
  ASSERT_TRUE(wait_until([&] { return wrong->captured_stderr().find("cannot connect to ssl://") != std::string::npos; }, 20s))
      << wrong->captured_stderr();
  EXPECT_EQ(wrong->captured_stderr().find("connected to ssl://"), std::string::npos) << wrong->captured_stderr();
  EXPECT_NE(wrong->captured_stderr().find("TLS connect failure"), std::string::npos) << wrong->captured_stderr();
  wrong->send_signal(SIGTERM);
  EXPECT_EQ(wrong->wait_exit(std::chrono::steady_clock::now() + 20s), 0);
}

}  // namespace
}  // namespace vane::test

namespace vane::test {
namespace {

// Username and a password from a file: connects; a wrong password is a
// logged, retried refusal; the password itself never appears in the log.
TEST(MqttAuth, PasswordFromAFileAndNeverLogged) {
  TempDir dir;
  const std::string d = dir.path();
  ::chmod(d.c_str(), 0777);
  {
    ChildProcess p({"mosquitto_passwd", "-b", "-c", d + "/passwd", "vane", "s3cret-Pa55"}, d + "/p.log");
    ASSERT_EQ(p.wait_exit(std::chrono::steady_clock::now() + 10s), 0);
  }
  ::chmod((d + "/passwd").c_str(), 0644);
  const int port = free_port();
  write_file(d + "/m.conf", "listener " + std::to_string(port) + " 127.0.0.1\nallow_anonymous false\npassword_file " + d +
                                "/passwd\n");
  ChildProcess broker({"mosquitto", "-c", d + "/m.conf"}, d + "/m.log");
  MockKafka kafka;
  const std::string bootstrap = kafka.start(1, {"telemetry:3", "telemetry.dlq:1"});
  ASSERT_FALSE(bootstrap.empty());
  auto run = [&](const std::string& password) {
    write_file(d + "/pw", password + "\n");
    write_file(d + "/vane.jsonc", "{\"gateway\": {\"id\": \"gw\"}, \"buffer\": {\"path\": \"" + d + "/b.db\"},"
                                  "\"kafka\": {\"brokers\": \"" + bootstrap + "\"}, \"sources\": [{\"name\": \"env\","
                                  " \"type\": \"mqtt\", \"url\": \"tcp://127.0.0.1:" + std::to_string(port) + "\","
                                  " \"topics\": [\"s/#\"], \"device_id\": \"{topic[1]}\", \"username\": \"vane\","
                                  " \"password_file\": \"" + d + "/pw\"}]}");
    return std::make_unique<ChildProcess>(std::vector<std::string>{vane_bin(), "run", "-c", d + "/vane.jsonc"},
                                          d + "/vane-" + password + ".log");
  };
  auto good = run("s3cret-Pa55");
  EXPECT_TRUE(wait_until([&] { return good->captured_stderr().find("connected to tcp://") != std::string::npos; }, 20s))
      << good->captured_stderr();
  good->send_signal(SIGTERM);
  EXPECT_EQ(good->wait_exit(std::chrono::steady_clock::now() + 20s), 0);

  auto bad = run("wrong-Pa55");
  EXPECT_TRUE(wait_until([&] { return bad->captured_stderr().find("cannot connect to tcp://") != std::string::npos; }, 20s))
      << bad->captured_stderr();
  bad->send_signal(SIGTERM);
  EXPECT_EQ(bad->wait_exit(std::chrono::steady_clock::now() + 20s), 0);
  for (const auto* p : {good.get(), bad.get()}) {
    EXPECT_EQ(p->captured_stderr().find("Pa55"), std::string::npos) << p->captured_stderr();
  }
}

}  // namespace
}  // namespace vane::test
