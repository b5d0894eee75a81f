// The Modbus driver against an independent slave (python3-pymodbus, values
// encoded by pymodbus itself) and against vane-sim, end to end into the
// Kafka mock cluster.
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <sstream>

#include "agent_test_util.h"

namespace vane::test {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

// A pymodbus slave in its own process.
class PySlave {
 public:
  PySlave(const TempDir& dir, const json& values, const std::string& units) {
    write_file(dir.path() + "/values.json", values.dump());
    proc_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{"/usr/bin/python3", source_dir() + "/tests/support/pymodbus_slave.py", "--values",
                                 dir.path() + "/values.json", "--units", units},
        dir.path() + "/slave.stderr");
    auto line = proc_->read_line(std::chrono::steady_clock::now() + 20s);
    if (line && line->rfind("LISTENING ", 0) == 0) endpoint_ = line->substr(10);
  }
  std::string host() const { return endpoint_.substr(0, endpoint_.rfind(':')); }
  int port() const { return endpoint_.empty() ? 0 : std::stoi(endpoint_.substr(endpoint_.rfind(':') + 1)); }
  json counts() {
    proc_->write_line("counts");
    auto line = proc_->read_line(std::chrono::steady_clock::now() + 10s);
    return line ? json::parse(*line) : json();
  }
  std::string err() const { return proc_->captured_stderr(); }

 private:
  std::unique_ptr<ChildProcess> proc_;
  std::string endpoint_;
};

class ModbusTest : public ::testing::Test {
 protected:
  void SetUp() override {
    bootstrap_ = kafka_.start(1, {"telemetry:3", "telemetry.dlq:1"});
    ASSERT_FALSE(bootstrap_.empty());
  }

  // Runs vane with one modbus_tcp source; `source` is the source object's
  // body after name and type.
  std::unique_ptr<ChildProcess> start_vane(const std::string& source, const std::string& schema_line = "") {
    const std::string cfg = "{\n \"gateway\": { \"id\": \"gw-test\" },\n"
                            " \"buffer\": { \"path\": \"" + dir_.path() + "/buffer.db\" },\n"
                            " \"kafka\": { \"brokers\": \"" + bootstrap_ + "\", \"shutdown_timeout_ms\": 3000 },\n"
                            " \"schemas\": { \"turbine\": \"" + source_dir() + "/examples/schemas/turbine.schema.json\" },\n"
                            " \"sources\": [ { \"name\": \"plc\", \"type\": \"modbus_tcp\", " + schema_line + source +
                            " } ]\n}\n";
    write_file(dir_.path() + "/vane.jsonc", cfg);
    return std::make_unique<ChildProcess>(
        std::vector<std::string>{vane_bin(), "run", "-c", dir_.path() + "/vane.jsonc"}, dir_.path() + "/vane.stderr");
  }

  static void stop_vane(ChildProcess& p) {
    p.send_signal(SIGTERM);
    auto rc = p.wait_exit(std::chrono::steady_clock::now() + 20s);
    ASSERT_TRUE(rc.has_value());
    EXPECT_EQ(*rc, 0) << p.captured_stderr();
  }

  TempDir dir_;
  MockKafka kafka_;
  std::string bootstrap_;
};

