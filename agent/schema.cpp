#include "schema.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <bitset>
#include <cmath>
#include <deque>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
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

constexpr int kMaxSchemaDepth = 64;
constexpr int kMaxInstanceDepth = 128;
constexpr std::size_t kMaxProperties = 256;

const std::set<std::string>& annotation_keywords() {
  static const std::set<std::string> k = {"title",   "description", "$comment", "examples", "default",
                                          "deprecated", "readOnly", "writeOnly", "$schema",  "$id"};
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

// A compiled `pattern`. Match data is per thread and reused, so matching
// allocates nothing after a thread's first match.
class Regex {
 public:
  static std::unique_ptr<Regex> compile(const std::string& src, std::string& error) {
    int code = 0;
    PCRE2_SIZE offset = 0;
    pcre2_code* re = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(src.data()), src.size(),
                                   PCRE2_UTF | PCRE2_ALT_BSUX | PCRE2_DOLLAR_ENDONLY | PCRE2_MATCH_INVALID_UTF,
                                   &code, &offset, nullptr);
    if (!re) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(code, msg, sizeof msg);
      error = std::string(reinterpret_cast<char*>(msg)) + " at offset " + std::to_string(offset);
      return nullptr;
    }
    auto r = std::unique_ptr<Regex>(new Regex(re));
    r->jit_ = pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) == 0;
    return r;
  }
  ~Regex() { pcre2_code_free(re_); }

  bool search(std::string_view s) const {
    struct MatchData {
      pcre2_match_data* md = pcre2_match_data_create(1, nullptr);
      ~MatchData() { pcre2_match_data_free(md); }
    };
    thread_local MatchData md;
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(s.data());
    // rc 0: matched, ovector too small for the groups (we need no groups).
    const int rc = jit_ ? pcre2_jit_match(re_, subject, s.size(), 0, 0, md.md, nullptr)
                        : pcre2_match(re_, subject, s.size(), 0, 0, md.md, nullptr);
    return rc >= 0;
  }

 private:
  explicit Regex(pcre2_code* re) : re_(re) {}
  pcre2_code* re_;
  bool jit_ = false;
};

// One subschema. Nodes live in Impl::nodes (stable addresses); edges are
// plain pointers into it.
struct Node {
  std::string where;  // JSON pointer in the schema document
  bool never = false;  // the schema `false`
  unsigned types = kAnyType;
  std::optional<double> minimum, maximum, exclusive_minimum, exclusive_maximum, multiple_of;
  std::optional<std::size_t> min_length, max_length;
  std::unique_ptr<Regex> pattern;
  std::string pattern_source;
  bool date_time = false;
  std::optional<std::vector<json>> enum_values;
  std::optional<json> const_value;
  // Objects.
  struct Property {
    std::string name;
    const Node* node;
  };
  std::vector<Property> properties;
  std::vector<std::string> required;
  enum class Additional { kAllow, kDeny, kSchema } additional = Additional::kAllow;
  const Node* additional_node = nullptr;
  bool has_object_rules = false;
  // Applicators.
  std::vector<const Node*> all_of, any_of, one_of;
  const Node* not_node = nullptr;
  const Node* ref = nullptr;
  bool has_string_rules() const { return min_length || max_length || pattern || date_time; }
  bool has_number_rules() const {
    return minimum || maximum || exclusive_minimum || exclusive_maximum || multiple_of;
  }
  int find(std::string_view name) const {
    for (std::size_t i = 0; i < properties.size(); ++i)
      if (properties[i].name == name) return static_cast<int>(i);
    return -1;
  }
};

}  // namespace

struct CompiledSchema::Impl {
  std::string name;
  std::deque<Node> nodes;
  const Node* root = nullptr;
};

namespace {

class Compiler {
 public:
  Compiler(const json& doc, std::string file, CompiledSchema::Impl& impl)
      : doc_(doc), file_(std::move(file)), impl_(impl) {}

  std::vector<std::string> errors;

