// Schema check at the edge: a JSON Schema (draft 2020-12) document compiled
// once into a tree of constraint nodes. A Reading is checked directly — the
// device id under its field name, "timestamp" as an RFC 3339 string, and the
// reading's fields — without building a JSON document per reading; a JSON
// instance (a payload, the official test suite) is checked by the same nodes.
//
// Keywords: type (incl. arrays of types, integer vs number), properties,
// required, additionalProperties (bool or schema), enum, const, minimum,
// maximum, exclusiveMinimum, exclusiveMaximum, multipleOf, minLength,
// maxLength (code points), pattern (PCRE2, see below), format "date-time"
// (RFC 3339, asserted), $ref to local JSON pointers ("#", "#/$defs/x"),
// $defs/definitions, allOf, anyOf, oneOf, not, boolean schemas, and the
// annotations title, description, $comment, examples, default, deprecated,
// readOnly, writeOnly, $schema, $id. Any other keyword is a compile error
// naming it and its location: never silently ignored.
//
// pattern uses PCRE2 (UTF mode, `$` only at the end as in ECMA-262, JIT when
// available): unlike std::regex it matches without allocating once a
// thread's match data exists, and it is the dialect closest to ECMA-262 that
// Debian ships. Known differences from ECMA-262: lookbehind rules and a few
// escape corner cases.
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

// The rules a violation can name, for counters with bounded labels.
const std::vector<const char*>& schema_rules();

class CompiledSchema {
 public:
  struct Options {
    // The schema describes readings: its root must admit an object.
    bool for_readings = true;
  };
  // `file` names the document in errors; locations in errors are JSON
  // pointers into the schema document.
  static Result<std::unique_ptr<CompiledSchema>> compile(const nlohmann::json& doc, const std::string& name,
                                                         const std::string& file);
  static Result<std::unique_ptr<CompiledSchema>> compile(const nlohmann::json& doc, const std::string& name,
                                                         const std::string& file, Options opts);
  static Result<std::unique_ptr<CompiledSchema>> load(const std::string& name, const std::string& path);
  ~CompiledSchema();
  CompiledSchema(const CompiledSchema&) = delete;
  CompiledSchema& operator=(const CompiledSchema&) = delete;

  const std::string& name() const;

  // True when the reading satisfies the schema. Otherwise appends up to
  // max_violations violations (all failures of the reading, not just the
  // first). Allocates nothing when the reading is valid.
  bool validate(const Reading& r, std::vector<SchemaViolation>& out, std::size_t max_violations = 8) const;
  // The same for a JSON instance.
  bool validate(const nlohmann::json& instance, std::vector<SchemaViolation>& out,
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
