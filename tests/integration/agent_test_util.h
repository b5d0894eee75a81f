// Shared by the integration and fault tests: run the real vane binary
// against Kafka (Apache Kafka itself for the delivery tests, the mock cluster
// helper for tests of vane's own logic), and look at what landed.
#pragma once

#include <gtest/gtest.h>

#include <exception>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "support/kafka_cluster.h"
#include "support/kafka_reader.h"
#include "support/process.h"
#include "support/temp_dir.h"
#include "support/wait.h"

namespace vane::test {

inline std::string vane_bin() { return std::string(VANE_BINARY_DIR) + "/agent/vane"; }
inline std::string source_dir() { return VANE_SOURCE_DIR; }

// The last `n` characters of a log, for failure messages.
inline std::string tail(const std::string& text, std::size_t n = 4000) {
  return text.size() <= n ? text : "...\n" + text.substr(text.size() - n);
}

// What a one-shot vane command (check-config, audit, buffer ...) did.
struct CommandOutcome {
  int rc = -1;
  std::string out, err;
};

// Runs `vane ARGS...` to its end (stdout collected, stderr to a file in
// `dir`), within `timeout`; rc -1 if it did not exit.
inline CommandOutcome run_vane(std::vector<std::string> args, const TempDir& dir,
                               std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
  args.insert(args.begin(), vane_bin());
  ChildProcess p(args, dir.path() + "/command.stderr");
  CommandOutcome o;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (auto line = p.read_line(deadline)) o.out += *line + "\n";
  auto rc = p.wait_exit(deadline);
  o.rc = rc ? *rc : -1;
  o.err = p.captured_stderr();
  return o;
}

inline void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

// A config for one simulator source; `extra_source` is spliced into the
// source object, e.g. R"("faults": 0.1,)".
inline std::string sim_config(const std::string& buffer_path, const std::string& brokers,
                              const std::string& sim_knobs, const std::string& buffer_extra = "",
                              const std::string& kafka_extra = "") {
  return std::string("// written by the test\n{\n") +
         "  \"gateway\": { \"id\": \"gw-test\" },\n"
         "  \"buffer\": { \"path\": \"" + buffer_path + "\"" + buffer_extra + " },\n"
         "  \"kafka\": { \"brokers\": \"" + brokers + "\", \"topic\": \"telemetry\",\n"
         "             \"dead_letter_topic\": \"telemetry.dlq\", \"shutdown_timeout_ms\": 3000" + kafka_extra + " },\n"
         "  \"http\": { \"listen\": \"\" },\n"  // tests that want it set their own (port 0)
         "  \"schemas\": { \"turbine\": \"" + source_dir() + "/examples/schemas/turbine.schema.json\" },\n"
         "  \"sources\": [ { \"name\": \"sim\", \"type\": \"simulator\", \"model\": \"turbine\",\n"
         "                 \"schema\": \"turbine\", " + sim_knobs + " } ]\n"
         "}\n";
}

struct TopicSpec {
  std::string name;
  int partitions = 1;
  std::map<std::string, std::string> configs;
};

// vane's default topics: telemetry with 3 partitions, telemetry.dlq with 1.
inline std::vector<TopicSpec> default_topics() { return {{"telemetry", 3, {}}, {"telemetry.dlq", 1, {}}}; }

// A one-node Apache Kafka (support/kafka_cluster.h) with `topics` created,
// for a test to start before vane does: explicit topics keep the partition
// counts deterministic (the broker would auto-create with its own default).
// On failure (no Kafka here, a node that does not come up) the test fails
// with one line naming why, and this returns nullptr: call it as
//   auto kafka = start_kafka(); ASSERT_TRUE(kafka);
inline std::unique_ptr<KafkaCluster> start_kafka(const std::vector<TopicSpec>& topics = default_topics()) {
  if (const std::string why = kafka_unavailable_reason(); !why.empty()) {
    ADD_FAILURE() << "no real Kafka for this test: " << why;
    return nullptr;
  }
  try {
    auto kafka = std::make_unique<KafkaCluster>();
    for (const TopicSpec& t : topics) kafka->create_topic(t.name, t.partitions, -1, t.configs);
    return kafka;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "Kafka: " << e.what();
    return nullptr;
  }
}

// Runs `vane buffer stats PATH`; returns the figure after `field` ("rows:",
// "next seq:") or -1.
inline long buffer_stat(const std::string& path, const std::string& field) {
  ChildProcess p({vane_bin(), "buffer", "stats", path});
  long rows = -1;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (auto line = p.read_line(deadline)) {
    if (line->rfind(field, 0) == 0) rows = std::stol(line->substr(field.size()));
  }
  auto rc = p.wait_exit(deadline);
  if (!rc || *rc != 0) return -1;
  return rows;
}

inline long buffer_rows(const std::string& path) { return buffer_stat(path, "rows:"); }

inline std::uint64_t seq_of(const ConsumedMessage& m) {
  auto it = m.headers.find("vane-seq");
  return it == m.headers.end() ? 0 : std::stoull(it->second);
}

struct SeqCheck {
  std::size_t distinct = 0;
  std::size_t duplicates = 0;
  std::size_t missing = 0;  // seqs in 1..max not seen
  std::uint64_t max = 0;
};

inline SeqCheck check_seqs(const std::vector<ConsumedMessage>& msgs) {
  SeqCheck c;
  std::set<std::uint64_t> seen;
  for (const auto& m : msgs) {
    const std::uint64_t s = seq_of(m);
    if (!seen.insert(s).second) ++c.duplicates;
    c.max = std::max(c.max, s);
  }
  c.distinct = seen.size();
  for (std::uint64_t s = 1; s <= c.max; ++s)
    if (!seen.count(s)) ++c.missing;
  return c;
}

}  // namespace vane::test
