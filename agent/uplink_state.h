// The uplink's state as an operator sees it (/health, /metrics, the status
// page and line, systemd STATUS=): whether Kafka takes the rows, and when it
// does not, why, from a bounded set of reasons, in the broker's own words.
//
// UplinkTracker is the state machine. The forwarder feeds it what it learns:
// delivery results, what the uplink observed about the link (Uplink::
// drain_causes), and its own watch for rows that are never acknowledged. It
// knows nothing of Kafka's error codes: kafka_errors.h maps those to causes.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "core/log.h"

namespace vane {

//   connecting  since start, until the first delivery or error
//   up          connected and delivering
//   refused     a broker answers but does not take the rows (the reason says why)
//   down        no broker reachable
enum class UplinkState : std::uint8_t { kConnecting, kUp, kRefused, kDown };
inline constexpr std::size_t kUplinkStates = 4;

// Why the uplink does not deliver. Label-bounded: each value is a label of
// vane_uplink_reason and vane_kafka_refusals_total (to_string gives it).
enum class UplinkReason : std::uint8_t {
  kNone,               // delivering, or nothing known yet
  // refused: a broker answered
  kNotEnoughReplicas,  // fewer in-sync replicas than min.insync.replicas (also after append)
  kAuthentication,     // SASL handshake refused
  kTls,                // TLS handshake or certificate verification failed
  kAuthorization,      // an ACL denies it: topic, cluster or transactional id
  kFenced,             // a newer producer with the same transactional id took over
  kUnknownTopic,       // the topic or partition does not exist
  kUnavailable,        // no partition leader or coordinator right now
  kThrottled,          // a quota holds the producer back
  kTimeout,            // requests time out, or nothing is acknowledged and no reason given
  kBrokerError,        // any other refusal
  // down: no answer
  kBrokersDown,        // every broker connection is down
  kTransport,          // a connection failed or dropped
  kResolve,            // a broker's host name does not resolve
};
inline constexpr std::size_t kUplinkReasons = 14;

const char* to_string(UplinkState s);
const char* to_string(UplinkReason r);
// The state a reason puts the uplink in: kDown for the last three, kRefused
// for the others, kUp for kNone.
UplinkState state_of(UplinkReason r);

// One observation of why rows are not delivered.
struct UplinkCause {
  UplinkReason reason = UplinkReason::kNone;  // kNone: nobody refused (e.g. vane purged the row itself)
  std::string code;    // the client's name of the error, e.g. NOT_ENOUGH_REPLICAS, AUTHENTICATION
  std::string detail;  // the broker's or the client's own words; never a config value
  std::uint64_t count = 1;  // identical observations folded into this one
};

class UplinkTracker {
 public:
  using Clock = std::chrono::steady_clock;
  // Where the episode lines go; by default vane's log.
  using Sink = std::function<void(LogLevel, const std::string&)>;

  // How observations move the state:
  //  * A delivery: up.
  //  * A broker's refusal (or a client timeout): refused, unless rows were
  //    delivered within kHold (some topics or partitions refuse, others take
  //    rows, e.g. an ACL on the dead-letter topic only: up, counted, logged
  //    once; a passing refusal such as not_enough_replicas or unavailable
  //    only once deliveries went on for kHold after it, so that an episode's
  //    first refusals are not told twice). While refused, a vague reason (timeout, unavailable,
  //    throttled, broker_error) gives way to a specific one; otherwise the
  //    current reason stands while it was seen within kStale.
  //  * Every broker down: down, in the words of the connection failure that
  //    led there (transport, resolve) when there was one within kStale;
  //    except within kStale of a refused handshake (authentication, tls),
  //    which is why the connections drop.
  //  * One connection failing (transport, resolve) changes nothing while
  //    other brokers serve (up: logged once); it gives the words while down,
  //    and ends a refused handshake not seen for kStale.
  //  * Nothing acknowledged for a while (unacknowledged): refused, timeout,
  //    from up or connecting, or once the named reason is older than kStale.
  static constexpr Clock::duration kHold = std::chrono::seconds(5);
  static constexpr Clock::duration kStale = std::chrono::seconds(30);

