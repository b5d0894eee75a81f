// kafka.max_drain_rate and kafka.reconnect_jitter_ms against Apache Kafka
// (1 node): vane starts while the broker is down and buffers a backlog; the
// broker comes back. The backlog must drain at the configured rate (timed by
// when its rows reach a consumer), with nothing lost or duplicated, while
// fresh readings of a second source go first; and the backlog must wait its
// random jitter before draining while the fresh readings flow.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "fault/probe_consumer.h"
#include "fault/seq_counter.h"
#include "integration/agent_test_util.h"
#include "support/kafka_cluster.h"
#include "support/rdkafka_ptr.h"

namespace vane::test {
namespace {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

// Reads the telemetry topic as fast as it can and notes, per vane-seq, when
// it arrived here (wall clock, ms) and, for the source "live", its reading
// timestamp (the message timestamp vane sets).
class ArrivalProbe {
 public:
  // Back as soon as the broker is: its first arrival marks when Kafka was usable again.
  explicit ArrivalProbe(const std::string& bootstrap)
      : rk_(make_probe_consumer(bootstrap, "vane-paced-probe", 3,
                                {{"reconnect.backoff.ms", "20"}, {"reconnect.backoff.max.ms", "100"}})) {}
  ~ArrivalProbe() { rd_kafka_destroy_flags(rk_.release(), RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE); }

  void poll(std::chrono::milliseconds d) {
    const auto until = SteadyClock::now() + d;
    while (SteadyClock::now() < until) {
      RdKafkaMessagePtr m(rd_kafka_consumer_poll(rk_.get(), 10));
      if (!m || m->err) continue;
      const std::int64_t at = now_ms();
      if (first_ms_ == 0) first_ms_ = at;
      rd_kafka_headers_t* h = nullptr;
      if (rd_kafka_message_headers(m.get(), &h) != RD_KAFKA_RESP_ERR_NO_ERROR) continue;
      const void* v = nullptr;
      std::size_t n = 0;
      if (rd_kafka_header_get_last(h, "vane-seq", &v, &n) != RD_KAFKA_RESP_ERR_NO_ERROR) continue;
      const std::uint64_t seq = std::stoull(std::string(static_cast<const char*>(v), n));
      if (seq >= arrival_ms_.size()) {
        arrival_ms_.resize(seq + 100000, 0);
        reading_ms_.resize(seq + 100000, 0);
      }
      if (arrival_ms_[seq] == 0) arrival_ms_[seq] = at;
      if (rd_kafka_header_get_last(h, "vane-source", &v, &n) == RD_KAFKA_RESP_ERR_NO_ERROR && n == 4 &&
          std::memcmp(v, "live", 4) == 0)
        reading_ms_[seq] = rd_kafka_message_timestamp(m.get(), nullptr);
    }
  }
  std::int64_t first_ms() const { return first_ms_; }
  // When seq arrived; 0: not (yet).
  std::int64_t arrival(std::uint64_t seq) const { return seq < arrival_ms_.size() ? arrival_ms_[seq] : 0; }
  // The latest (earliest) arrival of seqs in [from, to]; 0 if one is missing.
  std::int64_t last_of(std::uint64_t from, std::uint64_t to) const {
    std::int64_t last = 0;
    for (std::uint64_t s = from; s <= to; ++s) {
      if (arrival(s) == 0) return 0;
      last = std::max(last, arrival(s));
    }
    return last;
  }
  std::int64_t first_of(std::uint64_t from, std::uint64_t to) const {
    std::int64_t first = 0;
    for (std::uint64_t s = from; s <= to; ++s)
      if (arrival(s) != 0 && (first == 0 || arrival(s) < first)) first = arrival(s);
    return first;
  }
  // Reading -> consumer delays of live readings above `mark` that arrived in [from_ms, to_ms].
  std::vector<std::int64_t> live_delays(std::uint64_t mark, std::int64_t from_ms, std::int64_t to_ms) const {
    std::vector<std::int64_t> d;
    for (std::uint64_t s = mark + 1; s < arrival_ms_.size(); ++s)
      if (reading_ms_[s] != 0 && arrival_ms_[s] >= from_ms && arrival_ms_[s] <= to_ms)
        d.push_back(arrival_ms_[s] - reading_ms_[s]);
    std::sort(d.begin(), d.end());
    return d;
  }

