// Shared by the ceilings. The payloads the ceilings (sqlite_ceiling, kafka_bench) write: real
// messages vane produced, captured by e2e_bench.py as a TSV file (key,
// source, schema, value), or without one a built-in set shaped like what
// agent/serialize.cpp writes for the simulator's turbine model.
#pragma once

#include <sys/resource.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

namespace vane::bench {

struct Payload {
  std::string key, source, schema, value;
};

inline std::vector<Payload> builtin_payloads() {
  std::vector<Payload> out;
  for (int i = 0; i < 15; ++i) {
    char key[16], value[400];
    std::snprintf(key, sizeof key, "T-%03d", i + 1);
    std::snprintf(value, sizeof value,
                  "{\"turbine_id\":\"%s\",\"timestamp\":\"2026-11-26T10:00:00.%06dZ\",\"wind_speed\":%.15g,"
                  "\"pitch_angle\":%.15g,\"power_output\":%.15g,\"temperature\":%.15g,\"vibration\":%.15g}",
                  key, 100000 + i * 37, 9.813712 + i * 0.0173, 0.91231 + i * 0.011, 1894.2123113 + i * 3.1,
                  31.7183 + i * 0.07, 0.3121341 + i * 0.001);
    out.push_back({key, "sim", "turbine", value});
  }
  return out;
}

// One payload per line: key TAB source TAB schema TAB value; other lines skipped.
inline std::vector<Payload> load_payloads(const std::string& path) {
  std::vector<Payload> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    const std::size_t a = line.find('\t');
    const std::size_t b = a == std::string::npos ? a : line.find('\t', a + 1);
    const std::size_t c = b == std::string::npos ? b : line.find('\t', b + 1);
    if (c == std::string::npos) continue;
    out.push_back({line.substr(0, a), line.substr(a + 1, b - a - 1), line.substr(b + 1, c - b - 1), line.substr(c + 1)});
  }
  return out;
}

// This process's user plus system CPU time, seconds.
inline double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

inline std::vector<Payload> payloads_from(const std::string& path) {
  return path.empty() ? builtin_payloads() : load_payloads(path);
}

}  // namespace vane::bench
