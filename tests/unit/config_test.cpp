// Config errors as an operator reads them: file, line, JSON pointer, what to fix.
#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "config.h"
#include "config_map.h"
#include "core/secret_file.h"
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
  for (const char* key : {"max_bytes", "dead_letter_topic", "max_in_flight", "interval_ms", "faults", "listen",
                          "tls", "sasl", "ca_file", "key_password_file", "verify_hostname", "mechanism", "password_file"})
    EXPECT_NE(md.find(std::string("`") + key + "`"), std::string::npos) << key;
  EXPECT_NE(md.find("## kafka.tls"), std::string::npos);
  EXPECT_NE(md.find("## kafka.sasl"), std::string::npos);
}

TEST_F(ConfigTest, PacedReplayKeys) {
  auto with_kafka = [&](const std::string& extra) {
    std::string text = config();
    const std::string at = "\"127.0.0.1:9092\"";
    text.replace(text.find(at), at.size(), at + extra);
    return text;
  };
  ConfigLoad l = parse(config());
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l.config.kafka.max_drain_rate, 0u) << "unlimited by default";
  EXPECT_EQ(l.config.kafka.reconnect_jitter_ms, 0);
  l = parse(with_kafka(", \"max_drain_rate\": 20000, \"reconnect_jitter_ms\": 30000"));
  ASSERT_TRUE(l.ok()) << errors_of(l)[0];
  EXPECT_EQ(l.config.kafka.max_drain_rate, 20000u);
  EXPECT_EQ(l.config.kafka.reconnect_jitter_ms, 30000);
  auto e = errors_of(parse(with_kafka(", \"max_drain_rate\": -1")));
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0], "vane.jsonc:4: /kafka/max_drain_rate: expected an unsigned integer, got number -1");
  e = errors_of(parse(with_kafka(", \"max_drain_rate\": \"fast\", \"reconnect_jitter_ms\": -5")));
  ASSERT_EQ(e.size(), 2u);
  EXPECT_NE(e[0].find("/kafka/max_drain_rate: expected an unsigned integer, got string \"fast\""), std::string::npos)
      << e[0];
  EXPECT_NE(e[1].find("/kafka/reconnect_jitter_ms: expected an unsigned integer, got number -5"), std::string::npos) << e[1];
  e = errors_of(parse(with_kafka(", \"max_drain_rate\": 1.5")));
  ASSERT_EQ(e.size(), 1u);
  EXPECT_NE(e[0].find("/kafka/max_drain_rate: expected an unsigned integer"), std::string::npos) << e[0];
  e = errors_of(parse(with_kafka(", \"max_drain_rate\": 100, \"exactly_once\": true")));
  ASSERT_EQ(e.size(), 1u);
  EXPECT_NE(e[0].find("/kafka/max_drain_rate: paced replay cannot be combined with kafka.exactly_once"),
            std::string::npos)
      << e[0];
  const std::string md = config_reference_markdown();
  EXPECT_NE(md.find("`max_drain_rate`"), std::string::npos);
  EXPECT_NE(md.find("`reconnect_jitter_ms`"), std::string::npos);
}

// The uplink's security settings: kafka.tls and kafka.sasl, secrets from files.
class KafkaSecurityTest : public ConfigTest {
 protected:
  static constexpr const char* kPassword = "s3cret-Pa55";

  void SetUp() override {
    ConfigTest::SetUp();
    for (const char* f : {"ca.pem", "gw.pem", "gw.key"}) std::ofstream(dir_.file(f)) << "-----BEGIN PEM-----\n";
    std::ofstream(dir_.file("pw")) << kPassword << "\n";
  }

  // The valid config with `kafka_extra` spliced into its kafka object (line 4).
  std::string kafka_config(const std::string& kafka_extra) {
    std::string text = config();
    const std::string at = "\"127.0.0.1:9092\"";
    text.replace(text.find(at), at.size(), at + kafka_extra);
    return text;
  }

  ConfigLoad parse_with(const std::string& text, const LoadOptions& o) {
    return parse_config(text, "vane.jsonc", dir_.path(), o);
  }

  static std::map<std::string, std::string> props(const KafkaConfig& k) {
    std::map<std::string, std::string> m;
    for (const auto& p : kafka_connection_properties(k, "b1:9093")) m[p.key] = p.value;
    return m;
  }

  // Every error and warning, one per line.
  static std::string all_issues(const ConfigLoad& l) {
    std::string out;
    for (const auto& e : l.errors) out += e.to_string() + "\n";
    for (const auto& w : l.warnings) out += w.to_string() + "\n";
    return out;
  }

