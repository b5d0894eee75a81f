#include "forwarder.h"

#include <algorithm>

#include "core/log.h"
#include "core/reading.h"

namespace vane {
namespace {

constexpr std::chrono::milliseconds kMinBackoff{250};
constexpr std::chrono::milliseconds kMaxBackoff{30000};

}  // namespace

Forwarder::Forwarder(Buffer& buffer, UplinkFactory factory, Metrics& metrics, ForwarderOptions opts)
    : buffer_(buffer), factory_(std::move(factory)), metrics_(metrics), opts_(opts) {
  if (opts_.max_drain_rate > 0) {
    const auto now = std::chrono::steady_clock::now();
    pace_.bucket.emplace(opts_.max_drain_rate, TokenBucket::burst_for(opts_.max_drain_rate), now);
    pace_.min_claim = static_cast<std::size_t>(std::max<std::uint64_t>(1, opts_.max_drain_rate / 100));
  }
  metrics_.max_drain_rate.store(opts_.max_drain_rate, std::memory_order_relaxed);
}

Forwarder::~Forwarder() { stop(); }

Status Forwarder::start() {
  auto up = factory_();
  if (!up) return up.status();
  uplink_ = std::move(up.value());
  thread_ = std::thread([this] { run(); });
  return Status::ok();
}

void Forwarder::notify() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_ = true;
  }
  cv_.notify_one();
}

void Forwarder::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void Forwarder::observe(std::vector<Delivery>* deliveries) {
  causes_.clear();
  uplink_->drain_causes(causes_);
  for (const UplinkCause& c : causes_) metrics_.uplink.refused(c);
  if (!deliveries) return;
  for (const Delivery& d : *deliveries)
    if (!d.ok) metrics_.uplink.refused(d.cause);
  if (!deliveries->empty()) quiet_since_ = std::chrono::steady_clock::now();
  deliveries->clear();
}

void Forwarder::watch_acks(std::size_t in_flight) {
  const auto now = std::chrono::steady_clock::now();
  if (in_flight == 0 || quiet_since_ == std::chrono::steady_clock::time_point{}) quiet_since_ = now;
  else if (now - quiet_since_ >= opts_.no_ack_after) metrics_.uplink.unacknowledged(in_flight, now - quiet_since_, now);
}