 private:
  RdKafkaPtr rk_;
  std::vector<std::int64_t> arrival_ms_, reading_ms_;  // index: seq
  std::int64_t first_ms_ = 0;
};

// What vane said when the uplink came back: "a backlog of N rows (seqs up to M) ... starting in J ms".
struct Mark {
  bool ok = false;
  std::uint64_t rows = 0, mark = 0;
  long long jitter_ms = 0;
};

Mark parse_mark(const std::string& log) {
  Mark m;
  const auto at = log.find("paced replay: a backlog of ");
  if (at == std::string::npos) return m;
  unsigned long long rows = 0, mark = 0, rate = 0;
  m.ok = std::sscanf(log.c_str() + at,
                     "paced replay: a backlog of %llu rows (seqs up to %llu) drains at %llu rows/s, starting in %lld ms",
                     &rows, &mark, &rate, &m.jitter_ms) == 4;
  m.rows = rows;
  m.mark = mark;
  return m;
}

class PacedReplay : public ::testing::Test {
 protected:
  void SetUp() override {
    kafka_ = start_kafka();
    ASSERT_TRUE(kafka_);
    bootstrap_ = kafka_->bootstrap();
  }

  // vane with a `backlog` source (as fast as it goes, `backlog` readings)
  // and a `live` one at 100 readings/s, started while Kafka is down; returns
  // once the backlog is buffered.
  std::unique_ptr<ChildProcess> start_in_outage(long backlog, const std::string& kafka_extra) {
    const std::string config = dir_.file("vane.jsonc");
    write_file(config, std::string("{\n") +
                           "  \"gateway\": { \"id\": \"gw-test\" },\n"
                           "  \"buffer\": { \"path\": \"" + buffer_ + "\" },\n"
                           "  \"kafka\": { \"brokers\": \"" + bootstrap_ + "\"" + kafka_extra + " },\n"
                           "  \"http\": { \"listen\": \"\" },\n"
                           "  \"sources\": [\n"
                           "    { \"name\": \"backlog\", \"type\": \"simulator\", \"rate\": \"max\", \"limit\": " +
                           std::to_string(backlog) + " },\n"
                           "    { \"name\": \"live\", \"type\": \"simulator\", \"devices\": 5, \"rate\": 100 } ]\n"
                           "}\n");
    kafka_->kill_all();
    auto vane = std::make_unique<ChildProcess>(std::vector<std::string>{vane_bin(), "run", "-c", config},
                                               dir_.file("vane.stderr"));
    EXPECT_TRUE(wait_until([&] { return buffer_rows(buffer_) >= backlog; }, 180s, 200ms))
        << tail(vane->captured_stderr());
    return vane;
  }

  // Brings Kafka back (in a thread of its own, so that the probe keeps
  // reading meanwhile) and polls until pred() holds or `timeout` passes.
  template <class Pred>
  bool restart_and_poll(ArrivalProbe& probe, Pred pred, std::chrono::seconds timeout) {
    std::atomic<bool> started{false};
    std::string failure;
    std::thread t([&] {
      try {
        kafka_->start_all();
      } catch (const std::exception& e) {
        failure = e.what();
      }
      started = true;
    });
    const auto deadline = SteadyClock::now() + timeout;
    bool held = false;
    while (SteadyClock::now() < deadline && !(held = started && pred())) probe.poll(50ms);
    while (!started) probe.poll(50ms);
    t.join();
    EXPECT_EQ(failure, "");
    return held;
  }

  // Kafka back after start_in_outage(), polled until every backlog seq up
  // to the mark vane logged arrived; the mark as vane told it.
  Mark back_and_drain(ChildProcess& vane, ArrivalProbe& probe) {
    Mark m;
    auto drained = [&] {
      if (!m.ok) m = parse_mark(vane.captured_stderr());
      return m.ok && probe.last_of(1, m.mark) != 0;
    };
    EXPECT_TRUE(restart_and_poll(probe, drained, 120s)) << tail(vane.captured_stderr());
    return m;
  }

  void stop(ChildProcess& vane) {
    vane.send_signal(SIGTERM);
    const auto rc = vane.wait_exit(SteadyClock::now() + 30s);
    EXPECT_TRUE(rc.has_value() && *rc == 0) << tail(vane.captured_stderr());
  }