  const Node* compile_root() {
    const Node* root = node_at("", 0);
    while (!pending_refs_.empty()) {
      auto [node, target, ptr, depth] = pending_refs_.back();
      pending_refs_.pop_back();
      resolve_ref(*node, target, ptr, depth);
    }
    check_cycles();
    return root;
  }

 private:
  void error(const std::string& pointer, const std::string& msg) {
    errors.push_back(file_ + ": " + (pointer.empty() ? "/" : pointer) + ": " + msg);
  }

  // The node for the subschema at `ptr`, compiled once.
  Node* node_at(const std::string& ptr, int depth) {
    auto it = by_pointer_.find(ptr);
    if (it != by_pointer_.end()) return it->second;
    Node& n = impl_.nodes.emplace_back();
    n.where = ptr;
    by_pointer_[ptr] = &n;
    if (depth > kMaxSchemaDepth) {
      error(ptr, "schema nested deeper than " + std::to_string(kMaxSchemaDepth) + " levels");
      return &n;
    }
    const json* s = nullptr;
    try {
      s = &doc_.at(json::json_pointer(ptr));
    } catch (const json::exception&) {
      error(ptr, "no subschema here");
      return &n;
    }
    fill(n, *s, ptr, depth);
    return &n;
  }

  void resolve_ref(Node& n, const std::string& target, const std::string& ptr, int depth) {
    if (target.empty() || target[0] != '#') {
      error(ptr, "$ref \"" + target + "\": only local references (\"#...\") are supported");
      return;
    }
    // URI fragment: percent-decode, then it is a JSON pointer.
    std::string frag;
    for (std::size_t i = 1; i < target.size(); ++i) {
      if (target[i] == '%' && i + 2 < target.size()) {
        frag += static_cast<char>(std::stoi(target.substr(i + 1, 2), nullptr, 16));
        i += 2;
      } else {
        frag += target[i];
      }
    }
    if (!frag.empty() && frag[0] != '/') {
      error(ptr, "$ref \"" + target + "\": anchors are not supported, use a JSON pointer");
      return;
    }
    bool exists = true;
    try {
      (void)doc_.at(json::json_pointer(frag));
    } catch (const json::exception&) {
      exists = false;
    }
    if (!exists) {
      error(ptr, "$ref \"" + target + "\" points to nothing");
      return;
    }
    n.ref = node_at(frag, depth + 1);
  }

  std::optional<double> number(const json& v, const std::string& p, const char* kw) {
    if (!v.is_number()) {
      error(p, std::string(kw) + " must be a number, got " + v.dump());
      return std::nullopt;
    }
    return v.get<double>();
  }

  std::optional<std::size_t> count(const json& v, const std::string& p, const char* kw) {
    const bool integral = v.is_number_integer() || (v.is_number_float() && v.get<double>() == std::floor(v.get<double>()));
    if (!integral || v.get<double>() < 0) {
      error(p, std::string(kw) + " must be a non-negative integer, got " + v.dump());
      return std::nullopt;
    }
    return static_cast<std::size_t>(v.get<double>());
  }

  unsigned parse_types(const json& t, const std::string& p) {
    static const std::pair<const char*, unsigned> kNames[] = {
        {"null", kNull},     {"boolean", kBoolean}, {"integer", kInteger}, {"number", kNumber | kInteger},
        {"string", kString}, {"object", kObject},   {"array", kArray}};
    auto one = [&](const json& v) -> unsigned {
      if (v.is_string())
        for (auto& [name, bit] : kNames)
          if (v.get<std::string>() == name) return bit;
      error(p, "invalid type " + v.dump() + " (expected null, boolean, integer, number, string, object or array)");
      return 0;
    };
    if (t.is_array()) {
      unsigned bits = 0;
      for (const json& v : t) bits |= one(v);
      return bits;
    }
    return one(t);
  }

  std::vector<const Node*> list(const json& v, const std::string& p, const char* kw, int depth) {
    std::vector<const Node*> out;
    if (!v.is_array() || v.empty()) {
      error(p, std::string(kw) + " must be a non-empty array of schemas");
      return out;
    }
    for (std::size_t i = 0; i < v.size(); ++i) out.push_back(node_at(p + "/" + std::to_string(i), depth + 1));
    return out;
  }