void Forwarder::settle(std::vector<Delivery>& deliveries) {
  // What the client saw first, then what the reports say: a delivery that
  // succeeds in the same round outweighs both.
  observe();
  if (!deliveries.empty()) quiet_since_ = std::chrono::steady_clock::now();
  bool any_ok = false;
  UplinkCause refused;  // consecutive identical refusals, folded
  bool folding = false;
  auto fold_out = [&] {
    if (!folding) return;
    metrics_.uplink.refused(refused);
    metrics_.count_delivery_error(refused.code, refused.count);
  };
  const std::int64_t now = now_us().time_since_epoch().count();
  for (Delivery& d : deliveries) {
    if (in_flight_ > 0) --in_flight_;
    Sent sent;
    if (auto it = sent_.find(d.seq); it != sent_.end()) {
      sent = it->second;
      sent_.erase(it);
    }
    TopicHold& hold = holds_[static_cast<std::size_t>(sent.stream)];
    if (d.ok) {
      if (!alone_.empty()) alone_.erase(d.seq);
      if (pace_.active && d.seq <= pace_.mark && pace_.left > 0) --pace_.left;
      acks_.push_back(d.seq);
      any_ok = true;
      if (sent.ts_us > 0) metrics_.delivery_latency.observe_us(now - sent.ts_us);
      if (hold.held) lift(sent.stream);  // the probe, or a row sent before the hold: the topic takes rows again
    } else if (refuses_record(d.cause)) {
      count_refusal(d.cause);
      if (alone_.erase(d.seq)) {
        refused_for_good(d.seq, sent.stream, sent.value_bytes, d.cause);
      } else {
        // Maybe refused for the batch it was in: once more, alone.
        alone_.insert(d.seq);
        retry_.push_back(d.seq);
      }
    } else if (refuses_topic(d.cause)) {
      count_refusal(d.cause);
      hold_topic(sent.stream, d.seq, d.cause);
    } else {
      if (d.seq == hold.probe) hold.probe = 0;  // not the topic's answer: probe again
      // Transient, or a code vane has no rule for: kept, retried after a
      // back-off; the tracker says it once per episode, and it is counted
      // by its code.
      failed_.push_back(d.seq);
      if (folding && d.cause.reason == refused.reason && d.cause.code == refused.code) {
        ++refused.count;
      } else {
        fold_out();
        refused = std::move(d.cause);
        refused.count = 1;
        folding = true;
      }
    }
  }
  fold_out();
  if (any_ok) metrics_.uplink.delivered();
  if (pace_.active) metrics_.backlog_rows.store(pace_.left, std::memory_order_relaxed);
  deliveries.clear();
  // Acknowledged rows are deleted in batches: a delete transaction per
  // delivery report would cost more than the produce. A crash before the
  // flush resends at most kAckDelay's or kAckChunk's worth (duplicates,
  // never losses).
  if (!acks_.empty() && first_ack_at_ == std::chrono::steady_clock::time_point{})
    first_ack_at_ = std::chrono::steady_clock::now();
  if (acks_.size() >= kAckChunk || (!acks_.empty() && std::chrono::steady_clock::now() - first_ack_at_ >= kAckDelay))
    flush_acks();
  if (!retry_.empty()) {
    buffer_.release(retry_);
    retry_.clear();
  }
  if (!failed_.empty()) {
    // The rows stay buffered and are retried; the tracker logs the refusal
    // once per episode.
    buffer_.release(failed_);
    failed_.clear();
    back_off();
  }
}

void Forwarder::flush_acks() {
  // In chunks: one transaction per chunk keeps each delete small, which is
  // what a nearly full filesystem can still take.
  std::size_t done = 0;
  while (done < acks_.size()) {
    const std::size_t n = std::min(kAckChunk, acks_.size() - done);
    Status s = buffer_.ack(std::span<const std::uint64_t>(acks_).subspan(done, n));
    if (!s) {
      // Rows stay buffered and the acks are retried; a crash before then means
      // those rows are sent again (duplicates bounded by the in-flight window).
      metrics_.buffer_errors.fetch_add(1, std::memory_order_relaxed);
      if (!ack_failing_)
        VANE_LOG_WARN("buffer: cannot delete %zu delivered rows (retrying): %s", acks_.size() - done,
                      s.message().c_str());
      ack_failing_ = true;
      break;
    }
    done += n;
  }
  if (done == 0) return;
  if (ack_failing_ && done == acks_.size()) {
    VANE_LOG_NOTICE("buffer: delivered rows are deleted again");
    ack_failing_ = false;
  }
  first_ack_at_ = {};
  metrics_.delivered.fetch_add(done, std::memory_order_relaxed);
  metrics_.last_progress_ns.store(steady_ns(), std::memory_order_relaxed);
  metrics_.last_delivery_ns.store(steady_ns(), std::memory_order_relaxed);
  backoff_ = std::chrono::milliseconds(0);
  acks_.erase(acks_.begin(), acks_.begin() + static_cast<std::ptrdiff_t>(done));
}