TEST_F(ModbusTest, EveryTypeAndWordOrderDecodesExactly) {
  struct Case {
    std::string type;
    json value;
    int words;
  };
  const std::vector<Case> cases = {
      {"int16", -12345, 1},
      {"uint16", 54321, 1},
      {"int32", -1234567890, 2},
      {"uint32", 3456789012u, 2},
      {"int64", -1234567890123456789LL, 4},
      {"uint64", 9123456789012345678ULL, 4},
      {"float32", 3.14159, 2},
      {"float64", -2.718281828459045, 4},
  };
  json typed = json::array(), regs = json::array();
  std::map<std::string, json> expected;
  int address = 0;
  for (const char* order : {"ABCD", "CDAB", "BADC", "DCBA"}) {
    for (const Case& c : cases) {
      const std::string field = c.type + "_" + order;
      typed.push_back({{"table", "holding"}, {"address", address}, {"type", c.type}, {"order", order}, {"value", c.value}});
      regs.push_back({{"field", field}, {"table", "holding"}, {"address", address}, {"type", c.type}, {"order", order}});
      if (c.type == "float32") expected[field] = static_cast<double>(static_cast<float>(c.value.get<double>()));
      else expected[field] = c.value;
      address += c.words;
    }
  }
  // A string, scaled values, bits of a register, coils and discrete inputs.
  typed.push_back({{"table", "input"}, {"address", 0}, {"type", "string"}, {"value", "T-042 nacelle"}});
  regs.push_back({{"field", "label"}, {"table", "input"}, {"address", 0}, {"type", "string"}, {"length", 8}});
  typed.push_back({{"table", "input"}, {"address", 10}, {"type", "int16"}, {"value", -155}});
  regs.push_back({{"field", "scaled"}, {"table", "input"}, {"address", 10}, {"type", "int16"}, {"scale", 0.1}, {"offset", 40}});
  regs.push_back({{"field", "bit0"}, {"table", "input"}, {"address", 11}, {"type", "bool"}, {"bit", 0}});
  regs.push_back({{"field", "bit3"}, {"table", "input"}, {"address", 11}, {"type", "bool"}, {"bit", 3}});
  regs.push_back({{"field", "coil1"}, {"table", "coil"}, {"address", 1}, {"type", "bool"}});
  regs.push_back({{"field", "din0"}, {"table", "discrete"}, {"address", 0}, {"type", "bool"}});
  expected["label"] = "T-042 nacelle";
  expected["scaled"] = -155 * 0.1 + 40;
  expected["bit0"] = true;
  expected["bit3"] = false;
  expected["coil1"] = true;
  expected["din0"] = false;

  json values = {{"typed", typed}, {"coil", {0, 1, 0}}, {"discrete", {0, 1}}};
  values["input"] = json::array();
  for (int i = 0; i < 12; ++i) values["input"].push_back(i == 11 ? 0b0101 : 0);
  PySlave slave(dir_, values, "1");
  ASSERT_GT(slave.port(), 0) << slave.err();

  auto vane = start_vane("\"host\": \"" + slave.host() + "\", \"port\": " + std::to_string(slave.port()) +
                         ", \"interval_ms\": 200, \"devices\": [ { \"id\": \"PLC-1\", \"unit_id\": 1 } ], \"registers\": " +
                         regs.dump());
  KafkaReader reader(bootstrap_);
  auto msgs = reader.read_until({"telemetry"}, 1, std::chrono::steady_clock::now() + 30s);
  ASSERT_GE(msgs.size(), 1u) << vane->captured_stderr();
  const json v = json::parse(msgs[0].value);
  EXPECT_EQ(msgs[0].key, "PLC-1");
  for (const auto& [field, want] : expected) {
    ASSERT_TRUE(v.contains(field)) << field << " missing in " << msgs[0].value;
    if (want.is_number_float() || v[field].is_number_float()) {
      // Bit-exact: the same double, not just close.
      const double got = v[field].get<double>(), exp = want.get<double>();
      EXPECT_EQ(std::memcmp(&got, &exp, sizeof got), 0) << field << ": " << got << " != " << exp;
    } else {
      EXPECT_EQ(v[field], want) << field;
    }
  }
  stop_vane(*vane);
}

TEST_F(ModbusTest, DeadDeviceDoesNotHoldBackTheOthers) {
  json values = {{"holding", {11, 22, 33}}};
  PySlave slave(dir_, values, "1,2");  // unit 3 never answers
  ASSERT_GT(slave.port(), 0) << slave.err();
  auto vane = start_vane("\"host\": \"" + slave.host() + "\", \"port\": " + std::to_string(slave.port()) +
                         ", \"interval_ms\": 500, \"timeout_ms\": 200, \"devices\": [ {\"id\": \"D-1\", \"unit_id\": 1},"
                         " {\"id\": \"D-2\", \"unit_id\": 2}, {\"id\": \"D-3\", \"unit_id\": 3} ],"
                         " \"registers\": [ {\"field\": \"a\", \"address\": 0}, {\"field\": \"c\", \"address\": 2} ]");
  KafkaReader reader(bootstrap_);
  const auto t0 = std::chrono::steady_clock::now();
  auto msgs = reader.read_until({"telemetry"}, 20, t0 + 30s);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_GE(msgs.size(), 20u) << vane->captured_stderr();
  std::map<std::string, int> per;
  for (const auto& m : msgs) per[m.key]++;
  EXPECT_EQ(per.count("D-3"), 0u);
  // Both healthy devices keep the 2/s poll rate (one 200 ms timeout per poll fits).
  EXPECT_GE(per["D-1"], 9);
  EXPECT_GE(per["D-2"], 9);
  EXPECT_LT(secs, 8.0) << "20 readings at 2 devices x 2/s took " << secs << " s";
  stop_vane(*vane);
  const std::string log = vane->captured_stderr();
  const auto at = log.find("device D-3 (unit 3): 0 readings");
  ASSERT_NE(at, std::string::npos) << log;
  // The failing device is visible: its timeouts are counted.
  const std::string d3 = log.substr(at, log.find('\n', at) - at);
  EXPECT_EQ(d3.find(" 0 timeouts"), std::string::npos) << d3;
  EXPECT_NE(d3.find(" timeouts"), std::string::npos) << d3;
}