  void fill(Node& n, const json& s, const std::string& ptr, int depth) {
    if (s.is_boolean()) {
      n.never = !s.get<bool>();
      return;
    }
    if (!s.is_object()) {
      error(ptr, "a schema must be an object or a boolean, got " + s.dump());
      return;
    }
    for (auto it = s.begin(); it != s.end(); ++it) {
      const std::string& kw = it.key();
      const json& v = it.value();
      const std::string p = ptr + "/" + pointer_token(kw);
      if (annotation_keywords().count(kw)) continue;
      if (kw == "type") {
        n.types = parse_types(v, p);
      } else if (kw == "minimum") {
        n.minimum = number(v, p, "minimum");
      } else if (kw == "maximum") {
        n.maximum = number(v, p, "maximum");
      } else if (kw == "exclusiveMinimum") {
        n.exclusive_minimum = number(v, p, "exclusiveMinimum");
      } else if (kw == "exclusiveMaximum") {
        n.exclusive_maximum = number(v, p, "exclusiveMaximum");
      } else if (kw == "multipleOf") {
        n.multiple_of = number(v, p, "multipleOf");
        if (n.multiple_of && *n.multiple_of <= 0) error(p, "multipleOf must be > 0");
      } else if (kw == "minLength") {
        n.min_length = count(v, p, "minLength");
      } else if (kw == "maxLength") {
        n.max_length = count(v, p, "maxLength");
      } else if (kw == "pattern") {
        if (!v.is_string()) {
          error(p, "pattern must be a string");
          continue;
        }
        n.pattern_source = v.get<std::string>();
        std::string why;
        n.pattern = Regex::compile(n.pattern_source, why);
        if (!n.pattern) error(p, "invalid pattern \"" + n.pattern_source + "\": " + why);
      } else if (kw == "format") {
        if (v == "date-time") n.date_time = true;
        else error(p, "unsupported format " + v.dump() + " (supported: \"date-time\")");
      } else if (kw == "enum") {
        if (!v.is_array() || v.empty()) error(p, "enum must be a non-empty array");
        else n.enum_values = std::vector<json>(v.begin(), v.end());
      } else if (kw == "const") {
        n.const_value = v;
      } else if (kw == "properties") {
        if (!v.is_object()) {
          error(p, "properties must be an object");
          continue;
        }
        for (auto pit = v.begin(); pit != v.end(); ++pit)
          n.properties.push_back({pit.key(), node_at(p + "/" + pointer_token(pit.key()), depth + 1)});
        if (n.properties.size() > kMaxProperties) error(p, "more than 256 properties");
        n.has_object_rules = true;
      } else if (kw == "required") {
        if (!v.is_array()) {
          error(p, "required must be an array of strings");
          continue;
        }
        for (std::size_t i = 0; i < v.size(); ++i) {
          if (!v[i].is_string()) error(p + "/" + std::to_string(i), "required entries must be strings");
          else n.required.push_back(v[i].get<std::string>());
        }
        n.has_object_rules = true;
      } else if (kw == "additionalProperties") {
        if (v.is_boolean()) {
          n.additional = v.get<bool>() ? Node::Additional::kAllow : Node::Additional::kDeny;
        } else {
          n.additional = Node::Additional::kSchema;
          n.additional_node = node_at(p, depth + 1);
        }
        n.has_object_rules = true;
      } else if (kw == "allOf") {
        n.all_of = list(v, p, "allOf", depth);
      } else if (kw == "anyOf") {
        n.any_of = list(v, p, "anyOf", depth);
      } else if (kw == "oneOf") {
        n.one_of = list(v, p, "oneOf", depth);
      } else if (kw == "not") {
        n.not_node = node_at(p, depth + 1);
      } else if (kw == "$ref") {
        if (!v.is_string()) error(p, "$ref must be a string");
        else pending_refs_.push_back({&n, v.get<std::string>(), p, depth});
      } else if (kw == "$defs" || kw == "definitions") {
        if (!v.is_object()) {
          error(p, kw + " must be an object");
          continue;
        }
        // Compiled now so that errors in unused definitions are reported too.
        for (auto dit = v.begin(); dit != v.end(); ++dit) node_at(p + "/" + pointer_token(dit.key()), depth + 1);
      } else {
        error(p, "unsupported keyword \"" + kw + "\"");
      }
    }
  }

