// The uplink state without Kafka: librdkafka's error codes and debug lines
// as causes, the tracker's state machine and its episode log (on a clock the
// test moves), the forwarder against a fake uplink that refuses, accepts or
// stays silent (rows stay buffered throughout), and the progress verdict for
// each state.
#include <gtest/gtest.h>

#include <librdkafka/rdkafka.h>

#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "buffer/sqlite_buffer.h"
#include "forwarder.h"
#include "kafka_errors.h"
#include "progress.h"
#include "status_report.h"
#include "support/temp_dir.h"
#include "support/wait.h"
#include "uplink_state.h"

namespace vane {
namespace {

using namespace std::chrono_literals;
using Clock = UplinkTracker::Clock;
using R = UplinkReason;
using S = UplinkState;

// --- librdkafka's codes and lines ------------------------------------------

TEST(KafkaErrors, CodesMapToABoundedSetOfReasons) {
  EXPECT_EQ(kafka_reason(RD_KAFKA_RESP_ERR_NO_ERROR), R::kNone);
  EXPECT_EQ(kafka_reason(RD_KAFKA_RESP_ERR__PURGE_QUEUE), R::kNone) << "vane purged it: nobody refused";
  EXPECT_EQ(kafka_reason(RD_KAFKA_RESP_ERR__PURGE_INFLIGHT), R::kNone);
  EXPECT_EQ(kafka_reason(RD_KAFKA_RESP_ERR__QUEUE_FULL), R::kNone) << "the client's own condition";
  EXPECT_EQ(kafka_reason(RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS), R::kNotEnoughReplicas);
  EXPECT_EQ(kafka_reason(RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND), R::kNotEnoughReplicas);
  EXPECT_EQ(kafka_reason(RD_KAFKA_RESP_ERR__AUTHENTICATION), R::kAuthentication);
  EXPECT_EQ(kafka_reason(RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED), R::kAuthentication);
  EXPECT_EQ(kafka_reason(RD_KAFKA_RESP_ERR__SSL), R::kTls);
  EXPECT_EQ(kafka_reason(RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED), R::kAuthorization);
  EXPECT_EQ(kafka_reason(RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED), R::kAuthorization);
  EXPECT_EQ(kafka_reason(RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED), R::kAuthorization);
  EXPECT_EQ(kafka_reason(RD_KAFKA_RESP_ERR__FENCED), R::kFenced);
  EXPECT_EQ(kafka_reason(RD_KAFKA_RESP_ERR_PRODUCER_FENCED), R::kFenced);
  EXPECT_EQ(kafka_reason(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART), R::kUnknownTopic);
  EXPECT_EQ(kafka_reason(RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE), R::kUnavailable);
  EXPECT_EQ(kafka_reason(RD_KAFKA_RESP_ERR_THROTTLING_QUOTA_EXCEEDED), R::kThrottled);
  EXPECT_EQ(kafka_reason(RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT), R::kTimeout);
  EXPECT_EQ(kafka_reason(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT), R::kTimeout);
  EXPECT_EQ(kafka_reason(RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN), R::kBrokersDown);
  EXPECT_EQ(kafka_reason(RD_KAFKA_RESP_ERR__TRANSPORT), R::kTransport);
  EXPECT_EQ(kafka_reason(RD_KAFKA_RESP_ERR__RESOLVE), R::kResolve);
  EXPECT_EQ(kafka_reason(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE), R::kBrokerError);
  EXPECT_EQ(kafka_reason(RD_KAFKA_RESP_ERR_POLICY_VIOLATION), R::kBrokerError);

  for (R r : {R::kNotEnoughReplicas, R::kAuthentication, R::kTls, R::kAuthorization, R::kFenced, R::kUnknownTopic,
              R::kUnavailable, R::kThrottled, R::kTimeout, R::kBrokerError})
    EXPECT_EQ(state_of(r), S::kRefused) << to_string(r);
  for (R r : {R::kBrokersDown, R::kTransport, R::kResolve}) EXPECT_EQ(state_of(r), S::kDown) << to_string(r);
  // Every reason has its own label.
  std::set<std::string> labels;
  for (std::size_t i = 0; i < kUplinkReasons; ++i) labels.insert(to_string(static_cast<R>(i)));
  EXPECT_EQ(labels.size(), kUplinkReasons);
  EXPECT_EQ(labels.count("?"), 0u);
}

TEST(KafkaErrors, CausesCarryLibrdkafkasNameAndWordsOnOneLine) {
  UplinkCause c = kafka_cause(RD_KAFKA_RESP_ERR__AUTHENTICATION, "sasl_ssl://k1:9093/bootstrap: SASL authentication "
                                                                 "error: Authentication failed\n(after 5ms)");
  EXPECT_EQ(c.reason, R::kAuthentication);
  EXPECT_EQ(c.code, "AUTHENTICATION") << "local codes without their leading underscores";
  EXPECT_EQ(c.detail, "sasl_ssl://k1:9093/bootstrap: SASL authentication error: Authentication failed (after 5ms)");
  EXPECT_EQ(kafka_cause(RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, "x").code, "NOT_ENOUGH_REPLICAS");
  EXPECT_EQ(kafka_cause(RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN, "x").code, "ALL_BROKERS_DOWN");
  EXPECT_LE(kafka_cause(RD_KAFKA_RESP_ERR__SSL, std::string(5000, 'x')).detail.size(), 520u);
}

// Lines as librdkafka 2.0.2 logs them (debug=msg) against Apache Kafka.
TEST(KafkaErrors, TheBrokersAnswerToARetriedProduceComesFromItsDebugLine) {
  auto c = kafka_cause_from_log(
      "MSGSET",
      "[thrd:127.0.0.1:36121/bootstrap]: 127.0.0.1:36121/1: telemetry [0]: MessageSet with 1 message(s) (MsgId 3, "
      "BaseSeq 2) encountered error: Broker: Not enough in-sync replicas (actions Retry,MsgNotPersisted)");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->reason, R::kNotEnoughReplicas);
  EXPECT_EQ(c->code, "NOT_ENOUGH_REPLICAS");
  EXPECT_EQ(c->detail, "127.0.0.1:36121/1: telemetry [0]: Broker: Not enough in-sync replicas");

