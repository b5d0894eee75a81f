#include "kafka_uplink.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <mutex>
#include <random>
#include <string_view>
#include <vector>

#include "core/log.h"
#include "kafka_errors.h"

namespace vane {

// librdkafka's error text may quote the value ("Invalid value \"...\" for
// ..."), so for a secret only the key and where it came from are told.
Status set_kafka_property(rd_kafka_conf_t* conf, const KafkaProperty& p) {
  char err[512];
  if (rd_kafka_conf_set(conf, p.key.c_str(), p.value.c_str(), err, sizeof err) == RD_KAFKA_CONF_OK)
    return Status::ok();
  if (p.secret) return Status::invalid(p.pointer + ": librdkafka refused " + p.key + " (value not shown)");
  return Status::invalid(p.pointer + ": " + err);
}

namespace {

struct KafkaDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
  void operator()(rd_kafka_conf_t* c) const { rd_kafka_conf_destroy(c); }
  void operator()(rd_kafka_topic_t* t) const { rd_kafka_topic_destroy(t); }
  void operator()(rd_kafka_headers_t* h) const { rd_kafka_headers_destroy(h); }
};
using KafkaPtr = std::unique_ptr<rd_kafka_t, KafkaDeleter>;
using ConfPtr = std::unique_ptr<rd_kafka_conf_t, KafkaDeleter>;
using TopicPtr = std::unique_ptr<rd_kafka_topic_t, KafkaDeleter>;
using HeadersPtr = std::unique_ptr<rd_kafka_headers_t, KafkaDeleter>;

Status set_property(rd_kafka_conf_t* conf, const std::string& key, const std::string& value,
                    const std::string& where) {
  char err[512];
  if (rd_kafka_conf_set(conf, key.c_str(), value.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK)
    return Status::invalid(where + ": " + err);
  return Status::ok();
}

// A connection property (config.h kafka_connection_properties). librdkafka's
// error text may quote the value ("Invalid value \"...\" for ..."), so for a
// secret only the key and where it came from are told.
Status set_property(rd_kafka_conf_t* conf, const KafkaProperty& p) { return set_kafka_property(conf, p); }

// Limits repeated client errors (a broker outage logs a connect failure per
// retry) to one line per kind per interval.
class LogLimiter {
 public:
  bool allow(int kind) {
    std::lock_guard<std::mutex> lock(mu_);
    const auto now = std::chrono::steady_clock::now();
    auto& last = last_[static_cast<std::size_t>(kind) % kSlots];
    if (last.time_since_epoch().count() != 0 && now - last < std::chrono::seconds(30)) return false;
    last = now;
    return true;
  }

 private:
  static constexpr std::size_t kSlots = 64;
  std::mutex mu_;
  std::chrono::steady_clock::time_point last_[kSlots]{};
};

// librdkafka retries a broker's refusal of a produce request (NOT_ENOUGH_
// REPLICAS and the like) by itself and, with message.timeout.ms 0, tells no
// callback: only its debug lines of context "msg" carry the broker's answer
// (kafka_errors.h). So that context is on, besides whatever kafka.properties
// asks of "debug"; on_log reads those lines and drops every other debug line.
// About two lines per produce request: nothing next to the request itself.
KafkaConfig with_produce_errors_logged(KafkaConfig cfg) {
  std::string& debug = cfg.properties["debug"];
  if (debug.find("msg") == std::string::npos && debug.find("all") == std::string::npos)
    debug += debug.empty() ? "msg" : ",msg";
  return cfg;
}

std::string random_hex64() {
  std::random_device rd;
  const std::uint64_t v = (std::uint64_t{rd()} << 32) ^ rd();
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

class KafkaUplink final : public Uplink {
 public:
  KafkaUplink(const KafkaConfig& cfg, std::string gateway)
      : cfg_(with_produce_errors_logged(cfg)), gateway_(std::move(gateway)) {}

  Status init(const std::string& bootstrap) {
    bootstrap_ = bootstrap;
    auto rk = new_producer(false);
    if (!rk) return rk.status();
    rk_ = std::move(*rk);
    if (!open_topics(rk_.get(), topics_)) return Status::invalid("kafka: cannot create topic handles");
    if (cfg_.exactly_once) {
      checkpoints_.reset(rd_kafka_topic_new(rk_.get(), cfg_.checkpoint_topic.c_str(), nullptr));
      if (!checkpoints_) return Status::invalid("kafka: cannot create topic handles");
    }
    return Status::ok();
  }

  // The producer; alone: the one for rows a broker refused within a batch
  // (send_alone), which puts each record in a batch of its own.
  Result<KafkaPtr> new_producer(bool alone) {
    ConfPtr conf(rd_kafka_conf_new());
    struct Default {
      const char* key;
      std::string value;
    };
    const Default defaults[] = {
        {"client.id", "vane-" + gateway_},
        {"enable.idempotence", "true"},
        {"acks", "all"},
        // Rows stay buffered until acknowledged, so the producer may keep a
        // message as long as the outage lasts: no client-side expiry that would
        // turn an outage into delivery failures and reordering.
        {"message.timeout.ms", "0"},
        {"linger.ms", "5"},
        {"batch.num.messages", "10000"},
        {"queue.buffering.max.messages", std::to_string(std::max(cfg_.max_in_flight * 2, 1000))},
        // Bounds the producer's memory: rows wait in the buffer, not here.
        // max_in_flight (10000) rows of ~0.3 KiB fit many times over.
        {"queue.buffering.max.kbytes", "32768"},
    };
    // exactly_once: one transactional id per gateway, so a restarted vane
    // fences its previous incarnation. librdkafka wants message.timeout.ms
    // within transaction.timeout.ms; an expired message aborts the
    // transaction and its rows stay buffered.
    const Default tx_defaults[] = {
        {"transactional.id", "vane-" + gateway_},
        {"transaction.timeout.ms", "60000"},
        {"message.timeout.ms", "60000"},
    };
    for (const auto& d : defaults) {
      Status s = set_property(conf.get(), d.key, d.value, std::string("kafka: ") + d.key);
      if (!s) return s;
    }
    if (cfg_.exactly_once) {
      for (const auto& d : tx_defaults) {
        Status s = set_property(conf.get(), d.key, d.value, std::string("kafka: ") + d.key);
        if (!s) return s;
      }
    }
    // Bootstrap and security exactly as the checkpoint reader gets them.
    for (const KafkaProperty& p : kafka_connection_properties(cfg_, bootstrap_)) {
      Status s = set_property(conf.get(), p);
      if (!s) return s;
    }
    for (const auto& [k, v] : cfg_.properties) {
      if (is_kafka_connection_property(k)) continue;
      Status s = set_property(conf.get(), k, v, "/kafka/properties/" + k);
      if (!s) return s;
    }
    if (alone) {
      for (const auto& [k, v] : std::initializer_list<std::pair<const char*, std::string>>{
               {"client.id", "vane-" + gateway_ + "-alone"}, {"batch.num.messages", "1"}, {"linger.ms", "0"}}) {
        Status s = set_property(conf.get(), k, v, std::string("kafka: ") + k);
        if (!s) return s;
      }
    }
    rd_kafka_conf_set_opaque(conf.get(), this);
    rd_kafka_conf_set_dr_msg_cb(conf.get(), &KafkaUplink::on_delivery);
    rd_kafka_conf_set_error_cb(conf.get(), &KafkaUplink::on_error);
    rd_kafka_conf_set_log_cb(conf.get(), &KafkaUplink::on_log);
    char err[512];
    rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), err, sizeof err);
    if (!rk) {
      // "ssl.key.location failed: ..." names a property: point at its config key.
      std::string where = "kafka";
      for (const KafkaProperty& p : kafka_connection_properties(cfg_, bootstrap_))
        if (!p.secret && std::strstr(err, p.key.c_str())) where = p.pointer;
      return Status::invalid(where + ": cannot create producer: " + err);
    }
    conf.release();  // owned by rk now
    return KafkaPtr(rk);
  }

  ~KafkaUplink() override {
    // Explicit purge and flush happen in the forwarder; here only release.
    for (TopicPtr& t : topics_) t.reset();
    checkpoints_.reset();
    for (TopicPtr& t : alone_topics_) t.reset();
    alone_.reset();
    rk_.reset();
  }

  bool transactional() const override { return cfg_.exactly_once; }

  Result<std::uint64_t> open_transactions(int timeout_ms) override {
    if (rd_kafka_error_t* e = rd_kafka_init_transactions(rk_.get(), timeout_ms)) {
      Status s = Status::unavailable(std::string("kafka: cannot initialise transactions: ") + rd_kafka_error_string(e));
      note_error(e);
      if (rd_kafka_error_is_fatal(e)) fatal_ = true;
      rd_kafka_error_destroy(e);
      return s;
    }
    return read_checkpoint(timeout_ms);
  }

  Status begin() override {
    checkpoint_sent_ = false;
    txn_ = incarnation_ + "-" + std::to_string(++txn_count_);
    if (rd_kafka_error_t* e = rd_kafka_begin_transaction(rk_.get())) {
      Status s = Status::unavailable(std::string("kafka: cannot begin a transaction: ") + rd_kafka_error_string(e));
      note_error(e);
      if (rd_kafka_error_is_fatal(e)) fatal_ = true;
      rd_kafka_error_destroy(e);
      return s;
    }
    return Status::ok();
  }

  TxResult commit(std::uint64_t checkpoint, int timeout_ms, std::string* error) override {
    if (!checkpoint_sent_) {
      // The rows first: the checkpoint record goes out only once every row
      // of the transaction is with the brokers, so no reader (not even one
      // that ignores transactions) sees a checkpoint ahead of its rows.
      rd_kafka_flush(rk_.get(), timeout_ms);
      if (rd_kafka_outq_len(rk_.get()) > 0) {
        if (error) *error = "rows of the transaction not yet delivered";
        return TxResult::kRetry;
      }
      // Partition 0, keyed by gateway: readable back without knowing the
      // producer's partitioner, and compaction keeps the last per gateway.
      const std::string value = "{\"gateway\":\"" + gateway_ + "\",\"seq\":" + std::to_string(checkpoint) +
                                ",\"txn\":\"" + txn_ + "\"}";
      const rd_kafka_resp_err_t err = rd_kafka_producev(
          rk_.get(), RD_KAFKA_V_RKT(checkpoints_.get()), RD_KAFKA_V_PARTITION(0),
          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(gateway_.data(), gateway_.size()),
          RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
          RD_KAFKA_V_OPAQUE(reinterpret_cast<void*>(std::uintptr_t{0})), RD_KAFKA_V_END);
      if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (error) *error = std::string("checkpoint record: ") + rd_kafka_err2str(err);
        return TxResult::kAbort;
      }
      checkpoint_sent_ = true;
    }
    rd_kafka_error_t* e = rd_kafka_commit_transaction(rk_.get(), timeout_ms);
    if (!e) return TxResult::kCommitted;
    if (error) *error = rd_kafka_error_string(e);
    note_error(e);
    TxResult r = TxResult::kAbort;
    if (rd_kafka_error_is_fatal(e)) {
      fatal_ = true;
      r = TxResult::kFatal;
    } else if (rd_kafka_error_txn_requires_abort(e)) {
      r = TxResult::kAbort;
    } else if (rd_kafka_error_is_retriable(e)) {
      r = TxResult::kRetry;
    }
    rd_kafka_error_destroy(e);
    return r;
  }