  // A cycle of $ref/allOf/anyOf/oneOf/not edges never reaches a property:
  // validating it would recurse forever on the same value.
  void check_cycles() {
    std::map<const Node*, int> state;  // 1 visiting, 2 done
    std::function<bool(const Node*)> visit = [&](const Node* n) -> bool {
      auto& st = state[n];
      if (st == 1) {
        error(n->where, "cyclic $ref: this schema refers back to itself without descending into a property");
        return true;
      }
      if (st == 2) return false;
      st = 1;
      std::vector<const Node*> next = n->all_of;
      next.insert(next.end(), n->any_of.begin(), n->any_of.end());
      next.insert(next.end(), n->one_of.begin(), n->one_of.end());
      if (n->not_node) next.push_back(n->not_node);
      if (n->ref) next.push_back(n->ref);
      for (const Node* m : next)
        if (visit(m)) return true;
      st = 2;
      return false;
    };
    for (const Node& n : impl_.nodes)
      if (visit(&n)) return;
  }

  struct PendingRef {
    Node* node;
    std::string target, ptr;
    int depth;
  };
  const json& doc_;
  std::string file_;
  CompiledSchema::Impl& impl_;
  std::map<std::string, Node*> by_pointer_;
  std::vector<PendingRef> pending_refs_;
};

// ---------------------------------------------------------------- checking

// A value being checked, without copying it: a scalar, or a JSON object/array.
struct View {
  enum class Kind { kNull, kBool, kInt, kDouble, kString, kObject, kArray } kind = Kind::kNull;
  bool b = false;
  std::int64_t i = 0;
  double d = 0;
  std::string_view s;
  const json* j = nullptr;  // objects and arrays (JSON instances only)
};

View view_of(const Value& v) {
  View x;
  switch (v.index()) {
    case 0: break;
    case 1: x.kind = View::Kind::kDouble, x.d = std::get<double>(v); break;
    case 2: x.kind = View::Kind::kInt, x.i = std::get<std::int64_t>(v); break;
    case 3: x.kind = View::Kind::kBool, x.b = std::get<bool>(v); break;
    case 4: x.kind = View::Kind::kString, x.s = std::get<std::string>(v); break;
  }
  return x;
}

View view_of(const json& v) {
  View x;
  switch (v.type()) {
    case json::value_t::boolean: x.kind = View::Kind::kBool, x.b = v.get<bool>(); break;
    case json::value_t::number_integer: x.kind = View::Kind::kInt, x.i = v.get<std::int64_t>(); break;
    case json::value_t::number_unsigned:
      if (v.get<std::uint64_t>() <= static_cast<std::uint64_t>(INT64_MAX)) x.kind = View::Kind::kInt, x.i = v.get<std::int64_t>();
      else x.kind = View::Kind::kDouble, x.d = v.get<double>();
      break;
    case json::value_t::number_float: x.kind = View::Kind::kDouble, x.d = v.get<double>(); break;
    case json::value_t::string: x.kind = View::Kind::kString, x.s = v.get_ref<const std::string&>(); break;
    case json::value_t::object: x.kind = View::Kind::kObject, x.j = &v; break;
    case json::value_t::array: x.kind = View::Kind::kArray, x.j = &v; break;
    default: break;
  }
  return x;
}

std::string describe(const View& v) {
  switch (v.kind) {
    case View::Kind::kNull: return "null";
    case View::Kind::kBool: return v.b ? "true" : "false";
    case View::Kind::kInt: return std::to_string(v.i);
    case View::Kind::kDouble: {
      if (std::isnan(v.d)) return "NaN";
      if (std::isinf(v.d)) return v.d > 0 ? "Infinity" : "-Infinity";
      return num_text(v.d);
    }
    case View::Kind::kString: {
      std::string q;
      append_json_string(v.s.size() > 80 ? v.s.substr(0, 77) : v.s, q);
      return q;
    }
    case View::Kind::kObject:
    case View::Kind::kArray: {
      std::string d = v.j->dump();
      return d.size() > 80 ? d.substr(0, 77) + "..." : d;
    }
  }
  return "?";
}

unsigned type_bits(const View& v) {
  switch (v.kind) {
    case View::Kind::kNull: return kNull;
    case View::Kind::kBool: return kBoolean;
    case View::Kind::kInt: return kNumber | kInteger;
    case View::Kind::kDouble:
      if (!std::isfinite(v.d)) return 0;  // NaN/Infinity are not JSON numbers
      return v.d == std::floor(v.d) ? (kNumber | kInteger) : kNumber;
    case View::Kind::kString: return kString;
    case View::Kind::kObject: return kObject;
    case View::Kind::kArray: return kArray;
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

// JSON equality: numbers compare by value (1 == 1.0), containers deeply.
bool json_equal(const json& a, const json& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_number_float() || b.is_number_float()) return a.get<double>() == b.get<double>();
    if (a.is_number_unsigned() && b.is_number_unsigned()) return a.get<std::uint64_t>() == b.get<std::uint64_t>();
    return a.get<double>() == b.get<double>() && a.dump() == b.dump();
  }
  if (a.type() != b.type()) return false;
  if (a.is_array()) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
      if (!json_equal(a[i], b[i])) return false;
    return true;
  }
  if (a.is_object()) {
    if (a.size() != b.size()) return false;
    for (auto it = a.begin(); it != a.end(); ++it) {
      auto jt = b.find(it.key());
      if (jt == b.end() || !json_equal(it.value(), *jt)) return false;
    }
    return true;
  }
  return a == b;
}