  c = kafka_cause_from_log("MSGSET",
                           "[thrd:k1:9092/bootstrap]: k1:9092/1: telemetry [2]: MessageSet with 40 message(s) (MsgId 2, "
                           "BaseSeq 1) encountered error: Broker: Request timed out (actions Retry,MsgPossiblyPersisted)");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->reason, R::kTimeout);
  EXPECT_EQ(c->code, "REQUEST_TIMED_OUT");

  // Permanent: the delivery reports say it. Local: the error callback does.
  EXPECT_FALSE(kafka_cause_from_log("MSGSET", "k1:9092/1: t [0]: MessageSet with 1 message(s) (MsgId 1, BaseSeq 0) "
                                              "encountered error: Broker: Topic authorization failed (actions "
                                              "Permanent,MsgNotPersisted)"));
  EXPECT_FALSE(kafka_cause_from_log("MSGSET", "k1:9092/1: t [0]: MessageSet with 1 message(s) (MsgId 1, BaseSeq 0) "
                                              "encountered error: Local: Broker transport failure (actions "
                                              "Refresh,MsgPossiblyPersisted)"));
  EXPECT_FALSE(kafka_cause_from_log("MSGSET", "k1:9092/1: t [0]: MessageSet with 9 message(s) (MsgId 1, BaseSeq 0) "
                                              "delivered"));
  EXPECT_FALSE(kafka_cause_from_log("PRODUCE", "encountered error: Broker: Not enough in-sync replicas (actions Retry)"));
  EXPECT_FALSE(kafka_cause_from_log("MSGSET", "encountered error: no such text (actions Retry)"));
}

// --- the state machine ------------------------------------------------------

struct Log {
  std::vector<std::pair<LogLevel, std::string>> lines;
  UplinkTracker::Sink sink() {
    return [this](LogLevel l, const std::string& t) { lines.emplace_back(l, t); };
  }
  std::size_t count(LogLevel l) const {
    std::size_t n = 0;
    for (const auto& [level, text] : lines) n += level == l;
    return n;
  }
  std::string last() const { return lines.empty() ? "" : lines.back().second; }
};

UplinkCause cause(int err, const std::string& words = "words") { return kafka_cause(err, words); }

TEST(UplinkTracker, ARefusedEpisodeIsLoggedOnceAndItsEndWithWhatWasCounted) {
  Log log;
  UplinkTracker t(log.sink());
  const Clock::time_point t0 = Clock::now();
  EXPECT_EQ(t.state(), S::kConnecting);
  EXPECT_EQ(t.summary(), "connecting");
  t.delivered(t0);
  EXPECT_EQ(t.state(), S::kUp);
  EXPECT_TRUE(log.lines.empty()) << "connecting to up is not an episode";

  // Nothing delivered since t0: the first refusal after kHold is an episode.
  const auto t1 = t0 + 10s;
  t.refused(cause(RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, "k1:9092/1: telemetry [0]: Broker: Not enough in-sync replicas"), t1);
  EXPECT_EQ(t.state(), S::kRefused);
  EXPECT_EQ(t.reason(), R::kNotEnoughReplicas);
  EXPECT_TRUE(t.explained());
  EXPECT_EQ(t.summary(), "refused (NOT_ENOUGH_REPLICAS)");
  ASSERT_EQ(log.lines.size(), 1u);
  EXPECT_EQ(log.lines[0].first, LogLevel::kWarning);
  EXPECT_EQ(log.lines[0].second,
            "kafka: uplink refused (NOT_ENOUGH_REPLICAS): k1:9092/1: telemetry [0]: Broker: Not enough in-sync "
            "replicas; rows stay buffered and are retried (further refusals are counted, not logged)");
  UplinkCause folded = cause(RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, "k1:9092/1: telemetry [1]: Broker: Not enough in-sync replicas");
  folded.count = 800;
  t.refused(folded, t1 + 5s);
  for (int i = 0; i < 11; ++i) t.refused(cause(RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS), t1 + 6s);
  EXPECT_EQ(log.lines.size(), 1u) << "identical refusals are counted, not logged";
  EXPECT_EQ(t.refusals(R::kNotEnoughReplicas), 812u);
  const UplinkTracker::Snapshot s = t.snapshot();
  EXPECT_EQ(s.code, "NOT_ENOUGH_REPLICAS");
  EXPECT_EQ(s.detail, "words") << "the latest words";
  EXPECT_EQ(s.since, t1);

  t.delivered(t1 + 12300ms);
  EXPECT_EQ(t.state(), S::kUp);
  EXPECT_EQ(t.reason(), R::kNone);
  EXPECT_FALSE(t.explained());
  ASSERT_EQ(log.lines.size(), 2u);
  EXPECT_EQ(log.lines[1].first, LogLevel::kNotice);
  EXPECT_EQ(log.lines[1].second, "kafka: delivering again after 12.3 s; 812 refusals (NOT_ENOUGH_REPLICAS)");
  EXPECT_EQ(t.snapshot().since, t1 + 12300ms);
  t.delivered(t1 + 13s);
  EXPECT_EQ(log.lines.size(), 2u);
  EXPECT_EQ(t.refusals(R::kNotEnoughReplicas), 812u) << "a counter";
}

