// RFC 6901 JSON pointer tokens, shared by config errors and schema errors.
#pragma once

#include <string>

namespace vane {

// "a/b~c" -> "a~1b~0c"
inline std::string pointer_token(const std::string& key) {
  std::string out;
  for (char c : key) {
    if (c == '~') out += "~0";
    else if (c == '/') out += "~1";
    else out += c;
  }
  return out;
}

}  // namespace vane