bool equals(const View& v, const json& j) {
  switch (v.kind) {
    case View::Kind::kNull: return j.is_null();
    case View::Kind::kBool: return j.is_boolean() && j.get<bool>() == v.b;
    case View::Kind::kInt:
      if (j.is_number_integer()) return j.get<std::int64_t>() == v.i && (!j.is_number_unsigned() || v.i >= 0);
      return j.is_number() && j.get<double>() == static_cast<double>(v.i);
    case View::Kind::kDouble: return j.is_number() && j.get<double>() == v.d;
    case View::Kind::kString: return j.is_string() && j.get_ref<const std::string&>() == v.s;
    case View::Kind::kObject:
    case View::Kind::kArray: return json_equal(*v.j, j);
  }
  return false;
}

// Where in the instance: a chain of keys on the stack, rendered only when a
// violation is reported.
struct Path {
  const Path* parent = nullptr;
  std::string_view key;
  std::size_t index = 0;
  bool is_index = false;
};

std::string render(const Path* p) {
  if (!p || (!p->parent && p->key.empty() && !p->is_index)) return "";
  std::string s = render(p->parent);
  s += '/';
  s += p->is_index ? std::to_string(p->index) : pointer_token(std::string(p->key));
  return s;
}

// The reading as an object: device id, timestamp, then its fields.
struct ReadingObject {
  const Reading& r;
  std::string_view device_field;
  std::string_view timestamp;  // formatted into the caller's stack buffer

  template <class F>
  void for_each(F&& f) const {
    f(device_field, View{View::Kind::kString, false, 0, 0, r.device_id, nullptr});
    f(std::string_view("timestamp"), View{View::Kind::kString, false, 0, 0, timestamp, nullptr});
    for (const Field& fl : r.fields) {
      if (fl.name == device_field || fl.name == "timestamp") continue;
      f(fl.name, view_of(fl.value));
    }
  }
  bool has(std::string_view name) const {
    if (name == device_field || name == "timestamp") return true;
    for (const Field& fl : r.fields)
      if (fl.name == name) return true;
    return false;
  }
};