TEST(UplinkTracker, RefusalsWhileOtherRowsAreDeliveredLeaveItUpAndAreLoggedOncePerCode) {
  Log log;
  UplinkTracker t(log.sink());
  const Clock::time_point t0 = Clock::now();
  // An ACL denies the dead-letter topic only: telemetry keeps going.
  for (int i = 0; i < 20; ++i) {
    const auto now = t0 + std::chrono::seconds(i);
    t.delivered(now);
    t.refused(cause(RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED, "telemetry.dlq: Broker: Topic authorization failed"),
              now + 500ms);
  }
  EXPECT_EQ(t.state(), S::kUp);
  EXPECT_EQ(t.refusals(R::kAuthorization), 20u);
  ASSERT_EQ(log.lines.size(), 1u);
  EXPECT_EQ(log.lines[0].second,
            "kafka: TOPIC_AUTHORIZATION_FAILED: telemetry.dlq: Broker: Topic authorization failed; the uplink still "
            "delivers, the rows concerned stay buffered and are retried (further ones are counted, not logged)");
  // Once nothing has gone through for kHold, it is refused.
  t.refused(cause(RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED), t0 + 19s + UplinkTracker::kHold);
  EXPECT_EQ(t.state(), S::kRefused);
  EXPECT_EQ(t.reason(), R::kAuthorization);
  EXPECT_EQ(log.count(LogLevel::kWarning), 2u);

  // The first refusals of what becomes an episode are the episode's to tell.
  Log quiet;
  UplinkTracker e(quiet.sink());
  e.delivered(t0);
  e.refused(cause(RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS), t0 + 1s);
  e.refused(cause(RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND), t0 + 2s);
  EXPECT_EQ(e.state(), S::kUp);
  e.refused(cause(RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, "the words"), t0 + 6s);
  EXPECT_EQ(e.summary(), "refused (NOT_ENOUGH_REPLICAS)");
  e.delivered(t0 + 8s);
  ASSERT_EQ(quiet.lines.size(), 2u);
  EXPECT_NE(quiet.lines[0].second.find("uplink refused (NOT_ENOUGH_REPLICAS): the words"), std::string::npos);
  EXPECT_EQ(quiet.lines[1].second, "kafka: delivering again after 2.0 s; 1 refusal (NOT_ENOUGH_REPLICAS)");
  EXPECT_EQ(e.refusals(R::kNotEnoughReplicas), 3u) << "counted all the same";
}

TEST(UplinkTracker, AFailedHandshakeExplainsTheDisconnectsThatFollowIt) {
  Log log;
  UplinkTracker t(log.sink());
  const Clock::time_point t0 = Clock::now();
  t.refused(cause(RD_KAFKA_RESP_ERR__AUTHENTICATION, "SASL authentication error: Authentication failed"), t0);
  EXPECT_EQ(t.summary(), "refused (AUTHENTICATION)");
  t.refused(cause(RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN, "1/1 brokers are down"), t0 + 10ms);
  t.refused(cause(RD_KAFKA_RESP_ERR__AUTHENTICATION), t0 + 10s);  // the next reconnect
  t.refused(cause(RD_KAFKA_RESP_ERR__TRANSPORT), t0 + 20s);
  EXPECT_EQ(t.state(), S::kRefused);
  EXPECT_EQ(t.reason(), R::kAuthentication);
  EXPECT_EQ(log.lines.size(), 1u);
  EXPECT_EQ(t.refusals(R::kBrokersDown), 1u) << "still counted";
  // No handshake for kStale: the brokers are gone too.
  t.refused(cause(RD_KAFKA_RESP_ERR__TRANSPORT, "Connect to ipv4#127.0.0.1:9093 failed: Connection refused"),
            t0 + 10s + UplinkTracker::kStale);
  EXPECT_EQ(t.summary(), "down (TRANSPORT)");
  EXPECT_EQ(log.lines.size(), 2u);

  // The same for TLS.
  UplinkTracker tls(log.sink());
  tls.refused(cause(RD_KAFKA_RESP_ERR__SSL, "SSL handshake failed: certificate verify failed"), t0);
  tls.refused(cause(RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN), t0 + 1ms);
  EXPECT_EQ(tls.summary(), "refused (SSL)");
  EXPECT_EQ(tls.reason(), R::kTls);
}