void Forwarder::update_pace(std::chrono::steady_clock::time_point now) {
  if (!pace_.bucket) return;
  if (metrics_.uplink.state() != UplinkState::kUp) {
    if (pace_.active) end_pace("the uplink went away; a new mark is taken when it is back");
    pace_.armed = true;
    return;
  }
  if (!pace_.armed) return;
  pace_.armed = false;
  // The backlog: what is buffered now, less what is already in flight or
  // acknowledged and not yet deleted (it went out when the uplink came
  // back, at most one burst).
  const BufferStats st = buffer_.stats();
  const std::uint64_t rows = st.rows - std::min<std::uint64_t>(st.rows, in_flight_ + acks_.size());
  if (rows == 0) return;
  const std::int64_t jitter_ms =
      opts_.reconnect_jitter.count() > 0
          ? std::uniform_int_distribution<std::int64_t>(0, opts_.reconnect_jitter.count())(pace_.rng)
          : 0;
  pace_.active = true;
  pace_.mark = st.next_seq - 1;
  pace_.left = pace_.rows = rows;
  pace_.since = now;
  pace_.start_at = now + std::chrono::milliseconds(jitter_ms);
  pace_.bucket->reset(pace_.start_at);
  metrics_.backlog_rows.store(rows, std::memory_order_relaxed);
  metrics_.backlog_mark.store(pace_.mark, std::memory_order_relaxed);
  metrics_.backlog_start_ns.store(
      static_cast<std::uint64_t>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(pace_.start_at.time_since_epoch()).count()),
      std::memory_order_relaxed);
  VANE_LOG_NOTICE("kafka: paced replay: a backlog of %llu rows (seqs up to %llu) drains at %llu rows/s, starting in "
                  "%lld ms; live readings go first",
                  static_cast<unsigned long long>(rows), static_cast<unsigned long long>(pace_.mark),
                  static_cast<unsigned long long>(opts_.max_drain_rate), static_cast<long long>(jitter_ms));
}

std::size_t Forwarder::backlog_budget(std::chrono::steady_clock::time_point now) {
  if (!pace_.active || now < pace_.start_at) return 0;
  const std::size_t n = pace_.bucket->available(now);
  return n >= pace_.min_claim ? n : 0;
}

std::chrono::milliseconds Forwarder::pace_wait(std::chrono::steady_clock::time_point now,
                                               std::chrono::milliseconds wait) {
  if (!pace_.active) return wait;
  const auto until = now < pace_.start_at ? pace_.start_at - now : pace_.bucket->time_until(pace_.min_claim, now);
  return std::min(wait, std::chrono::ceil<std::chrono::milliseconds>(until));
}

void Forwarder::end_pace(const char* why) {
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - pace_.since).count();
  VANE_LOG_NOTICE("kafka: paced replay ends after %.1f s: %s", s, why);
  pace_.active = false;
  pace_.left = 0;
  metrics_.backlog_rows.store(0, std::memory_order_relaxed);
}

bool Forwarder::stopping() {
  std::lock_guard<std::mutex> lock(mu_);
  return stop_;
}

bool Forwarder::pause(std::chrono::milliseconds d) {
  std::unique_lock<std::mutex> lock(mu_);
  return !cv_.wait_for(lock, d, [&] { return stop_; });
}

bool Forwarder::replace_uplink(std::vector<Delivery>& deliveries) {
  // The producer cannot continue (idempotence or transaction state lost):
  // abandon its queue (rows stay buffered) and start a fresh producer.
  std::string reason;
  uplink_->fatal(&reason);
  VANE_LOG_ERROR("kafka: fatal producer error, recreating the producer: %s", reason.c_str());
  uplink_->purge(deliveries);
  // A transactional producer's delivery reports say nothing about the commit:
  // its rows were released when the transaction failed.
  if (uplink_->transactional()) observe(&deliveries);
  else settle(deliveries);
  uplink_.reset();
  for (;;) {
    auto up = factory_();
    if (up) {
      uplink_ = std::move(up.value());
      break;
    }
    if (!pause(std::chrono::seconds(1))) return false;
  }
  in_flight_ = 0;
  sent_.clear();
  return true;
}

void Forwarder::back_off() {
  backoff_ = std::clamp(backoff_ * 2, kMinBackoff, kMaxBackoff);
  backoff_until_ = std::chrono::steady_clock::now() + backoff_;
}

