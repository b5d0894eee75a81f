#include "core/log.h"

#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace vane {
namespace {

std::atomic<int> g_max_level{static_cast<int>(LogLevel::kInfo)};
std::mutex g_mu;

bool use_prefixes() {
  static const bool prefixes = std::getenv("JOURNAL_STREAM") != nullptr || !isatty(STDERR_FILENO);
  return prefixes;
}

const char* level_word(LogLevel l) {
  switch (l) {
    case LogLevel::kError: return "error: ";
    case LogLevel::kWarning: return "warning: ";
    case LogLevel::kNotice: return "";
    case LogLevel::kInfo: return "";
    case LogLevel::kDebug: return "debug: ";
  }
  return "";
}

}  // namespace

void set_log_level(LogLevel max_level) { g_max_level = static_cast<int>(max_level); }

void logf(LogLevel level, const char* fmt, ...) {
  if (static_cast<int>(level) > g_max_level.load(std::memory_order_relaxed)) return;
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  std::lock_guard<std::mutex> lock(g_mu);
  if (use_prefixes()) {
    std::fprintf(stderr, "<%d>%s\n", static_cast<int>(level), msg);
  } else {
    std::fprintf(stderr, "vane: %s%s\n", level_word(level), msg);
  }
}

}  // namespace vane
