// Declarative config tables: one entry per option with its type, default and
// description. The same tables validate configs, word the errors, and render
// docs/CONFIG.md (`vane config-reference`). A driver adds its source type in
// source_types() — the one place source types are listed.
#pragma once

#include <functional>
#include <limits>

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <utility>
#include <vector>

namespace vane {

enum class OptType {
  kString,
  kUint,
  kDouble,
  kBool,
  kEnum,
  kSize,       // bytes: a number or "512MiB", "1GiB", "100MB"
  kRateOrMax,  // a number > 0 or "max"
  kListen,     // "host:port", or "" / false to disable
  kStringMap,  // object of scalars, passed through as strings
  kObject,
  kArray,
};

struct ConfigOption {
  ConfigOption(std::string n, OptType t, std::string d, std::string desc, std::vector<std::string> a = {},
               double lo = -std::numeric_limits<double>::infinity(),
               double hi = std::numeric_limits<double>::infinity(), bool req = false)
      : name(std::move(n)), type(t), def(std::move(d)), description(std::move(desc)), allowed(std::move(a)),
        min(lo), max(hi), required(req) {}
  std::string name;
  OptType type;
  std::string def;  // default as shown in docs; empty: none
  std::string description;
  std::vector<std::string> allowed;  // kEnum
  double min = -std::numeric_limits<double>::infinity();
  double max = std::numeric_limits<double>::infinity();
  bool required = false;
};

struct ConfigTable {
  std::string pointer;  // where the table applies, e.g. "/buffer"
  std::string title;
  std::vector<ConfigOption> options;
  const ConfigOption* find(const std::string& name) const;
};

// A driver's own check of a source object beyond its flat keys (nested
// device lists, register maps): appends (JSON pointer, message) pairs.
using SourceValidator = std::function<void(const nlohmann::json& source, const std::string& pointer,
                                           std::vector<std::pair<std::string, std::string>>& errors)>;

struct SourceType {
  std::string type;
  bool built;  // false: a known type whose driver is not in this build
  std::string description;
  ConfigTable table;  // includes the keys every source has
  SourceValidator validate;  // may be empty
};

const ConfigTable& top_level_table();
const ConfigTable& gateway_table();
const ConfigTable& buffer_table();
const ConfigTable& kafka_table();
const ConfigTable& kafka_tls_table();
const ConfigTable& kafka_sasl_table();
const ConfigTable& http_table();
const std::vector<SourceType>& source_types();
const SourceType* find_source_type(const std::string& type);

const char* type_name(OptType t);
std::string config_reference_markdown();

// Closest candidate by edit distance, or "" when nothing is close.
std::string closest(const std::string& word, const std::vector<std::string>& candidates);

}  // namespace vane