bool Forwarder::refuses_topic(const UplinkCause& c) {
  // By the topic, not the producer: an ACL on the topic (not the cluster's
  // IdempotentWrite or a transactional id, which concern every topic), a
  // topic or partition that does not exist, an invalid topic name.
  return c.reason == UplinkReason::kUnknownTopic || c.code == "TOPIC_AUTHORIZATION_FAILED" ||
         c.code == "TOPIC_EXCEPTION";
}

bool Forwarder::refuses_record(const UplinkCause& c) {
  static const char* const kCodes[] = {"MSG_SIZE_TOO_LARGE", "RECORD_LIST_TOO_LARGE", "INVALID_MSG",
                                       "INVALID_MSG_SIZE",   "INVALID_RECORD",        "INVALID_TIMESTAMP",
                                       "BAD_MSG",            "INVALID_REQUIRED_ACKS"};
  for (const char* code : kCodes)
    if (c.code == code) return true;
  return false;
}

void Forwarder::refused_for_good(std::uint64_t seq, Stream stream, std::size_t value_bytes, const UplinkCause& why) {
  if (stream == Stream::kTelemetry) {
    const std::string error = "kafka refused the reading: " + why.code + ": " + why.detail + " (value " +
                              std::to_string(value_bytes) + " bytes" +
                              (value_bytes > kDeadLetterValueBytes
                                   ? ", the first " + std::to_string(kDeadLetterValueBytes) + " kept)"
                                   : ")");
    Status s = buffer_.dead_letter(seq, error, kDeadLetterValueBytes);
    if (s) {
      const std::uint64_t n = metrics_.rerouted.fetch_add(1, std::memory_order_relaxed) + 1;
      if ((n & (n - 1)) == 0)  // the 1st, 2nd, 4th, 8th...: said, never a flood
        VANE_LOG_WARN("kafka: seq %llu: %s; it goes to the dead-letter topic instead (%llu so far)",
                      static_cast<unsigned long long>(seq), error.c_str(), static_cast<unsigned long long>(n));
      retry_.push_back(seq);
      return;
    }
    VANE_LOG_WARN("buffer: cannot re-route seq %llu to the dead-letter topic (%s); it is kept back",
                  static_cast<unsigned long long>(seq), s.message().c_str());
  }
  // Nowhere to go: parked in the buffer (kept, counted, declared on the
  // event topic, never claimed) until an operator unparks it.
  const std::string reason = std::string(stream_name(stream)) + " row refused for itself: " + why.code + ": " + why.detail;
  if (Status s = buffer_.park(seq, why.code, reason); !s) {
    // The buffer cannot record it: kept back in memory until the next start.
    parked_.push_back(seq);
    VANE_LOG_WARN("buffer: cannot park seq %llu (%s); it is kept back until vane restarts",
                  static_cast<unsigned long long>(seq), s.message().c_str());
  }
  publish_parked();
  const std::uint64_t n = metrics_.parked_rows.load(std::memory_order_relaxed);
  if ((n & (n - 1)) == 0)
    VANE_LOG_ERROR("kafka: seq %llu: %s; no topic takes it, so it is parked in the buffer (%llu parked rows): fix the "
                   "cause on the brokers, then run `vane buffer unpark` on the buffer file",
                   static_cast<unsigned long long>(seq), reason.c_str(), static_cast<unsigned long long>(n));
}

void Forwarder::publish_parked() {
  metrics_.parked_rows.store(buffer_.parked_now() + parked_.size(), std::memory_order_relaxed);
}

void Forwarder::count_refusal(const UplinkCause& why) {
  metrics_.count_delivery_error(why.code, 1);
  metrics_.uplink.refused(why);
}

void Forwarder::park(TopicHold& hold, std::uint64_t seq) {
  hold.parked.push_back(seq);
  publish_held(hold);
}

void Forwarder::publish_held(const TopicHold& hold) {
  metrics_.held_rows[static_cast<std::size_t>(&hold - holds_.data())].store(hold.parked.size(),
                                                                            std::memory_order_relaxed);
}