struct JsonObject {
  const json& j;
  template <class F>
  void for_each(F&& f) const {
    for (auto it = j.begin(); it != j.end(); ++it) f(std::string_view(it.key()), view_of(it.value()));
  }
  bool has(std::string_view name) const { return j.find(std::string(name)) != j.end(); }
};

class Checker {
 public:
  Checker(std::vector<SchemaViolation>* out, std::size_t max) : out_(out), max_(max) {}
  bool valid() const { return valid_; }

  // A reading: an object that is not a JSON value.
  void check_reading(const Node& n, const ReadingObject& obj, const Path& path) {
    if (!common(n, path)) return;
    if (!(n.types & kObject)) {
      fail("type", path, "the reading is an object, not of type " + type_names(n.types));
      return;
    }
    if (n.enum_values || n.const_value) {
      // Rare: an enum of whole readings. Built as JSON only here.
      std::string text;
      serialize_reading(obj.r, text);
      const json j = json::parse(text);
      check_enum_const(n, view_of(j), path);
    }
    if (n.has_object_rules) check_object(n, obj, path);
    applicators(n, path, [&](const Node& m, Checker& c) { c.check_reading(m, obj, path); });
  }

  void check_value(const Node& n, const View& v, const Path& path) {
    if (!common(n, path)) return;
    const unsigned bits = type_bits(v);
    if (bits == 0) {
      fail("type", path, describe(v) + " is not a number");
      return;
    }
    if ((bits & n.types) == 0) {
      fail("type", path, describe(v) + " is not of type " + type_names(n.types));
      return;
    }
    if ((bits & kNumber) && n.has_number_rules()) number_rules(n, v, path);
    if ((bits & kString) && n.has_string_rules()) string_rules(n, v.s, path);
    check_enum_const(n, v, path);
    if (v.kind == View::Kind::kObject && n.has_object_rules) {
      if (++depth_ > kMaxInstanceDepth) {
        fail("depth", path, "nested deeper than " + std::to_string(kMaxInstanceDepth) + " levels");
      } else {
        check_object(n, JsonObject{*v.j}, path);
      }
      --depth_;
    }
    applicators(n, path, [&](const Node& m, Checker& c) { c.check_value(m, v, path); });
  }

 private:
  bool stop() const { return !collect_ && !valid_; }

  void fail(const char* rule, const Path& path, std::string msg) {
    valid_ = false;
    if (collect_ && out_->size() < max_) out_->push_back({rule, render(&path) + ": " + std::move(msg)});
  }
  void fail_at(const char* rule, const Path& parent, std::string_view key, std::string msg) {
    Path p{&parent, key};
    fail(rule, p, std::move(msg));
  }

  // Keywords that apply whatever the instance is; false stops the check.
  bool common(const Node& n, const Path& path) {
    if (stop()) return false;
    if (n.never) {
      fail("false", path, "no value is allowed here");
      return false;
    }
    return true;
  }

  template <class Apply>
  void applicators(const Node& n, const Path& path, Apply&& apply) {
    if (n.ref && !stop()) {
      // A recursive schema follows the instance down; the depth bound stops
      // a pathological instance, not a normal one.
      if (++depth_ > kMaxInstanceDepth) fail("depth", path, "$ref nested deeper than " + std::to_string(kMaxInstanceDepth) + " levels");
      else apply(*n.ref, *this);
      --depth_;
    }
    for (const Node* m : n.all_of) {
      if (stop()) return;
      apply(*m, *this);
    }
    if (!n.any_of.empty() && !stop()) {
      bool any = false;
      for (const Node* m : n.any_of) {
        Checker trial(nullptr, 0);
        trial.depth_ = depth_;
        apply(*m, trial);
        if (trial.valid_) {
          any = true;
          break;
        }
      }
      if (!any) fail("anyOf", path, "matches none of the anyOf schemas");
    }
    if (!n.one_of.empty() && !stop()) {
      int matched = 0;
      for (const Node* m : n.one_of) {
        Checker trial(nullptr, 0);
        trial.depth_ = depth_;
        apply(*m, trial);
        matched += trial.valid_;
      }
      if (matched != 1)
        fail("oneOf", path, "matches " + std::to_string(matched) + " of the oneOf schemas, must match exactly one");
    }
    if (n.not_node && !stop()) {
      Checker trial(nullptr, 0);
      trial.depth_ = depth_;
      apply(*n.not_node, trial);
      if (trial.valid_) fail("not", path, "must not match the \"not\" schema");
    }
  }

