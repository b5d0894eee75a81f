// The edge schema check and the message value it guards.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <new>
#include <nlohmann/json.hpp>

#include "schema.h"
#include "serialize.h"

// Counts heap allocations, to hold the validator to "nothing per field".
static std::atomic<long> g_allocations{0};
void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
// GCC cannot see that operator new above is malloc-based.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop

namespace vane {
namespace {

using json = nlohmann::json;

const Origin kTurbine{"sim", "turbine", "turbine_id"};

json turbine_schema() {
  return json::parse(R"({
    "type": "object",
    "properties": {
      "turbine_id":   { "type": "string", "pattern": "^T-\\d{3}$" },
      "timestamp":    { "type": "string", "format": "date-time" },
      "wind_speed":   { "type": "number", "minimum": 0, "maximum": 30 },
      "power_output": { "type": "number", "minimum": 0, "maximum": 5000 },
      "status":       { "enum": ["ok", "fault"] },
      "count":        { "type": "integer", "exclusiveMinimum": 0, "multipleOf": 2 },
      "label":        { "type": "string", "minLength": 2, "maxLength": 3 }
    },
    "required": ["turbine_id", "timestamp", "wind_speed", "power_output"],
    "additionalProperties": false
  })");
}

Reading reading(std::vector<Field> fields, std::string device = "T-001") {
  Reading r;
  r.origin = &kTurbine;
  r.device_id = std::move(device);
  r.timestamp = TimePoint(Micros(1764000000123456));
  r.fields = std::move(fields);
  return r;
}

std::unique_ptr<CompiledSchema> compile(const json& doc) {
  auto s = CompiledSchema::compile(doc, "turbine", "turbine.schema.json");
  EXPECT_TRUE(s.is_ok()) << s.status().message();
  return s ? std::move(s.value()) : nullptr;
}

std::vector<std::string> messages(const CompiledSchema& s, const Reading& r) {
  std::vector<SchemaViolation> v;
  s.validate(r, v);
  std::vector<std::string> out;
  for (auto& x : v) out.push_back(x.message);
  return out;
}

TEST(Schema, ValidReadingPasses) {
  auto s = compile(turbine_schema());
  std::vector<SchemaViolation> v;
  EXPECT_TRUE(s->validate(reading({{"wind_speed", 7.5}, {"power_output", std::int64_t{1200}}}), v));
  EXPECT_TRUE(v.empty());
}

TEST(Schema, ValidReadingAllocatesNothing) {
  auto doc = turbine_schema();
  doc["properties"]["label"]["pattern"] = "^[a-z]+$";
  auto s = compile(doc);
  Reading r = reading({{"wind_speed", 7.5}, {"power_output", 1200.0}, {"status", std::string("ok")},
                       {"count", std::int64_t{4}}, {"label", std::string("abc")}});
  std::vector<SchemaViolation> v;
  v.reserve(8);
  ASSERT_TRUE(s->validate(r, v));  // the first call on a thread sets up regex match data
  const long before = g_allocations.load();
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(s->validate(r, v));
  EXPECT_EQ(g_allocations.load() - before, 0);
  // The counter does count: a rejection builds its message.
  r.fields[0].value = 99.0;
  EXPECT_FALSE(s->validate(r, v));
  EXPECT_GT(g_allocations.load() - before, 0);
}

TEST(Schema, RefsCombinatorsAndNestedJson) {
  auto doc = json::parse(R"({
    "$defs": { "pct": { "type": "number", "minimum": 0, "maximum": 100 } },
    "type": "object",
    "properties": {
      "humidity": { "$ref": "#/$defs/pct" },
      "unit": { "oneOf": [ { "const": "C" }, { "const": "F" } ] },
      "value": { "anyOf": [ { "type": "number" }, { "type": "null" } ] },
      "mode": { "not": { "enum": ["off"] } },
      "location": { "type": "object", "required": ["latitude"],
                    "properties": { "latitude": { "minimum": -90, "maximum": 90 } } }
    }
  })");
  auto s = compile(doc);
  auto m = messages(*s, reading({{"humidity", 101.0}, {"unit", std::string("K")}, {"value", std::string("x")},
                                 {"mode", std::string("off")}}));
  ASSERT_EQ(m.size(), 4u);
  EXPECT_EQ(m[0], "/humidity: 101 > maximum 100");
  EXPECT_EQ(m[1], "/unit: matches 0 of the oneOf schemas, must match exactly one");
  EXPECT_EQ(m[2], "/value: matches none of the anyOf schemas");
  EXPECT_EQ(m[3], "/mode: must not match the \"not\" schema");
  std::vector<SchemaViolation> v;
  EXPECT_FALSE(s->validate(json::parse(R"({"location": {"latitude": 91}})"), v));
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].message, "/location/latitude: 91 > maximum 90");
}

