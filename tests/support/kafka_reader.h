// Reading back what landed in Kafka, and the Kafka mock cluster helper
// process the integration tests run against.
#pragma once

#include <librdkafka/rdkafka.h>

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "support/process.h"

namespace vane::test {

struct ConsumedMessage {
  std::string topic;
  std::int32_t partition = 0;
  std::int64_t offset = 0;
  std::string key, value;
  std::int64_t timestamp_ms = 0;
  std::map<std::string, std::string> headers;
};

// A consumer without a group: assigns every partition of the topics it is
// asked about, from the beginning, and accumulates across calls.
class KafkaReader {
 public:
  explicit KafkaReader(const std::string& bootstrap);
  ~KafkaReader();
  KafkaReader(const KafkaReader&) = delete;
  KafkaReader& operator=(const KafkaReader&) = delete;

  // Consumes until at least `count` messages of `topics` were seen or the
  // deadline passes; returns all seen so far of those topics.
  std::vector<ConsumedMessage> read_until(const std::vector<std::string>& topics, std::size_t count,
                                          Deadline deadline);

 private:
  bool assign(const std::string& topic, Deadline deadline);
  std::size_t count_of(const std::vector<std::string>& topics) const;

  rd_kafka_t* rk_ = nullptr;
  std::set<std::string> assigned_;
  std::map<std::pair<std::string, std::int32_t>, std::int64_t> next_offset_;
  std::vector<ConsumedMessage> seen_;
};

// tests/support/vane-kafka-mock as a child process.
class MockKafka {
 public:
  // Returns the bootstrap list, "" on failure.
  std::string start(int brokers, const std::vector<std::string>& topics);
  // "all" or a broker id; true when the helper confirmed.
  bool down(const std::string& which);
  bool up(const std::string& which);

 private:
  bool command(const std::string& cmd);
  std::unique_ptr<ChildProcess> proc_;
};

}  // namespace vane::test
