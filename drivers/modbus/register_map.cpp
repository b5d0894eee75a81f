#include "modbus/register_map.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>

#include <nlohmann/json.hpp>

namespace vane::modbus {

using json = nlohmann::json;

namespace {

constexpr std::pair<const char*, Table> kTables[] = {
    {"coil", Table::kCoil}, {"discrete", Table::kDiscrete}, {"holding", Table::kHolding}, {"input", Table::kInput}};
constexpr std::pair<const char*, Type> kTypes[] = {
    {"int16", Type::kInt16},     {"uint16", Type::kUint16},   {"int32", Type::kInt32},   {"uint32", Type::kUint32},
    {"int64", Type::kInt64},     {"uint64", Type::kUint64},   {"float32", Type::kFloat32},
    {"float64", Type::kFloat64}, {"string", Type::kString},   {"bool", Type::kBool}};
constexpr std::pair<const char*, Order> kOrders[] = {
    {"ABCD", Order::kABCD}, {"CDAB", Order::kCDAB}, {"BADC", Order::kBADC}, {"DCBA", Order::kDCBA}};

bool is_bits(Table t) { return t == Table::kCoil || t == Table::kDiscrete; }

template <class T, std::size_t N>
std::string names(const std::pair<const char*, T> (&table)[N]) {
  std::string s;
  for (auto& [n, _] : table) s += (s.empty() ? "" : ", ") + std::string(n);
  return s;
}

// The value's bytes, most significant first, from `words` registers laid
// out in `order`.
void ordered_bytes(const std::uint16_t* regs, int words, Order order, std::uint8_t* out) {
  const bool word_swap = order == Order::kCDAB || order == Order::kDCBA;
  const bool byte_swap = order == Order::kBADC || order == Order::kDCBA;
  for (int w = 0; w < words; ++w) {
    const std::uint16_t r = regs[word_swap ? words - 1 - w : w];
    const std::uint8_t hi = static_cast<std::uint8_t>(r >> 8), lo = static_cast<std::uint8_t>(r & 0xff);
    out[2 * w] = byte_swap ? lo : hi;
    out[2 * w + 1] = byte_swap ? hi : lo;
  }
}

std::uint64_t big_endian(const std::uint8_t* b, int n) {
  std::uint64_t v = 0;
  for (int i = 0; i < n; ++i) v = (v << 8) | b[i];
  return v;
}

}  // namespace

const char* to_string(Table t) {
  for (auto& [n, v] : kTables)
    if (v == t) return n;
  return "?";
}
const char* to_string(Type t) {
  for (auto& [n, v] : kTypes)
    if (v == t) return n;
  return "?";
}
const char* to_string(Order o) {
  for (auto& [n, v] : kOrders)
    if (v == o) return n;
  return "?";
}
std::optional<Table> parse_table(const std::string& s) {
  for (auto& [n, v] : kTables)
    if (s == n) return v;
  return std::nullopt;
}
std::optional<Type> parse_type(const std::string& s) {
  for (auto& [n, v] : kTypes)
    if (s == n) return v;
  return std::nullopt;
}
std::optional<Order> parse_order(const std::string& s) {
  for (auto& [n, v] : kOrders)
    if (s == n) return v;
  return std::nullopt;
}

int Entry::count() const {
  switch (type) {
    case Type::kInt32:
    case Type::kUint32:
    case Type::kFloat32: return 2;
    case Type::kInt64:
    case Type::kUint64:
    case Type::kFloat64: return 4;
    case Type::kString: return length;
    default: return 1;
  }
}

RegisterMap RegisterMap::parse(const json& regs, const std::string& pointer, std::vector<ConfigError>& errors) {
  RegisterMap m;
  if (!regs.is_array() || regs.empty()) {
    errors.push_back({pointer, "expected a non-empty array of register entries"});
    return m;
  }
  static const char* kKeys[] = {"field", "table", "address", "type", "order", "length", "bit", "scale", "offset", "unit"};
  for (std::size_t i = 0; i < regs.size(); ++i) {
    const std::string p = pointer + "/" + std::to_string(i);
    const json& r = regs[i];
    if (!r.is_object()) {
      errors.push_back({p, "expected an object"});
      continue;
    }
    const std::size_t before = errors.size();
    for (auto it = r.begin(); it != r.end(); ++it)
      if (std::find_if(std::begin(kKeys), std::end(kKeys), [&](const char* k) { return it.key() == k; }) == std::end(kKeys))
        errors.push_back({p + "/" + it.key(), "unknown key \"" + it.key() + "\""});
    Entry e;
    auto str = [&](const char* k, std::string& dst, bool required) {
      if (!r.contains(k)) {
        if (required) errors.push_back({p, std::string("missing required key \"") + k + "\""});
        return;
      }
      if (!r[k].is_string()) errors.push_back({p + "/" + k, "expected a string, got " + r[k].dump()});
      else dst = r[k];
    };
    std::string table = "holding", type = "uint16", order = "ABCD";
    str("field", e.field, true);
    str("table", table, false);
    str("type", type, false);
    str("order", order, false);
    str("unit", e.unit, false);
    if (auto t = parse_table(table)) e.table = *t;
    else errors.push_back({p + "/table", "\"" + table + "\" is not one of: " + names(kTables)});
    if (auto t = parse_type(type)) e.type = *t;
    else errors.push_back({p + "/type", "\"" + type + "\" is not one of: " + names(kTypes)});
    if (auto o = parse_order(order)) e.order = *o;
    else errors.push_back({p + "/order", "\"" + order + "\" is not one of: " + names(kOrders)});
    auto integer = [&](const char* k, int& dst, int lo, int hi, bool required) {
      if (!r.contains(k)) {
        if (required) errors.push_back({p, std::string("missing required key \"") + k + "\""});
        return;
      }
      if (!r[k].is_number_integer() || r[k].get<std::int64_t>() < lo || r[k].get<std::int64_t>() > hi)
        errors.push_back({p + "/" + k, "expected an integer " + std::to_string(lo) + ".." + std::to_string(hi) +
                                           ", got " + r[k].dump()});
      else dst = r[k].get<int>();
    };
    integer("address", e.address, 0, 65535, true);
    integer("length", e.length, 1, kMaxRegisters, false);
    integer("bit", e.bit, 0, 15, false);
    auto number = [&](const char* k, double& dst) {
      if (!r.contains(k)) return;
      if (!r[k].is_number() || !std::isfinite(r[k].get<double>()))
        errors.push_back({p + "/" + k, "expected a number, got " + r[k].dump()});
      else dst = r[k].get<double>();
    };
    number("scale", e.scale);
    number("offset", e.offset);
    if (errors.size() != before) continue;
    // What does not fit together.
    if (is_bits(e.table) && e.type != Type::kBool)
      errors.push_back({p + "/type", std::string("a ") + to_string(e.table) + " is a single bit: use type \"bool\""});
    else if (is_bits(e.table) && e.bit >= 0)
      errors.push_back({p + "/bit", std::string("\"bit\" selects a bit of a register; a ") + to_string(e.table) + " is one bit already"});
    else if (!is_bits(e.table) && e.type == Type::kBool && e.bit < 0)
      errors.push_back({p + "/bit", "a bool from a register needs \"bit\" (0-15)"});
    else if (e.type != Type::kBool && e.bit >= 0)
      errors.push_back({p + "/bit", "\"bit\" applies to type \"bool\" only"});
    else if (e.type == Type::kString && e.length == 0)
      errors.push_back({p + "/length", "a string needs \"length\" in registers"});
    else if (e.type != Type::kString && r.contains("length"))
      errors.push_back({p + "/length", "\"length\" applies to type \"string\" only"});
    else if (e.address + e.count() > 65536)
      errors.push_back({p + "/address", "entry runs past address 65535"});
    else
      m.entries_.push_back(e);
  }
  // Two fields on the same registers are a mapping mistake (bits of one
  // register excepted), and so is one field name twice.
  std::map<std::string, std::size_t> by_name;
  for (std::size_t i = 0; i < m.entries_.size(); ++i) {
    const Entry& a = m.entries_[i];
    if (!by_name.emplace(a.field, i).second)
      errors.push_back({pointer, "field \"" + a.field + "\" is mapped twice"});
    for (std::size_t j = 0; j < i; ++j) {
      const Entry& b = m.entries_[j];
      if (a.table != b.table) continue;
      const bool overlap = a.address < b.address + b.count() && b.address < a.address + a.count();
      const bool distinct_bits = a.type == Type::kBool && b.type == Type::kBool && a.bit >= 0 && b.bit >= 0 &&
                                 a.address == b.address && a.bit != b.bit;
      if (overlap && !distinct_bits)
        errors.push_back({pointer, "fields \"" + b.field + "\" and \"" + a.field + "\" overlap at " +
                                       to_string(a.table) + " address " + std::to_string(std::max(a.address, b.address))});
    }
  }
  return m;
}

std::vector<Request> RegisterMap::plan(int max_gap) const {
  std::vector<std::size_t> order(entries_.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    const Entry &x = entries_[a], &y = entries_[b];
    return x.table != y.table ? x.table < y.table : x.address < y.address;
  });
  std::vector<Request> out;
  for (std::size_t i : order) {
    const Entry& e = entries_[i];
    const int limit = is_bits(e.table) ? kMaxBits : kMaxRegisters;
    const int end = e.address + e.count();
    if (!out.empty()) {
      Request& r = out.back();
      const int r_end = r.address + r.count;
      if (r.table == e.table && e.address - r_end <= max_gap && std::max(end, r_end) - r.address <= limit) {
        r.count = std::max(end, r_end) - r.address;
        r.entries.push_back(i);
        continue;
      }
    }
    out.push_back({e.table, e.address, e.count(), {i}});
  }
  return out;
}