TEST(Schema, BadRefsAreCompileErrors) {
  auto err = [](const char* text) {
    auto s = CompiledSchema::compile(json::parse(text), "x", "x.json");
    return s ? std::string("compiled") : s.status().message();
  };
  EXPECT_EQ(err(R"({"properties": {"a": {"$ref": "#/$defs/nope"}}})"),
            "x.json: /properties/a/$ref: $ref \"#/$defs/nope\" points to nothing");
  EXPECT_EQ(err(R"({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}})"),
            "x.json: /$defs/a: cyclic $ref: this schema refers back to itself without descending into a property");
  EXPECT_EQ(err(R"({"allOf": [{"$ref": "#"}]})"),
            "x.json: /: cyclic $ref: this schema refers back to itself without descending into a property");
  EXPECT_EQ(err(R"({"$ref": "other.json#/x"})"),
            "x.json: /$ref: $ref \"other.json#/x\": only local references (\"#...\") are supported");
  std::string deep = "{\"type\":\"object\"}";
  for (int i = 0; i < 80; ++i) deep = "{\"properties\":{\"a\":" + deep + "}}";
  EXPECT_NE(err(deep.c_str()).find("nested deeper than 64 levels"), std::string::npos);
  EXPECT_EQ(err(R"({"type": "string"})"), "x.json: /type: the schema of a reading must admit an object");
}

TEST(Schema, RecursiveSchemaOnDeepInstanceIsBounded) {
  auto s = CompiledSchema::compile(json::parse(R"({"properties": {"a": {"$ref": "#"}}})"), "x", "x.json");
  ASSERT_TRUE(s.is_ok()) << s.status().message();
  json inst = json::object();
  for (int i = 0; i < 500; ++i) inst = json{{"a", inst}};
  std::vector<SchemaViolation> v;
  EXPECT_FALSE(s.value()->validate(inst, v));
  ASSERT_FALSE(v.empty());
  EXPECT_EQ(v[0].rule, std::string("depth"));
}

TEST(Schema, MaximumNamesFieldValueAndLimit) {
  auto s = compile(turbine_schema());
  EXPECT_EQ(messages(*s, reading({{"wind_speed", 41.2}, {"power_output", 0.0}})),
            std::vector<std::string>{"/wind_speed: 41.2 > maximum 30"});
}

TEST(Schema, ReportsAllFailuresNotJustTheFirst) {
  auto s = compile(turbine_schema());
  auto m = messages(*s, reading({{"wind_speed", -1.0}, {"extra", true}}, "X-1"));
  ASSERT_EQ(m.size(), 4u);
  EXPECT_EQ(m[0], "/turbine_id: \"X-1\" does not match pattern \"^T-\\d{3}$\"");
  EXPECT_EQ(m[1], "/wind_speed: -1 < minimum 0");
  EXPECT_EQ(m[2], "/extra: additional property not allowed");
  EXPECT_EQ(m[3], "/power_output: required field missing");
}

TEST(Schema, BoundsTheNumberOfViolations) {
  auto s = compile(turbine_schema());
  std::vector<Field> f;
  static const char* names[] = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"};
  for (const char* n : names) f.push_back({n, 1.0});
  std::vector<SchemaViolation> v;
  EXPECT_FALSE(s->validate(reading(f), v, 8));
  EXPECT_EQ(v.size(), 8u);
}

TEST(Schema, NanAndWrongTypeAreRejected) {
  auto s = compile(turbine_schema());
  auto m = messages(*s, reading({{"wind_speed", std::nan("")}, {"power_output", std::string("high")}}));
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0], "/wind_speed: NaN is not a number");
  EXPECT_EQ(m[1], "/power_output: \"high\" is not of type number");
  m = messages(*s, reading({{"wind_speed", Value{}}, {"power_output", 1.0}}));
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0], "/wind_speed: null is not of type number");
}

TEST(Schema, EnumIntegerMultipleOfAndLengths) {
  auto s = compile(turbine_schema());
  auto base = [](std::vector<Field> extra) {
    std::vector<Field> f{{"wind_speed", 1.0}, {"power_output", 1.0}};
    for (auto& e : extra) f.push_back(e);
    return reading(f);
  };
  EXPECT_TRUE(messages(*s, base({{"status", std::string("ok")}, {"count", 4.0}, {"label", std::string("ab")}})).empty());
  EXPECT_EQ(messages(*s, base({{"status", std::string("bad")}}))[0],
            "/status: \"bad\" is not one of [\"ok\",\"fault\"]");
  EXPECT_EQ(messages(*s, base({{"count", 2.5}}))[0], "/count: 2.5 is not of type integer");
  EXPECT_EQ(messages(*s, base({{"count", std::int64_t{3}}}))[0], "/count: 3 is not a multiple of 2");
  EXPECT_EQ(messages(*s, base({{"count", std::int64_t{0}}}))[0], "/count: 0 <= exclusiveMinimum 0");
  // Lengths count code points: "äöü" is 3 code points, 6 bytes.
  EXPECT_TRUE(messages(*s, base({{"label", std::string("\xc3\xa4\xc3\xb6\xc3\xbc")}})).empty());
  EXPECT_EQ(messages(*s, base({{"label", std::string("abcd")}}))[0],
            "/label: \"abcd\" is longer than maxLength 3");
}

TEST(Schema, UnsupportedKeywordIsACompileErrorWithLocation) {
  auto doc = turbine_schema();
  doc["properties"]["wind_speed"]["items"] = json::array();
  auto s = CompiledSchema::compile(doc, "turbine", "turbine.schema.json");
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.status().message(),
            "turbine.schema.json: /properties/wind_speed/items: unsupported keyword \"items\"");
  doc = turbine_schema();
  doc["properties"]["label"]["format"] = "email";
  s = CompiledSchema::compile(doc, "turbine", "t.json");
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.status().message().find("/properties/label/format: unsupported format \"email\""),
            std::string::npos);
}

