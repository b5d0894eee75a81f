// Files embedded into vane at build time (agent/web/CMakeLists.txt,
// cmake/EmbedFile.cmake).
#pragma once

#include <cstddef>

namespace vane::web {

// agent/web/status.html: the status page served at GET /. kStatusPageSize
// bytes (UTF-8 HTML); kStatusPage[kStatusPageSize] is a NUL.
extern const char kStatusPage[];
extern const std::size_t kStatusPageSize;

}  // namespace vane::web