TEST(UplinkTracker, DownIsEveryBrokerDownInTheWordsOfTheConnectionThatFailed) {
  Log log;
  UplinkTracker t(log.sink());
  const Clock::time_point t0 = Clock::now();
  t.delivered(t0);
  // One connection failing while others serve is not "down".
  t.refused(cause(RD_KAFKA_RESP_ERR__TRANSPORT, "k3:9092/3: Connect to ipv4#10.0.0.3:9092 failed: Connection refused"),
            t0 + 1s);
  EXPECT_EQ(t.state(), S::kUp);
  EXPECT_TRUE(log.lines.empty()) << "not yet: only if the deliveries go on";
  t.delivered(t0 + 2s);
  EXPECT_TRUE(log.lines.empty());
  t.delivered(t0 + 6s);
  EXPECT_EQ(log.count(LogLevel::kWarning), 1u) << "said once, the uplink still delivering";
  t.refused(cause(RD_KAFKA_RESP_ERR__TRANSPORT), t0 + 20s);
  EXPECT_EQ(t.state(), S::kUp) << "not even without deliveries: only all brokers down is";
  EXPECT_EQ(log.count(LogLevel::kWarning), 1u);
  // All of them down is, even right after a delivery; the words are the
  // failed connection's.
  t.refused(cause(RD_KAFKA_RESP_ERR__TRANSPORT, "k1:9092/1: Connect to ipv4#10.0.0.1:9092 failed: Connection refused"),
            t0 + 21s);
  t.delivered(t0 + 21s);
  t.refused(cause(RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN, "3/3 brokers are down"), t0 + 21s);
  EXPECT_EQ(t.summary(), "down (TRANSPORT)");
  EXPECT_EQ(t.snapshot().detail, "k1:9092/1: Connect to ipv4#10.0.0.1:9092 failed: Connection refused");
  EXPECT_EQ(log.count(LogLevel::kWarning), 2u);
  t.refused(cause(RD_KAFKA_RESP_ERR__TRANSPORT, "again"), t0 + 22s);
  t.refused(cause(RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN), t0 + 100s);
  EXPECT_EQ(t.summary(), "down (TRANSPORT)");
  EXPECT_EQ(t.snapshot().detail, "again");
  EXPECT_EQ(t.snapshot().since, t0 + 21s);
  EXPECT_EQ(log.count(LogLevel::kWarning), 2u) << "one outage, one line";
  // Back, but refusing: a broker answered.
  t.refused(cause(RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS), t0 + 101s);
  EXPECT_EQ(t.summary(), "refused (NOT_ENOUGH_REPLICAS)");
  EXPECT_EQ(t.snapshot().since, t0 + 101s);
  EXPECT_EQ(log.count(LogLevel::kWarning), 3u);
  // One broker's connection failing while another refuses is not "down"...
  t.refused(cause(RD_KAFKA_RESP_ERR__TRANSPORT), t0 + 102s);
  EXPECT_EQ(t.state(), S::kRefused);
  // ...all of them down is.
  t.refused(cause(RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN), t0 + 103s);
  EXPECT_EQ(t.summary(), "down (TRANSPORT)");
  t.delivered(t0 + 110s);
  EXPECT_EQ(log.last(),
            "kafka: delivering again after 89.0 s; 7 refusals (ALL_BROKERS_DOWN 3, TRANSPORT 3, NOT_ENOUGH_REPLICAS 1)");

  // A name that does not resolve; all brokers down without any words.
  UplinkTracker d(log.sink());
  d.refused(cause(RD_KAFKA_RESP_ERR__RESOLVE, "k9:9092/bootstrap: Failed to resolve 'k9:9092'"), t0);
  EXPECT_EQ(d.state(), S::kConnecting);
  d.refused(cause(RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN, "1/1 brokers are down"), t0 + 1ms);
  EXPECT_EQ(d.summary(), "down (RESOLVE)");
  d.delivered(t0 + 2s);
  EXPECT_EQ(log.last(), "kafka: delivering again after 2.0 s; 2 connection errors (ALL_BROKERS_DOWN 1, RESOLVE 1)");
  // One bootstrap name that does not resolve while the others serve: said
  // once deliveries went on for a while.
  Log one;
  UplinkTracker b(one.sink());
  b.refused(cause(RD_KAFKA_RESP_ERR__RESOLVE, "k9:9092/bootstrap: Failed to resolve 'k9:9092'"), t0);
  b.delivered(t0 + 1s);
  EXPECT_TRUE(one.lines.empty());
  b.delivered(t0 + 5s);
  ASSERT_EQ(one.lines.size(), 1u);
  EXPECT_NE(one.last().find("kafka: RESOLVE: k9:9092/bootstrap: Failed to resolve 'k9:9092'; the uplink still delivers"),
            std::string::npos) << one.last();
  d.refused(cause(RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN, "1/1 brokers are down"), t0 + 3s);
  EXPECT_EQ(d.summary(), "down (ALL_BROKERS_DOWN)") << "the resolve failure was before the delivery";
  EXPECT_EQ(d.snapshot().detail, "1/1 brokers are down");

  // A refusal nobody repeats for kStale no longer explains the silence.
  UplinkTracker r(log.sink());
  r.refused(cause(RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS), t0);
  r.refused(cause(RD_KAFKA_RESP_ERR__TRANSPORT), t0 + 40s);
  EXPECT_EQ(r.summary(), "refused (NOT_ENOUGH_REPLICAS)");
  r.unacknowledged(100, 10s, t0 + 10s);
  EXPECT_EQ(r.summary(), "refused (NOT_ENOUGH_REPLICAS)");
  r.unacknowledged(100, 41s, t0 + 41s);
  EXPECT_EQ(r.summary(), "refused (TIMEOUT)");
  EXPECT_FALSE(r.explained());
}

TEST(UplinkTracker, AVagueRefusalGivesWayToASpecificOneNotTheOtherWay) {
  Log log;
  UplinkTracker t(log.sink());
  const Clock::time_point t0 = Clock::now();
  t.refused(cause(RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT), t0);
  EXPECT_EQ(t.summary(), "refused (REQUEST_TIMED_OUT)");
  t.refused(cause(RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS), t0 + 1s);
  EXPECT_EQ(t.summary(), "refused (NOT_ENOUGH_REPLICAS)");
  EXPECT_EQ(t.snapshot().since, t0) << "still refused";
  for (int i = 0; i < 5; ++i) {
    t.refused(cause(RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE), t0 + 2s + std::chrono::seconds(i));
    t.refused(cause(RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS), t0 + 2s + std::chrono::seconds(i));
  }
  EXPECT_EQ(t.summary(), "refused (NOT_ENOUGH_REPLICAS)") << "no flapping between two refusals";
  EXPECT_EQ(log.count(LogLevel::kWarning), 2u);
  EXPECT_EQ(t.refusals(R::kUnavailable), 5u);
}

TEST(UplinkTracker, SilenceIsATimeoutThatNeverHidesANamedReason) {
  Log log;
  UplinkTracker t(log.sink());
  const Clock::time_point t0 = Clock::now();
  t.delivered(t0);
  t.unacknowledged(2000, 30s, t0 + 30s);
  EXPECT_EQ(t.summary(), "refused (TIMEOUT)");
  EXPECT_FALSE(t.explained()) << "nobody named a reason";
  EXPECT_EQ(t.refusals(R::kTimeout), 0u) << "vane's watch is not a refusal";
  EXPECT_NE(log.last().find("nothing acknowledged for 30.0 s with 2000 rows in flight"), std::string::npos) << log.last();
  t.unacknowledged(2000, 40s, t0 + 40s);
  EXPECT_EQ(log.lines.size(), 1u);
  EXPECT_NE(t.snapshot().detail.find("for 40.0 s"), std::string::npos);
  // The client names it: that wins, and silence does not take it back.
  t.refused(cause(RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS), t0 + 41s);
  EXPECT_EQ(t.reason(), R::kNotEnoughReplicas);
  EXPECT_TRUE(t.explained());
  t.unacknowledged(2000, 60s, t0 + 60s);
  EXPECT_EQ(t.reason(), R::kNotEnoughReplicas);

  // Silence, then failing connections, all of them: down.
  UplinkTracker s(log.sink());
  s.unacknowledged(10, 30s, t0);
  s.refused(cause(RD_KAFKA_RESP_ERR__TRANSPORT), t0 + 1s);
  EXPECT_EQ(s.summary(), "refused (TIMEOUT)");
  s.refused(cause(RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN), t0 + 1s);
  EXPECT_EQ(s.summary(), "down (TRANSPORT)");
  // Causes that are nobody's refusal change nothing.
  s.refused(cause(RD_KAFKA_RESP_ERR__PURGE_QUEUE), t0 + 2s);
  EXPECT_EQ(s.summary(), "down (TRANSPORT)");
}

