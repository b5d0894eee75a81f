// The HTTP endpoint of a running vane: /metrics scraped under load and
// checked against what landed in Kafka (and by promtool), /health following
// the progress verdict (503 while a source hangs, 200 through a Kafka
// outage), the read API, and authentication. The metrics-vs-Kafka test runs
// against Apache Kafka itself; the others test vane's own HTTP logic against
// the mock cluster helper.
#include <httplib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
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

// A running vane with its HTTP endpoint on a port it picked itself.
class Agent {
 public:
  Agent(const std::string& config, const std::string& log)
      : proc_({vane_bin(), "run", "--config", config}, log), port_(wait_http_port(proc_, 20s)) {}
  int port() const { return port_; }
  ChildProcess& proc() { return proc_; }

  httplib::Result get(const std::string& path, const httplib::Headers& h = {}) {
    httplib::Client c("127.0.0.1", port_);
    c.set_connection_timeout(2);
    c.set_read_timeout(5);
    return c.Get(path, h);
  }
  Samples metrics() {
    auto r = get("/metrics");
    return r && r->status == 200 ? parse_samples(r->body) : Samples{};
  }
  std::pair<int, json> health() {
    auto r = get("/health");
    if (!r) return {0, json()};
    return {r->status, json::parse(r->body, nullptr, false)};
  }
  bool stop() {
    proc_.send_signal(SIGTERM);
    auto rc = proc_.wait_exit(deadline_in(15s));
    return rc && *rc == 0;
  }

 private:
  ChildProcess proc_;
  int port_ = 0;
};

std::string config(const std::string& dir, const std::string& brokers, const std::string& sim_knobs,
                   const std::string& http_extra = "") {
  std::string c = sim_config(dir + "/buffer.db", brokers, sim_knobs);
  const std::string off = "\"http\": { \"listen\": \"\" }";
  c.replace(c.find(off), off.size(), "\"http\": { \"listen\": \"127.0.0.1:0\"" + http_extra + " }");
  return c;
}

// `promtool check metrics` on a scrape: exit 0 and nothing printed.
std::string promtool_check(const std::string& scrape) {
  ChildProcess p({"promtool", "check", "metrics"});
  std::istringstream in(scrape);
  for (std::string line; std::getline(in, line);) p.write_line(line);
  p.close_stdin();
  std::string out;
  while (auto line = p.read_line(deadline_in(20s))) out += *line + "\n";
  auto rc = p.wait_exit(deadline_in(20s));
  if (!rc) return "promtool did not finish";
  if (*rc != 0 || !out.empty()) return "promtool exit " + std::to_string(*rc) + ": " + out;
  return "";
}

