#include "schema.h"

#include <bitset>
#include <cmath>
#include <fstream>
#include <optional>
#include <regex>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/json_pointer.h"
#include "serialize.h"

namespace vane {

using json = nlohmann::json;

namespace {

enum TypeBit : unsigned {
  kNull = 1, kBoolean = 2, kInteger = 4, kNumber = 8, kString = 16, kObject = 32, kArray = 64,
  kAnyType = 127,
};

const std::set<std::string>& annotation_keywords() {
  static const std::set<std::string> k = {"title",    "description", "$comment", "examples",
                                          "default",  "deprecated",  "readOnly", "writeOnly",
                                          "$schema",  "$id"};
  return k;
}

// UTF-8 code points; JSON Schema lengths count code points, not bytes.
std::size_t code_points(std::string_view s) {
  std::size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

std::string num_text(double d) {
  std::string s;
  append_json_number(d, s);
  return s;
}

}  // namespace

// One property's constraints (a leaf: flat telemetry has scalar values).
struct Leaf {
  unsigned types = kAnyType;
  std::optional<double> minimum, maximum, exclusive_minimum, exclusive_maximum, multiple_of;
  std::optional<std::size_t> min_length, max_length;
  std::optional<std::regex> pattern;
  std::string pattern_source;
  bool date_time = false;
  std::optional<std::vector<json>> enum_values;
  std::optional<json> const_value;
  bool never = false;  // the schema `false`
};

struct CompiledSchema::Impl {
  std::string name;
  struct Property {
    std::string name;
    std::string pointer;  // "/wind_speed" for messages
    Leaf leaf;
    bool required = false;
  };
  std::vector<Property> properties;
  std::vector<std::string> required_unknown;  // required names with no property schema
  enum class Additional { kAllow, kDeny, kSchema } additional = Additional::kAllow;
  Leaf additional_leaf;

  const Property* find(std::string_view field) const {
    for (const Property& p : properties)
      if (p.name == field) return &p;
    return nullptr;
  }
};

namespace {

class Compiler {
 public:
  explicit Compiler(std::string file) : file_(std::move(file)) {}

  std::vector<std::string> errors;

  void error(const std::string& pointer, const std::string& msg) {
    errors.push_back(file_ + ": " + (pointer.empty() ? "/" : pointer) + ": " + msg);
  }

  unsigned parse_types(const json& t, const std::string& ptr) {
    static const std::pair<const char*, unsigned> kNames[] = {
        {"null", kNull},     {"boolean", kBoolean}, {"integer", kInteger}, {"number", kNumber},
        {"string", kString}, {"object", kObject},   {"array", kArray}};
    auto one = [&](const json& v) -> unsigned {
      if (v.is_string()) {
        for (auto& [n, bit] : kNames)
          if (v.get<std::string>() == n) return bit == kNumber ? (kNumber | kInteger) : bit;
      }
      error(ptr, "invalid type " + v.dump() +
                     " (expected null, boolean, integer, number, string, object or array)");
      return 0;
    };
    if (t.is_array()) {
      unsigned bits = 0;
      for (const json& v : t) bits |= one(v);
      return bits;
    }
    return one(t);
  }

  std::optional<double> number(const json& v, const std::string& ptr, const char* kw) {
    if (!v.is_number()) {
      error(ptr, std::string(kw) + " must be a number, got " + v.dump());
      return std::nullopt;
    }
    return v.get<double>();
  }

  std::optional<std::size_t> count(const json& v, const std::string& ptr, const char* kw) {
    if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<std::int64_t>() >= 0)) {
      error(ptr, std::string(kw) + " must be a non-negative integer, got " + v.dump());
      return std::nullopt;
    }
    return v.get<std::size_t>();
  }

