// Line numbers for a JSONC document. nlohmann::json keeps no positions, so
// the config loader scans the raw text once and records the line where each
// value starts, by JSON pointer. Comments and strings are skipped correctly.
#pragma once

#include <map>
#include <string>

#include "core/json_pointer.h"

namespace vane {

class JsoncLocator {
 public:
  explicit JsoncLocator(const std::string& text);
  // 1-based line of the value at `pointer` ("" is the root), or the line of
  // its nearest located ancestor, or 0.
  int line_of(const std::string& pointer) const;

 private:
  std::map<std::string, int> lines_;
};

// 1-based line and column of a byte offset.
void line_col_at(const std::string& text, std::size_t offset, int& line, int& col);

}  // namespace vane