TEST_F(ModbusTest, CoalescingIssuesThePlannedRequests) {
  // 100 fields on every other holding register 0..198: with max_gap 8 they
  // merge into two requests (the protocol allows 125 registers each).
  json values = {{"holding", json::array()}};
  json regs = json::array();
  for (int i = 0; i < 200; ++i) values["holding"].push_back(i);
  for (int i = 0; i < 100; ++i) regs.push_back({{"field", "r" + std::to_string(2 * i)}, {"address", 2 * i}});
  PySlave slave(dir_, values, "1");
  ASSERT_GT(slave.port(), 0) << slave.err();
  auto vane = start_vane("\"host\": \"" + slave.host() + "\", \"port\": " + std::to_string(slave.port()) +
                         ", \"interval_ms\": 100, \"max_gap\": 8, \"devices\": [ {\"id\": \"D-1\", \"unit_id\": 1} ],"
                         " \"registers\": " + regs.dump());
  KafkaReader reader(bootstrap_);
  auto msgs = reader.read_until({"telemetry"}, 10, std::chrono::steady_clock::now() + 30s);
  ASSERT_GE(msgs.size(), 10u) << vane->captured_stderr();
  stop_vane(*vane);
  const std::size_t polls = reader.read_until({"telemetry"}, 100000, std::chrono::steady_clock::now() + 1s).size();
  const json v = json::parse(msgs.back().value);
  EXPECT_EQ(v["r198"], 198);
  EXPECT_EQ(v["r0"], 0);
  EXPECT_EQ(v.size(), 102u);  // 100 fields, device id, timestamp
  const int served = slave.counts().value("1", 0);
  // Two requests per reading; a poll cut short by the stop may add one.
  EXPECT_GE(served, static_cast<int>(2 * polls));
  EXPECT_LE(served, static_cast<int>(2 * polls + 2));
}

TEST_F(ModbusTest, VaneSimTurbinesLandWithTheirValues) {
  // vane-sim values change only every 100 s here, so what an independent
  // client reads is what vane must have forwarded.
  ChildProcess sim({std::string(VANE_BINARY_DIR) + "/simulator/vane-sim", "modbus", "--listen", "127.0.0.1:0",
                    "--turbines", "5", "--interval-ms", "100000"},
                   dir_.path() + "/sim.stderr");
  auto line = sim.read_line(std::chrono::steady_clock::now() + 10s);
  ASSERT_TRUE(line && line->rfind("LISTENING ", 0) == 0);
  const std::string port = line->substr(line->rfind(':') + 1);

  json regs = json::array();
  const char* fields[] = {"wind_speed", "pitch_angle", "power_output", "temperature", "vibration"};
  for (int i = 0; i < 5; ++i)
    regs.push_back({{"field", fields[i]}, {"table", "input"}, {"address", 2 * i}, {"type", "float32"}});
  json devices = json::array();
  for (int i = 1; i <= 5; ++i) {
    char id[8];
    std::snprintf(id, sizeof id, "T-%03d", i);
    devices.push_back({{"id", id}, {"unit_id", i}});
  }
  auto vane = start_vane("\"host\": \"127.0.0.1\", \"port\": " + port + ", \"interval_ms\": 200, \"device_field\": "
                         "\"turbine_id\", \"devices\": " + devices.dump() + ", \"registers\": " + regs.dump(),
                         "\"schema\": \"turbine\", ");
  KafkaReader reader(bootstrap_);
  auto msgs = reader.read_until({"telemetry"}, 10, std::chrono::steady_clock::now() + 30s);
  ASSERT_GE(msgs.size(), 10u) << vane->captured_stderr();
  EXPECT_TRUE(reader.read_until({"telemetry.dlq"}, 1, std::chrono::steady_clock::now() + 200ms).empty());
  std::map<std::string, json> last;
  for (const auto& m : msgs) last[m.key] = json::parse(m.value);
  ASSERT_EQ(last.size(), 5u);
  stop_vane(*vane);

  // An independent read of unit 3 with pymodbus.
  ChildProcess py({"/usr/bin/python3", "-c",
                   "import struct,sys\n"
                   "from pymodbus.client import ModbusTcpClient\n"
                   "c=ModbusTcpClient('127.0.0.1',port=" + port + ");c.connect()\n"
                   "r=c.read_input_registers(0,10,slave=3).registers\n"
                   "print(' '.join(repr(struct.unpack('>f',struct.pack('>HH',r[i],r[i+1]))[0]) for i in range(0,10,2)))\n"});
  auto vals = py.read_line(std::chrono::steady_clock::now() + 20s);
  ASSERT_TRUE(vals.has_value());
  std::istringstream in(*vals);
  for (const char* f : fields) {
    double want;
    in >> want;
    EXPECT_EQ(last["T-003"][f].get<double>(), want) << f;
  }
}

}  // namespace
}  // namespace vane::test

