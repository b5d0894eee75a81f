// Reading -> the Kafka message value: one flat JSON object,
// {"<device_field>": id, "timestamp": ISO 8601 UTC µs, <fields>...}.
// Appends to a caller-owned string so a batch reuses its capacity.
#pragma once

#include <string>
#include <string_view>

#include "core/reading.h"

namespace vane {

// "2026-11-24T18:26:00.123456Z"
void append_timestamp(TimePoint t, std::string& out);
// The same into buf (at least kTimestampLength bytes); returns the length.
inline constexpr std::size_t kTimestampLength = 27;
std::size_t format_timestamp(TimePoint t, char* buf);
std::string format_timestamp(TimePoint t);
// Shortest round-trip form; NaN and infinities (not representable in JSON) become null.
void append_json_number(double v, std::string& out);
void append_json_string(std::string_view s, std::string& out);
void append_json_value(const Value& v, std::string& out);
void serialize_reading(const Reading& r, std::string& out);
// A value as it appears in an error message: 41.2, "abc", true, null, NaN.
std::string describe_value(const Value& v);

}  // namespace vane