void Forwarder::hold_topic(Stream stream, std::uint64_t seq, const UplinkCause& why) {
  TopicHold& hold = holds_[static_cast<std::size_t>(stream)];
  const auto now = std::chrono::steady_clock::now();
  if (!hold.held) {
    hold.held = true;
    hold.interval = opts_.held_topic_retry;
    VANE_LOG_WARN("kafka: %s (%s): the brokers refuse this topic for now; its rows stay buffered, held back "
                  "while the other topic keeps flowing; one row tries it again in %.1f s, then at longer intervals up to a "
                  "minute, until the topic takes it",
                  why.detail.c_str(), why.code.c_str(), std::chrono::duration<double>(opts_.held_topic_retry).count());
  } else if (seq == hold.probe) {
    hold.interval = std::min(hold.interval * 2, std::max(kMaxHoldRetry, opts_.held_topic_retry));
  }
  if (seq == hold.probe || hold.probe == 0) {
    hold.probe = 0;
    hold.retry_at = now + hold.interval;
  }
  metrics_.hold_cause(stream, why);
  park(hold, seq);
}

void Forwarder::retry_held() {
  const auto now = std::chrono::steady_clock::now();
  for (TopicHold& hold : holds_) {
    if (!hold.held || hold.probe != 0 || now < hold.retry_at || hold.parked.empty() || hold.probing) continue;
    // Time to try the topic again: its oldest held row goes back to the
    // buffer, and the claim that takes it sends it as the probe.
    buffer_.release(std::span<const std::uint64_t>(hold.parked.data(), 1));
    hold.parked.erase(hold.parked.begin());
    hold.probing = true;
    publish_held(hold);
  }
}

void Forwarder::lift(Stream stream) {
  TopicHold& hold = holds_[static_cast<std::size_t>(stream)];
  VANE_LOG_NOTICE("kafka: the %s topic takes rows again: %zu held rows go out",
                  stream == Stream::kDeadLetter ? "dead-letter" : "telemetry", hold.parked.size());
  buffer_.release(hold.parked);
  hold = TopicHold{};
  publish_held(hold);
  metrics_.hold_cause(stream, UplinkCause{});
}