// --- the forwarder against a fake uplink ------------------------------------

// Rows 1..n, claimed and released as SqliteBuffer does; ack deletes. With
// dead_every k, every k-th row is a dead letter.
class RowsBuffer final : public Buffer {
 public:
  explicit RowsBuffer(std::uint64_t n, std::uint64_t dead_every = 0) : dead_every_(dead_every) {
    for (std::uint64_t s = 1; s <= n; ++s) rows_[s] = false;
  }
  Result<AppendResult> append(std::span<Record>) override { return AppendResult{}; }
  Status claim(std::size_t max, std::vector<StoredRecord>& out) override {
    std::lock_guard<std::mutex> lock(mu_);
    out.clear();
    for (auto& [seq, claimed] : rows_) {
      if (out.size() >= max) break;
      if (claimed) continue;
      claimed = true;
      StoredRecord r;
      r.seq = seq;
      r.rec.key = "T-001";
      r.rec.ts_us = 1764000000000000;
      if (dead_every_ && seq % dead_every_ == 0) r.rec.stream = Stream::kDeadLetter;
      out.push_back(std::move(r));
    }
    return Status::ok();
  }
  Status ack(std::span<const std::uint64_t> seqs) override {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto s : seqs) {
      rows_.erase(s);
      acked_.insert(s);
    }
    return Status::ok();
  }
  void release(std::span<const std::uint64_t> seqs) override {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto s : seqs)
      if (auto it = rows_.find(s); it != rows_.end()) it->second = false;
  }
  BufferStats stats() override { return {}; }
  std::optional<BufferStats> try_stats(std::chrono::milliseconds) override { return BufferStats{}; }
  std::uint64_t rows_now() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return rows_.size();
  }
  std::size_t acked() const {
    std::lock_guard<std::mutex> lock(mu_);
    return acked_.size();
  }

 private:
  const std::uint64_t dead_every_;
  mutable std::mutex mu_;
  std::map<std::uint64_t, bool> rows_;  // seq -> claimed
  std::set<std::uint64_t> acked_;
};

// Takes every row; how it answers is up to the test: accept, refuse every
// delivery (NOT_ENOUGH_REPLICAS), or stay silent while the client reports
// a cause of its own (or none).
class FakeUplink final : public Uplink {
 public:
  enum class Mode { kAccept, kRefuse, kSilent };
  std::atomic<Mode> mode{Mode::kRefuse};
  std::atomic<int> client_says{0};  // an rd_kafka_resp_err_t drain_causes reports each round; 0: nothing
  std::atomic<int> refuse_with{RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS};  // the code of a kRefuse delivery report
  // Dead letters: refused by an ACL, as a delivery report (or, with
  // deny_at_send, by send() itself, as librdkafka does once it knows).
  std::atomic<bool> deny_dead_letters{false};
  std::atomic<bool> deny_at_send{false};
  std::atomic<int> dead_letter_sends{0};

  SendResult send(const StoredRecord& r, UplinkCause* why) override {
    if (r.rec.stream == Stream::kDeadLetter) {
      ++dead_letter_sends;
      if (deny_dead_letters && deny_at_send) {
        *why = kafka_cause(RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED, "telemetry.dlq: Broker: Topic authorization failed");
        return SendResult::kError;
      }
      if (deny_dead_letters) denied_.insert(r.seq);
    }
    pending_.push_back(r.seq);
    return SendResult::kOk;
  }
  void poll(int timeout_ms, std::vector<Delivery>& out) override {
    const Mode m = mode.load();
    if (m == Mode::kSilent || pending_.empty()) {
      // Blocks as librdkafka's poll does when nothing is to be served.
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min(timeout_ms, 20)));
      return;
    }
    for (std::uint64_t seq : pending_) {
      Delivery d;
      d.seq = seq;
      d.ok = m == Mode::kAccept && !denied_.contains(seq);
      if (denied_.erase(seq))
        d.cause = kafka_cause(RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED, "telemetry.dlq: Broker: Topic authorization failed");
      else if (!d.ok)
        d.cause = kafka_cause(refuse_with.load(),
                              "telemetry: " + std::string(rd_kafka_err2str(static_cast<rd_kafka_resp_err_t>(refuse_with.load()))));
      out.push_back(std::move(d));
    }
    pending_.clear();
  }
  void flush(int timeout_ms, std::vector<Delivery>& out) override { poll(timeout_ms, out); }
  void purge(std::vector<Delivery>& out) override {
    for (std::uint64_t seq : pending_) {
      Delivery d;
      d.seq = seq;
      d.cause = kafka_cause(RD_KAFKA_RESP_ERR__PURGE_INFLIGHT, "purged");
      out.push_back(std::move(d));
    }
    pending_.clear();
  }
  void drain_causes(std::vector<UplinkCause>& out) override {
    if (const int e = client_says.load()) out.push_back(kafka_cause(e, "client: " + std::string(rd_kafka_err2str(static_cast<rd_kafka_resp_err_t>(e)))));
  }
  bool fatal(std::string*) const override { return false; }

 private:
  std::vector<std::uint64_t> pending_;  // forwarder thread only
  std::set<std::uint64_t> denied_;      // forwarder thread only
};

struct ForwarderFixture {
  ForwarderFixture(std::uint64_t rows, FakeUplink::Mode initial, std::uint64_t dead_every = 0,
                   std::function<void(FakeUplink&)> setup = {})
      : buffer(rows, dead_every) {
    ForwarderOptions o;
    o.no_ack_after = 300ms;
    o.shutdown_timeout_ms = 200;
    o.held_topic_retry = 300ms;
    forwarder = std::make_unique<Forwarder>(
        buffer,
        [this, initial, setup]() -> Result<std::unique_ptr<Uplink>> {
          auto u = std::make_unique<FakeUplink>();
          u->mode = initial;
          if (setup) setup(*u);
          uplink = u.get();
          return std::unique_ptr<Uplink>(std::move(u));
        },
        metrics, o);
  }
  RowsBuffer buffer;
  Metrics metrics;
  FakeUplink* uplink = nullptr;  // owned by the forwarder
  std::unique_ptr<Forwarder> forwarder;
  AgentView view;
  ReportContext report{metrics, buffer, view, "gw-test", "0.0.0", 0, std::chrono::steady_clock::now()};
};