// Against Apache Kafka itself: the counters must match what a consumer
// reads back from a real broker.
TEST(Http, MetricsUnderLoadMatchWhatLandedInKafka) {
  TempDir dir("vane-http-");
  auto kafka = start_kafka();
  ASSERT_TRUE(kafka);
  const std::string brokers = kafka->bootstrap();
  constexpr int kTotal = 30000;
  write_file(dir.file("vane.jsonc"),
             config(dir.path(), brokers, "\"devices\": 15, \"rate\": 6000, \"faults\": 0.05, \"limit\": " + std::to_string(kTotal)));
  Agent vane(dir.file("vane.jsonc"), dir.file("vane.stderr"));
  ASSERT_GT(vane.port(), 0) << vane.proc().captured_stderr();

  // Scrape while the load runs; promtool judges a live scrape.
  KafkaReader reader(brokers);
  std::vector<ConsumedMessage> got;
  double last_accepted = 0;
  int scrapes = 0;
  std::string lint = "no scrape under load";
  const auto deadline = deadline_in(60s);
  while (Clock::now() < deadline) {
    got = reader.read_until({"telemetry", "telemetry.dlq"}, kTotal, deadline_in(500ms));
    auto r = vane.get("/metrics");
    ASSERT_TRUE(r && r->status == 200);
    ASSERT_EQ(r->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
    const Samples s = parse_samples(r->body);
    const double accepted = s.at(R"(vane_readings_total{source="sim",outcome="accepted"})");
    EXPECT_GE(accepted, last_accepted) << "a counter went down";
    last_accepted = accepted;
    if (accepted > 0 && accepted < kTotal * 0.9 && scrapes++ == 0) lint = promtool_check(r->body);
    if (got.size() >= static_cast<std::size_t>(kTotal)) break;
  }
  EXPECT_EQ(lint, "");
  EXPECT_GE(scrapes, 2) << "the load finished before it could be scraped twice";
  ASSERT_EQ(got.size(), static_cast<std::size_t>(kTotal));
  std::size_t telemetry = 0, dlq = 0;
  for (const auto& m : got) (m.topic == "telemetry" ? telemetry : dlq)++;
  EXPECT_GT(dlq, 0u);

  // Once everything landed, the counters say exactly that.
  Samples s;
  ASSERT_TRUE(wait_until([&] {
    s = vane.metrics();
    return s.count("vane_kafka_delivered_total") && s.at("vane_kafka_delivered_total") == kTotal;
  }, 10s)) << "delivered " << s["vane_kafka_delivered_total"];
  EXPECT_EQ(s.at(R"(vane_readings_total{source="sim",outcome="accepted"})"), telemetry);
  EXPECT_EQ(s.at(R"(vane_readings_total{source="sim",outcome="rejected"})"), dlq);
  double by_rule = 0;
  for (const auto& [k, v] : s)
    if (k.rfind("vane_rejections_total{", 0) == 0) by_rule += v;
  EXPECT_GE(by_rule, dlq) << "every rejection has at least one rule";
  EXPECT_EQ(s.at("vane_delivery_latency_seconds_count"), kTotal);
  EXPECT_EQ(s.at(R"(vane_delivery_latency_seconds_bucket{le="+Inf"})"), kTotal);
  std::string buckets;
  for (const auto& [k, v] : s)
    if (k.rfind("vane_delivery_latency_seconds_bucket", 0) == 0) buckets += " " + k.substr(36) + "=" + std::to_string(v);
  EXPECT_GT(s.at(R"(vane_delivery_latency_seconds_bucket{le="1"})"), 0.9 * kTotal)
      << "live readings land within 1 s; buckets:" << buckets;
  EXPECT_EQ(s.at("vane_buffer_rows"), 0);
  EXPECT_EQ(s.at("vane_uplink_up"), 1);
  EXPECT_EQ(s.at("vane_progress_ok"), 1);
  for (const char* r : {"buffer_cap", "disk_full", "ingest_timeout", "shutdown"})
    EXPECT_EQ(s.at(std::string(R"(vane_readings_dropped_total{reason=")") + r + "\"}"), 0) << r;
  EXPECT_GT(s.at("vane_process_resident_memory_bytes"), 1e6);
  EXPECT_GT(s.at("vane_process_cpu_seconds_total"), 0);
  EXPECT_EQ(promtool_check(vane.get("/metrics")->body), "");

  // The read API: the 15 turbines, each with its latest values and counts.
  auto latest = json::parse(vane.get("/api/v1/latest")->body);
  EXPECT_EQ(latest["devices"].size(), 15u);
  auto one = vane.get("/api/v1/latest?device=T-007");
  ASSERT_TRUE(one && one->status == 200);
  const json t7 = json::parse(one->body);
  EXPECT_EQ(t7["source"], "sim");
  EXPECT_TRUE(t7["fields"].contains("wind_speed"));
  EXPECT_EQ(vane.get("/api/v1/latest?device=nope")->status, 404);
  const json stats = json::parse(vane.get("/api/v1/stats")->body);
  EXPECT_EQ(stats["window_s"], 60);
  double counted = 0;
  for (const auto& d : stats["devices"]) counted += d["count"].get<double>();
  EXPECT_EQ(counted, kTotal) << "the run fits in the 60 s window";
  const json w = json::parse(vane.get("/api/v1/stats?device=T-007")->body)["fields"]["wind_speed"];
  EXPECT_LE(w["min"].get<double>(), w["mean"].get<double>());
  EXPECT_LE(w["mean"].get<double>(), w["max"].get<double>());
  EXPECT_TRUE(vane.stop());
}

TEST(Http, HealthFlipsWhenASourceHangsNotOnAKafkaOutage) {
  TempDir dir("vane-http-");
  MockKafka kafka;
  const std::string brokers = kafka.start(1, {}, dir.file("mock.stderr"));
  ASSERT_FALSE(brokers.empty()) << kafka.last_error();
  const std::string hang = dir.file("hang");
  write_file(dir.file("vane.jsonc"),
             config(dir.path(), brokers, "\"devices\": 3, \"interval_ms\": 100, \"hang_file\": \"" + hang + "\"",
                    ", \"stall_after_ms\": 2000"));
  Agent vane(dir.file("vane.jsonc"), dir.file("vane.stderr"));
  ASSERT_GT(vane.port(), 0) << vane.proc().captured_stderr();
  std::pair<int, json> h;
  ASSERT_TRUE(wait_until([&] { h = vane.health(); return h.first == 200 && h.second["uplink"]["state"] == "up"; }, 20s))
      << h.second.dump();
  EXPECT_EQ(h.second["sources"][0]["state"], "up");

  // Kafka down: the buffer absorbs it. /health reports the outage and stays
  // 200 for twice the stall window.
  ASSERT_TRUE(kafka.down());
  ASSERT_TRUE(wait_until([&] { h = vane.health(); return h.second["uplink"]["state"] != "up"; }, 30s)) << h.second.dump();
  const auto outage_end = Clock::now() + 4s;
  int answers = 0;
  while (Clock::now() < outage_end) {
    h = vane.health();
    ASSERT_EQ(h.first, 200) << h.second.dump();
    ++answers;
  }
  EXPECT_GT(answers, 10);
  EXPECT_GT(h.second["buffer"]["rows"].get<int>(), 0) << "readings wait in the buffer";
  ASSERT_TRUE(kafka.up());
  ASSERT_TRUE(wait_until([&] { h = vane.health(); return h.second["uplink"]["state"] == "up" && h.second["buffer"]["rows"] == 0; }, 30s))
      << h.second.dump();

  // The simulated sensor hangs: 503, naming the source; back when it resumes.
  write_file(hang, "");
  ASSERT_TRUE(wait_until([&] { h = vane.health(); return h.first == 503; }, 10s)) << h.second.dump();
  EXPECT_EQ(h.second["status"], "stalled");
  EXPECT_EQ(h.second["sources"][0]["state"], "stalled");
  EXPECT_NE(h.second["why"].get<std::string>().find("source sim"), std::string::npos) << h.second["why"];
  Samples s = vane.metrics();
  EXPECT_EQ(s.at("vane_progress_ok"), 0);
  EXPECT_EQ(s.at(R"(vane_source_stalled{source="sim"})"), 1);
  EXPECT_EQ(s.at("vane_progress_stalls_total"), 1);
  ::unlink(hang.c_str());
  ASSERT_TRUE(wait_until([&] { h = vane.health(); return h.first == 200; }, 10s)) << h.second.dump();
  EXPECT_EQ(h.second["sources"][0]["state"], "up");
  EXPECT_TRUE(vane.stop());
}

#ifdef VANE_TEST_MODBUS
TEST(Http, ModbusDevicesAreCountedOneByOneAndADeadSlaveIsNotAStall) {
  TempDir dir("vane-http-");
  MockKafka kafka;
  const std::string brokers = kafka.start(1, {}, dir.file("mock.stderr"));
  ASSERT_FALSE(brokers.empty()) << kafka.last_error();
  ChildProcess sim({std::string(VANE_BINARY_DIR) + "/simulator/vane-sim", "modbus", "--listen", "127.0.0.1:0",
                    "--turbines", "2"},
                   dir.file("sim.stderr"));
  auto line = sim.read_line(deadline_in(10s));
  ASSERT_TRUE(line && line->rfind("LISTENING ", 0) == 0);
  const std::string port = line->substr(line->rfind(':') + 1);
  // Units 1 and 2 answer; unit 9 does not exist: every poll of it times out.
  write_file(dir.file("vane.jsonc"),
             "{ \"gateway\": { \"id\": \"gw-test\" }, \"buffer\": { \"path\": \"" + dir.file("b.db") + "\" },\n"
             "  \"kafka\": { \"brokers\": \"" + brokers + "\" },\n"
             "  \"sources\": [ { \"name\": \"park\", \"type\": \"modbus_tcp\", \"host\": \"127.0.0.1\", \"port\": " + port +
             ", \"interval_ms\": 200, \"timeout_ms\": 100, \"device_field\": \"turbine_id\",\n"
             "    \"devices\": [ { \"id\": \"T-001\", \"unit_id\": 1 }, { \"id\": \"T-002\", \"unit_id\": 2 },"
             " { \"id\": \"T-009\", \"unit_id\": 9 } ],\n"
             "    \"registers\": [ { \"field\": \"wind_speed\", \"table\": \"input\", \"address\": 0, \"type\": \"float32\" } ] } ],\n"
             "  \"http\": { \"listen\": \"127.0.0.1:0\", \"stall_after_ms\": 2000 } }\n");
  Agent vane(dir.file("vane.jsonc"), dir.file("vane.stderr"));
  ASSERT_GT(vane.port(), 0) << vane.proc().captured_stderr();
  Samples s;
  auto at = [&](const std::string& k) { return s.count(k) ? s.at(k) : -1.0; };
  ASSERT_TRUE(wait_until([&] {
    s = vane.metrics();
    return at(R"(vane_modbus_request_errors_total{source="park",device="T-009",kind="timeout"})") >= 3 &&
           at(R"(vane_readings_total{source="park",outcome="accepted"})") >= 6;
  }, 20s)) << vane.proc().captured_stderr();
  EXPECT_EQ(at(R"(vane_modbus_request_errors_total{source="park",device="T-001",kind="timeout"})"), 0);
  EXPECT_GE(at(R"(vane_modbus_polls_total{source="park",device="T-002"})"), 3);
  EXPECT_GT(at(R"(vane_modbus_request_duration_seconds_count{source="park",device="T-001"})"), 0);
  EXPECT_GT(at(R"(vane_source_expected_interval_seconds{source="park"})"), 0.2);
  EXPECT_EQ(promtool_check(vane.get("/metrics")->body), "");
  // The dead slave costs a timeout per poll; the source goes round its loop:
  // no stall, for longer than the stall window.
  const auto until = Clock::now() + 3s;
  std::pair<int, json> h;
  while (Clock::now() < until) {
    h = vane.health();
    ASSERT_EQ(h.first, 200) << h.second.dump();
  }
  EXPECT_EQ(h.second["sources"][0]["state"], "up");
  EXPECT_GT(h.second["sources"][0]["errors"].get<int>(), 0);
  const std::string dead = "T-009";
  EXPECT_EQ(vane.get("/api/v1/latest?device=" + dead)->status, 404) << "never read, so never shown";
  EXPECT_TRUE(vane.stop());
}
#endif

// A SIGTERM right after the endpoint starts still stops vane (httplib's
// stop() is a no-op until its loop runs), and a second vane cannot share
// the port (no SO_REUSEPORT): it says so and runs on without the endpoint.
TEST(Http, StopsRightAfterStartAndNeverSharesItsPort) {
  TempDir dir("vane-http-");
  MockKafka kafka;
  const std::string brokers = kafka.start(1, {}, dir.file("mock.stderr"));
  ASSERT_FALSE(brokers.empty()) << kafka.last_error();
  write_file(dir.file("vane.jsonc"), config(dir.path(), brokers, "\"devices\": 2, \"interval_ms\": 100"));
  for (int i = 0; i < 10; ++i) {
    Agent vane(dir.file("vane.jsonc"), dir.file("vane.stderr"));
    ASSERT_GT(vane.port(), 0) << vane.proc().captured_stderr();
    ASSERT_TRUE(vane.stop()) << "run " << i << ": no exit 0 within 15 s of SIGTERM";
  }
  Agent first(dir.file("vane.jsonc"), dir.file("first.stderr"));
  ASSERT_GT(first.port(), 0);
  std::string second_cfg = config(dir.path() + "/2", brokers, "\"devices\": 2, \"interval_ms\": 100");
  std::filesystem::create_directory(dir.path() + "/2");
  const std::string any = "\"listen\": \"127.0.0.1:0\"";
  second_cfg.replace(second_cfg.find(any), any.size(), "\"listen\": \"127.0.0.1:" + std::to_string(first.port()) + "\"");
  write_file(dir.file("second.jsonc"), second_cfg);
  ChildProcess second({vane_bin(), "run", "--config", dir.file("second.jsonc")}, dir.file("second.stderr"));
  EXPECT_TRUE(wait_until([&] { return second.captured_stderr().find("Address already in use; running without") != std::string::npos; }, 20s))
      << second.captured_stderr();
  EXPECT_TRUE(second.running()) << "the pipeline runs on without its endpoint";
  EXPECT_EQ(first.health().first, 200);
  second.send_signal(SIGTERM);
  EXPECT_EQ(second.wait_exit(deadline_in(15s)), 0);
  EXPECT_TRUE(first.stop());
}

TEST(Http, TokenOrPasswordGuardsEveryPath) {
  TempDir dir("vane-http-");
  MockKafka kafka;
  const std::string brokers = kafka.start(1, {}, dir.file("mock.stderr"));
  ASSERT_FALSE(brokers.empty()) << kafka.last_error();
  write_file(dir.file("token"), "s3cret-token\n");
  write_file(dir.file("basic"), "tech:turbine 42\n");
  for (const bool bearer : {true, false}) {
    SCOPED_TRACE(bearer ? "bearer" : "basic");
    write_file(dir.file("vane.jsonc"),
               config(dir.path(), brokers, "\"devices\": 2, \"interval_ms\": 100",
                      bearer ? ", \"bearer_token_file\": \"" + dir.file("token") + "\""
                             : ", \"basic_auth_file\": \"" + dir.file("basic") + "\""));
    Agent vane(dir.file("vane.jsonc"), dir.file("vane.stderr"));
    ASSERT_GT(vane.port(), 0) << vane.proc().captured_stderr();
    const httplib::Headers right = {
        {"Authorization", bearer ? "Bearer s3cret-token" : "Basic dGVjaDp0dXJiaW5lIDQy"}};  // tech:turbine 42
    const httplib::Headers wrong = {{"Authorization", bearer ? "Bearer s3cret-tokem" : "Basic dGVjaDp0dXJiaW5lIDQz"}};
    for (const char* path : {"/metrics", "/health", "/api/v1/latest", "/api/v1/stats", "/"}) {
      auto none = vane.get(path);
      ASSERT_TRUE(none);
      EXPECT_EQ(none->status, 401) << path;
      EXPECT_EQ(none->get_header_value("WWW-Authenticate").rfind(bearer ? "Bearer" : "Basic", 0), 0u) << path;
      EXPECT_EQ(vane.get(path, wrong)->status, 401) << path;
      auto ok = vane.get(path, right);
      EXPECT_TRUE(ok && (ok->status == 200 || (std::string(path) == "/health" && ok->status == 503))) << path;
    }
    EXPECT_NE(vane.get("/", right)->body.find("<html"), std::string::npos);
    const std::string log = vane.proc().captured_stderr();
    EXPECT_EQ(log.find("s3cret"), std::string::npos) << "the token is never logged";
    EXPECT_TRUE(vane.stop());
  }
}

}  // namespace
}  // namespace vane::test