  static constexpr const char* kTls =
      ", \"tls\": { \"ca_file\": \"ca.pem\", \"cert_file\": \"gw.pem\", \"key_file\": \"gw.key\" }";
  static constexpr const char* kSasl =
      ", \"sasl\": { \"mechanism\": \"SCRAM-SHA-512\", \"username\": \"gw-1\", \"password_file\": \"pw\" }";
};

TEST_F(KafkaSecurityTest, TlsOnlyIsSslWithPathsResolvedAgainstTheConfigDirectory) {
  auto l = parse(kafka_config(kTls));
  ASSERT_TRUE(l.ok()) << all_issues(l);
  EXPECT_TRUE(l.warnings.empty()) << all_issues(l);
  const KafkaConfig& k = l.config.kafka;
  ASSERT_TRUE(k.tls.has_value());
  EXPECT_FALSE(k.sasl.has_value());
  EXPECT_EQ(k.tls->ca_file, dir_.file("ca.pem"));
  EXPECT_EQ(k.tls->cert_file, dir_.file("gw.pem"));
  EXPECT_EQ(k.tls->key_file, dir_.file("gw.key"));
  EXPECT_TRUE(k.tls->verify_hostname);
  EXPECT_EQ(kafka_security_protocol(k), "SSL");
  EXPECT_EQ(props(k), (std::map<std::string, std::string>{
                          {"bootstrap.servers", "b1:9093"},
                          {"security.protocol", "SSL"},
                          {"ssl.ca.location", dir_.file("ca.pem")},
                          {"ssl.certificate.location", dir_.file("gw.pem")},
                          {"ssl.key.location", dir_.file("gw.key")},
                          {"ssl.endpoint.identification.algorithm", "https"}}));
}

TEST_F(KafkaSecurityTest, SaslOnlyIsSaslPlaintextAndWarnsThatItIsUnencrypted) {
  auto l = parse(kafka_config(kSasl));
  ASSERT_TRUE(l.ok()) << all_issues(l);
  const KafkaConfig& k = l.config.kafka;
  ASSERT_TRUE(k.sasl.has_value());
  EXPECT_EQ(k.sasl->mechanism, "SCRAM-SHA-512");
  EXPECT_EQ(k.sasl->username, "gw-1");
  EXPECT_EQ(k.sasl->password_file, dir_.file("pw"));
  EXPECT_EQ(k.sasl->password, kPassword);  // one trailing newline stripped
  EXPECT_EQ(kafka_security_protocol(k), "SASL_PLAINTEXT");
  ASSERT_EQ(l.warnings.size(), 1u);
  EXPECT_EQ(l.warnings[0].to_string(),
            "vane.jsonc:4: /kafka/sasl: warning: without kafka.tls the uplink is SASL_PLAINTEXT: the password (with "
            "PLAIN) and every reading travel unencrypted; add \"tls\" for SASL_SSL");
  const auto m = props(k);
  EXPECT_EQ(m.at("security.protocol"), "SASL_PLAINTEXT");
  EXPECT_EQ(m.at("sasl.mechanisms"), "SCRAM-SHA-512");
  EXPECT_EQ(m.at("sasl.username"), "gw-1");
  EXPECT_EQ(m.at("sasl.password"), kPassword);
  EXPECT_EQ(m.count("ssl.ca.location"), 0u);
  for (const auto& p : kafka_connection_properties(k, "b1:9093"))
    EXPECT_EQ(p.secret, p.key == "sasl.password") << p.key;
}

TEST_F(KafkaSecurityTest, BothAreSaslSslAndVerifyHostnameMapsToTheEndpointCheck) {
  std::string tls = kTls;
  tls.replace(tls.rfind(" }"), 2, ", \"verify_hostname\": false }");
  auto l = parse(kafka_config(tls + kSasl));
  ASSERT_TRUE(l.ok()) << all_issues(l);
  EXPECT_TRUE(l.warnings.empty()) << all_issues(l);
  EXPECT_EQ(kafka_security_protocol(l.config.kafka), "SASL_SSL");
  const auto m = props(l.config.kafka);
  EXPECT_EQ(m.at("security.protocol"), "SASL_SSL");
  EXPECT_EQ(m.at("ssl.endpoint.identification.algorithm"), "none");
  EXPECT_EQ(m.at("sasl.password"), kPassword);
}

