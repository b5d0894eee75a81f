// The northbound side, as the forwarder sees it. The forwarder knows nothing
// of Kafka; KafkaUplink (kafka_uplink.h) is the implementation.
//
// Threads: an Uplink is used by one thread (the forwarder's) at a time.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "buffer/buffer.h"
#include "core/status.h"
#include "uplink_state.h"

namespace vane {

struct Delivery {
  std::uint64_t seq = 0;
  bool ok = false;
  // When !ok: why. reason kNone when nobody refused it (purged by vane).
  UplinkCause cause;
};

class Uplink {
 public:
  enum class SendResult { kOk, kRetry, kError };

  virtual ~Uplink() = default;
  Uplink() = default;
  Uplink(const Uplink&) = delete;
  Uplink& operator=(const Uplink&) = delete;

  // Hands one record over for delivery. kRetry: the local queue is full, try
  // again after serving deliveries. kError: this record cannot be sent now
  // (the cause in *why, its words naming the topic); the caller keeps it
  // buffered. Never sleeps.
  virtual SendResult send(const StoredRecord& r, UplinkCause* why) = 0;
  // The same, in a produce request of its own: for a row the brokers
  // refused as part of a batch, to tell whether the record itself is the
  // cause.
  virtual SendResult send_alone(const StoredRecord& r, UplinkCause* why) { return send(r, why); }
  // Serves delivery reports, waiting at most timeout_ms for the first.
  virtual void poll(int timeout_ms, std::vector<Delivery>& out) = 0;
  // Waits up to timeout_ms for everything handed over to be reported.
  virtual void flush(int timeout_ms, std::vector<Delivery>& out) = 0;
  // Abandons what is still undelivered; each is reported as not delivered.
  virtual void purge(std::vector<Delivery>& out) = 0;
  // Appends what the client observed about the link since the last call,
  // oldest first: refusals and connection failures that no single delivery
  // reports (a broker's answer to a retried request, a failed handshake,
  // every broker down). Identical observations in a row come folded into
  // one with a count. The caller feeds them to its UplinkTracker.
  virtual void drain_causes(std::vector<UplinkCause>& /*out*/) {}
  // An unrecoverable client state (e.g. the idempotent producer's fatal
  // error): the caller must purge and replace this uplink.
  virtual bool fatal(std::string* reason) const = 0;
  // A fatal state because another producer took this one's transactional
  // id (exactly-once): replacing the producer would fence that one in turn.
  virtual bool fenced() const { return false; }

  // Exactly-once (kafka.exactly_once): rows go in transactions, each with a
  // checkpoint record naming the highest seq it commits. The calls below are
  // made only when transactional() is true, from one thread.
  enum class TxResult { kCommitted, kRetry, kAbort, kFatal };
  virtual bool transactional() const { return false; }
  // Fences earlier producers with the same transactional id (aborting a
  // transaction a crash left open), then reads this gateway's last committed
  // checkpoint: every seq at or below it is in Kafka. 0: none yet.
  virtual Result<std::uint64_t> open_transactions(int /*timeout_ms*/) { return std::uint64_t{0}; }
  virtual Status begin() { return Status::ok(); }
  // Adds the checkpoint record and commits everything sent since begin().
  // kRetry: call again; kAbort: call abort(), the rows were not committed.
  virtual TxResult commit(std::uint64_t /*checkpoint*/, int /*timeout_ms*/, std::string* /*error*/) {
    return TxResult::kCommitted;
  }
  virtual void abort(int /*timeout_ms*/) {}
};

}  // namespace vane