std::optional<Value> decode(const Entry& e, const std::uint16_t* data, std::size_t size, int block_address) {
  const int off = e.address - block_address;
  if (off < 0 || static_cast<std::size_t>(off + e.count()) > size) return std::nullopt;
  const std::uint16_t* regs = data + off;
  if (is_bits(e.table)) return Value(regs[0] != 0);
  if (e.type == Type::kBool) return Value(((regs[0] >> e.bit) & 1) != 0);
  if (e.type == Type::kString) {
    std::string s(static_cast<std::size_t>(2 * e.length), '\0');
    const bool byte_swap = e.order == Order::kBADC || e.order == Order::kDCBA;
    for (int w = 0; w < e.length; ++w) {
      s[2 * w] = static_cast<char>(byte_swap ? regs[w] & 0xff : regs[w] >> 8);
      s[2 * w + 1] = static_cast<char>(byte_swap ? regs[w] >> 8 : regs[w] & 0xff);
    }
    s.resize(std::strlen(s.c_str()));
    while (!s.empty() && s.back() == ' ') s.pop_back();
    return Value(std::move(s));
  }
  std::uint8_t b[8];
  const int words = e.count();
  ordered_bytes(regs, words, words == 1 && (e.order == Order::kCDAB) ? Order::kABCD : e.order, b);
  const std::uint64_t raw = big_endian(b, 2 * words);
  double d = 0;
  std::int64_t i = 0;
  bool is_float = false;
  switch (e.type) {
    case Type::kInt16: i = static_cast<std::int16_t>(raw); break;
    case Type::kUint16: i = static_cast<std::int64_t>(raw); break;
    case Type::kInt32: i = static_cast<std::int32_t>(raw); break;
    case Type::kUint32: i = static_cast<std::int64_t>(raw); break;
    case Type::kInt64: i = static_cast<std::int64_t>(raw); break;
    case Type::kUint64:
      if (raw > static_cast<std::uint64_t>(INT64_MAX)) {
        d = static_cast<double>(raw);
        is_float = true;
      } else {
        i = static_cast<std::int64_t>(raw);
      }
      break;
    case Type::kFloat32: {
      const std::uint32_t u = static_cast<std::uint32_t>(raw);
      float f;
      std::memcpy(&f, &u, sizeof f);
      d = f;
      is_float = true;
      break;
    }
    case Type::kFloat64: {
      std::memcpy(&d, &raw, sizeof d);
      is_float = true;
      break;
    }
    default: return std::nullopt;
  }
  if (e.scale != 1.0 || e.offset != 0.0) return Value((is_float ? d : static_cast<double>(i)) * e.scale + e.offset);
  if (is_float) return Value(d);
  return Value(i);
}

}  // namespace vane::modbus
