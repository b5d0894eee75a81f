// Mapping MQTT messages to readings, and the source's config checks.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "mqtt/mqtt_source.h"

namespace vane::mqtt {
namespace {

using json = nlohmann::json;

SourceOptions opts(const char* text) {
  std::vector<ConfigError> e;
  auto o = parse_source(json::parse(text), "/sources/0", e);
  EXPECT_TRUE(e.empty()) << e[0].pointer << ": " << e[0].message;
  return o;
}

const TimePoint kNow{Micros(1764000000000000)};

TEST(MqttMap, TopicDevicePointerFieldsAndIsoTimestamp) {
  auto o = opts(R"({"url": "tcp://h:1883", "topics": ["site/+/env"], "device_id": "{topic[1]}",
                    "fields": {"temp": "/env/t", "hum": "/env/h", "ok": "/ok", "note": "/note", "gone": "/missing"},
                    "timestamp": {"field": "/ts", "format": "iso8601"}})");
  std::set<std::string> names;
  Reading r = map_message(o, "site/S-4/env",
                          R"({"env": {"t": 21.5, "h": 40}, "ok": true, "note": "x", "ts": "2026-11-24T18:26:00.5+01:00"})",
                          kNow, names);
  ASSERT_TRUE(r.source_error.empty()) << r.source_error;
  EXPECT_EQ(r.device_id, "S-4");
  EXPECT_EQ(r.timestamp.time_since_epoch().count(), 1795541160500000);  // 2026-11-24T17:26:00.5Z
  ASSERT_EQ(r.fields.size(), 4u);  // "gone" is missing: left to the schema
  auto field = [&](const char* name) -> const Value& {
    for (const auto& f : r.fields)
      if (f.name == name) return f.value;
    static const Value none;
    ADD_FAILURE() << name << " missing";
    return none;
  };
  EXPECT_EQ(std::get<double>(field("temp")), 21.5);
  EXPECT_EQ(std::get<std::int64_t>(field("hum")), 40);
  EXPECT_TRUE(std::get<bool>(field("ok")));
  EXPECT_EQ(std::get<std::string>(field("note")), "x");
}

TEST(MqttMap, EpochTimestampsAndAllTopLevelFields) {
  std::set<std::string> names;
  for (auto [fmt, value] : {std::pair{"epoch_s", "1764000000.25"}, std::pair{"epoch_ms", "1764000000250"},
                            std::pair{"epoch_us", "1764000000250000"}}) {
    auto o = opts((std::string(R"({"url": "tcp://h", "topics": ["a/#"], "device_id": "/id", "timestamp": {"field": "/t", "format": ")") +
                   fmt + "\"}}").c_str());
    Reading r = map_message(o, "a/b", std::string(R"({"id": "D1", "t": )") + value + R"(, "v": 1.5, "s": "on", "nested": {"x": 1}})",
                            kNow, names);
    ASSERT_TRUE(r.source_error.empty()) << fmt << ": " << r.source_error;
    EXPECT_EQ(r.timestamp.time_since_epoch().count(), 1764000000250000) << fmt;
    EXPECT_EQ(r.device_id, "D1");
    // id and t are not fields; nested objects need a "fields" map.
    ASSERT_EQ(r.fields.size(), 2u) << fmt;
    EXPECT_EQ(r.fields[0].name, "s");
    EXPECT_EQ(r.fields[1].name, "v");
  }
}

TEST(MqttMap, FailuresKeepThePayloadAndSayWhy) {
  auto o = opts(R"({"url": "tcp://h", "topics": ["a/+"], "device_id": "{topic[3]}", "timestamp": {"field": "/ts", "format": "iso8601"}})");
  std::set<std::string> names;
  EXPECT_EQ(map_message(o, "a/b", "{}", kNow, names).source_error, "topic \"a/b\" has no level 3");
  o = opts(R"({"url": "tcp://h", "topics": ["a/+"], "device_id": "/id", "timestamp": {"field": "/ts", "format": "iso8601"}})");
  Reading r = map_message(o, "a/b", R"({"id": "X", "ts": "yesterday"})", kNow, names);
  EXPECT_EQ(r.source_error, "timestamp at /ts is not ISO 8601: \"yesterday\"");
  EXPECT_EQ(r.payload, R"({"id": "X", "ts": "yesterday"})");
  EXPECT_EQ(map_message(o, "a/b", R"({"ts": "2026-11-24T00:00:00Z"})", kNow, names).source_error, "no device id at /id");
  EXPECT_EQ(map_message(o, "a/b", "42", kNow, names).source_error, "payload is a JSON number, not an object");
  EXPECT_EQ(map_message(o, "a/b", "", kNow, names).source_error, "payload is not JSON (or not valid UTF-8)");
  EXPECT_EQ(map_message(o, "a/b", "", kNow, names).payload, "\"\"");  // an empty payload still has a dead letter
}

TEST(MqttConfig, ErrorsNameWhatToFix) {
  std::vector<ConfigError> e;
  parse_source(json::parse(R"({"url": "http://h", "topics": ["a/#/b", "x+/y"], "device_id": "topic1",
                               "cert_file": "/nonexistent.pem", "timestamp": {"field": "/t"}})"),
               "/sources/2", e);
  std::vector<std::string> m;
  for (auto& x : e) m.push_back(x.pointer + ": " + x.message);
  ASSERT_EQ(m.size(), 7u) << ::testing::PrintToString(m);
  EXPECT_EQ(m[0], "/sources/2/url: \"http://h\": the scheme must be tcp://, ssl:// or mqtts://");
  EXPECT_EQ(m[1], "/sources/2/cert_file: cannot read /nonexistent.pem: No such file or directory");
  EXPECT_EQ(m[2], "/sources/2: a client certificate needs both \"cert_file\" and \"key_file\"");
  EXPECT_EQ(m[3], "/sources/2/topics/0: \"a/#/b\" is not a valid topic filter ('+' and '#' take a whole level, '#' only last)");
  EXPECT_EQ(m[4].rfind("/sources/2/topics/1: \"x+/y\" is not a valid topic filter", 0), 0u);
  EXPECT_EQ(m[5].rfind("/sources/2/device_id: \"topic1\": use", 0), 0u);
  EXPECT_EQ(m[6].rfind("/sources/2/timestamp: expected {\"field\"", 0), 0u);
}

}  // namespace
}  // namespace vane::mqtt