  void abort(int timeout_ms) override {
    for (int attempt = 0; attempt < 3; ++attempt) {
      rd_kafka_error_t* e = rd_kafka_abort_transaction(rk_.get(), timeout_ms);
      if (!e) return;
      const bool retry = rd_kafka_error_is_retriable(e);
      if (rd_kafka_error_is_fatal(e)) fatal_ = true;
      if (limiter_.allow(63)) VANE_LOG_WARN("kafka: cannot abort the transaction: %s", rd_kafka_error_string(e));
      rd_kafka_error_destroy(e);
      if (!retry) return;
    }
    // Still open: a fresh producer fences it.
    fatal_ = true;
  }

  SendResult send(const StoredRecord& r, UplinkCause* why) override {
    return produce(rk_.get(), topics_[static_cast<std::size_t>(r.rec.stream)].get(), r, why);
  }

  // Through a producer of its own that sends each record in a batch of its
  // own: a broker refuses a batch as a whole (too large, an invalid record
  // in it), and librdkafka does not split it.
  SendResult send_alone(const StoredRecord& r, UplinkCause* why) override {
    if (cfg_.exactly_once) return send(r, why);  // one producer per transaction
    if (!alone_) {
      auto rk = new_producer(true);
      if (!rk) {
        if (why) *why = UplinkCause{UplinkReason::kBrokerError, "ALONE", rk.status().message()};
        return SendResult::kError;
      }
      alone_ = std::move(*rk);
      open_topics(alone_.get(), alone_topics_);
    }
    return produce(alone_.get(), alone_topics_[static_cast<std::size_t>(r.rec.stream)].get(), r, why);
  }