namespace vane::test {
namespace {

// `vane check-config` shows the request plan; `vane probe modbus` reads vane-sim.
TEST(ModbusCli, CheckConfigShowsThePlanAndProbeDecodes) {
  TempDir dir;
  ChildProcess sim({std::string(VANE_BINARY_DIR) + "/simulator/vane-sim", "modbus", "--listen", "127.0.0.1:0",
                    "--turbines", "2"},
                   dir.path() + "/sim.stderr");
  auto line = sim.read_line(std::chrono::steady_clock::now() + 10s);
  ASSERT_TRUE(line && line->rfind("LISTENING ", 0) == 0);
  const std::string port = line->substr(line->rfind(':') + 1);

  auto run = [&](std::vector<std::string> args, std::string& out) {
    args.insert(args.begin(), vane_bin());
    ChildProcess p(args, dir.path() + "/err.txt");
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (auto l = p.read_line(deadline)) out += *l + "\n";
    auto rc = p.wait_exit(deadline);
    out += p.captured_stderr();
    return rc ? *rc : -1;
  };
  std::string out;
  EXPECT_EQ(run({"check-config", "-c", source_dir() + "/examples/modbus.jsonc"}, out), 0) << out;
  EXPECT_NE(out.find("source park-a (modbus_tcp): 3 devices, every 1000 ms\n"
                     "  registers: 1 requests per poll (T-001, T-002, T-003)\n"
                     "    input        0..9     ( 10) -> wind_speed, pitch_angle, power_output, temperature, vibration"),
            std::string::npos) << out;

  out.clear();
  EXPECT_EQ(run({"probe", "modbus", "--host", "127.0.0.1", "--port", port, "--unit", "2", "--table", "holding",
                 "--address", "8", "--count", "4", "--type", "string"}, out), 0) << out;
  EXPECT_NE(out.find("unit 2 holding 8..11:"), std::string::npos) << out;
  EXPECT_NE(out.find("0x542d"), std::string::npos) << out;  // "T-"
  EXPECT_NE(out.find("\"T-002\""), std::string::npos) << out;

  out.clear();
  EXPECT_EQ(run({"probe", "modbus", "--host", "127.0.0.1", "--port", port, "--unit", "9", "--timeout-ms", "200"}, out), 1);
  EXPECT_NE(out.find("unit 9"), std::string::npos) << out;
  out.clear();
  EXPECT_EQ(run({"probe", "modbus", "--host", "127.0.0.1", "--table", "coils"}, out), 2);
}

}  // namespace
}  // namespace vane::test