  Leaf leaf(const json& s, const std::string& ptr) {
    Leaf l;
    if (s.is_boolean()) {
      l.never = !s.get<bool>();
      return l;
    }
    if (!s.is_object()) {
      error(ptr, "a schema must be an object or a boolean, got " + s.dump());
      return l;
    }
    for (auto it = s.begin(); it != s.end(); ++it) {
      const std::string& kw = it.key();
      const json& v = it.value();
      const std::string p = ptr + "/" + pointer_token(kw);
      if (annotation_keywords().count(kw)) continue;
      if (kw == "type") {
        l.types = parse_types(v, p);
      } else if (kw == "minimum") {
        l.minimum = number(v, p, "minimum");
      } else if (kw == "maximum") {
        l.maximum = number(v, p, "maximum");
      } else if (kw == "exclusiveMinimum") {
        l.exclusive_minimum = number(v, p, "exclusiveMinimum");
      } else if (kw == "exclusiveMaximum") {
        l.exclusive_maximum = number(v, p, "exclusiveMaximum");
      } else if (kw == "multipleOf") {
        l.multiple_of = number(v, p, "multipleOf");
        if (l.multiple_of && *l.multiple_of <= 0) error(p, "multipleOf must be > 0");
      } else if (kw == "minLength") {
        l.min_length = count(v, p, "minLength");
      } else if (kw == "maxLength") {
        l.max_length = count(v, p, "maxLength");
      } else if (kw == "pattern") {
        if (!v.is_string()) {
          error(p, "pattern must be a string");
          continue;
        }
        l.pattern_source = v.get<std::string>();
        try {
          l.pattern.emplace(l.pattern_source, std::regex::ECMAScript | std::regex::optimize);
        } catch (const std::regex_error& e) {
          error(p, "invalid pattern \"" + l.pattern_source + "\": " + e.what());
        }
      } else if (kw == "format") {
        if (v == "date-time") {
          l.date_time = true;
        } else {
          error(p, "unsupported format " + v.dump() + " (supported: \"date-time\")");
        }
      } else if (kw == "enum") {
        if (!v.is_array() || v.empty()) {
          error(p, "enum must be a non-empty array");
          continue;
        }
        l.enum_values = std::vector<json>(v.begin(), v.end());
      } else if (kw == "const") {
        l.const_value = v;
      } else {
        error(p, "unsupported keyword \"" + kw + "\"");
      }
    }
    return l;
  }

  std::unique_ptr<CompiledSchema::Impl> root(const json& doc) {
    auto impl = std::make_unique<CompiledSchema::Impl>();
    if (!doc.is_object()) {
      error("", "the schema of a reading must be an object");
      return impl;
    }
    if (doc.contains("type") && doc["type"] != "object")
      error("/type", "the schema of a reading must have type \"object\", got " + doc["type"].dump());
    for (auto it = doc.begin(); it != doc.end(); ++it) {
      const std::string& kw = it.key();
      const json& v = it.value();
      const std::string p = "/" + pointer_token(kw);
      if (annotation_keywords().count(kw) || kw == "type") continue;
      if (kw == "properties") {
        if (!v.is_object()) {
          error(p, "properties must be an object");
          continue;
        }
        for (auto pit = v.begin(); pit != v.end(); ++pit) {
          CompiledSchema::Impl::Property prop;
          prop.name = pit.key();
          prop.pointer = "/" + pointer_token(pit.key());
          prop.leaf = leaf(pit.value(), p + prop.pointer);
          impl->properties.push_back(std::move(prop));
        }
      } else if (kw == "required") {
        if (!v.is_array()) {
          error(p, "required must be an array of strings");
          continue;
        }
        // Resolved after properties are known.
      } else if (kw == "additionalProperties") {
        if (v.is_boolean()) {
          impl->additional = v.get<bool>() ? CompiledSchema::Impl::Additional::kAllow
                                           : CompiledSchema::Impl::Additional::kDeny;
        } else {
          impl->additional = CompiledSchema::Impl::Additional::kSchema;
          impl->additional_leaf = leaf(v, p);
        }
      } else {
        error(p, "unsupported keyword \"" + kw + "\"");
      }
    }
    if (doc.contains("required") && doc["required"].is_array()) {
      for (std::size_t i = 0; i < doc["required"].size(); ++i) {
        const json& r = doc["required"][i];
        if (!r.is_string()) {
          error("/required/" + std::to_string(i), "required entries must be strings");
          continue;
        }
        bool found = false;
        for (auto& prop : impl->properties) {
          if (prop.name == r.get<std::string>()) {
            prop.required = true;
            found = true;
          }
        }
        if (!found) impl->required_unknown.push_back(r.get<std::string>());
      }
    }
    if (impl->properties.size() > 256) error("/properties", "more than 256 properties");
    return impl;
  }

