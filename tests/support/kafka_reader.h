// Reading back what landed in Kafka, and the Kafka mock cluster helper
// process (vane-kafka-mock) the integration tests run against.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "support/process.h"
#include "support/rdkafka_ptr.h"

namespace vane::test {

struct ConsumedMessage {
  std::string topic;
  std::int32_t partition = 0;
  std::int64_t offset = 0;
  std::string key, value;
  std::int64_t timestamp_ms = 0;
  std::map<std::string, std::string> headers;  // last value wins for repeated names
};

// Next offset to read per (topic, partition).
using OffsetMap = std::map<std::pair<std::string, std::int32_t>, std::int64_t>;
// Adds every partition of `topic` (from the cluster's metadata) to `next`,
// at the beginning where it is not there yet. False when the metadata could
// not be had (unknown topic, brokers down).
bool add_partitions(rd_kafka_t* rk, const std::string& topic, Deadline deadline, OffsetMap& next);
// Assigns every partition of `next` at its offset (replacing the assignment).
bool assign_partitions(rd_kafka_t* rk, const OffsetMap& next);
// The high watermark of every partition in `partitions` as of now, into
// *high. False if one could not be had by the deadline.
bool high_watermarks(rd_kafka_t* rk, const OffsetMap& partitions, Deadline deadline, OffsetMap* high);
// Whether reading has reached `high` on every partition (next: the next
// offset to read, or BEGINNING where nothing was read yet).
bool reached(const OffsetMap& next, const OffsetMap& high);
// Milliseconds until `deadline`, between 0 and `cap`.
int ms_until(Deadline deadline, int cap);

// A consumer without group membership: it assigns every partition of the
// topics it is asked about (found via metadata), from the beginning, and
// never subscribes or commits. What it read accumulates across calls, so a
// test can read incrementally. Reads with isolation.level=read_committed, as
// a downstream consumer would.
class KafkaReader {
 public:
  using Done = std::function<bool(const std::vector<ConsumedMessage>&)>;

  // Throws std::runtime_error if the consumer cannot be created.
  explicit KafkaReader(const std::string& bootstrap);
  ~KafkaReader();
  KafkaReader(const KafkaReader&) = delete;
  KafkaReader& operator=(const KafkaReader&) = delete;

  // Consumes until at least `count` messages of `topics` were seen or the
  // deadline passes; returns all seen so far of those topics, in the order
  // consumed (per partition: offset order).
  std::vector<ConsumedMessage> read_until(const std::vector<std::string>& topics, std::size_t count,
                                          Deadline deadline);
  // Same, until done(messages of `topics` so far) holds.
  std::vector<ConsumedMessage> read_until(const std::vector<std::string>& topics, const Done& done,
                                          Deadline deadline);

  // Reads every assigned partition up to its high watermark as of now: once
  // the producer has stopped, what was seen is everything that landed,
  // duplicates included. False if that could not be done by the deadline.
  bool catch_up(Deadline deadline);

  // Everything consumed so far, all topics.
  const std::vector<ConsumedMessage>& seen() const { return seen_; }

 private:
  bool assign(const std::string& topic, Deadline deadline);
  void poll_batch(int timeout_ms);
  std::vector<ConsumedMessage> of(const std::vector<std::string>& topics) const;

  RdKafkaPtr rk_;
  std::set<std::string> assigned_;
  // Next offset to read per (topic, partition); what a re-assignment resumes from.
  OffsetMap next_offset_;
  std::vector<ConsumedMessage> seen_;
};

// A consumer for reading back what landed: no group membership (assign
// only, never commits; the group id is unique), read_committed, quiet logs
// (tests take brokers down on purpose), errors served by consumer_poll.
// `who` names it in errors. Throws std::runtime_error if it cannot be made.
// Destroy it with rd_kafka_destroy_flags(..., RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE)
// (see destroy_test_consumer).
RdKafkaPtr make_test_consumer(const std::string& bootstrap, const std::string& who);
// Skips the consumer close, which would wait on a coordinator that may be down.
void destroy_test_consumer(RdKafkaPtr& rk);

// Where the build put vane-kafka-mock.
std::string kafka_mock_path();

// vane-kafka-mock as a child process. Brokers have ids 1..N. Destruction
// quits the helper (it also exits by itself when this process dies).
class MockKafka {
 public:
  MockKafka() = default;
  ~MockKafka();
  MockKafka(const MockKafka&) = delete;
  MockKafka& operator=(const MockKafka&) = delete;

  // Starts `brokers` brokers with `topics` as "NAME:PARTITIONS"
  // (empty: telemetry:3 and telemetry.dlq:1). Returns the bootstrap list,
  // "" on failure (see last_error()). stderr_path as for ChildProcess.
  std::string start(int brokers, const std::vector<std::string>& topics, const std::string& stderr_path = "");
  const std::string& bootstrap() const { return bootstrap_; }

  // `which` is "all" or a broker id. True when the helper answered OK.
  // down: the broker(s) drop every connection and refuse new ones; partition
  // leadership does not move, so producers queue until up.
  bool down(const std::string& which = "all");
  bool up(const std::string& which = "all");
  bool down(int broker_id) { return down(std::to_string(broker_id)); }
  bool up(int broker_id) { return up(std::to_string(broker_id)); }
  // Adds `ms` of round-trip delay to the broker(s).
  bool rtt(const std::string& which, int ms);
  // Moves leadership of topic[partition] to broker_id (-1: no leader).
  bool leader(const std::string& topic, int partition, int broker_id);

  // Sends quit; true if the helper exited 0 before the deadline.
  bool stop(Deadline deadline = deadline_in(std::chrono::seconds(10)));

  const std::string& last_error() const { return last_error_; }
  ChildProcess* process() { return proc_.get(); }

 private:
  bool command(const std::string& cmd);

  std::unique_ptr<ChildProcess> proc_;
  std::string bootstrap_, last_error_;
};

}  // namespace vane::test
