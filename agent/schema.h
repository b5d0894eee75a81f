// Schema check at the edge: a JSON Schema (draft 2020-12) document compiled
// once into a validator that checks a Reading's JSON view directly — the
// device id under its field name, "timestamp" as an RFC 3339 string, and the
// reading's fields — without building a JSON document per reading.
//
// Supported keywords (flat telemetry): type, properties, required,
// additionalProperties (bool or schema), enum, const, minimum, maximum,
// exclusiveMinimum, exclusiveMaximum, multipleOf, minLength, maxLength,
// pattern, format ("date-time" asserted; other formats are a compile error),
// plus annotations (title, description, $comment, examples, default,
// deprecated, readOnly, writeOnly, $schema, $id). Any other keyword is a
// compile error naming it and its location: never silently ignored.
//
// Thread-safety: a compiled schema is immutable; validate() may run on many
// threads at once.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/reading.h"
#include "core/status.h"

namespace vane {

struct SchemaViolation {
  const char* rule;     // the keyword that failed: "maximum", "required", ...
  std::string message;  // "/wind_speed: 41.2 > maximum 30"
};

class CompiledSchema {
 public:
  // `file` names the document in errors; pointers in errors are JSON pointers
  // into the schema document.
  static Result<std::unique_ptr<CompiledSchema>> compile(const nlohmann::json& doc,
                                                         const std::string& name,
                                                         const std::string& file);
  static Result<std::unique_ptr<CompiledSchema>> load(const std::string& name,
                                                      const std::string& path);
  ~CompiledSchema();
  CompiledSchema(const CompiledSchema&) = delete;
  CompiledSchema& operator=(const CompiledSchema&) = delete;

  const std::string& name() const;

  // True when the reading satisfies the schema. Otherwise appends up to
  // max_violations violations (all failures of the reading, not just the
  // first). Allocates nothing when the reading is valid.
  bool validate(const Reading& r, std::vector<SchemaViolation>& out,
                std::size_t max_violations = 8) const;

  struct Impl;

 private:
  explicit CompiledSchema(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// "a; b; c" — the vane-error header text.
std::string join_violations(const std::vector<SchemaViolation>& v);

// RFC 3339 date-time (e.g. 2026-11-24T18:26:00.123456Z, offsets allowed).
bool is_rfc3339_date_time(std::string_view s);

}  // namespace vane