 private:
  std::string file_;
};

// The JSON type bits a value satisfies.
unsigned type_bits(const Value& v) {
  switch (v.index()) {
    case 0: return kNull;
    case 1: {
      const double d = std::get<double>(v);
      if (!std::isfinite(d)) return 0;  // NaN/Infinity are not JSON numbers
      return d == std::floor(d) ? (kNumber | kInteger) : kNumber;
    }
    case 2: return kNumber | kInteger;
    case 3: return kBoolean;
    case 4: return kString;
  }
  return 0;
}

std::string type_names(unsigned bits) {
  std::string s;
  auto add = [&](const char* n) { s += s.empty() ? n : std::string(" or ") + n; };
  if (bits & kNull) add("null");
  if (bits & kBoolean) add("boolean");
  if (bits & kNumber) add("number");
  else if (bits & kInteger) add("integer");
  if (bits & kString) add("string");
  if (bits & kObject) add("object");
  if (bits & kArray) add("array");
  return s;
}

bool json_equals(const Value& v, const json& j) {
  switch (v.index()) {
    case 0: return j.is_null();
    case 1: return j.is_number() && j.get<double>() == std::get<double>(v);
    case 2:
      if (j.is_number_integer()) return j.get<std::int64_t>() == std::get<std::int64_t>(v);
      return j.is_number() && j.get<double>() == static_cast<double>(std::get<std::int64_t>(v));
    case 3: return j.is_boolean() && j.get<bool>() == std::get<bool>(v);
    case 4: return j.is_string() && j.get_ref<const std::string&>() == std::get<std::string>(v);
  }
  return false;
}

struct Checker {
  std::vector<SchemaViolation>& out;
  std::size_t max;
  bool valid = true;

  void fail(const char* rule, std::string_view pointer, std::string msg) {
    valid = false;
    if (out.size() < max) out.push_back({rule, std::string(pointer) + ": " + std::move(msg)});
  }

  static std::string quoted(std::string_view s) {
    std::string q;
    append_json_string(s.size() > 80 ? s.substr(0, 77) : s, q);
    return q;
  }

  // Length, pattern, format, enum and const of a string value.
  void string_rules(const Leaf& l, std::string_view ptr, std::string_view s) {
    if (l.min_length || l.max_length) {
      const std::size_t n = code_points(s);
      if (l.min_length && n < *l.min_length)
        fail("minLength", ptr, quoted(s) + " is shorter than minLength " + std::to_string(*l.min_length));
      if (l.max_length && n > *l.max_length)
        fail("maxLength", ptr, quoted(s) + " is longer than maxLength " + std::to_string(*l.max_length));
    }
    if (l.pattern && !std::regex_search(s.begin(), s.end(), *l.pattern))
      fail("pattern", ptr, quoted(s) + " does not match pattern \"" + l.pattern_source + "\"");
    if (l.date_time && !is_rfc3339_date_time(s))
      fail("format", ptr, quoted(s) + " is not an RFC 3339 date-time");
    if (l.enum_values) {
      bool any = false;
      for (const json& e : *l.enum_values)
        any = any || (e.is_string() && e.get_ref<const std::string&>() == s);
      if (!any) {
        json arr = *l.enum_values;
        fail("enum", ptr, quoted(s) + " is not one of " + arr.dump());
      }
    }
    if (l.const_value && !(l.const_value->is_string() &&
                           l.const_value->get_ref<const std::string&>() == s))
      fail("const", ptr, quoted(s) + " is not " + l.const_value->dump());
  }

  // A string known to be present (device id, timestamp): no copy into a Value.
  void check_string(const Leaf& l, std::string_view ptr, std::string_view s) {
    if (l.never) {
      fail("false", ptr, "no value is allowed here");
      return;
    }
    if (!(l.types & kString)) {
      fail("type", ptr, quoted(s) + " is not of type " + type_names(l.types));
      return;
    }
    string_rules(l, ptr, s);
  }

