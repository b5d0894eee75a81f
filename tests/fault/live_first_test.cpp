// buffer.replay after an outage: a backlog of 1,000,000 readings drains while
// a live source goes on at 500 readings/s. For each policy, how long a fresh
// reading takes from its timestamp to a consumer of Kafka while the backlog
// drains (p50/p99/max; readings taken once Kafka answers again, so the
// client's reconnect after the outage is not in it), and how fast the
// backlog drains. live_first must keep fresh readings fresh; fifo puts them
// behind the whole backlog.
#include <signal.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <thread>

#include "integration/agent_test_util.h"
#include "fault/probe_consumer.h"
#include "support/rdkafka_ptr.h"

namespace vane::test {
namespace {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

// Reads the telemetry topic as fast as it can, keeping for each message of
// the source "live" its delay: arrival here minus its timestamp (the
// reading's time).
class DelayProbe {
 public:
  // A 10 ms fetch wait, so the probe adds little delay of its own to what it measures.
  explicit DelayProbe(const std::string& bootstrap)
      : rk_(make_probe_consumer(bootstrap, "vane-live-first-probe", 3)) {}
  ~DelayProbe() { rd_kafka_destroy_flags(rk_.release(), RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE); }

  // Consumes for `d`. Live messages with a timestamp at or after `since_ms`
  // count.
  void poll(std::chrono::milliseconds d, std::int64_t since_ms) {
    const auto until = SteadyClock::now() + d;
    while (SteadyClock::now() < until) {
      RdKafkaMessagePtr m(rd_kafka_consumer_poll(rk_.get(), 20));
      if (!m || m->err) continue;
      if (messages_++ == 0) first_ms_ = now_ms();
      const void* v = nullptr;
      std::size_t n = 0;
      rd_kafka_headers_t* h = nullptr;
      if (rd_kafka_message_headers(m.get(), &h) != RD_KAFKA_RESP_ERR_NO_ERROR ||
          rd_kafka_header_get_last(h, "vane-source", &v, &n) != RD_KAFKA_RESP_ERR_NO_ERROR || n != 4 ||
          std::memcmp(v, "live", 4) != 0)
        continue;
      const std::int64_t ts = rd_kafka_message_timestamp(m.get(), nullptr);
      if (ts >= since_ms) delays_ms_.emplace_back(ts, now_ms() - ts);
    }
  }
  // Delays of the live readings taken after the first message arrived: the
  // drain, without the client's reconnect after the outage.
  std::vector<std::int64_t> take_delays() {
    std::vector<std::int64_t> d;
    for (const auto& [ts, delay] : delays_ms_)
      if (ts >= first_ms_) d.push_back(delay);
    delays_ms_.clear();
    return d;
  }
  std::size_t messages() const { return messages_; }

 private:
  RdKafkaPtr rk_;
  std::vector<std::pair<std::int64_t, std::int64_t>> delays_ms_;  // (timestamp, delay)
  std::size_t messages_ = 0;
  std::int64_t first_ms_ = 0;  // arrival of the first message
};

struct DrainFigures {
  double drain_s = 0;
  std::size_t live = 0;
  std::int64_t p50 = 0, p99 = 0, max = 0;
};

DrainFigures drain_with(const std::string& replay, long backlog) {
  DrainFigures f;
  TempDir dir("vane-live-");
  MockKafka kafka;
  const std::string bootstrap = kafka.start(1, {"telemetry:3", "telemetry.dlq:1"}, dir.file("kafka-mock.stderr"));
  EXPECT_FALSE(bootstrap.empty()) << kafka.last_error();
  const std::string buffer = dir.file("buffer.db"), config = dir.file("vane.jsonc");
  write_file(config, std::string("{\n") +
                         "  \"gateway\": { \"id\": \"gw-test\" },\n"
                         "  \"buffer\": { \"path\": \"" + buffer + "\", \"replay\": \"" + replay + "\" },\n"
                         "  \"kafka\": { \"brokers\": \"" + bootstrap + "\" },\n"
                         "  \"sources\": [\n"
                         "    { \"name\": \"backlog\", \"type\": \"simulator\", \"rate\": \"max\", \"limit\": " +
                         std::to_string(backlog) + " },\n"
                         "    { \"name\": \"live\", \"type\": \"simulator\", \"devices\": 5, \"rate\": 500 } ]\n"
                         "}\n");
  EXPECT_TRUE(kafka.down());
  ChildProcess vane({vane_bin(), "run", "-c", config}, dir.file("vane.stderr"));
  // The backlog: every reading of the first source committed while Kafka is away.
  EXPECT_TRUE(wait_until([&] { return buffer_rows(buffer) >= backlog; }, 120s)) << vane.captured_stderr();
  DelayProbe probe(bootstrap);
  const std::int64_t up_ms = now_ms();
  const auto up = SteadyClock::now();
  EXPECT_TRUE(kafka.up());
  // Drained when fewer rows are buffered than one second of live readings.
  for (;;) {
    probe.poll(250ms, up_ms);
    if (buffer_rows(buffer) < 500) break;
    if (SteadyClock::now() - up > 180s) {
      ADD_FAILURE() << "backlog did not drain in 180 s\n" << vane.captured_stderr();
      break;
    }
  }
  f.drain_s = std::chrono::duration<double>(SteadyClock::now() - up).count();
  probe.poll(500ms, up_ms);  // what was in flight at the end
  std::vector<std::int64_t> d = probe.take_delays();
  vane.send_signal(SIGTERM);
  EXPECT_TRUE(vane.wait_exit(SteadyClock::now() + 30s).has_value());
  f.live = d.size();
  if (!d.empty()) {
    std::sort(d.begin(), d.end());
    f.p50 = d[d.size() / 2];
    f.p99 = d[std::min(d.size() - 1, d.size() * 99 / 100)];
    f.max = d.back();
  }
  std::printf("FIGURE replay %s: backlog %ld rows drained in %.1f s (%.0f rows/s) with live readings at 500/s; "
              "fresh reading -> consumer delay during the drain: p50 %" PRId64 " ms, p99 %" PRId64 " ms, max %" PRId64
              " ms (%zu live readings)\n",
              replay.c_str(), backlog, f.drain_s, static_cast<double>(backlog) / f.drain_s, f.p50, f.p99, f.max,
              f.live);
  return f;
}

TEST(LiveFirst, FreshReadingsStayFreshWhileAMillionRowBacklogDrains) {
  constexpr long kBacklog = 1000000;
  const DrainFigures fifo = drain_with("fifo", kBacklog);
  const DrainFigures live = drain_with("live_first", kBacklog);
  ASSERT_GT(fifo.live, 100u);
  ASSERT_GT(live.live, 100u);
  // fifo: a fresh reading waits for the backlog ahead of it, i.e. seconds.
  // live_first: it goes out with the next claim.
  EXPECT_LT(live.p99 * 5, fifo.p99) << "live_first p99 " << live.p99 << " ms, fifo p99 " << fifo.p99 << " ms";
  EXPECT_LT(live.p99, 1000) << "live_first p99 " << live.p99 << " ms";
  // Serving live rows first must not slow the drain much.
  EXPECT_LT(live.drain_s, fifo.drain_s * 1.5 + 1);
}

}  // namespace
}  // namespace vane::test