namespace vane::test {
namespace {

// Modbus RTU over a socat pty pair: one bus, two unit ids, pymodbus as slave.
TEST_F(ModbusTest, RtuBusWithTwoUnits) {
  const std::string a = dir_.path() + "/ttyA", b = dir_.path() + "/ttyB";
  ChildProcess socat({"socat", "pty,raw,echo=0,link=" + a, "pty,raw,echo=0,link=" + b}, dir_.path() + "/socat.stderr");
  ASSERT_TRUE(wait_until([&] { return std::ifstream(a).good() && std::ifstream(b).good(); }, 10s))
      << socat.captured_stderr();
  json typed = json::array({{{"table", "holding"}, {"address", 0}, {"type", "float32"}, {"order", "CDAB"}, {"value", 12.5}},
                            {{"table", "holding"}, {"address", 2}, {"type", "int32"}, {"value", -70000}}});
  write_file(dir_.path() + "/values.json", json{{"typed", typed}}.dump());
  ChildProcess slave({"/usr/bin/python3", source_dir() + "/tests/support/pymodbus_slave.py", "--values",
                      dir_.path() + "/values.json", "--units", "1,2", "--rtu", b, "--baud", "19200"},
                     dir_.path() + "/slave.stderr");
  auto ready = slave.read_line(std::chrono::steady_clock::now() + 20s);
  ASSERT_TRUE(ready && ready->rfind("LISTENING", 0) == 0) << slave.captured_stderr();

  const std::string cfg = "{\n \"gateway\": { \"id\": \"gw-test\" },\n"
                          " \"buffer\": { \"path\": \"" + dir_.path() + "/buffer.db\" },\n"
                          " \"kafka\": { \"brokers\": \"" + bootstrap_ + "\", \"shutdown_timeout_ms\": 3000 },\n"
                          " \"sources\": [ { \"name\": \"bus\", \"type\": \"modbus_rtu\", \"serial\": \"" + a + "\","
                          " \"baud\": 19200, \"interval_ms\": 300, \"timeout_ms\": 500,"
                          " \"devices\": [ {\"id\": \"M-1\", \"unit_id\": 1}, {\"id\": \"M-2\", \"unit_id\": 2} ],"
                          " \"registers\": [ {\"field\": \"flow\", \"address\": 0, \"type\": \"float32\", \"order\": \"CDAB\"},"
                          " {\"field\": \"count\", \"address\": 2, \"type\": \"int32\"} ] } ]\n}\n";
  write_file(dir_.path() + "/vane.jsonc", cfg);
  ChildProcess vane({vane_bin(), "run", "-c", dir_.path() + "/vane.jsonc"}, dir_.path() + "/vane.stderr");
  KafkaReader reader(bootstrap_);
  auto msgs = reader.read_until({"telemetry"}, 6, std::chrono::steady_clock::now() + 30s);
  ASSERT_GE(msgs.size(), 6u) << vane.captured_stderr() << slave.captured_stderr();
  std::set<std::string> keys;
  for (const auto& m : msgs) {
    keys.insert(m.key);
    const json v = json::parse(m.value);
    EXPECT_EQ(v["flow"].get<double>(), 12.5);
    EXPECT_EQ(v["count"], -70000);
  }
  EXPECT_EQ(keys, (std::set<std::string>{"M-1", "M-2"}));
  stop_vane(vane);
}

}  // namespace
}  // namespace vane::test

namespace vane::test {
namespace {

// An illegal address costs that block only: counted, logged once, the rest
// of the reading still lands.
TEST_F(ModbusTest, ExceptionsAreCountedPerBlockAndNotFatal) {
  PySlave slave(dir_, json{{"holding", {7, 8, 9}}}, "1");
  ASSERT_GT(slave.port(), 0) << slave.err();
  auto vane = start_vane("\"host\": \"" + slave.host() + "\", \"port\": " + std::to_string(slave.port()) +
                         ", \"interval_ms\": 200, \"max_gap\": 0, \"devices\": [ {\"id\": \"D-1\", \"unit_id\": 1} ],"
                         " \"registers\": [ {\"field\": \"ok\", \"address\": 1}, {\"field\": \"missing\", \"address\": 900} ]");
  KafkaReader reader(bootstrap_);
  auto msgs = reader.read_until({"telemetry"}, 3, std::chrono::steady_clock::now() + 30s);
  ASSERT_GE(msgs.size(), 3u) << vane->captured_stderr();
  for (const auto& m : msgs) {
    const json v = json::parse(m.value);
    EXPECT_EQ(v["ok"], 8);
    EXPECT_FALSE(v.contains("missing")) << m.value;
  }
  stop_vane(*vane);
  const std::string log = vane->captured_stderr();
  EXPECT_NE(log.find("Illegal data address at holding 900..900"), std::string::npos) << log;
  // Logged once, counted every time.
  EXPECT_EQ(log.find("Illegal data address", log.find("Illegal data address") + 1), std::string::npos) << log;
  const auto at = log.find("device D-1 (unit 1): ");
  ASSERT_NE(at, std::string::npos) << log;
  EXPECT_EQ(log.find(" 0 exceptions", at), std::string::npos) << log.substr(at, 200);
}

}  // namespace
}  // namespace vane::test
