#include "serialize.h"

#include <charconv>
#include <cmath>
#include <cstdint>

namespace vane {
namespace {

// Days since 1970-01-01 -> civil date (H. Hinnant's algorithm), valid for the
// proleptic Gregorian calendar; avoids gmtime_r and its locale/TZ machinery.
void civil_from_days(std::int64_t z, int& y, unsigned& m, unsigned& d) {
  z += 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const std::int64_t yy = static_cast<std::int64_t>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  d = doy - (153 * mp + 2) / 5 + 1;
  m = mp < 10 ? mp + 3 : mp - 9;
  y = static_cast<int>(yy + (m <= 2));
}

void put_digits(char* p, unsigned v, int n) {
  for (int i = n - 1; i >= 0; --i) {
    p[i] = static_cast<char>('0' + v % 10);
    v /= 10;
  }
}

}  // namespace

void append_timestamp(TimePoint t, std::string& out) {
  char buf[kTimestampLength];
  out.append(buf, format_timestamp(t, buf));
}

std::size_t format_timestamp(TimePoint t, char* buf) {
  const std::int64_t us = t.time_since_epoch().count();
  std::int64_t secs = us / 1000000;
  std::int64_t frac = us % 1000000;
  if (frac < 0) {
    frac += 1000000;
    secs -= 1;
  }
  std::int64_t days = secs / 86400;
  std::int64_t sod = secs % 86400;
  if (sod < 0) {
    sod += 86400;
    days -= 1;
  }
  int y;
  unsigned m, d;
  civil_from_days(days, y, m, d);
  if (y < 0 || y > 9999) y = y < 0 ? 0 : 9999;  // RFC 3339 has four-digit years
  put_digits(buf, static_cast<unsigned>(y), 4);
  buf[4] = '-';
  put_digits(buf + 5, m, 2);
  buf[7] = '-';
  put_digits(buf + 8, d, 2);
  buf[10] = 'T';
  put_digits(buf + 11, static_cast<unsigned>(sod / 3600), 2);
  buf[13] = ':';
  put_digits(buf + 14, static_cast<unsigned>(sod / 60 % 60), 2);
  buf[16] = ':';
  put_digits(buf + 17, static_cast<unsigned>(sod % 60), 2);
  buf[19] = '.';
  put_digits(buf + 20, static_cast<unsigned>(frac), 6);
  buf[26] = 'Z';
  return kTimestampLength;
}

std::string format_timestamp(TimePoint t) {
  std::string s;
  append_timestamp(t, s);
  return s;
}

void append_json_number(double v, std::string& out) {
  if (!std::isfinite(v)) {
    out += "null";
    return;
  }
  char buf[32];
  auto res = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, res.ptr);
}

void append_json_string(std::string_view s, std::string& out) {
  static const char kHex[] = "0123456789abcdef";
  out += '"';
  std::size_t run = 0;  // start of the current run of bytes needing no escape
  for (std::size_t i = 0; i < s.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        out += "\\u00";
        out += kHex[c >> 4];
        out += kHex[c & 15];
    }
  }
  out.append(s.data() + run, s.size() - run);
  out += '"';
}

void append_json_value(const Value& v, std::string& out) {
  switch (v.index()) {
    case 0: out += "null"; break;
    case 1: append_json_number(std::get<double>(v), out); break;
    case 2: {
      char buf[24];
      auto res = std::to_chars(buf, buf + sizeof buf, std::get<std::int64_t>(v));
      out.append(buf, res.ptr);
      break;
    }
    case 3: out += std::get<bool>(v) ? "true" : "false"; break;
    case 4: append_json_string(std::get<std::string>(v), out); break;
  }
}

void serialize_reading(const Reading& r, std::string& out) {
  out += '{';
  const std::string_view device_field =
      r.origin && !r.origin->device_field.empty() ? std::string_view(r.origin->device_field)
                                                  : std::string_view("device_id");
  append_json_string(device_field, out);
  out += ':';
  append_json_string(r.device_id, out);
  out += ",\"timestamp\":\"";
  append_timestamp(r.timestamp, out);
  out += '"';
  for (const Field& f : r.fields) {
    out += ',';
    append_json_string(f.name, out);
    out += ':';
    append_json_value(f.value, out);
  }
  out += '}';
}

std::string describe_value(const Value& v) {
  if (const double* d = std::get_if<double>(&v)) {
    if (std::isnan(*d)) return "NaN";
    if (std::isinf(*d)) return *d > 0 ? "Infinity" : "-Infinity";
  }
  std::string s;
  append_json_value(v, s);
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

}  // namespace vane