TEST(ForwarderUplinkState, RefusedDeliveriesKeepEveryRowAndNameTheReasonUntilOneGoesThrough) {
  ForwarderFixture f(500, FakeUplink::Mode::kRefuse);
  ASSERT_TRUE(f.forwarder->start());
  ASSERT_TRUE(test::wait_until([&] { return f.metrics.uplink.state() == S::kRefused; }, 10s))
      << f.metrics.uplink.summary();
  EXPECT_EQ(f.metrics.uplink.summary(), "refused (NOT_ENOUGH_REPLICAS)");
  EXPECT_TRUE(f.metrics.uplink.explained());
  ASSERT_TRUE(test::wait_until([&] { return f.metrics.uplink.refusals(R::kNotEnoughReplicas) >= 1000; }, 10s))
      << "refused again on retry: " << f.metrics.uplink.refusals(R::kNotEnoughReplicas);
  EXPECT_EQ(f.buffer.acked(), 0u) << "nothing refused is deleted";
  EXPECT_EQ(f.buffer.rows_now(), 500u);
  EXPECT_EQ(f.metrics.delivered.load(), 0u);
  const std::string scrape = render_metrics(f.report);
  EXPECT_NE(scrape.find("vane_uplink_up 0\n"), std::string::npos) << scrape;
  EXPECT_NE(scrape.find("vane_uplink_state{state=\"refused\"} 1\n"), std::string::npos);
  EXPECT_NE(scrape.find("vane_uplink_state{state=\"up\"} 0\n"), std::string::npos);
  EXPECT_NE(scrape.find("vane_uplink_reason{reason=\"not_enough_replicas\"} 1\n"), std::string::npos);
  EXPECT_NE(scrape.find("vane_uplink_reason{reason=\"none\"} 0\n"), std::string::npos);
  EXPECT_NE(scrape.find("vane_kafka_refusals_total{reason=\"not_enough_replicas\"} "), std::string::npos);
  EXPECT_NE(scrape.find("vane_kafka_refusals_total{reason=\"authentication\"} 0\n"), std::string::npos);
  const auto [code, body] = render_health(f.report);
  EXPECT_EQ(code, 200) << "an outage with a reason is not a stall";
  const auto h = nlohmann::json::parse(body)["uplink"];
  EXPECT_EQ(h["state"], "refused");
  EXPECT_EQ(h["reason"], "not_enough_replicas");
  EXPECT_EQ(h["code"], "NOT_ENOUGH_REPLICAS");
  EXPECT_EQ(h["detail"], "telemetry: Broker: Not enough in-sync replicas");
  EXPECT_GE(h["since_s"].get<double>(), 0);
  EXPECT_GE(h["refusals"].get<double>(), 1000);

  f.uplink->mode = FakeUplink::Mode::kAccept;
  ASSERT_TRUE(test::wait_until([&] { return f.buffer.rows_now() == 0; }, 20s)) << f.buffer.rows_now() << " rows left";
  EXPECT_EQ(f.buffer.acked(), 500u);
  EXPECT_EQ(f.metrics.uplink.state(), S::kUp);
  EXPECT_EQ(f.metrics.uplink.reason(), R::kNone);
  f.forwarder->stop();
  EXPECT_EQ(f.metrics.delivered.load(), 500u);
  EXPECT_EQ(f.metrics.delivery_errors.load(), f.metrics.uplink.refusals(R::kNotEnoughReplicas))
      << "every failed delivery was a refusal";
  const auto after = nlohmann::json::parse(render_health(f.report).second)["uplink"];
  EXPECT_EQ(after["state"], "up");
  EXPECT_TRUE(after["reason"].is_null());
  EXPECT_TRUE(after["detail"].is_null());
}

// A broker error vane has no rule for (here POLICY_VIOLATION in a delivery
// report): transient, so every row stays buffered and is retried with a
// back-off; named on /health, no stall; logged once for the episode (the
// tracker, UplinkTracker tests) and counted by its code on /metrics.
TEST(ForwarderUplinkState, AnErrorCodeVaneHasNeverSeenIsRetriedNamedAndCountedByCode) {
  ForwarderFixture f(300, FakeUplink::Mode::kRefuse, 0,
                     [](FakeUplink& u) { u.refuse_with = RD_KAFKA_RESP_ERR_POLICY_VIOLATION; });
  ASSERT_TRUE(f.forwarder->start());
  ASSERT_TRUE(test::wait_until([&] { return f.metrics.delivery_errors.load() >= 600; }, 20s))
      << "retried: " << f.metrics.delivery_errors.load();
  EXPECT_EQ(f.metrics.uplink.state(), S::kRefused);
  EXPECT_EQ(f.metrics.uplink.reason(), R::kBrokerError);
  EXPECT_EQ(f.buffer.rows_now(), 300u) << "nothing is dropped for an unknown code";
  EXPECT_EQ(f.metrics.rerouted.load(), 0u) << "nor dead-lettered";
  const auto by_code = f.metrics.delivery_errors_by_code();
  ASSERT_EQ(by_code.size(), 1u);
  EXPECT_EQ(by_code.begin()->first, "POLICY_VIOLATION");
  EXPECT_EQ(by_code.begin()->second, f.metrics.delivery_errors.load());
  const std::string scrape = render_metrics(f.report);
  EXPECT_NE(scrape.find("vane_kafka_delivery_errors_total{code=\"POLICY_VIOLATION\"} "), std::string::npos) << scrape;
  const auto [code, body] = render_health(f.report);
  EXPECT_EQ(code, 200) << body;
  EXPECT_EQ(nlohmann::json::parse(body)["uplink"]["code"], "POLICY_VIOLATION");
  f.uplink->mode = FakeUplink::Mode::kAccept;
  ASSERT_TRUE(test::wait_until([&] { return f.buffer.rows_now() == 0; }, 40s)) << f.buffer.rows_now() << " rows left";
  EXPECT_EQ(f.buffer.acked(), 300u);
  f.forwarder->stop();
}