  // A handle per Stream: telemetry, dead letters, events.
  bool open_topics(rd_kafka_t* rk, std::array<TopicPtr, kStreams>& out) {
    const std::string* names[kStreams] = {&cfg_.topic, &cfg_.dead_letter_topic, &cfg_.event_topic};
    for (std::size_t i = 0; i < kStreams; ++i) out[i].reset(rd_kafka_topic_new(rk, names[i]->c_str(), nullptr));
    return std::all_of(out.begin(), out.end(), [](const TopicPtr& t) { return t != nullptr; });
  }

  SendResult produce(rd_kafka_t* rk, rd_kafka_topic_t* topic, const StoredRecord& r, UplinkCause* why) {
    char seq[24];
    const int seq_len = std::snprintf(seq, sizeof seq, "%llu", static_cast<unsigned long long>(r.seq));
    HeadersPtr h(rd_kafka_headers_new(5));
    rd_kafka_header_add(h.get(), "vane-gateway", -1, gateway_.data(), static_cast<ssize_t>(gateway_.size()));
    rd_kafka_header_add(h.get(), "vane-source", -1, r.rec.source.data(), static_cast<ssize_t>(r.rec.source.size()));
    rd_kafka_header_add(h.get(), "vane-seq", -1, seq, seq_len);
    rd_kafka_header_add(h.get(), "vane-schema", -1, r.rec.schema.data(), static_cast<ssize_t>(r.rec.schema.size()));
    if (r.rec.stream == Stream::kDeadLetter)
      rd_kafka_header_add(h.get(), "vane-error", -1, r.rec.error.data(), static_cast<ssize_t>(r.rec.error.size()));
    if (cfg_.exactly_once) rd_kafka_header_add(h.get(), "vane-txn", -1, txn_.data(), static_cast<ssize_t>(txn_.size()));
    const rd_kafka_resp_err_t err = rd_kafka_producev(
        rk, RD_KAFKA_V_RKT(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY(r.rec.key.data(), r.rec.key.size()),
        RD_KAFKA_V_VALUE(const_cast<char*>(r.rec.value.data()), r.rec.value.size()),
        RD_KAFKA_V_TIMESTAMP(r.rec.ts_us / 1000), RD_KAFKA_V_HEADERS(h.get()),
        RD_KAFKA_V_OPAQUE(reinterpret_cast<void*>(static_cast<std::uintptr_t>(r.seq))), RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      h.release();  // the message owns the headers now
      return SendResult::kOk;
    }
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) return SendResult::kRetry;
    // Refused before it left (e.g. the topic is known to deny this
    // principal): the caller treats it like a failed delivery.
    if (why) *why = kafka_cause(err, std::string(rd_kafka_topic_name(topic)) + ": " + rd_kafka_err2str(err));
    return SendResult::kError;
  }

