// Counts what landed in Kafka by vane-seq, for the fault tests: a fault run
// lands hundreds of thousands of readings, so this keeps one count, one
// value hash and where the first copy landed per seq instead of every
// message (support/KafkaReader keeps them all and copies them on every
// read). Brokers may be killed and restarted under it: the consumer
// reconnects and resumes at the next offset it has not read.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "support/process.h"
#include "support/kafka_reader.h"
#include "support/rdkafka_ptr.h"

namespace vane::test {

// A consumer without group membership, reading every partition of `topics`
// from the beginning with isolation.level=read_committed, as a downstream
// consumer would. Not thread-safe; one test thread drives it.
class SeqCounter {
 public:
  // Throws std::runtime_error if the consumer cannot be created.
  SeqCounter(const std::string& bootstrap, std::vector<std::string> topics);
  ~SeqCounter();
  SeqCounter(const SeqCounter&) = delete;
  SeqCounter& operator=(const SeqCounter&) = delete;

  // Consumes for up to `budget` (returns earlier once nothing more is
  // waiting after the first message). Assigns the topics first if their
  // metadata can be had; brokers that are down just mean nothing arrives.
  void poll(std::chrono::milliseconds budget);
  // Polls until pred() holds or `timeout` passes; true if it held.
  template <class Pred>
  bool poll_until(Pred pred, std::chrono::milliseconds timeout) {
    const Deadline deadline = Clock::now() + timeout;
    for (;;) {
      if (pred()) return true;
      if (Clock::now() >= deadline) return false;
      poll(std::min<std::chrono::milliseconds>(
          std::chrono::milliseconds(100),
          std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now())));
    }
  }
  // Reads every partition up to its high watermark as of now: after the
  // producer stopped, what this counter then holds is everything that landed.
  // False if the watermarks or the messages could not be had by the deadline.
  bool catch_up(Deadline deadline);

  std::size_t distinct() const { return distinct_; }
  std::size_t messages() const { return messages_; }
  std::size_t duplicates() const { return messages_ - distinct_ - no_seq_; }
  std::uint64_t max() const { return counts_.empty() ? 0 : counts_.size() - 1; }
  // Copies of a seq that landed without a vane-seq header, or with one that is
  // not a number: should never happen.
  std::size_t no_seq() const { return no_seq_; }
  // Repeated seqs whose value differs from the first copy: a duplicate must be
  // the same reading sent again, never a different reading under an old seq.
  std::size_t mismatched_copies() const { return mismatched_; }
  std::uint32_t count(std::uint64_t seq) const { return seq < counts_.size() ? counts_[seq] : 0; }
  // The largest n such that every seq in 1..n landed (0: not even seq 1).
  std::uint64_t covered();
  // Seqs in 1..upto that never landed.
  std::vector<std::uint64_t> missing(std::uint64_t upto) const;
  // Seqs above `upto` that landed (a seq the buffer never assigned).
  std::size_t landed_above(std::uint64_t upto) const;
  // How many seqs landed more than once and where the extra copies are: per
  // partition, the runs of consecutive offsets they fill (one run per
  // partition for each time a batch of rows was sent again), with their seq
  // ranges, and the first copies of a few seqs, to find them in a broker's
  // log. "" when there are none.
  std::string duplicate_summary() const;

 private:
  bool assign(Deadline deadline);
  void take(const rd_kafka_message_t* m);
  std::string where(std::uint32_t topic_partition, std::int64_t offset) const;

  RdKafkaPtr rk_;
  std::vector<std::string> topics_;
  bool assigned_ = false;
  // Next offset to read per (topic, partition).
  OffsetMap next_offset_;
  std::vector<std::uint32_t> counts_;  // index: seq
  std::vector<std::uint64_t> hashes_;  // index: seq; hash of the first copy's key and value
  // Where the first copy landed, index: seq: an index into partitions_ and the offset.
  std::vector<std::uint32_t> first_partition_;
  std::vector<std::int64_t> first_offset_;
  std::vector<std::pair<std::string, std::int32_t>> partitions_;  // (topic, partition) by index
  // Every copy beyond the first of a seq (up to kCopiesKept): seq, index
  // into partitions_, offset; in the order read (per partition: offset order).
  struct Copy {
    std::uint64_t seq;
    std::uint32_t partition;
    std::int64_t offset;
  };
  static constexpr std::size_t kCopiesKept = 1'000'000;
  std::vector<Copy> copies_;
  std::size_t distinct_ = 0, messages_ = 0, no_seq_ = 0, mismatched_ = 0;
  std::uint64_t covered_ = 0;  // cache for covered(): seqs never disappear
};

}  // namespace vane::test
