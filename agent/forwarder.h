// Drains the buffer into the uplink: claims rows, hands them over, and
// deletes each row only when its delivery is acknowledged. A failed delivery
// puts the row back (it stays buffered) and backs off; nothing is deleted
// without an ack. The forwarder owns its thread and its uplink, and is the
// one writer of Metrics::uplink: it feeds the tracker delivery results, what
// the uplink observed (drain_causes) and rows that stay unacknowledged.
#pragma once

#include <array>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "buffer/buffer.h"
#include "metrics.h"
#include "pacing.h"
#include "uplink.h"

namespace vane {

struct ForwarderOptions {
  std::size_t max_in_flight = 10000;  // rows handed over and not yet reported
  std::size_t claim_batch = 2000;
  int shutdown_timeout_ms = 5000;     // bound on waiting for in-flight deliveries at stop
  // Rows in flight and no delivery report (nor a commit) for this long, and
  // the uplink names no reason: the uplink is refused, reason timeout.
  std::chrono::milliseconds no_ack_after{30000};
  // A topic the brokers refuse for good is tried again with one row after
  // this, then after twice as long each time, up to a minute.
  std::chrono::milliseconds held_topic_retry{10000};
  // Paced replay (docs/RELIABILITY.md): the backlog (rows buffered when the
  // uplink became usable, at start or after an outage) goes at most this
  // many rows/s, after a random delay in [0, reconnect_jitter]; live rows go
  // first, unpaced. 0: unlimited.
  std::uint64_t max_drain_rate = 0;
  std::chrono::milliseconds reconnect_jitter{0};
};

using UplinkFactory = std::function<Result<std::unique_ptr<Uplink>>()>;

class Forwarder {
 public:
  Forwarder(Buffer& buffer, UplinkFactory factory, Metrics& metrics, ForwarderOptions opts);
  ~Forwarder();
  Forwarder(const Forwarder&) = delete;
  Forwarder& operator=(const Forwarder&) = delete;

  // Creates the uplink and starts the thread. An invalid uplink config fails here.
  Status start();
  // New rows were committed: wake up if idle. Any thread.
  void notify();
  // Stops claiming, waits up to shutdown_timeout_ms for in-flight deliveries
  // (acks still delete rows), abandons the rest to the buffer, joins.
  void stop();

 private:
  void run();
  void run_transactional();
  void settle(std::vector<Delivery>& deliveries);
  // Feeds the uplink's observations, and the causes of failed `deliveries`
  // (then cleared; exactly-once, where commits, not deliveries, count), to
  // the tracker.
  void observe(std::vector<Delivery>* deliveries = nullptr);
  // Tells the tracker when `in_flight` rows have waited `quiet_since_` past
  // no_ack_after.
  void watch_acks(std::size_t in_flight);
  void flush_acks();
  // Replaces a failed uplink; false when stop() came first.
  bool replace_uplink(std::vector<Delivery>& deliveries);
  void back_off();
  // A topic the brokers refuse for good (an ACL denies it, it does not
  // exist): its rows are parked, claimed but not sent, so they neither hold
  // back the other topic's rows nor are sent again and again; one row probes
  // the topic after held_topic_retry (doubling to kMaxHoldRetry), and the first
  // delivery to it releases them all.
  struct TopicHold {
    bool held = false;
    std::uint64_t probe = 0;  // the row out to test the topic; 0: none
    bool probing = false;     // a held row was released to be claimed as the probe
    std::chrono::steady_clock::time_point retry_at{};
    std::chrono::milliseconds interval{0};
    std::vector<std::uint64_t> parked;
  };
  static bool refuses_topic(const UplinkCause& c);
  // A refusal of the record, not of the link or the topic: too large, an
  // invalid or corrupt record, one the broker's validation rejects.
  static bool refuses_record(const UplinkCause& c);
  // A row the brokers refused for itself (alone, or before it left): a
  // reading becomes a dead letter in place, its value cut to
  // kDeadLetterValueBytes, and is sent again; a dead letter is parked.
  void refused_for_good(std::uint64_t seq, Stream stream, std::size_t value_bytes, const UplinkCause& why);
  void hold_topic(Stream stream, std::uint64_t seq, const UplinkCause& why);
  void park(TopicHold& hold, std::uint64_t seq);
  void publish_held(const TopicHold& hold);  // its row count to Metrics::held_rows
  void publish_parked();                     // the buffer's parked rows to Metrics::parked_rows
  // A refusal: counted as a failed delivery and told to the tracker.
  void count_refusal(const UplinkCause& why);
  void lift(Stream stream);
  // Releases one held row of each topic whose retry time came, to probe it.
  void retry_held();
  // Paced replay: takes the backlog's mark when the uplink becomes usable
  // (armed since start or since it stopped being up), ends the pacing when
  // it goes away again.
  void update_pace(std::chrono::steady_clock::time_point now);
  // Rows the backlog may send now (0 before its jitter ran out, or while
  // fewer than a claim's worth of tokens wait).
  std::size_t backlog_budget(std::chrono::steady_clock::time_point now);
  // How long the idle loop may wait before the backlog may send again.
  std::chrono::milliseconds pace_wait(std::chrono::steady_clock::time_point now, std::chrono::milliseconds wait);
  void end_pace(const char* why);
  bool stopping();
  // Sleeps up to `d`; false when stop() came.
  bool pause(std::chrono::milliseconds d);

