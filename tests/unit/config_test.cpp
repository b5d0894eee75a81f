// Config errors as an operator reads them: file, line, JSON pointer, what to fix.
#include <gtest/gtest.h>

#include <fstream>

#include "config.h"
#include "config_map.h"
#include "support/temp_dir.h"

namespace vane {
namespace {

using test::TempDir;

std::vector<std::string> errors_of(const ConfigLoad& l) {
  std::vector<std::string> out;
  for (const auto& e : l.errors) out.push_back(e.to_string());
  return out;
}

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override { std::ofstream(dir_.path() + "/t.schema.json") << "{\"type\":\"object\"}"; }

  ConfigLoad parse(const std::string& text) { return parse_config(text, "vane.jsonc", dir_.path()); }

  // A valid config; `extra_source` goes into the one source object.
  std::string config(const std::string& extra_source = "", const std::string& extra_top = "") {
    return "{\n"                                                      // 1
           "  \"gateway\": { \"id\": \"gw-1\" },\n"                   // 2
           "  \"buffer\": { \"path\": \"b.db\" },\n"                  // 3
           "  \"kafka\": { \"brokers\": \"127.0.0.1:9092\" },\n"      // 4
           "  \"schemas\": { \"turbine\": \"t.schema.json\" },\n"     // 5
           "  \"sources\": [\n"                                       // 6
           "    { \"name\": \"sim\", \"type\": \"simulator\",\n"      // 7
           "      \"schema\": \"turbine\"" + extra_source + " }\n"    // 8
           "  ]" + extra_top + "\n"                                   // 9
           "}\n";
  }