TEST_F(KafkaSecurityTest, WithoutTlsAndSaslTheConnectionPropertiesPassThroughAsBefore) {
  auto l = parse(kafka_config(", \"properties\": { \"security.protocol\": \"SSL\", \"ssl.ca.location\": \"/etc/ca.pem\", "
                              "\"sasl.username\": \"u\", \"socket.timeout.ms\": 3000, \"linger.ms\": 20 }"));
  ASSERT_TRUE(l.ok()) << all_issues(l);
  EXPECT_EQ(kafka_security_protocol(l.config.kafka), "");
  // What the producer and the checkpoint reader both connect with; linger.ms
  // is the producer's own.
  EXPECT_EQ(props(l.config.kafka), (std::map<std::string, std::string>{{"bootstrap.servers", "b1:9093"},
                                                                       {"security.protocol", "SSL"},
                                                                       {"ssl.ca.location", "/etc/ca.pem"},
                                                                       {"sasl.username", "u"},
                                                                       {"socket.timeout.ms", "3000"}}));
  EXPECT_EQ(l.config.kafka.properties.at("linger.ms"), "20");
  EXPECT_TRUE(is_kafka_connection_property("sasl.kerberos.service.name"));
  EXPECT_TRUE(is_kafka_connection_property("bootstrap.servers"));
  EXPECT_FALSE(is_kafka_connection_property("compression.type"));
}

TEST_F(KafkaSecurityTest, PasswordFileLosesExactlyOneTrailingNewline) {
  auto password_of = [&](const std::string& content) {
    std::ofstream(dir_.file("pw"), std::ios::trunc | std::ios::binary) << content;
    auto l = parse(kafka_config(kTls + std::string(kSasl)));
    EXPECT_TRUE(l.ok()) << all_issues(l);
    return l.config.kafka.sasl ? l.config.kafka.sasl->password : std::string("<none>");
  };
  EXPECT_EQ(password_of("pw"), "pw");
  EXPECT_EQ(password_of("pw\n"), "pw");
  EXPECT_EQ(password_of("pw\r\n"), "pw");
  EXPECT_EQ(password_of("pw \n\n"), "pw \n");
  EXPECT_EQ(password_of(" pw\t"), " pw\t");
}

TEST_F(KafkaSecurityTest, MissingEmptyOrUnreadablePasswordFileIsAnErrorNamingFileAndPointer) {
  std::ofstream(dir_.file("empty"));
  std::ofstream(dir_.file("newline")) << "\n";
  std::string sasl = kSasl;
  auto with = [&](const std::string& file) {
    std::string s = sasl;
    s.replace(s.find("\"pw\""), 4, "\"" + file + "\"");
    return errors_of(parse(kafka_config(kTls + s)));
  };
  EXPECT_EQ(with("absent"), (std::vector<std::string>{"vane.jsonc:4: /kafka/sasl/password_file: cannot read " +
                                                      dir_.file("absent") + ": No such file or directory"}));
  EXPECT_EQ(with("empty"),
            (std::vector<std::string>{"vane.jsonc:4: /kafka/sasl/password_file: " + dir_.file("empty") + " is empty"}));
  EXPECT_EQ(with("newline"), (std::vector<std::string>{"vane.jsonc:4: /kafka/sasl/password_file: " +
                                                       dir_.file("newline") + " is empty"}));
  std::filesystem::create_directory(dir_.file("sub"));
  EXPECT_EQ(with("sub"), (std::vector<std::string>{"vane.jsonc:4: /kafka/sasl/password_file: cannot read " +
                                                   dir_.file("sub") + ": Is a directory"}));
}

TEST_F(KafkaSecurityTest, TlsFilesMustBeReadableAndCertAndKeyGoTogether) {
  auto e = errors_of(parse(kafka_config(", \"tls\": { \"ca_file\": \"nope.pem\", \"cert_file\": \"gw.pem\" }")));
  EXPECT_EQ(e, (std::vector<std::string>{
                   "vane.jsonc:4: /kafka/tls/ca_file: cannot read " + dir_.file("nope.pem") + ": No such file or directory",
                   "vane.jsonc:4: /kafka/tls: a client certificate needs both \"cert_file\" and \"key_file\""}));
  e = errors_of(parse(kafka_config(", \"tls\": { \"key_file\": \"gw.key\" }")));
  EXPECT_EQ(e, (std::vector<std::string>{
                   "vane.jsonc:4: /kafka/tls: a client certificate needs both \"cert_file\" and \"key_file\""}));
  e = errors_of(parse(kafka_config(", \"tls\": { \"key_password_file\": \"pw\" }")));
  EXPECT_EQ(e, (std::vector<std::string>{
                   "vane.jsonc:4: /kafka/tls/key_password_file: a key passphrase without \"key_file\""}));
  // No ca_file: the system's CA store; an empty tls object is TLS all the same.
  auto l = parse(kafka_config(", \"tls\": {}"));
  ASSERT_TRUE(l.ok()) << all_issues(l);
  EXPECT_EQ(props(l.config.kafka).count("ssl.ca.location"), 0u);
  EXPECT_EQ(kafka_security_protocol(l.config.kafka), "SSL");
}

