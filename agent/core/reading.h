// A Reading is one record from one device at one instant. It is a cheap,
// movable value: field names are string_views into storage owned by the
// source's configuration, which outlives every reading the source emits.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace vane {

using Micros = std::chrono::microseconds;
using TimePoint = std::chrono::time_point<std::chrono::system_clock, Micros>;

inline TimePoint now_us() {
  return std::chrono::time_point_cast<Micros>(std::chrono::system_clock::now());
}

// A field value. std::monostate is an explicit null (a driver that could not
// decode a value says so; the schema then decides whether null is allowed).
using Value = std::variant<std::monostate, double, std::int64_t, bool, std::string>;

struct Field {
  std::string_view name;  // points into source-owned storage
  Value value;
};

// Where a reading came from and what it must satisfy. Owned by the source
// (its config), shared by all its readings; never null in a Reading.
struct Origin {
  std::string source;        // source name from the config
  std::string schema;        // schema name; empty: forwarded unchecked
  std::string device_field;  // JSON name of the device id in the value, e.g. "turbine_id"
};

struct Reading {
  const Origin* origin = nullptr;
  std::string device_id;
  TimePoint timestamp{};
  std::vector<Field> fields;
  // Original bytes when the source had a payload (MQTT); kept for dead letters.
  std::string payload;
  // Set by a source that could not map its input at all (e.g. unparsable
  // payload): the reading goes straight to the dead-letter path with this reason.
  std::string source_error;
};

}  // namespace vane