  void check(const Leaf& l, std::string_view ptr, const Value& v) {
    if (l.never) {
      fail("false", ptr, "no value is allowed here");
      return;
    }
    const unsigned bits = type_bits(v);
    if (bits == 0) {
      fail("type", ptr, describe_value(v) + " is not a number");
      return;
    }
    if ((bits & l.types) == 0) {
      fail("type", ptr, describe_value(v) + " is not of type " + type_names(l.types));
      return;
    }
    if (bits & kNumber) {
      const double d = v.index() == 1 ? std::get<double>(v)
                                      : static_cast<double>(std::get<std::int64_t>(v));
      if (l.minimum && d < *l.minimum)
        fail("minimum", ptr, describe_value(v) + " < minimum " + num_text(*l.minimum));
      if (l.maximum && d > *l.maximum)
        fail("maximum", ptr, describe_value(v) + " > maximum " + num_text(*l.maximum));
      if (l.exclusive_minimum && d <= *l.exclusive_minimum)
        fail("exclusiveMinimum", ptr,
             describe_value(v) + " <= exclusiveMinimum " + num_text(*l.exclusive_minimum));
      if (l.exclusive_maximum && d >= *l.exclusive_maximum)
        fail("exclusiveMaximum", ptr,
             describe_value(v) + " >= exclusiveMaximum " + num_text(*l.exclusive_maximum));
      if (l.multiple_of) {
        const double q = d / *l.multiple_of;
        if (!std::isfinite(q) || std::fabs(q - std::round(q)) > 1e-9 * std::max(1.0, std::fabs(q)))
          fail("multipleOf", ptr,
               describe_value(v) + " is not a multiple of " + num_text(*l.multiple_of));
      }
    }
    if (bits & kString) {
      string_rules(l, ptr, std::get<std::string>(v));
      return;
    }
    if (l.enum_values) {
      bool any = false;
      for (const json& e : *l.enum_values) any = any || json_equals(v, e);
      if (!any) {
        json arr = *l.enum_values;
        fail("enum", ptr, describe_value(v) + " is not one of " + arr.dump());
      }
    }
    if (l.const_value && !json_equals(v, *l.const_value))
      fail("const", ptr, describe_value(v) + " is not " + l.const_value->dump());
  }
};

}  // namespace

