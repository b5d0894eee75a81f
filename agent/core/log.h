// Logging to stderr. Under systemd (JOURNAL_STREAM set) or when stderr is
// not a terminal, lines carry sd-daemon priority prefixes ("<3>") so journald
// records the level; on a terminal they read "vane: warning: ...".
// Thread-safe; one line per call.
#pragma once

namespace vane {

enum class LogLevel { kError = 3, kWarning = 4, kNotice = 5, kInfo = 6, kDebug = 7 };

void set_log_level(LogLevel max_level);
void logf(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

#define VANE_LOG_ERROR(...) ::vane::logf(::vane::LogLevel::kError, __VA_ARGS__)
#define VANE_LOG_WARN(...) ::vane::logf(::vane::LogLevel::kWarning, __VA_ARGS__)
#define VANE_LOG_NOTICE(...) ::vane::logf(::vane::LogLevel::kNotice, __VA_ARGS__)
#define VANE_LOG_INFO(...) ::vane::logf(::vane::LogLevel::kInfo, __VA_ARGS__)
#define VANE_LOG_DEBUG(...) ::vane::logf(::vane::LogLevel::kDebug, __VA_ARGS__)

}  // namespace vane