  TempDir dir_{"vane-paced-"};
  std::unique_ptr<KafkaCluster> kafka_;
  std::string bootstrap_;
  std::string buffer_ = dir_.file("buffer.db");
};

TEST_F(PacedReplay, BacklogDrainsAtTheRateWhileFreshReadingsGoFirst) {
  constexpr long kBacklog = 200000;
  constexpr double kRate = 20000;
  auto vane = start_in_outage(kBacklog, ", \"max_drain_rate\": 20000");
  ASSERT_FALSE(HasFailure());
  ArrivalProbe probe(bootstrap_);
  const Mark m = back_and_drain(*vane, probe);
  ASSERT_FALSE(HasFailure());
  probe.poll(1s);  // fresh readings in flight at the end
  // The drain: from the first row that arrived (the uplink usable again) to
  // the last backlog seq. Expected: the paced rows at the rate.
  const std::int64_t start = probe.first_ms(), end = probe.last_of(1, m.mark);
  const double drain_s = static_cast<double>(end - start) / 1000.0;
  const double expected_s = static_cast<double>(m.rows) / kRate;
  const std::vector<std::int64_t> d = probe.live_delays(m.mark, start, end);
  ASSERT_GT(d.size(), 500u) << "fresh readings during the drain";
  const std::int64_t p50 = d[d.size() / 2], p99 = d[std::min(d.size() - 1, d.size() * 99 / 100)], max = d.back();
  stop(*vane);

  SeqCounter landed(bootstrap_, {"telemetry", "telemetry.dlq"});
  ASSERT_TRUE(landed.catch_up(SteadyClock::now() + 60s));
  const std::vector<std::uint64_t> missing = landed.missing(m.mark);
  std::printf("FIGURE paced replay: backlog %" PRIu64 " rows (seqs up to %" PRIu64 ", %" PRIu64
              " sent at once when Kafka came back) at max_drain_rate 20000: drained in %.2f s (expected %.2f s, "
              "%.0f rows/s); fresh readings (100/s) reading -> consumer during the drain: p50 %" PRId64
              " ms, p99 %" PRId64 " ms, max %" PRId64 " ms (%zu readings); lost %zu, duplicates %zu\n",
              m.rows, m.mark, m.mark - m.rows, drain_s, expected_s, static_cast<double>(m.rows) / drain_s, p50, p99,
              max, d.size(), missing.size(), landed.duplicates());
  EXPECT_GE(m.mark, static_cast<std::uint64_t>(kBacklog));
  EXPECT_NEAR(drain_s, expected_s, expected_s * 0.10) << "the backlog's average rate is off by more than 10 %";
  EXPECT_NEAR(drain_s, 10.0, 1.0);
  EXPECT_LT(p99, 100) << "fresh readings wait behind the backlog";
  EXPECT_TRUE(missing.empty()) << missing.size() << " backlog seqs lost, first " << missing.front();
  EXPECT_EQ(landed.duplicates(), 0u) << landed.duplicate_summary();
}

TEST_F(PacedReplay, BacklogWaitsItsJitterWhileFreshReadingsFlow) {
  constexpr long kBacklog = 20000;
  constexpr long long kJitterMs = 3000;
  auto vane = start_in_outage(kBacklog, ", \"max_drain_rate\": 20000, \"reconnect_jitter_ms\": 3000");
  ASSERT_FALSE(HasFailure());
  ArrivalProbe probe(bootstrap_);
  const Mark m = back_and_drain(*vane, probe);
  ASSERT_FALSE(HasFailure());
  probe.poll(500ms);
  stop(*vane);
  // The paced backlog is the last m.rows seqs up to the mark (the ones
  // before were in flight when Kafka came back and went at once).
  const std::int64_t back = probe.first_ms();
  const std::int64_t backlog_start = probe.first_of(m.mark - m.rows + 1, m.mark);
  const long long waited_ms = backlog_start - back;
  const std::vector<std::int64_t> fresh = probe.live_delays(m.mark, back, backlog_start);
  std::printf("FIGURE reconnect jitter: drawn %lld ms of [0, %lld]; the backlog (%" PRIu64
              " rows) started %lld ms after Kafka was back; %zu fresh readings arrived meanwhile\n",
              m.jitter_ms, kJitterMs, m.rows, waited_ms, fresh.size());
  EXPECT_GE(m.jitter_ms, 0);
  EXPECT_LE(m.jitter_ms, kJitterMs);
  // The mark is taken at the first acknowledgement, which the consumer sees
  // a little later (its reconnect): 500 ms below, 300 ms above.
  EXPECT_GE(waited_ms, m.jitter_ms - 500);
  EXPECT_LE(waited_ms, m.jitter_ms + 300);
  EXPECT_LE(waited_ms, kJitterMs + 300);
  // Fresh readings flowed while the backlog waited: ~100/s.
  if (m.jitter_ms >= 1000) {
    EXPECT_GE(fresh.size(), static_cast<std::size_t>((m.jitter_ms - 500) * 100 / 1000 / 2));
  }
}

}  // namespace
}  // namespace vane::test
