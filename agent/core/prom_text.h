// Builds a Prometheus text-format (0.0.4) exposition. Samples may be added in
// any order, from many exporters; render() writes each family once, with its
// HELP and TYPE, and all its samples together, as the format requires.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace vane {

class PromText {
 public:
  enum class Type { kCounter, kGauge, kHistogram, kSummary };
  using Labels = std::vector<std::pair<std::string_view, std::string_view>>;

  // Declares a family; adding a sample to an undeclared family is a bug
  // caught by render() (the sample is written under an "untyped" family).
  void family(std::string_view name, Type type, std::string_view help) {
    Family& f = families_[std::string(name)];
    f.type = type;
    f.help = help;
    f.declared = true;
  }

  // `suffix` is "" or a histogram/summary sample suffix (_bucket, _sum,
  // _count); label values are escaped here.
  void sample(std::string_view name, const Labels& labels, double value, std::string_view suffix = {}) {
    std::string& out = families_[std::string(name)].samples;
    out.append(name).append(suffix);
    if (!labels.empty()) {
      out.push_back('{');
      bool first = true;
      for (const auto& [k, v] : labels) {
        if (!first) out.push_back(',');
        first = false;
        out.append(k).append("=\"");
        escape_into(out, v);
        out.push_back('"');
      }
      out.push_back('}');
    }
    out.push_back(' ');
    append_number(out, value);
    out.push_back('\n');
  }
  void sample(std::string_view name, double value) { sample(name, {}, value); }

  std::string render() const {
    std::string out;
    for (const auto& [name, f] : families_) {
      if (f.samples.empty()) continue;
      out.append("# HELP ").append(name).push_back(' ');
      for (char c : f.help) {  // HELP escapes only backslash and newline
        if (c == '\\') out.append("\\\\");
        else if (c == '\n') out.append("\\n");
        else out.push_back(c);
      }
      out.append("\n# TYPE ").append(name).push_back(' ');
      out.append(f.declared ? type_name(f.type) : "untyped").push_back('\n');
      out.append(f.samples);
    }
    return out;
  }

  static void append_number(std::string& out, double v) {
    if (v != v) {
      out.append("NaN");
      return;
    }
    if (v < 9.0e15 && v > -9.0e15 && v == static_cast<double>(static_cast<std::int64_t>(v))) {
      out.append(std::to_string(static_cast<std::int64_t>(v)));
      return;
    }
    // The shortest of %.15g and %.17g that reads back as the same double.
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.15g", v);
    if (std::strtod(buf, nullptr) != v) std::snprintf(buf, sizeof buf, "%.17g", v);
    out.append(buf);
  }

 private:
  struct Family {
    Type type = Type::kGauge;
    std::string help;
    bool declared = false;
    std::string samples;
  };
  static const char* type_name(Type t) {
    switch (t) {
      case Type::kCounter: return "counter";
      case Type::kGauge: return "gauge";
      case Type::kHistogram: return "histogram";
      case Type::kSummary: return "summary";
    }
    return "untyped";
  }
  static void escape_into(std::string& out, std::string_view v) {
    for (char c : v) {
      if (c == '\\') out.append("\\\\");
      else if (c == '"') out.append("\\\"");
      else if (c == '\n') out.append("\\n");
      else out.push_back(c);
    }
  }
  std::map<std::string, Family> families_;
};

}  // namespace vane
