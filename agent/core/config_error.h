// A problem in a driver's part of the config: where (JSON pointer) and what.
// The config loader adds file and line.
#pragma once

#include <string>

namespace vane {

struct ConfigError {
  std::string pointer;
  std::string message;
};

}  // namespace vane