TEST(UplinkTracker, AnUnknownBrokerCodeIsOneEpisodeLoggedWithItsCode) {
  Log log;
  UplinkTracker t(log.sink());
  const Clock::time_point t0 = Clock::now();
  t.delivered(t0);
  UplinkCause c = cause(RD_KAFKA_RESP_ERR_POLICY_VIOLATION, "telemetry: Broker: Policy violation");
  for (int i = 0; i < 50; ++i) t.refused(c, t0 + 10s + std::chrono::milliseconds(100 * i));
  ASSERT_EQ(log.lines.size(), 1u);
  EXPECT_NE(log.lines[0].second.find("POLICY_VIOLATION"), std::string::npos) << log.lines[0].second;
  EXPECT_EQ(t.reason(), R::kBrokerError);
  EXPECT_EQ(t.refusals(R::kBrokerError), 50u);
}

// An ACL denies the dead-letter topic: telemetry keeps flowing, the dead
// letters are held (not resent in a loop), counted and named on /metrics and
// /health; once the topic takes rows again they all go out. Both ways
// librdkafka refuses: in the delivery report, and at send once it knows.
TEST(ForwarderUplinkState, ARefusedTopicIsHeldWhileTheOtherFlowsAndReleasedWhenItTakesRowsAgain) {
  for (const bool at_send : {false, true}) {
    SCOPED_TRACE(at_send ? "refused at send" : "refused in the delivery report");
    ForwarderFixture f(1000, FakeUplink::Mode::kAccept, 10, [&](FakeUplink& u) {
      u.deny_dead_letters = true;
      u.deny_at_send = at_send;
    });
    ASSERT_TRUE(f.forwarder->start());
    ASSERT_TRUE(test::wait_until([&] { return f.buffer.acked() == 900u; }, 10s))
        << f.buffer.acked() << " of 900 telemetry rows delivered";
    ASSERT_TRUE(test::wait_until([&] { return f.metrics.held_rows[1].load() == 100u; }, 10s))
        << f.metrics.held_rows[1].load() << " dead letters held";
    EXPECT_EQ(f.buffer.rows_now(), 100u);
    EXPECT_EQ(f.metrics.held_rows[0].load(), 0u);
    // Held, not resent in a loop: over a second, a few probes only.
    const int sends = f.uplink->dead_letter_sends.load();
    EXPECT_FALSE(test::wait_until([&] { return f.uplink->dead_letter_sends.load() - sends > 4; }, 1s))
        << f.uplink->dead_letter_sends.load() - sends << " sends in a second: one probe per retry interval";
    const std::string scrape = render_metrics(f.report);
    EXPECT_NE(scrape.find("vane_kafka_topic_held{stream=\"dead_letter\"} 1\n"), std::string::npos) << scrape;
    EXPECT_NE(scrape.find("vane_kafka_topic_held{stream=\"telemetry\"} 0\n"), std::string::npos) << scrape;
    EXPECT_NE(scrape.find("vane_buffer_held_rows{stream=\"dead_letter\"} 100\n"), std::string::npos) << scrape;
    EXPECT_GE(f.metrics.uplink.refusals(R::kAuthorization), 1u);
    const auto [code, body] = render_health(f.report);
    EXPECT_EQ(code, 200);
    const auto held = nlohmann::json::parse(body)["uplink"]["held"];
    ASSERT_EQ(held.size(), 1u) << body;
    EXPECT_EQ(held[0]["stream"], "dead_letter");
    EXPECT_EQ(held[0]["reason"], "authorization");
    EXPECT_EQ(held[0]["code"], "TOPIC_AUTHORIZATION_FAILED");
    EXPECT_EQ(held[0]["detail"], "telemetry.dlq: Broker: Topic authorization failed");
    EXPECT_EQ(held[0]["rows"], 100);

    // The operator fixes the ACL: the next probe goes through, and the rest follow.
    f.uplink->deny_dead_letters = false;
    ASSERT_TRUE(test::wait_until([&] { return f.buffer.rows_now() == 0; }, 10s)) << f.buffer.rows_now() << " left";
    EXPECT_EQ(f.buffer.acked(), 1000u);
    EXPECT_EQ(f.metrics.held_rows[1].load(), 0u);
    EXPECT_TRUE(nlohmann::json::parse(render_health(f.report).second)["uplink"]["held"].empty());
    f.forwarder->stop();
  }
}

TEST(ForwarderUplinkState, SilenceBecomesATimeoutButTheClientsReasonWins) {
  // Silent, no reason: refused (timeout) once no_ack_after passed.
  ForwarderFixture g(50, FakeUplink::Mode::kSilent);
  ASSERT_TRUE(g.forwarder->start());
  ASSERT_TRUE(test::wait_until([&] { return g.metrics.uplink.state() == S::kRefused; }, 10s));
  ASSERT_TRUE(test::wait_until([&] { return g.metrics.uplink.reason() == R::kTimeout && !g.metrics.uplink.explained(); }, 10s))
      << g.metrics.uplink.summary();
  const std::string detail = g.metrics.uplink.snapshot().detail;
  EXPECT_NE(detail.find("with 50 rows in flight"), std::string::npos) << detail;
  EXPECT_LT(std::stoi(detail.substr(detail.find("for ") + 4)), 10) << "counted from the send: " << detail;
  // The client now says why: authentication, and it stays so while silent.
  g.uplink->client_says = RD_KAFKA_RESP_ERR__AUTHENTICATION;
  ASSERT_TRUE(test::wait_until([&] { return g.metrics.uplink.reason() == R::kAuthentication; }, 10s));
  g.uplink->client_says = 0;
  // Over two more no_ack_after periods of silence the reason stands.
  EXPECT_FALSE(test::wait_until([&] { return g.metrics.uplink.reason() != R::kAuthentication; }, 700ms));
  EXPECT_EQ(g.metrics.uplink.summary(), "refused (AUTHENTICATION)");
  EXPECT_TRUE(g.metrics.uplink.explained());
  EXPECT_EQ(g.buffer.acked(), 0u);
  g.forwarder->stop();
  EXPECT_EQ(g.buffer.rows_now(), 50u) << "stop leaves unacknowledged rows buffered";
}