void Forwarder::run() {
  if (uplink_->transactional()) return run_transactional();
  std::vector<StoredRecord> batch;
  std::vector<Delivery> deliveries;
  std::vector<std::uint64_t> unsent;
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) break;
    }
    if (uplink_->fatal(nullptr) && !replace_uplink(deliveries)) return;

    retry_held();
    publish_parked();  // `vane buffer unpark` may have returned some
    update_pace(std::chrono::steady_clock::now());
    // While a paced uplink is not up, no more than a burst waits in the producer.
    const std::size_t window =
        pace_.armed && pace_.bucket ? std::min(opts_.max_in_flight, pace_.bucket->burst()) : opts_.max_in_flight;
    bool sent = false;
    if (std::chrono::steady_clock::now() >= backoff_until_ && in_flight_ < window) {
      const std::size_t room = std::min(opts_.claim_batch, window - in_flight_);
      Status s;
      if (pace_.active) {
        const std::size_t budget = backlog_budget(std::chrono::steady_clock::now());
        PacedClaim paced;
        s = buffer_.claim_paced(pace_.mark, room, budget, batch, paced);
        pace_.bucket->take(paced.backlog);
        if (s && budget > 0 && paced.backlog_empty) end_pace("the backlog is drained");
      } else {
        s = buffer_.claim(room, batch);
      }
      if (!s) {
        metrics_.buffer_errors.fetch_add(1, std::memory_order_relaxed);
        VANE_LOG_WARN("buffer: cannot read rows to forward: %s", s.message().c_str());
        backoff_until_ = std::chrono::steady_clock::now() + kMinBackoff;
      }
      const auto now = std::chrono::steady_clock::now();
      for (std::size_t i = 0; i < batch.size(); ++i) {
        const StoredRecord& row = batch[i];
        TopicHold& hold = holds_[static_cast<std::size_t>(row.rec.stream)];
        if (hold.held) {
          // Kept back while its topic refuses; one row at a time probes it.
          if (hold.probe != 0 || now < hold.retry_at) {
            park(hold, row.seq);
            continue;
          }
          hold.probe = row.seq;
          hold.probing = false;
        }
        UplinkCause why;
        const Uplink::SendResult r =
            !alone_.empty() && alone_.contains(row.seq) ? uplink_->send_alone(row, &why) : uplink_->send(row, &why);
        if (r == Uplink::SendResult::kOk) {
          ++in_flight_;
          sent_[row.seq] = Sent{row.rec.ts_us, row.rec.stream, row.rec.value.size()};
          sent = true;
          continue;
        }
        if (r == Uplink::SendResult::kError && refuses_record(why)) {
          // Refused before it left (larger than the producer takes): the record itself.
          count_refusal(why);
          alone_.erase(row.seq);
          refused_for_good(row.seq, row.rec.stream, row.rec.value.size(), why);
          continue;
        }
        if (r == Uplink::SendResult::kError && refuses_topic(why)) {
          // The topic refuses (known before the row left): hold it, not the others.
          count_refusal(why);
          hold_topic(row.rec.stream, row.seq, why);
          continue;
        }
        if (hold.probe == row.seq) hold.probe = 0;
        unsent.clear();
        for (std::size_t j = i; j < batch.size(); ++j) unsent.push_back(batch[j].seq);
        buffer_.release(unsent);
        if (r == Uplink::SendResult::kError) {
          count_refusal(why);
          VANE_LOG_WARN("kafka: cannot send seq %llu: %s", static_cast<unsigned long long>(row.seq),
                        why.detail.c_str());
          back_off();
        }
        break;
      }
    }

    // Serve delivery reports; block briefly only when there is nothing to send.
    uplink_->poll(sent ? 0 : (in_flight_ > 0 ? 20 : 0), deliveries);
    settle(deliveries);
    watch_acks(in_flight_);

    if (!sent && in_flight_ == 0) {
      // Idle: wait for rows, but not past the pending acks' flush time.
      auto wait = pace_wait(std::chrono::steady_clock::now(), std::chrono::milliseconds(100));
      if (!acks_.empty())
        wait = std::clamp(std::chrono::duration_cast<std::chrono::milliseconds>(
                              first_ack_at_ + kAckDelay - std::chrono::steady_clock::now()),
                          std::chrono::milliseconds(0), wait);
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, wait, [&] { return stop_ || pending_; });
      pending_ = false;
      lock.unlock();
      if (!acks_.empty() && std::chrono::steady_clock::now() - first_ack_at_ >= kAckDelay) flush_acks();
    }
  }

  // Shutdown: bounded wait for what is in flight; acks still delete rows.
  if (in_flight_ > 0) {
    uplink_->flush(opts_.shutdown_timeout_ms, deliveries);
    settle(deliveries);
  }
  if (in_flight_ > 0) {
    VANE_LOG_NOTICE("%zu rows not acknowledged before shutdown stay buffered", in_flight_);
    uplink_->purge(deliveries);
    settle(deliveries);  // late acks still delete; purged rows stay buffered
  }
  flush_acks();
  uplink_.reset();
}

