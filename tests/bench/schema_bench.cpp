// Validating one turbine reading: vane's compiled schema on the Reading
// itself, against a baseline that does what a straightforward validator
// does — turn the reading into a nlohmann::json document and walk the schema
// document for it (with its regexes compiled once, to be fair to it).
#include <benchmark/benchmark.h>

#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "schema.h"
#include "serialize.h"

namespace {

using json = nlohmann::json;
using vane::Field;
using vane::Reading;

const vane::Origin kOrigin{"sim", "turbine", "turbine_id"};

json load_schema() {
  std::ifstream in(std::string(VANE_SOURCE_DIR) + "/examples/schemas/turbine.schema.json");
  return json::parse(in);
}

Reading turbine_reading() {
  Reading r;
  r.origin = &kOrigin;
  r.device_id = "T-007";
  r.timestamp = vane::now_us();
  r.fields = {{"wind_speed", 9.81}, {"pitch_angle", 0.9}, {"power_output", 1894.2},
              {"temperature", 31.7}, {"vibration", 0.31}};
  return r;
}

// The baseline: a tree-walking validator over JSON documents.
class TreeWalker {
 public:
  explicit TreeWalker(json schema) : schema_(std::move(schema)) {}

  bool validate(const Reading& r) {
    json doc = json::object();
    doc[r.origin->device_field] = r.device_id;
    doc["timestamp"] = vane::format_timestamp(r.timestamp);
    for (const Field& f : r.fields) {
      std::visit(
          [&](const auto& v) {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, std::monostate>) doc[std::string(f.name)] = nullptr;
            else doc[std::string(f.name)] = v;
          },
          f.value);
    }
    return check(schema_, doc);
  }

 private:
  bool check(const json& s, const json& v) {
    bool ok = true;
    if (s.contains("type")) {
      const std::string t = s["type"];
      if (t == "object" && !v.is_object()) return false;
      if (t == "number" && !v.is_number()) return false;
      if (t == "string" && !v.is_string()) return false;
    }
    if (v.is_number()) {
      if (s.contains("minimum") && v.get<double>() < s["minimum"].get<double>()) ok = false;
      if (s.contains("maximum") && v.get<double>() > s["maximum"].get<double>()) ok = false;
    }
    if (v.is_string()) {
      if (s.contains("pattern") && !std::regex_search(v.get<std::string>(), regex(s["pattern"]))) ok = false;
      if (s.contains("format") && s["format"] == "date-time" && !vane::is_rfc3339_date_time(v.get<std::string>()))
        ok = false;
    }
    if (v.is_object()) {
      const json& props = s.contains("properties") ? s["properties"] : json::object();
      for (auto it = v.begin(); it != v.end(); ++it) {
        if (props.contains(it.key())) ok = check(props[it.key()], it.value()) && ok;
        else if (s.contains("additionalProperties") && s["additionalProperties"] == false) ok = false;
      }
      if (s.contains("required"))
        for (const json& k : s["required"])
          if (!v.contains(k.get<std::string>())) ok = false;
    }
    return ok;
  }

  const std::regex& regex(const std::string& p) {
    auto it = regexes_.find(p);
    if (it == regexes_.end()) it = regexes_.emplace(p, std::regex(p, std::regex::ECMAScript)).first;
    return it->second;
  }

  json schema_;
  std::map<std::string, std::regex> regexes_;
};

void BM_VaneCompiledSchema(benchmark::State& state) {
  auto schema = vane::CompiledSchema::compile(load_schema(), "turbine", "turbine.schema.json");
  if (!schema) {
    state.SkipWithError(schema.status().message().c_str());
    return;
  }
  const Reading r = turbine_reading();
  std::vector<vane::SchemaViolation> v;
  for (auto _ : state) {
    const bool ok = schema.value()->validate(r, v);
    benchmark::DoNotOptimize(ok);
    if (!ok) state.SkipWithError("reading unexpectedly invalid");
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_VaneCompiledSchema);

void BM_TreeWalkingBaseline(benchmark::State& state) {
  TreeWalker w(load_schema());
  const Reading r = turbine_reading();
  for (auto _ : state) {
    const bool ok = w.validate(r);
    benchmark::DoNotOptimize(ok);
    if (!ok) state.SkipWithError("reading unexpectedly invalid");
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_TreeWalkingBaseline);

}  // namespace

BENCHMARK_MAIN();