  template <class Obj>
  void check_object(const Node& n, const Obj& obj, const Path& path) {
    std::bitset<kMaxProperties> seen;
    obj.for_each([&](std::string_view name, const View& v) {
      if (stop()) return;
      const int idx = n.find(name);
      Path child{&path, name};
      if (idx >= 0) {
        seen.set(static_cast<std::size_t>(idx));
        check_value(*n.properties[static_cast<std::size_t>(idx)].node, v, child);
      } else if (n.additional == Node::Additional::kDeny) {
        fail("additionalProperties", child, "additional property not allowed");
      } else if (n.additional == Node::Additional::kSchema) {
        check_value(*n.additional_node, v, child);
      }
    });
    for (const std::string& name : n.required) {
      if (stop()) return;
      const int idx = n.find(name);
      const bool present = idx >= 0 ? seen.test(static_cast<std::size_t>(idx)) : obj.has(name);
      if (!present) fail_at("required", path, name, "required field missing");
    }
  }

  void number_rules(const Node& n, const View& v, const Path& path) {
    const double d = v.kind == View::Kind::kDouble ? v.d : static_cast<double>(v.i);
    if (n.minimum && d < *n.minimum) fail("minimum", path, describe(v) + " < minimum " + num_text(*n.minimum));
    if (n.maximum && d > *n.maximum) fail("maximum", path, describe(v) + " > maximum " + num_text(*n.maximum));
    if (n.exclusive_minimum && d <= *n.exclusive_minimum)
      fail("exclusiveMinimum", path, describe(v) + " <= exclusiveMinimum " + num_text(*n.exclusive_minimum));
    if (n.exclusive_maximum && d >= *n.exclusive_maximum)
      fail("exclusiveMaximum", path, describe(v) + " >= exclusiveMaximum " + num_text(*n.exclusive_maximum));
    if (n.multiple_of) {
      const double q = d / *n.multiple_of;
      // An overflowing quotient (huge value, tiny divisor) is integral in
      // every representable sense: accept it rather than fail on rounding.
      if (std::isfinite(q) && std::fabs(q - std::round(q)) > 1e-9 * std::max(1.0, std::fabs(q)))
        fail("multipleOf", path, describe(v) + " is not a multiple of " + num_text(*n.multiple_of));
    }
  }

  void string_rules(const Node& n, std::string_view s, const Path& path) {
    auto quoted = [&] { return describe(View{View::Kind::kString, false, 0, 0, s, nullptr}); };
    if (n.min_length || n.max_length) {
      const std::size_t len = code_points(s);
      if (n.min_length && len < *n.min_length)
        fail("minLength", path, quoted() + " is shorter than minLength " + std::to_string(*n.min_length));
      if (n.max_length && len > *n.max_length)
        fail("maxLength", path, quoted() + " is longer than maxLength " + std::to_string(*n.max_length));
    }
    if (n.pattern && !n.pattern->search(s))
      fail("pattern", path, quoted() + " does not match pattern \"" + n.pattern_source + "\"");
    if (n.date_time && !is_rfc3339_date_time(s)) fail("format", path, quoted() + " is not an RFC 3339 date-time");
  }

  void check_enum_const(const Node& n, const View& v, const Path& path) {
    if (n.enum_values) {
      bool any = false;
      for (const json& e : *n.enum_values) {
        if (equals(v, e)) {
          any = true;
          break;
        }
      }
      if (!any) {
        json arr = *n.enum_values;
        fail("enum", path, describe(v) + " is not one of " + arr.dump());
      }
    }
    if (n.const_value && !equals(v, *n.const_value)) fail("const", path, describe(v) + " is not " + n.const_value->dump());
  }

