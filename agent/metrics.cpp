#include "metrics.h"

namespace vane {

const char* to_string(UplinkState s) {
  switch (s) {
    case UplinkState::kConnecting: return "connecting";
    case UplinkState::kUp: return "up";
    case UplinkState::kDown: return "down";
  }
  return "?";
}

}  // namespace vane
