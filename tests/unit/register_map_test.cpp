// Modbus register maps: decoding every type and word order bit-exactly,
// request planning, and the map's config errors.
#include <gtest/gtest.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "modbus/modbus_source.h"
#include "modbus/register_map.h"

namespace vane::modbus {
namespace {

using json = nlohmann::json;

// Lays out big-endian bytes as a device with `order` would (the inverse of
// the decoder, written out independently per case).
std::vector<std::uint16_t> layout(const std::vector<std::uint8_t>& be, Order order) {
  const std::size_t words = be.size() / 2;
  std::vector<std::uint16_t> regs(words);
  for (std::size_t w = 0; w < words; ++w) {
    std::uint8_t hi = be[2 * w], lo = be[2 * w + 1];
    if (order == Order::kBADC || order == Order::kDCBA) std::swap(hi, lo);
    const std::size_t slot = (order == Order::kCDAB || order == Order::kDCBA) ? words - 1 - w : w;
    regs[slot] = static_cast<std::uint16_t>(hi << 8 | lo);
  }
  return regs;
}

template <class T>
std::vector<std::uint8_t> be_bytes(T v) {
  std::uint64_t u = 0;
  std::memcpy(&u, &v, sizeof v);
  std::vector<std::uint8_t> b(sizeof v);
  for (std::size_t i = 0; i < sizeof v; ++i) b[sizeof v - 1 - i] = static_cast<std::uint8_t>(u >> (8 * i));
  return b;
}

Value decode_one(Type type, Order order, const std::vector<std::uint16_t>& regs) {
  Entry e;
  e.field = "x";
  e.type = type;
  e.order = order;
  auto v = decode(e, regs.data(), regs.size(), 0);
  EXPECT_TRUE(v.has_value());
  return v ? *v : Value{};
}

TEST(Decode, EveryTypeInEveryOrderBitExact) {
  for (Order o : {Order::kABCD, Order::kCDAB, Order::kBADC, Order::kDCBA}) {
    SCOPED_TRACE(to_string(o));
    EXPECT_EQ(std::get<std::int64_t>(decode_one(Type::kInt16, o, layout(be_bytes<std::int16_t>(-12345), o))), -12345);
    EXPECT_EQ(std::get<std::int64_t>(decode_one(Type::kUint16, o, layout(be_bytes<std::uint16_t>(54321), o))), 54321);
    EXPECT_EQ(std::get<std::int64_t>(decode_one(Type::kInt32, o, layout(be_bytes<std::int32_t>(-1234567890), o))),
              -1234567890);
    EXPECT_EQ(std::get<std::int64_t>(decode_one(Type::kUint32, o, layout(be_bytes<std::uint32_t>(3456789012u), o))),
              3456789012LL);
    EXPECT_EQ(std::get<std::int64_t>(
                  decode_one(Type::kInt64, o, layout(be_bytes<std::int64_t>(-1234567890123456789LL), o))),
              -1234567890123456789LL);
    const float f = 3.14159f;
    const double got_f = std::get<double>(decode_one(Type::kFloat32, o, layout(be_bytes(f), o)));
    EXPECT_EQ(got_f, static_cast<double>(f));
    const double d = -2.718281828459045;
    const double got_d = std::get<double>(decode_one(Type::kFloat64, o, layout(be_bytes(d), o)));
    EXPECT_EQ(std::memcmp(&got_d, &d, sizeof d), 0);
  }
}

TEST(Decode, KnownRegisterImages) {
  // 0x4048F5C3 is 3.14f: ABCD as the spec shows it, CDAB as many PLCs send it.
  EXPECT_EQ(std::get<double>(decode_one(Type::kFloat32, Order::kABCD, {0x4048, 0xF5C3})), static_cast<double>(3.14f));
  EXPECT_EQ(std::get<double>(decode_one(Type::kFloat32, Order::kCDAB, {0xF5C3, 0x4048})), static_cast<double>(3.14f));
  EXPECT_EQ(std::get<double>(decode_one(Type::kFloat32, Order::kBADC, {0x4840, 0xC3F5})), static_cast<double>(3.14f));
  EXPECT_EQ(std::get<double>(decode_one(Type::kFloat32, Order::kDCBA, {0xC3F5, 0x4840})), static_cast<double>(3.14f));
}

TEST(Decode, LargeUint64BecomesADouble) {
  auto v = decode_one(Type::kUint64, Order::kABCD, {0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE});
  ASSERT_TRUE(std::holds_alternative<double>(v));
  EXPECT_EQ(std::get<double>(v), 18446744073709551614.0);
}

TEST(Decode, ScaleOffsetBitsStringsAndBounds) {
  Entry e;
  e.type = Type::kInt16;
  e.scale = 0.1;
  e.offset = -40;
  std::uint16_t r[] = {static_cast<std::uint16_t>(static_cast<std::int16_t>(655))};
  EXPECT_DOUBLE_EQ(std::get<double>(*decode(e, r, 1, 0)), 655 * 0.1 - 40);
  Entry b;
  b.type = Type::kBool;
  b.bit = 3;
  std::uint16_t bits[] = {0b1000};
  EXPECT_TRUE(std::get<bool>(*decode(b, bits, 1, 0)));
  b.bit = 2;
  EXPECT_FALSE(std::get<bool>(*decode(b, bits, 1, 0)));
  Entry s;
  s.type = Type::kString;
  s.length = 4;
  std::uint16_t str[] = {0x542D, 0x3030, 0x3720, 0x0000};  // "T-007 " then NUL
  EXPECT_EQ(std::get<std::string>(*decode(s, str, 4, 0)), "T-007");
  // Never reads outside the block.
  Entry f;
  f.type = Type::kFloat64;
  f.address = 10;
  std::uint16_t block[4] = {};
  EXPECT_FALSE(decode(f, block, 4, 8).has_value());
  EXPECT_FALSE(decode(f, block, 4, 11).has_value());
}

RegisterMap parse(const char* text, std::vector<ConfigError>& errors) {
  return RegisterMap::parse(json::parse(text), "/sources/0/registers", errors);
}

TEST(Plan, MergesWithinGapAndProtocolLimits) {
  std::vector<ConfigError> errors;
  json regs = json::array();
  for (int i = 0; i < 100; ++i) regs.push_back({{"field", "r" + std::to_string(i)}, {"address", 2 * i}});
  regs.push_back({{"field", "far"}, {"address", 1000}, {"type", "float32"}});
  regs.push_back({{"field", "in"}, {"table", "input"}, {"address", 0}});
  regs.push_back({{"field", "c1"}, {"table", "coil"}, {"address", 0}, {"type", "bool"}});
  regs.push_back({{"field", "c2"}, {"table", "coil"}, {"address", 5}, {"type", "bool"}});
  auto m = RegisterMap::parse(regs, "/r", errors);
  ASSERT_TRUE(errors.empty()) << errors[0].message;
  auto plan = m.plan(8);
  ASSERT_EQ(plan.size(), 5u);
  EXPECT_EQ(plan[0].table, Table::kCoil);
  EXPECT_EQ(plan[0].count, 6);
  EXPECT_EQ(plan[1].table, Table::kHolding);
  EXPECT_EQ(plan[1].address, 0);
  EXPECT_LE(plan[1].count, kMaxRegisters);
  EXPECT_EQ(plan[2].address + plan[2].count, 199);
  EXPECT_EQ(plan[1].entries.size() + plan[2].entries.size(), 100u);
  EXPECT_EQ(plan[3].address, 1000);
  EXPECT_EQ(plan[3].count, 2);
  EXPECT_EQ(plan[4].table, Table::kInput);
  // No merging across a gap larger than max_gap.
  EXPECT_EQ(m.plan(0).size(), 104u);
  // Bits merge up to the protocol's 2000 per request, not further.
  std::vector<ConfigError> e2;
  auto bits = RegisterMap::parse(json::parse(R"([{"field": "a", "table": "coil", "address": 0, "type": "bool"},
      {"field": "b", "table": "coil", "address": 1999, "type": "bool"},
      {"field": "c", "table": "coil", "address": 2000, "type": "bool"}])"), "/r", e2);
  auto bp = bits.plan(5000);
  ASSERT_EQ(bp.size(), 2u);
  EXPECT_EQ(bp[0].count, 2000);
  EXPECT_EQ(bp[1].address, 2000);
}

TEST(MapErrors, NameTheEntryAndTheProblem) {
  std::vector<ConfigError> e;
  parse(R"([{"field": "a", "address": 70000},
            {"field": "b", "address": 0, "type": "float16"},
            {"field": "c", "table": "coil", "address": 0, "type": "uint16"},
            {"field": "d", "address": 5, "type": "bool"},
            {"field": "e", "address": 10, "type": "string"},
            {"address": 20},
            {"field": "g", "address": 30, "wordorder": "CDAB"}])", e);
  ASSERT_EQ(e.size(), 7u);
  EXPECT_EQ(e[0].pointer, "/sources/0/registers/0/address");
  EXPECT_EQ(e[0].message, "expected an integer 0..65535, got 70000");
  EXPECT_EQ(e[1].pointer, "/sources/0/registers/1/type");
  EXPECT_EQ(e[2].message, "a coil is a single bit: use type \"bool\"");
  EXPECT_EQ(e[3].message, "a bool from a register needs \"bit\" (0-15)");
  EXPECT_EQ(e[4].message, "a string needs \"length\" in registers");
  EXPECT_EQ(e[5].message, "missing required key \"field\"");
  EXPECT_EQ(e[6].pointer, "/sources/0/registers/6/wordorder");
}

TEST(MapErrors, OverlapsAndDuplicates) {
  std::vector<ConfigError> e;
  parse(R"([{"field": "a", "address": 0, "type": "float32"},
            {"field": "b", "address": 1},
            {"field": "a", "address": 10},
            {"field": "x", "address": 20, "type": "bool", "bit": 1},
            {"field": "y", "address": 20, "type": "bool", "bit": 2},
            {"field": "z", "address": 65534, "type": "float64"}])", e);
  ASSERT_EQ(e.size(), 3u);
  EXPECT_EQ(e[0].message, "entry runs past address 65535");
  EXPECT_EQ(e[1].message, "fields \"a\" and \"b\" overlap at holding address 1");
  EXPECT_EQ(e[2].message, "field \"a\" is mapped twice");
}