  std::vector<SchemaViolation>* out_;
  std::size_t max_;
  bool collect_ = out_ != nullptr;
  bool valid_ = true;
  int depth_ = 0;
};

}  // namespace

const std::vector<const char*>& schema_rules() {
  static const std::vector<const char*> rules = {
      "type",     "minimum",   "maximum",    "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
      "minLength", "maxLength", "pattern",   "format",           "enum",             "const",
      "required", "additionalProperties", "anyOf", "oneOf", "not", "false", "depth", "source"};
  return rules;
}

CompiledSchema::CompiledSchema(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CompiledSchema::~CompiledSchema() = default;

const std::string& CompiledSchema::name() const { return impl_->name; }

Result<std::unique_ptr<CompiledSchema>> CompiledSchema::compile(const json& doc, const std::string& name,
                                                                const std::string& file) {
  return compile(doc, name, file, Options{});
}

Result<std::unique_ptr<CompiledSchema>> CompiledSchema::compile(const json& doc, const std::string& name,
                                                                const std::string& file, Options opts) {
  auto impl = std::make_unique<Impl>();
  impl->name = name;
  Compiler c(doc, file, *impl);
  impl->root = c.compile_root();
  if (opts.for_readings && c.errors.empty()) {
    if (impl->root->never || !(impl->root->types & kObject))
      c.errors.push_back(file + ": /type: the schema of a reading must admit an object");
  }
  if (!c.errors.empty()) {
    std::string all;
    for (const auto& e : c.errors) all += (all.empty() ? "" : "\n") + e;
    return Status::invalid(all);
  }
  return std::unique_ptr<CompiledSchema>(new CompiledSchema(std::move(impl)));
}

Result<std::unique_ptr<CompiledSchema>> CompiledSchema::load(const std::string& name, const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::not_found(path + ": cannot read schema file");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  json doc = json::parse(text, nullptr, false, true);
  if (doc.is_discarded()) {
    try {
      doc = json::parse(text, nullptr, true, true);
    } catch (const json::parse_error& e) {
      int line = 1;
      for (std::size_t i = 0; i < text.size() && i + 1 < e.byte; ++i) line += text[i] == '\n';
      return Status::invalid(path + ":" + std::to_string(line) + ": schema is not valid JSON");
    }
  }
  return compile(doc, name, path);
}

bool CompiledSchema::validate(const Reading& r, std::vector<SchemaViolation>& out, std::size_t max_violations) const {
  char ts[kTimestampLength];
  const std::size_t ts_len = format_timestamp(r.timestamp, ts);
  const std::string_view device_field =
      r.origin && !r.origin->device_field.empty() ? std::string_view(r.origin->device_field)
                                                  : std::string_view("device_id");
  ReadingObject obj{r, device_field, std::string_view(ts, ts_len)};
  Checker c(&out, max_violations);
  Path root;
  c.check_reading(*impl_->root, obj, root);
  return c.valid();
}

bool CompiledSchema::validate(const json& instance, std::vector<SchemaViolation>& out,
                              std::size_t max_violations) const {
  Checker c(&out, max_violations);
  Path root;
  c.check_value(*impl_->root, view_of(instance), root);
  return c.valid();
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
  if (!digits(0, 4, y) || s.size() < 20 || s[4] != '-' || !digits(5, 2, mo) || s[7] != '-' || !digits(8, 2, d) ||
      (s[10] != 'T' && s[10] != 't') || !digits(11, 2, h) || s[13] != ':' || !digits(14, 2, mi) || s[16] != ':' ||
      !digits(17, 2, se))
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
  if (!digits(i + 1, 2, oh) || i + 3 >= s.size() || s[i + 3] != ':' || !digits(i + 4, 2, om)) return false;
  return i + 6 == s.size() && oh <= 23 && om <= 59;
}

}  // namespace vane