  Buffer& buffer_;
  UplinkFactory factory_;
  Metrics& metrics_;
  ForwarderOptions opts_;
  std::unique_ptr<Uplink> uplink_;  // used by the forwarder thread only once started

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;    // guarded by mu_
  bool pending_ = false;  // guarded by mu_: rows committed since the last wait
  std::thread thread_;

  // Forwarder-thread state.
  std::size_t in_flight_ = 0;
  // Reading timestamps of the rows in flight, for the reading -> ack latency
  // (a delivery report carries only the seq; the broker may overwrite the
  // record's timestamp with its own).
  struct Sent {
    std::int64_t ts_us = 0;
    Stream stream = Stream::kTelemetry;
    std::size_t value_bytes = 0;
  };
  // Rows a broker refused within a batch, sent again each in a batch of its own.
  std::unordered_set<std::uint64_t> alone_;
  std::vector<std::uint64_t> retry_;  // released without backing off: the batch, not the link, was refused
  // Rows no topic takes that the buffer could not park (its disk failed):
  // claimed and kept back until the next start.
  std::vector<std::uint64_t> parked_;
  static constexpr std::size_t kDeadLetterValueBytes = 1024;
  std::unordered_map<std::uint64_t, Sent> sent_;
  std::array<TopicHold, kStreams> holds_;  // by Stream
  static constexpr std::chrono::milliseconds kMaxHoldRetry{60000};
  std::vector<std::uint64_t> acks_;       // acknowledged, not yet deleted
  std::chrono::steady_clock::time_point first_ack_at_{};  // when acks_ became non-empty
  static constexpr std::size_t kAckChunk = 1000;
  static constexpr std::chrono::milliseconds kAckDelay{50};
  std::vector<std::uint64_t> failed_;
  bool ack_failing_ = false;  // deleting delivered rows fails (logged once)
  std::chrono::steady_clock::time_point backoff_until_{};
  std::chrono::milliseconds backoff_{0};
  std::vector<UplinkCause> causes_;  // drained from the uplink, fed to metrics_.uplink
  std::chrono::steady_clock::time_point quiet_since_{};  // last report, or when rows went in flight
  // Paced replay (opts_.max_drain_rate > 0).
  struct Pace {
    // Not up since start or since the last outage began: the in-flight
    // window is the bucket's burst, and the next time the uplink is up a
    // mark is taken.
    bool armed = true;
    bool active = false;        // a backlog is being paced
    std::uint64_t mark = 0;     // the backlog: seqs <= mark
    std::uint64_t left = 0;     // backlog rows not yet acknowledged (Metrics::backlog_rows)
    std::uint64_t rows = 0;     // backlog rows when the mark was taken
    std::chrono::steady_clock::time_point start_at{};  // the jitter ran out
    std::chrono::steady_clock::time_point since{};     // when the mark was taken
    std::optional<TokenBucket> bucket;
    std::size_t min_claim = 1;  // tokens worth a claim: 10 ms of rate
    std::mt19937_64 rng{std::random_device{}()};
  };
  Pace pace_;
};

}  // namespace vane