TEST(SourceConfig, DevicesAndEndpointsAreChecked) {
  std::vector<ConfigError> e;
  parse_source(json::parse(R"({"type": "modbus_tcp", "devices": [{"id": "A", "unit_id": 0}, {"id": "A", "unit_id": 2},
                                {"id": "B", "unit_id": 2}], "registers": [{"field": "f", "address": 0}]})"),
               "/sources/1", e);
  ASSERT_EQ(e.size(), 4u);
  EXPECT_EQ(e[0].message, "missing required key \"host\"");
  EXPECT_EQ(e[1].pointer, "/sources/1/devices/0/unit_id");
  EXPECT_EQ(e[2].message, "device id \"A\" is used twice");
  EXPECT_EQ(e[3].message, "unit id 2 is used twice");
}

TEST(SourceConfig, ProfilesAreSharedByDevices) {
  std::vector<ConfigError> e;
  auto o = parse_source(json::parse(R"({"type": "modbus_tcp", "host": "h",
      "devices": [{"id": "A", "unit_id": 1, "profile": "v2"}, {"id": "B", "unit_id": 2, "profile": "v2"},
                  {"id": "C", "unit_id": 3}],
      "registers": [{"field": "f", "address": 0}],
      "profiles": {"v2": [{"field": "g", "address": 10, "type": "float32"}, {"field": "h", "address": 12}]}})"),
                        "/sources/0", e);
  ASSERT_TRUE(e.empty()) << e[0].pointer << ": " << e[0].message;
  EXPECT_EQ(o.maps.at("v2").entries().size(), 2u);
  EXPECT_EQ(o.maps.at("").entries().size(), 1u);
  const std::string plan = describe_plan(o);
  EXPECT_NE(plan.find("profile v2: 1 requests per poll (A, B)"), std::string::npos) << plan;
  EXPECT_NE(plan.find("registers: 1 requests per poll (C)"), std::string::npos) << plan;

  e.clear();
  parse_source(json::parse(R"({"type": "modbus_tcp", "host": "h",
      "devices": [{"id": "A", "unit_id": 1, "profile": "v3"}, {"id": "B", "unit_id": 2}],
      "profiles": {"v2": [{"field": "g", "address": 10}]}})"), "/sources/0", e);
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0].pointer, "/sources/0/devices/0/profile");
  EXPECT_EQ(e[0].message, "profile \"v3\" is not defined in \"profiles\"");
  EXPECT_EQ(e[1].message, "no register map: give the source \"registers\" or the device a \"profile\"");
}

}  // namespace
}  // namespace vane::modbus