// exactly_once: one transaction at a time, each a batch of rows plus the
// checkpoint record; rows are deleted only after the commit. Rows at or below
// the last committed checkpoint (left by a crash between commit and delete,
// or a failed delete) are deleted without being sent again.
void Forwarder::run_transactional() {
  std::vector<StoredRecord> batch;
  std::vector<std::uint64_t> seqs, done;
  std::vector<Delivery> deliveries;
  std::string error;
  std::uint64_t checkpoint = 0;
  bool open = false;
  auto fail = [&](const char* what, const std::string& why) {
    if (backoff_.count() == 0)
      VANE_LOG_WARN("kafka: %s (%s); the rows stay buffered and are retried", what, why.c_str());
    metrics_.count_delivery_error("TRANSACTION_NOT_COMMITTED", 1);
    back_off();
  };
  auto release = [&] {
    seqs.clear();
    for (const auto& r : batch) seqs.push_back(r.seq);
    buffer_.release(seqs);
  };
  // Rows the brokers refused for themselves in this transaction (too large,
  // invalid): the delivery reports say which. Each goes again in a
  // transaction of its own; refused alone, it is dead-lettered (or parked)
  // like without exactly_once. Found before the batch is released.
  std::vector<std::pair<std::uint64_t, UplinkCause>> refused_rows;
  auto note_refused = [&](const std::vector<Delivery>& ds) {
    for (const Delivery& d : ds)
      if (!d.ok && refuses_record(d.cause)) refused_rows.emplace_back(d.seq, d.cause);
  };
  auto settle_refused = [&]() -> bool {
    if (refused_rows.empty()) return false;
    for (auto& [seq, why] : refused_rows) {
      count_refusal(why);
      const auto row = std::find_if(batch.begin(), batch.end(), [&](const StoredRecord& r) { return r.seq == seq; });
      if (row == batch.end()) continue;
      if (alone_.erase(seq)) refused_for_good(seq, row->rec.stream, row->rec.value.size(), why);
      else alone_.insert(seq);
    }
    refused_rows.clear();
    retry_.clear();  // released with the rest of the batch
    return true;
  };
  while (!stopping()) {
    // Between transactions: serve the client's callbacks (errors), which
    // only polling and commits do.
    uplink_->poll(0, deliveries);
    observe(&deliveries);
    if (uplink_->fenced()) {
      // Another producer holds this gateway's transactional id: a second
      // vane with the same gateway.id, or an older one still running. A new
      // producer would fence that one in turn, and the two would take the
      // id from each other forever; so this one stops forwarding. The rows
      // of its last transaction were released, not deleted: nothing it did
      // not commit leaves its buffer.
      std::string reason;
      uplink_->fatal(&reason);
      metrics_.uplink.refused(UplinkCause{UplinkReason::kFenced, "FENCED", reason});
      VANE_LOG_ERROR("kafka: exactly-once: this vane was fenced (%s): another producer took over its "
                     "transactional id, i.e. a second vane runs with the same gateway.id. Forwarding stops here and "
                     "the buffered rows stay; give each gateway its own gateway.id and restart this one",
                     reason.c_str());
      while (pause(std::chrono::seconds(1))) {
      }
      break;
    }
    if (uplink_->fatal(nullptr)) {
      if (!replace_uplink(deliveries)) return;
      open = false;
    }
    if (const auto now = std::chrono::steady_clock::now(); now < backoff_until_) {
      if (!pause(std::chrono::duration_cast<std::chrono::milliseconds>(backoff_until_ - now))) break;
      continue;
    }
    if (!open) {
      auto cp = uplink_->open_transactions(10000);
      observe();
      if (!cp) {
        fail("cannot start exactly-once delivery", cp.status().message());
        continue;
      }
      open = true;
      metrics_.uplink.delivered();  // the cluster took the producer and answered for the checkpoint
      checkpoint = std::max(checkpoint, *cp);
      VANE_LOG_INFO("kafka: exactly-once: last committed checkpoint is seq %llu",
                    static_cast<unsigned long long>(checkpoint));
    }
    if (Status s = buffer_.claim(std::min(opts_.claim_batch, opts_.max_in_flight), batch); !s) {
      metrics_.buffer_errors.fetch_add(1, std::memory_order_relaxed);
      VANE_LOG_WARN("buffer: cannot read rows to forward: %s", s.message().c_str());
      backoff_until_ = std::chrono::steady_clock::now() + kMinBackoff;
      continue;
    }
    // Already committed: delete, never resend.
    done.clear();
    std::erase_if(batch, [&](const StoredRecord& r) {
      if (r.seq > checkpoint) return false;
      done.push_back(r.seq);
      return true;
    });
    if (!done.empty()) {
      VANE_LOG_NOTICE("kafka: %zu buffered rows at or below checkpoint seq %llu were already delivered: deleted, "
                      "not resent", done.size(), static_cast<unsigned long long>(checkpoint));
      if (Status s = buffer_.ack(done); !s) {
        buffer_.release(done);
        metrics_.buffer_errors.fetch_add(1, std::memory_order_relaxed);
      }
    }
    if (batch.empty()) {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(100), [&] { return stop_ || pending_; });
      pending_ = false;
      continue;
    }
    if (!alone_.empty()) {
      // A row refused within a transaction goes in one of its own.
      const auto one = std::find_if(batch.begin(), batch.end(), [&](const StoredRecord& r) { return alone_.contains(r.seq); });
      if (one != batch.end()) {
        seqs.clear();
        for (const auto& r : batch)
          if (r.seq != one->seq) seqs.push_back(r.seq);
        buffer_.release(seqs);
        StoredRecord keep = std::move(*one);
        batch.clear();
        batch.push_back(std::move(keep));
      }
    }
    publish_parked();
    if (Status s = uplink_->begin(); !s) {
      observe();
      release();
      fail("cannot begin a transaction", s.message());
      continue;
    }
    bool sent = true;
    std::uint64_t high = 0;
    for (const StoredRecord& r : batch) {
      Uplink::SendResult res;
      UplinkCause why;
      while ((res = uplink_->send(r, &why)) == Uplink::SendResult::kRetry && !stopping()) {
        uplink_->poll(50, deliveries);
        note_refused(deliveries);
        observe(&deliveries);  // the commit, not a delivery report, says what is in Kafka
      }
      if (res != Uplink::SendResult::kOk) {
        if (res == Uplink::SendResult::kError) {
          metrics_.uplink.refused(why);
          error = why.detail;
          if (refuses_record(why)) refused_rows.emplace_back(r.seq, why);
        }
        sent = false;
        break;
      }
      high = std::max(high, r.seq);
    }
    Uplink::TxResult tx = Uplink::TxResult::kAbort;
    if (sent) {
      // Commit; a timeout (an outage) is retried until stop, then given up.
      const auto give_up = std::chrono::steady_clock::now() + std::chrono::milliseconds(opts_.shutdown_timeout_ms);
      quiet_since_ = std::chrono::steady_clock::now();
      while ((tx = uplink_->commit(high, 5000, &error)) == Uplink::TxResult::kRetry) {
        observe();
        watch_acks(batch.size());
        if (stopping() && std::chrono::steady_clock::now() >= give_up) break;
      }
      observe();
    }
    note_refused(deliveries);
    deliveries.clear();
    if (tx == Uplink::TxResult::kCommitted) {
      checkpoint = std::max(checkpoint, high);
      const std::int64_t now = now_us().time_since_epoch().count();
      for (const auto& r : batch) {
        acks_.push_back(r.seq);
        metrics_.delivery_latency.observe_us(now - r.rec.ts_us);
      }
      flush_acks();  // a failed delete is retried; the checkpoint keeps the rows from being resent
      metrics_.uplink.delivered();
      continue;
    }
    if (tx != Uplink::TxResult::kFatal) uplink_->abort(5000);
    uplink_->poll(0, deliveries);  // the reports of the failed transaction's records
    note_refused(deliveries);
    observe(&deliveries);
    const bool refused_for_themselves = settle_refused();
    release();
    if (refused_for_themselves) continue;  // the rows, not the link: no back-off
    fail("transaction not committed", error);
  }
  flush_acks();
  uplink_.reset();
}

}  // namespace vane
