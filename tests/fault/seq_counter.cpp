#include "seq_counter.h"

#include <algorithm>
#include <charconv>
#include <cinttypes>
#include <cstdio>
#include <functional>
#include <string_view>

#include "support/kafka_reader.h"

namespace vane::test {

SeqCounter::SeqCounter(const std::string& bootstrap, std::vector<std::string> topics)
    : rk_(make_test_consumer(bootstrap, "counter")), topics_(std::move(topics)) {}

SeqCounter::~SeqCounter() { destroy_test_consumer(rk_); }

bool SeqCounter::assign(Deadline deadline) {
  if (assigned_) return true;
  for (const auto& topic : topics_)
    if (!add_partitions(rk_.get(), topic, deadline, next_offset_)) return false;
  if (!assign_partitions(rk_.get(), next_offset_)) return false;
  assigned_ = true;
  return true;
}

void SeqCounter::take(const rd_kafka_message_t* m) {
  auto& next = next_offset_[{rd_kafka_topic_name(m->rkt), m->partition}];
  if (next >= 0 && m->offset < next) return;  // re-fetched
  next = m->offset + 1;
  ++messages_;
  std::uint64_t seq = 0;
  rd_kafka_headers_t* h = nullptr;  // owned by the message
  const void* val = nullptr;
  size_t size = 0;
  if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR ||
      rd_kafka_header_get_last(h, "vane-seq", &val, &size) != RD_KAFKA_RESP_ERR_NO_ERROR || !val) {
    ++no_seq_;
    return;
  }
  const char* p = static_cast<const char*>(val);
  if (std::from_chars(p, p + size, seq).ec != std::errc() || seq == 0 || seq > 100'000'000) {
    ++no_seq_;
    return;
  }
  const std::string_view key(static_cast<const char*>(m->key), m->key ? m->key_len : 0);
  const std::string_view value(static_cast<const char*>(m->payload), m->payload ? m->len : 0);
  const std::uint64_t hash = std::hash<std::string_view>{}(key) * 31 + std::hash<std::string_view>{}(value);
  if (seq >= counts_.size()) {
    counts_.resize(seq + 1, 0);
    hashes_.resize(seq + 1, 0);
    first_partition_.resize(seq + 1, 0);
    first_offset_.resize(seq + 1, -1);
  }
  const std::pair<std::string, std::int32_t> tp{rd_kafka_topic_name(m->rkt), m->partition};
  auto at = std::find(partitions_.begin(), partitions_.end(), tp);
  if (at == partitions_.end()) at = partitions_.insert(partitions_.end(), tp);
  const auto index = static_cast<std::uint32_t>(at - partitions_.begin());
  if (counts_[seq]++ == 0) {
    ++distinct_;
    hashes_[seq] = hash;
    first_partition_[seq] = index;
    first_offset_[seq] = m->offset;
  } else {
    if (hashes_[seq] != hash) ++mismatched_;
    if (copies_.size() < kCopiesKept) copies_.push_back({seq, index, m->offset});
  }
}

void SeqCounter::poll(std::chrono::milliseconds budget) {
  const Deadline deadline = Clock::now() + budget;
  if (!assign(deadline)) return;
  // Block for the first message, then take what is already there.
  for (int i = 0; i < 50000; ++i) {
    RdKafkaMessagePtr m(rd_kafka_consumer_poll(rk_.get(), i == 0 ? ms_until(deadline, 1000) : 0));
    if (!m) return;
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR || !m->rkt) continue;  // transport errors: librdkafka retries
    take(m.get());
  }
}

bool SeqCounter::catch_up(Deadline deadline) {
  while (!assign(deadline))
    if (Clock::now() >= deadline) return false;
  OffsetMap high;
  if (!high_watermarks(rk_.get(), next_offset_, deadline, &high)) return false;
  while (!reached(next_offset_, high)) {
    if (Clock::now() >= deadline) return false;
    poll(std::chrono::milliseconds(ms_until(deadline, 200)));
  }
  return true;
}

std::uint64_t SeqCounter::covered() {
  while (count(covered_ + 1) > 0) ++covered_;
  return covered_;
}

std::vector<std::uint64_t> SeqCounter::missing(std::uint64_t upto) const {
  std::vector<std::uint64_t> out;
  for (std::uint64_t s = 1; s <= upto; ++s)
    if (count(s) == 0) out.push_back(s);
  return out;
}

std::string SeqCounter::where(std::uint32_t topic_partition, std::int64_t offset) const {
  const auto& [topic, partition] = partitions_[topic_partition];
  return topic + "[" + std::to_string(partition) + "]@" + std::to_string(offset);
}

std::string SeqCounter::duplicate_summary() const {
  std::size_t seqs = 0;
  for (std::uint64_t s = 1; s < counts_.size(); ++s) seqs += counts_[s] >= 2;
  if (seqs == 0) return "";
  std::string out = std::to_string(seqs) + " seqs landed more than once (" + std::to_string(duplicates()) +
                    " extra copies" + (copies_.size() < duplicates() ? ", the first " + std::to_string(copies_.size()) +
                                                                        " kept" : "") + ")";
  // Runs of consecutive offsets of extra copies, per partition.
  for (std::uint32_t tp = 0; tp < partitions_.size(); ++tp) {
    struct Run {
      std::int64_t first, last;
      std::uint64_t lo, hi;
    };
    std::vector<Run> runs;
    for (const Copy& c : copies_) {
      if (c.partition != tp) continue;
      if (!runs.empty() && c.offset == runs.back().last + 1) {
        runs.back().last = c.offset;
        runs.back().lo = std::min(runs.back().lo, c.seq);
        runs.back().hi = std::max(runs.back().hi, c.seq);
      } else {
        runs.push_back({c.offset, c.offset, c.seq, c.seq});
      }
    }
    if (runs.empty()) continue;
    out += "; " + partitions_[tp].first + "[" + std::to_string(partitions_[tp].second) + "]: " +
           std::to_string(runs.size()) + " runs";
    for (std::size_t i = 0; i < runs.size() && i < 8; ++i) {
      char buf[128];
      std::snprintf(buf, sizeof buf, "%s offsets %" PRId64 "..%" PRId64 " (seqs %" PRIu64 "..%" PRIu64 ")",
                    i ? "," : ":", runs[i].first, runs[i].last, runs[i].lo, runs[i].hi);
      out += buf;
    }
    if (runs.size() > 8) out += ", ...";
  }
  out += "; e.g.";
  for (std::size_t i = 0; i < copies_.size() && i < 3; ++i) {
    const Copy& c = copies_[i];
    out += " seq " + std::to_string(c.seq) + " at " + where(first_partition_[c.seq], first_offset_[c.seq]) + " and " +
           where(c.partition, c.offset) + ";";
  }
  return out;
}

std::size_t SeqCounter::landed_above(std::uint64_t upto) const {
  std::size_t n = 0;
  for (std::uint64_t s = upto + 1; s < counts_.size(); ++s) n += counts_[s] > 0;
  return n;
}

}  // namespace vane::test