  void poll(int timeout_ms, std::vector<Delivery>& out) override {
    take_stray(out);
    out_ = &out;
    if (alone_) rd_kafka_poll(alone_.get(), 0);
    rd_kafka_poll(rk_.get(), timeout_ms);
    out_ = nullptr;
  }

  void flush(int timeout_ms, std::vector<Delivery>& out) override {
    take_stray(out);
    out_ = &out;
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    rd_kafka_flush(rk_.get(), timeout_ms);
    if (alone_) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      rd_kafka_flush(alone_.get(), static_cast<int>(std::max<std::int64_t>(left.count(), 0)));
    }
    out_ = nullptr;
  }

  void purge(std::vector<Delivery>& out) override {
    out_ = &out;
    for (rd_kafka_t* rk : {rk_.get(), alone_.get()}) {
      if (!rk) continue;
      rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
      rd_kafka_poll(rk, 0);
    }
    out_ = nullptr;
  }

  void drain_causes(std::vector<UplinkCause>& out) override {
    std::lock_guard<std::mutex> lock(causes_mu_);
    for (UplinkCause& c : causes_) out.push_back(std::move(c));
    causes_.clear();
  }

  bool fenced() const override {
    if (!fatal_.load()) return false;
    char buf[256] = {0};
    return kafka_reason(rd_kafka_fatal_error(rk_.get(), buf, sizeof buf)) == UplinkReason::kFenced;
  }

  bool fatal(std::string* reason) const override {
    if (!fatal_.load()) return false;
    if (reason) {
      char buf[512] = {0};
      rd_kafka_fatal_error(rk_.get(), buf, sizeof buf);
      *reason = buf;
    }
    return true;
  }

 private:
  // Threads: the callbacks on_delivery and on_error run inside rd_kafka_poll
  // or rd_kafka_flush (poll, flush, purge, commit), on the forwarder's
  // thread; on_log runs on librdkafka's own threads. What they observe about
  // the link goes through note(), under causes_mu_.

  static void on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    auto* self = static_cast<KafkaUplink*>(opaque);
    Delivery d;
    d.seq = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(m->_private));
    if (d.seq == 0) return;  // a checkpoint record: its transaction's commit reports it
    d.ok = m->err == RD_KAFKA_RESP_ERR_NO_ERROR;
    if (!d.ok) {
      // Which topic refused is part of the answer: an ACL may deny the
      // dead-letter topic only.
      const char* topic = m->rkt ? rd_kafka_topic_name(m->rkt) : "?";
      d.cause = kafka_cause(m->err, std::string(topic) + ": " + rd_kafka_err2str(m->err));
    }
    if (self->out_) self->out_->push_back(std::move(d));
    // Inside a commit: its result, not the report, counts for the rows; a
    // failure is handed out with the next poll all the same, since it says
    // which record the brokers refused.
    else if (!d.ok) self->stray_.push_back(std::move(d));
  }

  static void on_error(rd_kafka_t* rk, int err, const char* reason, void* opaque) {
    auto* self = static_cast<KafkaUplink*>(opaque);
    auto e = static_cast<rd_kafka_resp_err_t>(err);
    std::string words = reason ? reason : "";
    if (e == RD_KAFKA_RESP_ERR__FATAL) {
      self->fatal_ = true;
      // The error underneath (e.g. PRODUCER_FENCED) says why; the forwarder
      // logs the fatal error itself when it replaces the producer.
      char buf[512] = {0};
      e = rd_kafka_fatal_error(rk, buf, sizeof buf);
      words = buf;
    }
    if (e == RD_KAFKA_RESP_ERR__AUTHENTICATION && self->scram_needs_newer_client()) {
      words += "; note: Kafka 4.x brokers refuse the SCRAM of librdkafka before 2.6.1 as invalid credentials even "
               "when the password is right (this vane runs librdkafka " + std::string(rd_kafka_version_str()) +
               "): use SASL PLAIN over TLS or mutual TLS against a 4.x cluster";
    }
    UplinkCause c = kafka_cause(e, words);
    // A connection closed while nothing waits (a broker's idle timeout) is
    // no outage: the next produce reconnects.
    const bool idle = (c.reason == UplinkReason::kTransport || c.reason == UplinkReason::kResolve) &&
                      rd_kafka_outq_len(rk) == 0;
    if (c.reason != UplinkReason::kNone && !idle) {
      self->note(std::move(c));  // the tracker logs it, once per episode
      return;
    }
    if (err == RD_KAFKA_RESP_ERR__FATAL || !self->limiter_.allow(err & 0x3f)) return;
    if (idle) VANE_LOG_INFO("kafka: %s: %s", rd_kafka_err2name(e), words.c_str());
    else VANE_LOG_WARN("kafka: %s: %s", rd_kafka_err2name(e), words.c_str());
  }

  static void on_log(const rd_kafka_t* rk, int level, const char* fac, const char* buf) {
    auto* self = static_cast<KafkaUplink*>(rd_kafka_opaque(rk));
    if (level >= 7) {  // debug: only the broker's answers to produce requests matter
      if (auto c = kafka_cause_from_log(fac, buf)) self->note(std::move(*c));
      return;
    }
    if (level > 3) return;
    // A failed or refused connection is logged as FAIL and reported to
    // on_error as well, which tells the tracker.
    if (std::strcmp(fac, "FAIL") == 0) return;
    if (self->log_limiter_.allow(static_cast<int>(std::hash<std::string_view>{}(fac) & 0x3f)))
      VANE_LOG_WARN("kafka: %s: %s", fac, buf);
  }

  // SCRAM configured, and a librdkafka whose SCRAM client-final nonce
  // (fixed in 2.6.1) Kafka 4.x brokers reject under RFC 5802's strict check.
  bool scram_needs_newer_client() const {
    if (rd_kafka_version() >= 0x020601ff) return false;
    std::string mech = cfg_.sasl ? cfg_.sasl->mechanism : "";
    if (auto it = cfg_.properties.find("sasl.mechanisms"); it != cfg_.properties.end()) mech = it->second;
    if (auto it = cfg_.properties.find("sasl.mechanism"); it != cfg_.properties.end()) mech = it->second;
    return mech.rfind("SCRAM", 0) == 0;
  }

  // Any thread. Identical causes in a row are folded into one; the queue is
  // bounded by folding into any equal cause, then by dropping (the forwarder
  // drains it every round, so that takes thousands of distinct causes).
  void note(UplinkCause c) {
    if (c.reason == UplinkReason::kNone) return;
    constexpr std::size_t kMaxCauses = 64;
    std::lock_guard<std::mutex> lock(causes_mu_);
    auto same = [&](const UplinkCause& o) { return o.reason == c.reason && o.code == c.code; };
    UplinkCause* into = !causes_.empty() && same(causes_.back()) ? &causes_.back() : nullptr;
    if (!into && causes_.size() >= kMaxCauses) {
      for (UplinkCause& o : causes_)
        if (same(o)) into = &o;
      if (!into) return;
    }
    if (!into) {
      causes_.push_back(std::move(c));
      return;
    }
    into->count += c.count;
    into->detail = std::move(c.detail);
  }

  // A transactional call failed: what it says about the link. Its timeouts
  // say only that the call did not finish in time; the error callback and
  // the forwarder's watch of unacknowledged rows tell why.
  void note_error(const rd_kafka_error_t* e) {
    UplinkCause c = kafka_cause(rd_kafka_error_code(e), rd_kafka_error_string(e));
    if (c.reason != UplinkReason::kNone && c.reason != UplinkReason::kTimeout) note(std::move(c));
  }

  // The last checkpoint of this gateway in partition 0 of the checkpoint
  // topic, read committed. Unknown topic or an empty partition: 0.
  Result<std::uint64_t> read_checkpoint(int timeout_ms) {
    ConfPtr conf(rd_kafka_conf_new());
    char err[512];
    // Connects and authenticates exactly as the producer does.
    for (const KafkaProperty& p : kafka_connection_properties(cfg_, bootstrap_)) {
      Status s = set_property(conf.get(), p);
      if (!s) return Status::invalid("kafka: checkpoint reader: " + s.message());
    }
    for (const auto& [k, v] : std::initializer_list<std::pair<const char*, std::string>>{
             {"client.id", "vane-" + gateway_ + "-checkpoint"},
             {"group.id", "vane-" + gateway_ + "-checkpoint"},
             {"isolation.level", "read_committed"},
             {"enable.auto.commit", "false"},
             {"enable.partition.eof", "true"}}) {
      if (rd_kafka_conf_set(conf.get(), k, v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK)
        return Status::invalid(std::string("kafka: checkpoint reader: ") + err);
    }
    KafkaPtr rk(rd_kafka_new(RD_KAFKA_CONSUMER, conf.get(), err, sizeof err));
    if (!rk) return Status::unavailable(std::string("kafka: checkpoint reader: ") + err);
    conf.release();
    const char* topic = cfg_.checkpoint_topic.c_str();
    std::int64_t lo = 0, hi = 0;
    rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rk.get(), topic, 0, &lo, &hi, timeout_ms);
    if (e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) return std::uint64_t{0};
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
      return Status::unavailable(std::string("kafka: cannot read the checkpoint topic ") + topic + ": " +
                                 rd_kafka_err2str(e));
    if (hi <= lo) return std::uint64_t{0};
    rd_kafka_topic_partition_list_t* parts = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(parts, topic, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    e = rd_kafka_assign(rk.get(), parts);
    rd_kafka_topic_partition_list_destroy(parts);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) return Status::unavailable(std::string("kafka: ") + rd_kafka_err2str(e));
    std::uint64_t seq = 0;
    bool at_end = false;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (!at_end && std::chrono::steady_clock::now() < deadline) {
      rd_kafka_message_t* m = rd_kafka_consumer_poll(rk.get(), 100);
      if (!m) continue;
      if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        at_end = true;
      } else if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR && m->key_len == gateway_.size() &&
                 std::memcmp(m->key, gateway_.data(), gateway_.size()) == 0) {
        const std::string v(static_cast<const char*>(m->payload), m->len);
        const auto at = v.find("\"seq\":");
        if (at != std::string::npos) seq = std::max<std::uint64_t>(seq, std::strtoull(v.c_str() + at + 6, nullptr, 10));
      }
      rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk.get());
    if (!at_end)
      return Status::unavailable(std::string("kafka: timed out reading the checkpoint topic ") + topic);
    return seq;
  }

  KafkaConfig cfg_;
  std::string gateway_, bootstrap_;
  KafkaPtr rk_;
  std::array<TopicPtr, kStreams> topics_;  // by Stream
  TopicPtr checkpoints_;
  KafkaPtr alone_;  // made on the first send_alone
  std::array<TopicPtr, kStreams> alone_topics_;
  bool checkpoint_sent_ = false;
  // Names each transaction (vane-txn header and checkpoint record): this
  // producer's random incarnation and a counter.
  std::string incarnation_ = random_hex64();
  std::uint64_t txn_count_ = 0;
  std::string txn_;
  std::vector<Delivery>* out_ = nullptr;  // set only during poll/flush/purge, on the caller's thread
  std::vector<Delivery> stray_;           // failed reports served inside a commit, for the next poll
  void take_stray(std::vector<Delivery>& out) {
    for (Delivery& d : stray_) out.push_back(std::move(d));
    stray_.clear();
  }
  std::atomic<bool> fatal_{false};
  LogLimiter limiter_;
  LogLimiter log_limiter_;  // on_log's: its kinds are facilities, not error codes
  std::mutex causes_mu_;
  std::vector<UplinkCause> causes_;  // guarded by causes_mu_: observed, not yet drained
};

}  // namespace