  TempDir dir_;
};

TEST_F(ConfigTest, ValidConfigParsesIntoValues) {
  auto l = parse(config(", \"devices\": 3, \"rate\": 250.5, \"limit\": 10, \"faults\": 0.1",
                        ",\n \"http\": { \"listen\": \"127.0.0.1:9999\" }"));
  ASSERT_TRUE(l.ok()) << errors_of(l)[0];
  const Config& c = l.config;
  EXPECT_EQ(c.gateway_id, "gw-1");
  EXPECT_EQ(c.buffer.path, dir_.path() + "/b.db");
  EXPECT_EQ(c.buffer.max_bytes, 1ULL << 30);
  EXPECT_EQ(c.buffer.overflow, Overflow::kDropOldest);
  EXPECT_EQ(c.kafka.brokers, "127.0.0.1:9092");
  EXPECT_EQ(c.kafka.topic, "telemetry");
  EXPECT_EQ(c.kafka.dead_letter_topic, "telemetry.dlq");
  EXPECT_EQ(c.schemas.at("turbine"), dir_.path() + "/t.schema.json");
  ASSERT_EQ(c.sources.size(), 1u);
  EXPECT_EQ(c.sources[0].name, "sim");
  EXPECT_EQ(c.sources[0].device_field, "turbine_id");
  EXPECT_EQ(c.sources[0].pointer, "/sources/0");
  EXPECT_EQ(c.sources[0].line, 7);
  EXPECT_EQ(c.sources[0].simulator.devices, 3);
  EXPECT_DOUBLE_EQ(c.sources[0].simulator.rate, 250.5);
  EXPECT_EQ(c.sources[0].simulator.limit, 10u);
  EXPECT_DOUBLE_EQ(c.sources[0].simulator.faults, 0.1);
  EXPECT_EQ(c.http.listen, "127.0.0.1:9999");
  EXPECT_TRUE(l.warnings.empty());
}

TEST_F(ConfigTest, MissingFile) {
  auto l = load_config(dir_.path() + "/nope.jsonc");
  ASSERT_EQ(l.errors.size(), 1u);
  EXPECT_EQ(l.errors[0].to_string(), dir_.path() + "/nope.jsonc: cannot read config file: No such file or directory");
}

TEST_F(ConfigTest, BadJsonNamesTheLine) {
  auto l = parse("{\n  \"gateway\": { \"id\": \"gw\" },\n  \"buffer\": { \"path\": \"b.db\" ,, }\n}\n");
  ASSERT_EQ(l.errors.size(), 1u);
  EXPECT_EQ(l.errors[0].line, 3);
  EXPECT_EQ(l.errors[0].to_string().rfind("vane.jsonc:3: invalid JSON at column ", 0), 0u) << l.errors[0].to_string();
}

TEST_F(ConfigTest, CommentsAreAllowedAndSlashesInStringsAreNot) {
  auto l = parse("// head\n{ /* block\n */ \"gateway\": { \"id\": \"gw\" }, // tail\n"
                 "\"buffer\": { \"path\": \"b.db\" },\n"
                 "\"kafka\": { \"brokers\": \"embedded\", \"properties\": { \"x.url\": \"http://a//b\" } },\n"
                 "\"sources\": [ { \"name\": \"s\", \"type\": \"simulator\", \"bogus\": 1 } ] }");
  ASSERT_EQ(l.errors.size(), 1u) << errors_of(l)[0];
  EXPECT_EQ(l.errors[0].to_string(), "vane.jsonc:6: /sources/0/bogus: unknown key \"bogus\"");
  EXPECT_EQ(l.config.kafka.properties.at("x.url"), "http://a//b");
}

TEST_F(ConfigTest, UnknownKeysWithSuggestion) {
  auto l = parse(config(", \"devics\": 3", ",\n  \"htpp\": {}"));
  ASSERT_EQ(errors_of(l), (std::vector<std::string>{
                              "vane.jsonc:10: /htpp: unknown key \"htpp\" (did you mean \"http\"?)",
                              "vane.jsonc:8: /sources/0/devics: unknown key \"devics\" (did you mean \"devices\"?)",
                          }));
}

TEST_F(ConfigTest, UnknownSourceTypeVersusNotBuilt) {
  auto l = parse(std::string(config()).replace(config().find("\"simulator\""), 11, "\"modbsu\""));
  ASSERT_EQ(l.errors.size(), 1u);
  EXPECT_EQ(l.errors[0].to_string(),
            "vane.jsonc:7: /sources/0/type: unknown source type \"modbsu\" (expected one of: simulator, "
            "modbus_tcp, modbus_rtu, mqtt)");
  l = parse(std::string(config()).replace(config().find("\"simulator\""), 11, "\"mqtt\""));
#ifdef VANE_HAVE_DRIVER_MQTT
  // Built: the driver's own checks run.
  ASSERT_FALSE(l.errors.empty());
  EXPECT_EQ(l.errors[0].to_string(), "vane.jsonc:7: /sources/0: missing required key \"url\"");
#else
  ASSERT_EQ(l.errors.size(), 1u);
  EXPECT_EQ(l.errors[0].to_string(), "vane.jsonc:7: /sources/0/type: source type \"mqtt\" is not available in this build");
#endif
}

TEST_F(ConfigTest, WrongValueTypes) {
  auto l = parse(config(", \"devices\": \"many\", \"faults\": true"));
  ASSERT_EQ(errors_of(l), (std::vector<std::string>{
                              "vane.jsonc:8: /sources/0/devices: expected an unsigned integer, got string \"many\"",
                              "vane.jsonc:8: /sources/0/faults: expected a number, got boolean true",
                          }));
}

TEST_F(ConfigTest, OutOfRangeAndBadEnum) {
  auto l = parse(config(", \"faults\": 1.5, \"devices\": 0",
                        ",\n  \"http\": { \"listen\": \"localhost\" }"));
  auto e = errors_of(l);
  ASSERT_EQ(e.size(), 3u);
  EXPECT_EQ(e[0], "vane.jsonc:10: /http/listen: \"localhost\" is not host:port");
  EXPECT_EQ(e[1], "vane.jsonc:8: /sources/0/devices: 0 is out of range (1 to 100000)");
  EXPECT_EQ(e[2], "vane.jsonc:8: /sources/0/faults: 1.5 is out of range (0 to 1)");
  std::string text = config();
  text.replace(text.find("\"path\": \"b.db\""), 14, "\"path\": \"b.db\", \"overflow\": \"drop_middle\"");
  l = parse(text);
  ASSERT_EQ(l.errors.size(), 1u);
  EXPECT_EQ(l.errors[0].to_string(),
            "vane.jsonc:3: /buffer/overflow: \"drop_middle\" is not one of: drop_oldest, drop_newest");
}

TEST_F(ConfigTest, MissingRequired) {
  auto l = parse("{\n \"gateway\": {},\n \"sources\": []\n}");
  EXPECT_EQ(errors_of(l), (std::vector<std::string>{
                              "vane.jsonc:1: missing required key \"kafka\"",
                              "vane.jsonc:2: /gateway: missing required key \"id\"",
                              "vane.jsonc:3: /sources: no sources: add at least one",
                          }));
}

TEST_F(ConfigTest, DuplicateSourceNamesAndUnknownSchema) {
  std::string text = config();
  text.replace(text.find("  ]"), 3,
               "   ,{ \"name\": \"sim\", \"type\": \"simulator\", \"schema\": \"turbin\" }\n  ]");
  auto l = parse(text);
  EXPECT_EQ(errors_of(l), (std::vector<std::string>{
                              "vane.jsonc:9: /sources/1/name: duplicate source name \"sim\"",
                              "vane.jsonc:9: /sources/1/schema: schema \"turbin\" is not defined in \"schemas\" "
                              "(did you mean \"turbine\"?)",
                          }));
}

TEST_F(ConfigTest, MissingSchemaFileAndBufferDirectory) {
  std::string text = config();
  text.replace(text.find("t.schema.json"), 13, "none.json");
  text.replace(text.find("\"b.db\""), 6, "\"nodir/b.db\"");
  auto l = parse(text);
  EXPECT_EQ(errors_of(l), (std::vector<std::string>{
                              "vane.jsonc:3: /buffer/path: directory " + dir_.path() + "/nodir does not exist",
                              "vane.jsonc:5: /schemas/turbine: cannot read schema file " + dir_.path() +
                                  "/none.json: No such file or directory",
                          }));
}

TEST_F(ConfigTest, SizeStrings) {
  auto with = [&](const std::string& v) {
    std::string text = config();
    text.replace(text.find("\"path\": \"b.db\""), 14, "\"path\": \"b.db\", \"max_bytes\": " + v);
    return parse(text);
  };
  EXPECT_EQ(with("\"512MiB\"").config.buffer.max_bytes, 512ULL << 20);
  EXPECT_EQ(with("\"2 GB\"").config.buffer.max_bytes, 2000000000ULL);
  EXPECT_EQ(with("1048576").config.buffer.max_bytes, 1048576ULL);
  EXPECT_EQ(errors_of(with("\"lots\"")),
            std::vector<std::string>{"vane.jsonc:3: /buffer/max_bytes: expected a size (number of bytes or a string "
                                     "like \"512MiB\"), got string \"lots\""});
  EXPECT_EQ(errors_of(with("\"10KiB\"")),
            std::vector<std::string>{"vane.jsonc:3: /buffer/max_bytes: \"10KiB\" is too small (at least 1 MiB)"});
}

TEST_F(ConfigTest, SourceWithoutSchemaIsAWarning) {
  std::string text = config();
  const std::string needle = ",\n      \"schema\": \"turbine\"";
  text.replace(text.find(needle), needle.size(), "");
  auto l = parse(text);
  ASSERT_TRUE(l.ok()) << errors_of(l)[0];
  ASSERT_EQ(l.warnings.size(), 1u);
  EXPECT_EQ(l.warnings[0].to_string(),
            "vane.jsonc:7: /sources/0: warning: source \"sim\" has no schema: its readings are forwarded unchecked");
}

TEST_F(ConfigTest, RateMaxAndPropertiesAsStrings) {
  std::string text = config(", \"rate\": \"max\"");
  text.replace(text.find("\"127.0.0.1:9092\""), 16, "\"embedded\", \"properties\": { \"linger.ms\": 20, \"enable.idempotence\": true }");
  auto l = parse(text);
  ASSERT_TRUE(l.ok()) << errors_of(l)[0];
  EXPECT_TRUE(l.config.sources[0].simulator.max_speed);
  EXPECT_EQ(l.config.kafka.properties.at("linger.ms"), "20");
  EXPECT_EQ(l.config.kafka.properties.at("enable.idempotence"), "true");
}

TEST_F(ConfigTest, OneSourcePerSerialBus) {
  std::string text = config();
  text.replace(text.find("  ]"), 3,
               "   ,{ \"name\": \"bus1\", \"type\": \"modbus_rtu\", \"serial\": \"/dev/ttyS1\", \"schema\": \"turbine\",\n"
               "      \"devices\": [{\"id\": \"A\", \"unit_id\": 1}], \"registers\": [{\"field\": \"f\", \"address\": 0}] }\n"
               "   ,{ \"name\": \"bus2\", \"type\": \"modbus_rtu\", \"serial\": \"/dev/ttyS1\", \"schema\": \"turbine\",\n"
               "      \"devices\": [{\"id\": \"B\", \"unit_id\": 2}], \"registers\": [{\"field\": \"f\", \"address\": 0}] }\n  ]");
  auto l = parse(text);
  EXPECT_EQ(errors_of(l), (std::vector<std::string>{
                              "vane.jsonc:11: /sources/2/serial: serial device /dev/ttyS1 is already polled by source "
                              "\"bus1\": put all devices of one bus in one source"}));
}

TEST_F(ConfigTest, HttpCredentialsAreReadAtLoadAndCheckedWithoutShowingThem) {
  std::ofstream(dir_.path() + "/token") << "tok-123\n";
  std::ofstream(dir_.path() + "/basic") << "tech:pw with space \n";
  std::ofstream(dir_.path() + "/nocolon") << "justapassword\n";
  std::ofstream(dir_.path() + "/empty") << "\n";
  auto l = parse(config("", ",\n  \"http\": { \"bearer_token_file\": \"token\", \"stall_after_ms\": 5000 }"));
  ASSERT_TRUE(l.ok()) << errors_of(l)[0];
  EXPECT_EQ(l.config.http.bearer_token, "tok-123");
  EXPECT_EQ(l.config.http.stall_after_ms, 5000);
  l = parse(config("", ",\n  \"http\": { \"basic_auth_file\": \"basic\" }"));
  ASSERT_TRUE(l.ok()) << errors_of(l)[0];
  EXPECT_EQ(l.config.http.basic_auth, "tech:pw with space");

  auto e = errors_of(parse(config("", ",\n  \"http\": { \"basic_auth_file\": \"basic\", \"bearer_token_file\": \"token\" }")));
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0], "vane.jsonc:10: /http: basic_auth_file and bearer_token_file are alternatives: set one");
  e = errors_of(parse(config("", ",\n  \"http\": { \"basic_auth_file\": \"nocolon\" }")));
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0], "vane.jsonc:10: /http/basic_auth_file: expected one line user:password");
  EXPECT_EQ(e[0].find("justapassword"), std::string::npos);
  e = errors_of(parse(config("", ",\n  \"http\": { \"bearer_token_file\": \"empty\" }")));
  ASSERT_EQ(e.size(), 1u);
  EXPECT_NE(e[0].find("/http/bearer_token_file: " + dir_.path() + "/empty is empty"), std::string::npos) << e[0];
  e = errors_of(parse(config("", ",\n  \"http\": { \"bearer_token_file\": \"absent\", \"stall_after_ms\": 10 }")));
  ASSERT_EQ(e.size(), 2u);
  EXPECT_NE(e[0].find("/http/stall_after_ms: 10 is out of range"), std::string::npos) << e[0];
  EXPECT_NE(e[1].find("/http/bearer_token_file: cannot read " + dir_.path() + "/absent"), std::string::npos) << e[1];
}

TEST_F(ConfigTest, ReferenceDocumentsEveryTable) {
  const std::string md = config_reference_markdown();
  for (const char* key : {"max_bytes", "dead_letter_topic", "max_in_flight", "interval_ms", "faults", "listen"})
    EXPECT_NE(md.find(std::string("`") + key + "`"), std::string::npos) << key;
}

}  // namespace
}  // namespace vane
