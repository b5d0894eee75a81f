// A Modbus register map: which registers of which table hold which field,
// how to decode them, and the request plan that reads them in as few
// requests as the protocol allows. Pure: no I/O, fully unit-tested.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/config_error.h"
#include "core/reading.h"

namespace vane::modbus {

enum class Table { kCoil, kDiscrete, kHolding, kInput };
enum class Type { kInt16, kUint16, kInt32, kUint32, kInt64, kUint64, kFloat32, kFloat64, kString, kBool };
// Byte order of a multi-byte value as the device lays it out, A = most
// significant byte: ABCD big-endian, CDAB word-swapped, BADC byte-swapped,
// DCBA little-endian. For 64-bit values the same rule applies per word.
enum class Order { kABCD, kCDAB, kBADC, kDCBA };

// Protocol limits per read request.
inline constexpr int kMaxRegisters = 125;
inline constexpr int kMaxBits = 2000;

struct Entry {
  std::string field;
  Table table = Table::kHolding;
  int address = 0;  // 0-based protocol address
  Type type = Type::kUint16;
  Order order = Order::kABCD;
  int length = 0;   // registers, for strings
  int bit = -1;     // bool from a bit of a register (0 = least significant)
  double scale = 1.0;
  double offset = 0.0;
  std::string unit;
  int count() const;  // registers (or bits) the entry spans
};

// One read request: a table, a start address and a count; the entries it
// serves, by index into the map.
struct Request {
  Table table;
  int address;
  int count;
  std::vector<std::size_t> entries;
};

using vane::ConfigError;

class RegisterMap {
 public:
  // Parses a "registers" array; errors name the entry by JSON pointer under
  // `pointer`. Overlapping entries, impossible addresses and types that do
  // not fit their table are errors.
  static RegisterMap parse(const nlohmann::json& registers, const std::string& pointer,
                           std::vector<ConfigError>& errors);

  const std::vector<Entry>& entries() const { return entries_; }
  // Requests covering every entry: contiguous or near-contiguous addresses
  // (at most max_gap unused registers between) of one table merge, within
  // the protocol limits.
  std::vector<Request> plan(int max_gap) const;
  // Field names as stable storage for Reading::Field::name.
  const std::string& field_name(std::size_t i) const { return entries_[i].field; }

 private:
  std::vector<Entry> entries_;
};

// Decodes entry `e` from the registers (or bits, 0/1 per element) of a
// response whose first element is at `block_address`. Returns nullopt when
// the value is not representable (e.g. a NaN float is kept: the schema
// decides); never reads outside `data`.
std::optional<Value> decode(const Entry& e, const std::uint16_t* data, std::size_t size, int block_address);

const char* to_string(Table t);
const char* to_string(Type t);
const char* to_string(Order o);
std::optional<Table> parse_table(const std::string& s);
std::optional<Type> parse_type(const std::string& s);
std::optional<Order> parse_order(const std::string& s);

}  // namespace vane::modbus