Result<std::unique_ptr<Uplink>> make_kafka_uplink(const KafkaConfig& cfg, const std::string& bootstrap,
                                                  const std::string& gateway_id) {
  auto up = std::make_unique<KafkaUplink>(cfg, gateway_id);
  Status s = up->init(bootstrap);
  if (!s) return s;
  return std::unique_ptr<Uplink>(std::move(up));
}

struct EmbeddedKafka::Impl {
  KafkaPtr rk;
  rd_kafka_mock_cluster_t* cluster = nullptr;
  ~Impl() {
    if (cluster) rd_kafka_mock_cluster_destroy(cluster);
  }
};

EmbeddedKafka::EmbeddedKafka(std::unique_ptr<Impl> impl, std::string bootstrap)
    : impl_(std::move(impl)), bootstrap_(std::move(bootstrap)) {}
EmbeddedKafka::~EmbeddedKafka() = default;

Result<std::unique_ptr<EmbeddedKafka>> EmbeddedKafka::start(const KafkaConfig& cfg) {
  auto impl = std::make_unique<Impl>();
  ConfPtr conf(rd_kafka_conf_new());
  char err[512];
  // The mock cluster needs a client instance for its bookkeeping only.
  rd_kafka_conf_set(conf.get(), "log_level", "3", err, sizeof err);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), err, sizeof err);
  if (!rk) return Status::internal(std::string("embedded kafka: ") + err);
  conf.release();
  impl->rk.reset(rk);
  impl->cluster = rd_kafka_mock_cluster_new(rk, 1);
  if (!impl->cluster) return Status::internal("embedded kafka: cannot start the mock cluster");
  rd_kafka_mock_topic_create(impl->cluster, cfg.topic.c_str(), 3, 1);
  rd_kafka_mock_topic_create(impl->cluster, cfg.dead_letter_topic.c_str(), 1, 1);
  rd_kafka_mock_topic_create(impl->cluster, cfg.event_topic.c_str(), 1, 1);
  if (cfg.exactly_once) rd_kafka_mock_topic_create(impl->cluster, cfg.checkpoint_topic.c_str(), 1, 1);
  std::string bootstrap = rd_kafka_mock_cluster_bootstraps(impl->cluster);
  return std::unique_ptr<EmbeddedKafka>(new EmbeddedKafka(std::move(impl), std::move(bootstrap)));
}

}  // namespace vane