TEST_F(KafkaSecurityTest, EncryptedKeyPassphraseComesFromItsFileAndIsSecret) {
  std::string tls = kTls;
  tls.replace(tls.rfind(" }"), 2, ", \"key_password_file\": \"pw\" }");
  auto l = parse(kafka_config(tls));
  ASSERT_TRUE(l.ok()) << all_issues(l);
  EXPECT_EQ(l.config.kafka.tls->key_password, kPassword);
  bool seen = false;
  for (const auto& p : kafka_connection_properties(l.config.kafka, "b")) {
    if (p.key != "ssl.key.password") continue;
    seen = true;
    EXPECT_TRUE(p.secret);
    EXPECT_EQ(p.value, kPassword);
    EXPECT_EQ(p.pointer, "/kafka/tls/key_password_file");
  }
  EXPECT_TRUE(seen);
}

TEST_F(KafkaSecurityTest, SaslKeysAreCheckedByTheTable) {
  auto e = errors_of(parse(kafka_config(
      ", \"sasl\": { \"mechanism\": \"GSSAPI\", \"user\": \"gw-1\", \"password\": \"x\" }, \"tls\": {}")));
  EXPECT_EQ(e, (std::vector<std::string>{
                   "vane.jsonc:4: /kafka/sasl/mechanism: \"GSSAPI\" is not one of: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512",
                   "vane.jsonc:4: /kafka/sasl/password: unknown key \"password\"",
                   "vane.jsonc:4: /kafka/sasl/user: unknown key \"user\"",
                   "vane.jsonc:4: /kafka/sasl: missing required key \"username\"",
                   "vane.jsonc:4: /kafka/sasl: missing required key \"password_file\""}));
  e = errors_of(parse(kafka_config(", \"tls\": { \"verify_hostname\": \"yes\" }")));
  EXPECT_EQ(e, (std::vector<std::string>{
                   "vane.jsonc:4: /kafka/tls/verify_hostname: expected a boolean, got string \"yes\""}));
}

TEST_F(KafkaSecurityTest, SecretsInlineInPropertiesAreErrorsNamingTheFileKey) {
  const std::pair<const char*, const char*> cases[] = {
      {"sasl.password", "a secret inline; put it in a file and set kafka.sasl.password_file"},
      {"ssl.key.password", "a secret inline; put it in a file and set kafka.tls.key_password_file"},
      {"ssl.key.pem", "a secret inline; put the key in a file and set kafka.tls.key_file"},
      {"ssl_key", "a secret inline; put the key in a file and set kafka.tls.key_file"},
      {"ssl.keystore.password",
       "a secret inline; convert the keystore to PEM files and set kafka.tls.cert_file and kafka.tls.key_file (and "
       "kafka.tls.key_password_file)"},
      {"sasl.oauthbearer.client.secret",
       "a secret inline; vane takes SASL credentials only from files: set kafka.sasl (PLAIN or SCRAM) with "
       "kafka.sasl.password_file"},
  };
  for (const auto& [key, message] : cases) {
    // With or without kafka.sasl: a secret inline is never taken.
    for (const std::string& extra : {std::string(), std::string(kTls) + kSasl}) {
      auto l = parse(kafka_config(extra + ", \"properties\": { \"" + key + "\": \"hunter2-inline\" }"));
      EXPECT_EQ(errors_of(l), (std::vector<std::string>{"vane.jsonc:4: /kafka/properties/" + std::string(key) + ": " +
                                                        message}))
          << key;
      EXPECT_EQ(all_issues(l).find("hunter2-inline"), std::string::npos);
    }
  }
  // Any JSON type: a number is a secret too.
  EXPECT_EQ(errors_of(parse(kafka_config(", \"properties\": { \"sasl.password\": 123456 }"))).size(), 1u);
}