  explicit UplinkTracker(Sink sink = {});
  UplinkTracker(const UplinkTracker&) = delete;
  UplinkTracker& operator=(const UplinkTracker&) = delete;

  // Writers: one thread at a time (the forwarder's).
  //
  // Rows were acknowledged: `up`; leaving a refused or down episode logs one
  // line with its length and what was counted.
  void delivered(Clock::time_point now = Clock::now());
  // A refusal or a connection failure. Entering an episode (or a different
  // reason within one) logs one warning with the cause's words; the same
  // cause again is counted, not logged.
  void refused(const UplinkCause& cause, Clock::time_point now = Clock::now());
  // Rows in flight and nothing acknowledged or refused for `quiet`: from up
  // (or connecting) this is refused, reason timeout, in vane's words. It
  // does not replace a reason the client named within kStale.
  void unacknowledged(std::size_t in_flight, Clock::duration quiet, Clock::time_point now = Clock::now());

  // Readers: any thread.
  UplinkState state() const { return state_.load(std::memory_order_acquire); }
  UplinkReason reason() const { return reason_.load(std::memory_order_acquire); }
  // Refused or down for a reason the client or a broker gave (not only
  // because nothing comes back): an outage the buffer absorbs, not a stall.
  bool explained() const { return explained_.load(std::memory_order_acquire); }
  struct Snapshot {
    UplinkState state = UplinkState::kConnecting;
    UplinkReason reason = UplinkReason::kNone;
    std::string code, detail;
    Clock::time_point since;  // when the uplink entered `state`
  };
  Snapshot snapshot() const;
  // Causes counted per reason since start (vane_kafka_refusals_total).
  std::uint64_t refusals(UplinkReason r) const {
    return refusals_[static_cast<std::size_t>(r)].load(std::memory_order_relaxed);
  }
  // For the status line: "up", "refused (NOT_ENOUGH_REPLICAS)", "down (ALL_BROKERS_DOWN)".
  std::string summary() const;

 private:
  struct Line {
    LogLevel level;
    std::string text;
  };
  void enter(UplinkState s, const UplinkCause& c, bool explained, Clock::time_point now,
             std::vector<Line>& lines);  // under mu_
  Line leave_line(Clock::time_point now) const;  // under mu_
  void emit(const std::vector<Line>& lines) const;

  Sink sink_;
  Clock::time_point last_success_{};  // writer thread only

  mutable std::mutex mu_;
  // Guarded by mu_; state_, reason_ and explained_ are written under it too.
  std::string code_, detail_;
  Clock::time_point since_;
  Clock::time_point last_seen_{};      // the current reason, last observed
  Clock::time_point episode_start_{};  // left up (or connecting)
  bool episode_refused_ = false;       // the episode was refused at some point, not only down
  std::map<std::string, std::uint64_t> episode_counts_;  // by code; codes are librdkafka's, a bounded set
  std::set<std::string> partial_logged_;                 // codes logged while up
  // Refusals while up, by code: when first seen and their line, logged if
  // the uplink still delivers kHold later.
  std::map<std::string, std::pair<Clock::time_point, std::string>> partial_pending_;
  UplinkCause last_conn_;              // the latest connection failure (transport, resolve)
  Clock::time_point last_conn_at_{};   // when; {} once a delivery went through since
  bool last_conn_counted_ = false;     // last_conn_ is in episode_counts_

  std::atomic<UplinkState> state_{UplinkState::kConnecting};
  std::atomic<UplinkReason> reason_{UplinkReason::kNone};
  std::atomic<bool> explained_{false};
  std::atomic<bool> pending_{false};  // partial_pending_ is not empty
  std::array<std::atomic<std::uint64_t>, kUplinkReasons> refusals_{};
};

}  // namespace vane