CompiledSchema::CompiledSchema(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CompiledSchema::~CompiledSchema() = default;

const std::string& CompiledSchema::name() const { return impl_->name; }

Result<std::unique_ptr<CompiledSchema>> CompiledSchema::compile(const json& doc,
                                                                const std::string& name,
                                                                const std::string& file) {
  Compiler c(file);
  auto impl = c.root(doc);
  if (!c.errors.empty()) {
    std::string all;
    for (const auto& e : c.errors) all += (all.empty() ? "" : "\n") + e;
    return Status::invalid(all);
  }
  impl->name = name;
  return std::unique_ptr<CompiledSchema>(new CompiledSchema(std::move(impl)));
}

Result<std::unique_ptr<CompiledSchema>> CompiledSchema::load(const std::string& name,
                                                             const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::not_found(path + ": cannot read schema file");
  std::stringstream ss;
  ss << in.rdbuf();
  json doc = json::parse(ss.str(), nullptr, false, true);
  if (doc.is_discarded()) return Status::invalid(path + ": schema is not valid JSON");
  return compile(doc, name, path);
}

bool CompiledSchema::validate(const Reading& r, std::vector<SchemaViolation>& out,
                              std::size_t max_violations) const {
  Checker ck{out, max_violations};
  const Impl& s = *impl_;
  std::bitset<256> seen;
  auto visit = [&](std::string_view name, const Value& v, bool synthetic_timestamp) {
    const Impl::Property* p = s.find(name);
    if (p) {
      seen.set(static_cast<std::size_t>(p - s.properties.data()));
      // The timestamp vane formats itself is RFC 3339 by construction.
      if (synthetic_timestamp) {
        const Leaf& l = p->leaf;
        if (l.pattern || l.min_length || l.max_length || l.enum_values || l.const_value) {
          ck.check_string(l, p->pointer, format_timestamp(r.timestamp));
        } else if (l.never || !(l.types & kString)) {
          ck.check_string(l, p->pointer, format_timestamp(r.timestamp));
        }
        return;
      }
      ck.check(p->leaf, p->pointer, v);
      return;
    }
    if (s.additional == Impl::Additional::kDeny) {
      ck.fail("additionalProperties", "/" + std::string(name), "additional property not allowed");
    } else if (s.additional == Impl::Additional::kSchema && !synthetic_timestamp) {
      // Rare path: the pointer string is built only for fields without a property schema.
      ck.check(s.additional_leaf, "/" + std::string(name), v);
    }
  };
  static const Value kNoValue;
  const std::string_view device_field =
      r.origin && !r.origin->device_field.empty() ? std::string_view(r.origin->device_field)
                                                  : std::string_view("device_id");
  // The device id is a string by construction; check it without copying it.
  if (const Impl::Property* p = s.find(device_field)) {
    seen.set(static_cast<std::size_t>(p - s.properties.data()));
    ck.check_string(p->leaf, p->pointer, r.device_id);
  } else if (s.additional == Impl::Additional::kDeny) {
    ck.fail("additionalProperties", "/" + std::string(device_field), "additional property not allowed");
  }
  visit("timestamp", kNoValue, true);
  for (const Field& f : r.fields) {
    if (f.name == device_field || f.name == "timestamp") continue;
    visit(f.name, f.value, false);
  }
  for (std::size_t i = 0; i < s.properties.size(); ++i) {
    if (s.properties[i].required && !seen.test(i))
      ck.fail("required", s.properties[i].pointer, "required field missing");
  }
  for (const std::string& name : s.required_unknown) {
    bool present = name == device_field || name == "timestamp";
    for (const Field& f : r.fields) present = present || f.name == name;
    if (!present) ck.fail("required", "/" + name, "required field missing");
  }
  return ck.valid;
}

std::string join_violations(const std::vector<SchemaViolation>& v) {
  std::string s;
  for (const auto& x : v) {
    if (!s.empty()) s += "; ";
    s += x.message;
  }
  return s;
}

bool is_rfc3339_date_time(std::string_view s) {
  // full-date "T" full-time, time-offset Z or +hh:mm; fraction optional.
  auto digits = [&](std::size_t pos, std::size_t n, int& out) {
    if (pos + n > s.size()) return false;
    out = 0;
    for (std::size_t i = pos; i < pos + n; ++i) {
      if (s[i] < '0' || s[i] > '9') return false;
      out = out * 10 + (s[i] - '0');
    }
    return true;
  };
  int y, mo, d, h, mi, se;
  if (!digits(0, 4, y) || s.size() < 20 || s[4] != '-' || !digits(5, 2, mo) || s[7] != '-' ||
      !digits(8, 2, d) || (s[10] != 'T' && s[10] != 't') || !digits(11, 2, h) || s[13] != ':' ||
      !digits(14, 2, mi) || s[16] != ':' || !digits(17, 2, se))
    return false;
  static const int kDays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (mo < 1 || mo > 12 || d < 1 || d > kDays[mo - 1]) return false;
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (mo == 2 && d == 29 && !leap) return false;
  if (h > 23 || mi > 59 || se > 60) return false;
  std::size_t i = 19;
  if (i < s.size() && s[i] == '.') {
    ++i;
    const std::size_t start = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    if (i == start) return false;
  }
  if (i >= s.size()) return false;
  if (s[i] == 'Z' || s[i] == 'z') return i + 1 == s.size();
  if (s[i] != '+' && s[i] != '-') return false;
  int oh, om;
  if (!digits(i + 1, 2, oh) || i + 3 >= s.size() || s[i + 3] != ':' || !digits(i + 4, 2, om))
    return false;
  return i + 6 == s.size() && oh <= 23 && om <= 59;
}

}  // namespace vane