TEST(Schema, InvalidPatternIsACompileError) {
  auto doc = turbine_schema();
  doc["properties"]["label"]["pattern"] = "([a-";
  auto s = CompiledSchema::compile(doc, "turbine", "t.json");
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.status().message().find("/properties/label/pattern: invalid pattern"), std::string::npos);
}

TEST(Schema, Rfc3339DateTime) {
  EXPECT_TRUE(is_rfc3339_date_time("2026-11-24T18:26:00Z"));
  EXPECT_TRUE(is_rfc3339_date_time("2026-11-24T18:26:00.123456+01:00"));
  EXPECT_TRUE(is_rfc3339_date_time("2024-02-29T00:00:00Z"));
  EXPECT_FALSE(is_rfc3339_date_time("2025-02-29T00:00:00Z"));
  EXPECT_FALSE(is_rfc3339_date_time("2026-11-24 18:26:00Z"));
  EXPECT_FALSE(is_rfc3339_date_time("2026-11-24T18:26:00"));
  EXPECT_FALSE(is_rfc3339_date_time("2026-13-01T00:00:00Z"));
}

TEST(Serialize, FlatJsonWithDeviceFieldAndMicrosecondTimestamp) {
  Reading r = reading({{"wind_speed", 7.25}, {"on", true}, {"n", std::int64_t{-3}},
                       {"s", std::string("a\"b\n")}, {"bad", std::nan("")}});
  std::string out;
  serialize_reading(r, out);
  EXPECT_EQ(out,
            "{\"turbine_id\":\"T-001\",\"timestamp\":\"2025-11-24T16:00:00.123456Z\",\"wind_speed\":7.25,"
            "\"on\":true,\"n\":-3,\"s\":\"a\\\"b\\n\",\"bad\":null}");
  auto j = json::parse(out);
  EXPECT_EQ(j["turbine_id"], "T-001");
}

TEST(Serialize, TimestampsAcrossEpochs) {
  EXPECT_EQ(format_timestamp(TimePoint(Micros(0))), "1970-01-01T00:00:00.000000Z");
  EXPECT_EQ(format_timestamp(TimePoint(Micros(951782400000001))), "2000-02-29T00:00:00.000001Z");
  EXPECT_EQ(format_timestamp(TimePoint(Micros(-1))), "1969-12-31T23:59:59.999999Z");
}

}  // namespace
}  // namespace vane

namespace vane {
namespace {

TEST(ShippedSchemas, CompileAndCheckTheirReadings) {
  auto turbine = CompiledSchema::load("turbine", std::string(VANE_SOURCE_DIR) + "/examples/schemas/turbine.schema.json");
  ASSERT_TRUE(turbine.is_ok()) << turbine.status().message();
  auto env = CompiledSchema::load("environment", std::string(VANE_SOURCE_DIR) + "/examples/schemas/environment.schema.json");
  ASSERT_TRUE(env.is_ok()) << env.status().message();

  std::vector<SchemaViolation> v;
  EXPECT_TRUE(turbine.value()->validate(reading({{"wind_speed", 12.0}, {"pitch_angle", 1.0}, {"power_output", 3600.0},
                                                 {"temperature", 40.0}, {"vibration", 0.4}}), v))
      << join_violations(v);
  v.clear();
  EXPECT_FALSE(turbine.value()->validate(reading({{"wind_speed", 41.2}, {"pitch_angle", 1.0}, {"power_output", 3600.0},
                                                  {"temperature", 40.0}, {"vibration", 0.4}}), v));
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].message, "/wind_speed: 41.2 > maximum 30");

  static const Origin kEnv{"env", "environment", "sensor_id"};
  Reading r;
  r.origin = &kEnv;
  r.device_id = "S-17";
  r.timestamp = TimePoint(Micros(1764000000000000));
  r.fields = {{"temperature", 21.5}, {"humidity", 104.0}, {"status", std::string("ok")}, {"latitude", 53.5}};
  v.clear();
  EXPECT_FALSE(env.value()->validate(r, v));
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].message, "/humidity: 104 > maximum 100");
}

}  // namespace
}  // namespace vane