TEST_F(KafkaSecurityTest, SecuritySettingsInPropertiesConflictWithTlsOrSasl) {
  const std::pair<const char*, const char*> cases[] = {
      {"security.protocol", "it follows from kafka.tls and kafka.sasl"},
      {"sasl.mechanisms", "set by kafka.sasl.mechanism"},
      {"sasl.mechanism", "set by kafka.sasl.mechanism"},
      {"sasl.username", "set by kafka.sasl.username"},
      {"ssl.ca.location", "set by kafka.tls.ca_file"},
      {"ssl.certificate.location", "set by kafka.tls.cert_file"},
      {"ssl.key.location", "set by kafka.tls.key_file"},
      {"ssl.keystore.location", "set by kafka.tls.cert_file and kafka.tls.key_file"},
      {"ssl.endpoint.identification.algorithm", "set by kafka.tls.verify_hostname"},
  };
  for (const auto& [key, why] : cases) {
    const std::string props = ", \"properties\": { \"" + std::string(key) + "\": \"x\" }";
    for (const std::string& extra : {std::string(kTls), std::string(kSasl) + ", \"tls\": {}"}) {
      EXPECT_EQ(errors_of(parse(kafka_config(extra + props))),
                (std::vector<std::string>{"vane.jsonc:4: /kafka/properties/" + std::string(key) + ": " + why +
                                          "; with kafka.tls or kafka.sasl set, leave it out of kafka.properties"}))
          << key;
    }
    auto l = parse(kafka_config(props));  // neither set: passed through as before
    EXPECT_TRUE(l.ok()) << key << ": " << all_issues(l);
  }
  // Settings kafka.tls does not make stay available next to it.
  auto l = parse(kafka_config(std::string(kTls) + ", \"properties\": { \"ssl.crl.location\": \"crl.pem\", "
                                                  "\"ssl.cipher.suites\": \"HIGH\" }"));
  ASSERT_TRUE(l.ok()) << all_issues(l);
  EXPECT_EQ(props(l.config.kafka).at("ssl.crl.location"), "crl.pem");
}

TEST_F(KafkaSecurityTest, EmbeddedClusterHasNoTlsOrSasl) {
  std::string text = kafka_config(kTls);
  text.replace(text.find("\"127.0.0.1:9092\""), 16, "\"embedded\"");
  EXPECT_EQ(errors_of(parse(text)), (std::vector<std::string>{
                                        "vane.jsonc:4: /kafka/tls: the embedded cluster speaks PLAINTEXT only: "
                                        "kafka.tls and kafka.sasl need a real cluster"}));
  text = config();
  text.replace(text.find("\"127.0.0.1:9092\""), 16, "\"embedded\"");
  EXPECT_TRUE(parse(text).ok());
}

TEST_F(KafkaSecurityTest, CredentialOutsideTheUnitIsAWarningForCheckConfigOnly) {
  const std::string cred = "/run/credentials/vane-test-" + std::to_string(getpid()) + ".service/kafka-password";
  std::string sasl = kSasl;
  sasl.replace(sasl.find("\"pw\""), 4, "\"" + cred + "\"");
  const std::string text = kafka_config(kTls + sasl);
  // vane run (and a reload): the file must be there.
  EXPECT_EQ(errors_of(parse(text)), (std::vector<std::string>{"vane.jsonc:4: /kafka/sasl/password_file: cannot read " +
                                                              cred + ": No such file or directory"}));
  LoadOptions o;
  o.outside_service = true;
  auto l = parse_with(text, o);
  EXPECT_TRUE(l.ok()) << all_issues(l);
  ASSERT_EQ(l.warnings.size(), 1u);
  EXPECT_EQ(l.warnings[0].to_string(), "vane.jsonc:4: /kafka/sasl/password_file: warning: " + cred +
                                           " exists only while the unit runs (LoadCredential=): not checked now");
  // Elsewhere a missing file is an error outside the unit too.
  sasl = kSasl;
  sasl.replace(sasl.find("\"pw\""), 4, "\"absent\"");
  EXPECT_EQ(parse_with(kafka_config(kTls + sasl), o).errors.size(), 1u);
}