// --- the progress verdict -----------------------------------------------------

TEST(ProgressUplinkState, AnOutageWithAReasonIsNoStallSilenceIs) {
  RowsBuffer buffer(10);  // rows wait
  Metrics metrics;
  const auto start = ProgressWatch::Clock::now();
  metrics.last_delivery_ns = steady_ns();
  metrics.last_commit_ns = steady_ns();
  ProgressWatch watch(metrics, buffer, {}, 1000ms);
  const auto later = start + 5s;

  EXPECT_TRUE(watch.check(later).ok) << "connecting";
  metrics.uplink.delivered();
  const auto up = watch.check(later);
  EXPECT_FALSE(up.ok);
  EXPECT_NE(up.why.find("the uplink is up but nothing was delivered"), std::string::npos) << up.why;

  metrics.uplink.refused(kafka_cause(RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, "x"), UplinkTracker::Clock::now() + 10s);
  ASSERT_EQ(metrics.uplink.state(), S::kRefused);
  EXPECT_TRUE(watch.check(later).ok) << "the broker says why: restarting vane would not help";

  Metrics silent;
  silent.last_delivery_ns = steady_ns();
  silent.last_commit_ns = steady_ns();
  ProgressWatch watch2(silent, buffer, {}, 1000ms);
  silent.uplink.unacknowledged(10, 30s);
  const auto v = watch2.check(later);
  EXPECT_FALSE(v.ok) << "nothing comes back and nobody says why";
  EXPECT_NE(v.why.find("names no reason"), std::string::npos) << v.why;

  Metrics down;
  down.last_delivery_ns = steady_ns();
  down.last_commit_ns = steady_ns();
  ProgressWatch watch3(down, buffer, {}, 1000ms);
  down.uplink.refused(kafka_cause(RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN, "1/1 brokers are down"));
  EXPECT_TRUE(watch3.check(later).ok);
}

// kafka.max_drain_rate over a real buffer: while the uplink is refused the
// backlog waits; once it takes rows, the backlog goes at the rate (the
// bucket starts empty), shown on /metrics and /health, and pacing ends when
// it is drained. With a long reconnect jitter, stop() still returns at once.
TEST(ForwarderPacing, TheBacklogDrainsAtTheRateAndStopEndsAnyWait) {
  for (const bool jitter : {false, true}) {
    SCOPED_TRACE(jitter ? "a 60 s jitter" : "no jitter");
    test::TempDir dir;
    auto opened = SqliteBuffer::open({dir.path() + "/b.db"});
    ASSERT_TRUE(opened.is_ok()) << opened.status().message();
    SqliteBuffer& buffer = *opened.value();
    std::vector<Record> rows(4000);
    for (Record& r : rows) r.key = "T-001", r.value = "{}", r.ts_us = 1764000000000000;
    ASSERT_TRUE(buffer.append(rows).is_ok());
    Metrics metrics;
    FakeUplink* uplink = nullptr;
    ForwarderOptions o;
    o.no_ack_after = 300ms;
    o.shutdown_timeout_ms = 200;
    o.max_drain_rate = 2000;  // burst 200
    o.reconnect_jitter = jitter ? 60s : 0s;
    Forwarder fwd(buffer,
                  [&]() -> Result<std::unique_ptr<Uplink>> {
                    auto u = std::make_unique<FakeUplink>();
                    uplink = u.get();
                    return std::unique_ptr<Uplink>(std::move(u));
                  },
                  metrics, o);
    AgentView view;
    ReportContext report{metrics, buffer, view, "gw-test", "0.0.0", 0, std::chrono::steady_clock::now()};
    ASSERT_TRUE(fwd.start());
    ASSERT_TRUE(test::wait_until([&] { return metrics.uplink.state() == S::kRefused; }, 10s));
    EXPECT_EQ(metrics.delivered.load(), 0u);
    const auto up = Clock::now();
    uplink->mode = FakeUplink::Mode::kAccept;
    std::uint64_t paced = 0;  // as first seen: a few may have gone since the mark
    ASSERT_TRUE(test::wait_until([&] { return (paced = metrics.backlog_rows.load()) > 0; }, 10s));
    const std::string scrape = render_metrics(report);
    EXPECT_NE(scrape.find("vane_kafka_max_drain_rate 2000\n"), std::string::npos) << scrape;
    EXPECT_NE(scrape.find("vane_buffer_backlog_rows "), std::string::npos);
    const auto health = nlohmann::json::parse(render_health(report).second)["buffer"]["paced_backlog"];
    ASSERT_TRUE(health.is_object()) << render_health(report).second;
    EXPECT_EQ(health["up_to_seq"], 4000);
    EXPECT_EQ(health["rate"], 2000);
    // At most a burst (200) was out when the uplink came back: the rest is
    // paced (less what went in the first few ms at the rate).
    EXPECT_GE(paced, 4000u - 200u - 100u);
    EXPECT_LE(paced, 4000u);
    if (jitter) {
      // Waiting out the jitter: nothing of the backlog goes, and stop() does not wait for it.
      const auto asked = Clock::now();
      fwd.stop();
      EXPECT_LT(Clock::now() - asked, 2s);
      EXPECT_GE(buffer.rows_now(), paced);
      continue;
    }
    ASSERT_TRUE(test::wait_until([&] { return buffer.rows_now() == 0; }, 20s)) << buffer.rows_now();
    const double s = std::chrono::duration<double>(Clock::now() - up).count();
    const double expected = static_cast<double>(paced) / 2000.0;
    EXPECT_GT(s, expected * 0.9) << "faster than the rate";
    EXPECT_LT(s, expected * 1.3 + 0.5) << "much slower than the rate";
    ASSERT_TRUE(test::wait_until([&] { return metrics.backlog_rows.load() == 0; }, 5s)) << "pacing did not end";
    EXPECT_TRUE(nlohmann::json::parse(render_health(report).second)["buffer"]["paced_backlog"].is_null());
    fwd.stop();
    EXPECT_EQ(metrics.delivered.load(), 4000u);
  }
}

}  // namespace
}  // namespace vane
