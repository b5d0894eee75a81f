// vane audit: reads a gateway's topics back from Kafka and accounts for
// every seq in its seq space. Each seq is received (on the telemetry, the
// dead-letter or the event topic: one seq space), or declared by the
// gateway on its event topic (dropped by the overflow policy, lost with a
// quarantined buffer, parked in its buffer), or unexplained: a loss.
//
// The reconciliation (Ledger) knows nothing of Kafka, so it is tested on
// its own; audit_main() reads the topics with the config's connection
// settings and prints the report.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config.h"

namespace vane {

// A set of seqs that stays small for tens of millions of them: a bitmap per
// 64 Ki seqs, allocated when one of its seqs is added.
class SeqSet {
 public:
  // True when `seq` was not in the set yet.
  bool insert(std::uint64_t seq);
  bool contains(std::uint64_t seq) const;
  std::uint64_t max() const { return max_; }
  std::uint64_t size() const { return size_; }
  // The runs of seqs in [from, to] not in the set, in order; `f(first, last)`.
  void gaps(std::uint64_t from, std::uint64_t to, const std::function<void(std::uint64_t, std::uint64_t)>& f) const;

 private:
  static constexpr std::uint64_t kBits = 1 << 16;
  using Chunk = std::vector<std::uint64_t>;  // kBits / 64 words
  std::map<std::uint64_t, Chunk> chunks_;    // by seq / kBits
  std::uint64_t max_ = 0, size_ = 0;
};

struct SeqRange {
  std::uint64_t first = 0, last = 0;
  std::uint64_t count() const { return last - first + 1; }
};

// What one gateway's seq space looks like from Kafka.
struct GatewayAudit {
  std::string gateway;
  std::uint64_t from_seq = 1, max_seq = 0;  // the range accounted for
  std::uint64_t received = 0;               // distinct seqs
  std::uint64_t duplicates = 0;             // copies beyond the first
  std::uint64_t dropped = 0;                // missing, inside a "dropped" declaration
  std::uint64_t quarantined = 0;            // missing, inside a "quarantined" declaration
  std::uint64_t parked = 0;                 // missing, declared parked (still in the gateway's buffer)
  std::map<std::string, std::uint64_t> dropped_by_reason;  // what the declarations say they dropped
  std::uint64_t unexplained = 0;
  std::vector<SeqRange> unexplained_ranges;  // coalesced, in order
  std::uint64_t events = 0, events_not_understood = 0;
  bool ok() const { return unexplained == 0 && max_seq > 0; }
  nlohmann::ordered_json to_json() const;
};

class Ledger {
 public:
  // A record with headers vane-gateway and vane-seq was read.
  void received(const std::string& gateway, std::uint64_t seq);
  // An event record's value (the event topic): a declaration, or counted as
  // not understood.
  void event(const std::string& gateway, const std::string& value);
  std::vector<std::string> gateways() const;
  GatewayAudit report(const std::string& gateway, std::uint64_t from_seq = 1) const;

 private:
  struct Declared {
    std::map<std::uint64_t, std::uint64_t> dropped, quarantined, parked;  // first -> last, merged
    std::map<std::string, std::uint64_t> dropped_by_reason;
    std::uint64_t events = 0, not_understood = 0;
  };
  struct Gateway {
    SeqSet seqs;
    std::uint64_t duplicates = 0;
    Declared declared;
  };
  std::map<std::string, Gateway> gateways_;
};

struct AuditOptions {
  std::string config_path;
  std::string gateway;        // empty: every gateway found
  bool json = false;
  std::uint64_t from_seq = 1;
  int timeout_ms = 30000;     // for reading every partition up to its end
};

// Exit codes: 0 every seq accounted for, 1 some unexplained (or the gateway
// asked for has no records), 2 usage, config or connection error.
int audit_main(const AuditOptions& opts);

}  // namespace vane