TEST_F(KafkaSecurityTest, CheckConfigAsRootJudgesWhatTheServiceUserCanRead) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (check-config's service-user check runs as root)";
  if (!getpwnam("nobody")) GTEST_SKIP() << "no user nobody";
  LoadOptions o;
  o.service_user = "nobody";
  const std::string text = kafka_config(kTls + std::string(kSasl));
  ASSERT_EQ(chmod(dir_.path().c_str(), 0700), 0);
  auto e = errors_of(parse_with(text, o));
  ASSERT_EQ(e.size(), 4u) << all_issues(parse_with(text, o));
  EXPECT_NE(e[0].find("/kafka/tls/ca_file: directory " + dir_.path() + " (mode 0700, owner root, group "),
            std::string::npos)
      << e[0];
  EXPECT_NE(e[0].find(") does not let user nobody reach " + dir_.file("ca.pem")), std::string::npos) << e[0];
  ASSERT_EQ(chmod(dir_.path().c_str(), 0755), 0);
  for (const char* f : {"ca.pem", "gw.pem", "gw.key"}) ASSERT_EQ(chmod(dir_.file(f).c_str(), 0644), 0);
  ASSERT_EQ(chmod(dir_.file("pw").c_str(), 0600), 0);
  e = errors_of(parse_with(text, o));
  ASSERT_EQ(e.size(), 1u);
  EXPECT_NE(e[0].find("vane.jsonc:4: /kafka/sasl/password_file: " + dir_.file("pw") +
                      " (mode 0600, owner root, group "),
            std::string::npos)
      << e[0];
  EXPECT_NE(e[0].find(") is not readable by user nobody"), std::string::npos) << e[0];
  EXPECT_EQ(e[0].find(kPassword), std::string::npos);
  ASSERT_EQ(chmod(dir_.file("pw").c_str(), 0644), 0);
  auto l = parse_with(text, o);
  EXPECT_TRUE(l.ok()) << all_issues(l);
  // Without a service user (not root), the mode is not judged: root reads it.
  ASSERT_EQ(chmod(dir_.file("pw").c_str(), 0600), 0);
  EXPECT_TRUE(parse(text).ok());
}

TEST_F(KafkaSecurityTest, ThePasswordIsInNoErrorOrWarning) {
  // Everything wrong at once around a readable password file.
  auto l = parse(kafka_config(std::string(kSasl) + ", \"topic\": \"\", \"properties\": { \"security.protocol\": 1, "
                              "\"sasl.username\": \"u\", \"ssl.ca.location\": { \"x\": 1 } }"));
  ASSERT_FALSE(l.ok());
  ASSERT_TRUE(l.config.kafka.sasl.has_value());
  EXPECT_EQ(l.config.kafka.sasl->password, kPassword);  // read, but never shown
  const std::string out = all_issues(l);
  EXPECT_EQ(out.find(kPassword), std::string::npos) << out;
  EXPECT_NE(out.find("SASL_PLAINTEXT"), std::string::npos) << out;
}

TEST_F(KafkaSecurityTest, ReloadSeesAChangedPasswordAsAKafkaChange) {
  const std::string text = kafka_config(kTls + std::string(kSasl));
  auto a = parse(text), b = parse(text);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(a.config.kafka == b.config.kafka);
  std::ofstream(dir_.file("pw"), std::ios::trunc) << "rotated\n";
  auto c = parse(text);
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(a.config.kafka == c.config.kafka);
  std::string tls = kTls;
  tls.replace(tls.rfind(" }"), 2, ", \"verify_hostname\": false }");
  EXPECT_FALSE(a.config.kafka == parse(kafka_config(tls + kSasl)).config.kafka);
}

TEST(SecretFile, ReadsTheContentAndNamesOnlyThePath) {
  TempDir dir;
  std::ofstream(dir.file("nul"), std::ios::binary) << std::string("pw\0x", 4);
  std::ofstream(dir.file("big")) << std::string(70000, 'x');
  std::ofstream(dir.file("ok")) << "secret\n";
  auto r = read_secret_file(dir.file("ok"));
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(r.value(), "secret");
  r = read_secret_file(dir.file("nul"));
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().message(), dir.file("nul") + " holds a NUL byte");
  r = read_secret_file(dir.file("big"));
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().message(), dir.file("big") + " is larger than 65536 bytes: not a secret file");
  EXPECT_TRUE(check_readable_file(dir.file("ok")).is_ok());
  EXPECT_EQ(check_readable_file(dir.path()).message(), "cannot read " + dir.path() + ": Is a directory");
  EXPECT_EQ(file_readable_by(dir.file("ok"), "no-such-user-vane-test").verdict, UserAccess::Verdict::kUnknown);
  EXPECT_EQ(file_readable_by(dir.file("ok"), "root").verdict, UserAccess::Verdict::kReadable);
}

}  // namespace
}  // namespace vane
