// Store-and-forward under faults: the real vane binary, simulator source,
// against the Kafka mock cluster in its own process (three brokers), with
// all brokers taken down for a long outage, vane killed with SIGKILL over and
// over, and the buffer held at a tiny cap. Every test counts what landed by
// vane-seq: seqs are assigned at commit and gap-free from 1, so the set of
// seqs that must land is {1 .. next_seq-1} minus what the overflow policy
// dropped (and counted).
//
// Duplicates: librdkafka 2.0.2's mock cluster checks producer sequence
// numbers for transactional producers only, so an idempotent producer's
// retry across a broker outage can land twice; a kill lands the rows in
// flight again. Both are bounded by kafka.max_in_flight, which the tests set
// and assert on. Figures a reader of the test log wants are printed on stdout
// as lines starting "FIGURE".
#include <signal.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <random>
#include <thread>

#include "fault/seq_counter.h"
#include "integration/agent_test_util.h"

namespace vane::test {
namespace {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

double seconds_since(SteadyClock::time_point t) {
  return std::chrono::duration<double>(SteadyClock::now() - t).count();
}

long next_seq(const std::string& buffer) { return buffer_stat(buffer, "next seq:"); }

// What vane says about itself at a clean stop (agent/agent.cpp): the
// simulator's own tally, the per-source counts and the final summary line.
struct StopSummary {
  bool ok = false;                // every line below was found
  std::uint64_t produced = 0;     // "source sim: P readings, ..." (simulator summary)
  std::uint64_t accepted = 0;     // "source sim: A accepted, R rejected"
  std::uint64_t readings_in = 0;  // "stopped: I readings in, D delivered, J rejected, X dropped, L rows left ..."
  std::uint64_t delivered = 0;
  std::uint64_t dropped = 0;
  std::uint64_t rows_left = 0;
};

StopSummary parse_stop(const std::string& log) {
  StopSummary s;
  bool produced = false, accepted = false, stopped = false;
  for (std::size_t at = log.find("source sim: "); at != std::string::npos; at = log.find("source sim: ", at + 1)) {
    const char* p = log.c_str() + at + std::strlen("source sim: ");
    std::uint64_t n = 0;
    char word[16] = {0};
    if (std::sscanf(p, "%" SCNu64 " %15[a-z]", &n, word) != 2) continue;
    if (std::strcmp(word, "readings") == 0) s.produced = n, produced = true;
    if (std::strcmp(word, "accepted") == 0) s.accepted = n, accepted = true;
  }
  if (const auto at = log.rfind("stopped: "); at != std::string::npos) {
    std::uint64_t rejected = 0;
    stopped = std::sscanf(log.c_str() + at,
                          "stopped: %" SCNu64 " readings in, %" SCNu64 " delivered, %" SCNu64 " rejected, %" SCNu64
                          " dropped, %" SCNu64 " rows left",
                          &s.readings_in, &s.delivered, &rejected, &s.dropped, &s.rows_left) == 5;
  }
  s.ok = produced && accepted && stopped;
  return s;
}

std::string tail(const std::string& text, std::size_t n = 4000) {
  return text.size() <= n ? text : "...\n" + text.substr(text.size() - n);
}

class StoreForward : public ::testing::Test {
 protected:
  void SetUp() override {
    bootstrap_ = kafka_.start(3, {"telemetry:3", "telemetry.dlq:1"}, dir_.file("kafka-mock.stderr"));
    ASSERT_FALSE(bootstrap_.empty()) << kafka_.last_error();
    buffer_ = dir_.file("buffer.db");
    config_ = dir_.file("vane.jsonc");
  }

  std::unique_ptr<ChildProcess> start_vane(const std::string& sim_knobs, const std::string& buffer_extra,
                                          const std::string& kafka_extra, const std::string& log_name = "vane.stderr") {
    write_file(config_, sim_config(buffer_, bootstrap_, sim_knobs, buffer_extra, kafka_extra));
    return std::make_unique<ChildProcess>(std::vector<std::string>{vane_bin(), "run", "-c", config_},
                                          dir_.file(log_name));
  }

  // SIGTERM; vane must exit 0 within the deadline. Returns its stderr.
  static std::string stop_vane(ChildProcess& p) {
    p.send_signal(SIGTERM);
    const auto rc = p.wait_exit(SteadyClock::now() + 30s);
    EXPECT_TRUE(rc.has_value()) << "vane did not exit after SIGTERM\n" << tail(p.captured_stderr());
    if (rc) {
      EXPECT_EQ(*rc, 0) << tail(p.captured_stderr());
    }
    return p.captured_stderr();
  }

  // Takes every broker down or up. MockKafka waits 10 s for the helper's
  // answer; librdkafka's mock thread has been seen to take longer than that
  // on a loaded machine, so a late "OK" is waited for here (and reported)
  // instead of failing the test on the helper's account.
  ::testing::AssertionResult brokers(const std::string& cmd) {
    const auto asked = SteadyClock::now();
    const bool ok = cmd == "down" ? kafka_.down("all") : kafka_.up("all");
    if (ok) return ::testing::AssertionSuccess();
    if (kafka_.last_error() != "no reply to: " + cmd + " all" || !kafka_.process())
      return ::testing::AssertionFailure() << cmd << " all: " << kafka_.last_error();
    const auto reply = kafka_.process()->read_line(SteadyClock::now() + 60s);
    std::printf("NOTE: the mock helper answered \"%s all\" after %.1f s: %s\n", cmd.c_str(), seconds_since(asked),
                reply ? reply->c_str() : "(nothing)");
    if (reply && *reply == "OK " + cmd + " all") return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << cmd << " all: no answer from the mock helper after "
                                         << seconds_since(asked) << " s\n"
                                         << tail(kafka_.process()->captured_stderr());
  }

  // Spends `d` polling the counter: the test deliberately lets vane run (or
  // holds an outage) for that long, and keeps reading what lands meanwhile.
  static void hold(SeqCounter& landed, SteadyClock::duration d) {
    const auto until = SteadyClock::now() + d;
    while (SteadyClock::now() < until)
      landed.poll(std::min<std::chrono::milliseconds>(
          200ms, std::chrono::ceil<std::chrono::milliseconds>(until - SteadyClock::now())));
  }

  TempDir dir_{"vane-fault-"};
  MockKafka kafka_;
  std::string bootstrap_, buffer_, config_;
};

// 1. All brokers down for 60 s under 5000 readings/s, then back: nothing is
// lost, duplicates stay within the in-flight window, and the backlog drains.
TEST_F(StoreForward, SixtySecondOutageOfAllBrokersLosesNothing) {
  constexpr long kRate = 5000;
  constexpr long kWindow = 2000;  // kafka.max_in_flight
  constexpr auto kOutage = 60s;
  // About 2 s before the outage plus the outage itself: the source finishes
  // around when the brokers return, so the drain figure is the backlog's.
  constexpr long kLimit = kRate * 62;
  const auto t0 = SteadyClock::now();
  auto vane = start_vane("\"devices\": 10, \"rate\": " + std::to_string(kRate) + ", \"limit\": " +
                             std::to_string(kLimit),
                         "", ", \"max_in_flight\": " + std::to_string(kWindow));
  SeqCounter landed(bootstrap_, {"telemetry", "telemetry.dlq"});
  ASSERT_TRUE(landed.poll_until([&] { return landed.distinct() >= 2000; }, 30s))
      << landed.distinct() << " landed\n" << tail(vane->captured_stderr());

  ASSERT_TRUE(brokers("down"));
  const auto down_at = SteadyClock::now();
  const long seq_at_down = next_seq(buffer_) - 1;
  const std::size_t landed_at_down = landed.distinct();
  // The fault: every broker refuses connections for kOutage.
  hold(landed, kOutage);
  ASSERT_TRUE(vane->running()) << "vane died during the outage\n" << tail(vane->captured_stderr());
  const long seq_at_up = next_seq(buffer_) - 1;
  const long backlog_at_up = buffer_rows(buffer_);
  const std::size_t landed_during = landed.distinct() - landed_at_down;
  ASSERT_TRUE(brokers("up"));
  const auto up_at = SteadyClock::now();

  // Readings kept being accepted and buffered through the outage.
  EXPECT_GT(seq_at_up - seq_at_down, kRate * 30) << "intake stalled during the outage";
  EXPECT_GT(backlog_at_up, kRate * 30);

  // Drained: every seq committed before the brokers returned has landed ...
  double drain_backlog_s = -1;
  const bool backlog_done = landed.poll_until(
      [&] { return landed.covered() >= static_cast<std::uint64_t>(seq_at_up); }, 120s);
  if (backlog_done) drain_backlog_s = seconds_since(up_at);
  EXPECT_TRUE(backlog_done) << "covered " << landed.covered() << " of " << seq_at_up << "\n"
                            << tail(vane->captured_stderr());
  // ... and, the source having stopped at its limit, every seq at all and the
  // buffer is empty.
  const bool all_done = landed.poll_until(
      [&] {
        return landed.covered() >= static_cast<std::uint64_t>(kLimit) && buffer_rows(buffer_) == 0;
      },
      120s);
  const double drain_all_s = seconds_since(up_at);
  EXPECT_TRUE(all_done) << "covered " << landed.covered() << " of " << kLimit << ", buffer rows "
                        << buffer_rows(buffer_) << "\n" << tail(vane->captured_stderr());

  const std::string log = stop_vane(*vane);
  const StopSummary sum = parse_stop(log);
  ASSERT_TRUE(sum.ok) << tail(log);
  EXPECT_EQ(buffer_rows(buffer_), 0);
  const long accepted = next_seq(buffer_) - 1;
  ASSERT_TRUE(landed.catch_up(SteadyClock::now() + 30s)) << "could not read everything back";

  // Accepted = every seq committed; all of them landed and nothing else did.
  EXPECT_EQ(sum.produced, static_cast<std::uint64_t>(kLimit));
  EXPECT_EQ(sum.dropped, 0u) << tail(log);
  EXPECT_EQ(sum.accepted, static_cast<std::uint64_t>(accepted));
  EXPECT_EQ(accepted, kLimit);
  const std::vector<std::uint64_t> missing = landed.missing(static_cast<std::uint64_t>(accepted));
  EXPECT_TRUE(missing.empty()) << missing.size() << " readings lost, first seq " << missing.front();
  EXPECT_EQ(landed.distinct(), static_cast<std::size_t>(accepted));
  EXPECT_EQ(landed.landed_above(static_cast<std::uint64_t>(accepted)), 0u);
  EXPECT_EQ(landed.no_seq(), 0u);
  // Every duplicate repeats a delivered reading, same key and value.
  EXPECT_EQ(landed.mismatched_copies(), 0u);
  EXPECT_LE(landed.duplicates(), static_cast<std::size_t>(kWindow));

  std::printf(
      "FIGURE outage: all brokers down %.1f s at %ld readings/s: accepted=%ld (%ld during the outage), landed "
      "distinct=%zu, duplicates=%zu (window %ld), backlog at up=%ld rows, drain_s=%.1f (every seq <= %ld landed), "
      "drain_all_s=%.1f, test_s=%.0f\n",
      std::chrono::duration<double>(up_at - down_at).count(), kRate, accepted, seq_at_up - seq_at_down,
      landed.distinct(), landed.duplicates(), kWindow, backlog_at_up, drain_backlog_s, seq_at_up, drain_all_s,
      seconds_since(t0));
  // Read back after the brokers went down: rows that had landed just before.
  std::printf("outage: %zu readings read back after the brokers went down\n", landed_during);
}

// 2. Twenty SIGKILLs at random moments, during intake, during forwarding,
// during an outage and while a backlog drains: nothing committed is lost,
// and only rows in flight at a kill (or at an outage) may land twice.
TEST_F(StoreForward, CrashLoopOfKillNineLosesNothing) {
  constexpr int kIterations = 20;
  constexpr long kWindow = 1000;  // kafka.max_in_flight
  constexpr long kFinal = 3000;
  const std::string kafka_extra = ", \"max_in_flight\": " + std::to_string(kWindow);
  const auto t0 = SteadyClock::now();
  const unsigned seed = std::random_device{}();
  std::printf("crash loop seed %u\n", seed);
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> run_ms(300, 2000);
  std::uniform_real_distribution<double> split(0.2, 0.8);

  SeqCounter landed(bootstrap_, {"telemetry", "telemetry.dlq"});
  enum Scenario { kRunning, kOutageThroughout, kOutageStarts, kBacklogDrains };
  const char* names[] = {"intake+forwarding", "during outage", "outage starts mid-run", "backlog draining"};
  int kills = 0;
  long last_seq = 0;
  for (int i = 0; i < kIterations; ++i) {
    const auto scenario = static_cast<Scenario>(i % 4);
    const auto run = std::chrono::milliseconds(run_ms(rng));
    const auto first = std::chrono::duration_cast<std::chrono::milliseconds>(run * split(rng));
    SCOPED_TRACE("iteration " + std::to_string(i) + " (" + names[scenario] + ", " +
                 std::to_string(run.count()) + " ms)");
    if (scenario == kOutageThroughout || scenario == kBacklogDrains) {
      ASSERT_TRUE(brokers("down"));
    }
    auto vane = start_vane(R"("devices": 6, "rate": 3000)", "", kafka_extra, "vane-" + std::to_string(i) + ".stderr");
    // The fault: let vane run for `run`, with the brokers going down or
    // coming back at `first` in two of the scenarios, then kill it.
    switch (scenario) {
      case kRunning:
      case kOutageThroughout:
        hold(landed, run);
        break;
      case kOutageStarts:
        hold(landed, first);
        ASSERT_TRUE(brokers("down"));
        hold(landed, run - first);
        break;
      case kBacklogDrains:
        hold(landed, first);
        ASSERT_TRUE(brokers("up"));
        hold(landed, run - first);
        break;
    }
    ASSERT_TRUE(vane->send_signal(SIGKILL)) << "vane already gone\n" << tail(vane->captured_stderr());
    const auto rc = vane->wait_exit(SteadyClock::now() + 10s);
    ASSERT_TRUE(rc.has_value());
    ASSERT_EQ(*rc, 128 + SIGKILL) << "vane exited by itself before the kill\n" << tail(vane->captured_stderr());
    ++kills;
    ASSERT_TRUE(brokers("up"));
    // The sequence survives the kill: never reused, never goes back.
    const long seq = next_seq(buffer_) - 1;
    ASSERT_GE(seq, last_seq) << "next seq went back after a kill";
    std::printf("iteration %2d: %-22s ran %4lld ms, committed %ld so far, landed %zu distinct\n", i, names[scenario],
                static_cast<long long>(run.count()), seq, landed.distinct());
    last_seq = seq;
  }

  // A last run whose source stops by itself; it forwards everything left.
  const long committed = next_seq(buffer_) - 1;
  ASSERT_GT(committed, 0);
  const auto final_at = SteadyClock::now();
  auto vane = start_vane("\"devices\": 6, \"rate\": 3000, \"limit\": " + std::to_string(kFinal), "", kafka_extra,
                         "vane-final.stderr");
  const auto total = static_cast<std::uint64_t>(committed + kFinal);
  EXPECT_TRUE(landed.poll_until([&] { return landed.covered() >= total && buffer_rows(buffer_) == 0; }, 120s))
      << "covered " << landed.covered() << " of " << total << ", buffer rows " << buffer_rows(buffer_) << "\n"
      << tail(vane->captured_stderr());
  const double drain_s = seconds_since(final_at);
  const std::string log = stop_vane(*vane);
  const StopSummary sum = parse_stop(log);
  ASSERT_TRUE(sum.ok) << tail(log);
  EXPECT_EQ(sum.dropped, 0u);
  EXPECT_EQ(buffer_rows(buffer_), 0) << "buffer not drained after a clean stop";
  const long accepted = next_seq(buffer_) - 1;
  EXPECT_EQ(accepted, static_cast<long>(total));
  ASSERT_TRUE(landed.catch_up(SteadyClock::now() + 30s)) << "could not read everything back";

  const std::vector<std::uint64_t> missing = landed.missing(static_cast<std::uint64_t>(accepted));
  EXPECT_TRUE(missing.empty()) << missing.size() << " committed readings lost, first seq " << missing.front();
  EXPECT_EQ(landed.distinct(), static_cast<std::size_t>(accepted));
  EXPECT_EQ(landed.landed_above(static_cast<std::uint64_t>(accepted)), 0u);
  EXPECT_EQ(landed.no_seq(), 0u);
  EXPECT_EQ(landed.mismatched_copies(), 0u);
  EXPECT_LE(landed.duplicates(), static_cast<std::size_t>(kIterations * kWindow));
  std::printf(
      "FIGURE crash loop: seed=%u kills=%d accepted=%ld landed distinct=%zu lost=%zu duplicates=%zu (bound %ld = "
      "%d x window %ld), final drain_s=%.1f, test_s=%.0f\n",
      seed, kills, accepted, landed.distinct(), missing.size(), landed.duplicates(), kIterations * kWindow,
      kIterations, kWindow, drain_s, seconds_since(t0));
}

// 3. A tiny buffer cap during an outage. What a consumer misses is exactly
// what vane says it dropped.
class StoreForwardCap : public StoreForward {
 protected:
  static constexpr long kLimit = 24000;  // readings the source produces
  static constexpr long kRate = 8000;
  static constexpr long kWindow = 500;  // kafka.max_in_flight

  struct Outcome {
    StopSummary sum;
    long seq_at_down = 0;  // committed when the brokers went down
    long accepted = 0;     // next seq - 1 after the stop
    std::vector<std::uint64_t> missing;
    std::size_t distinct = 0, duplicates = 0;
    double outage_s = 0, drain_s = 0;
  };

  // Brokers up until some readings landed, then down while the source
  // produces the rest of kLimit into a 1 MiB buffer (the smallest cap the
  // config allows: ~4000 rows), then up, drain, clean stop.
  void run_capped(const std::string& overflow, Outcome& out) {
    const auto start = SteadyClock::now();
    auto vane = start_vane("\"devices\": 4, \"rate\": " + std::to_string(kRate) + ", \"limit\": " +
                               std::to_string(kLimit),
                           ", \"max_bytes\": \"1MiB\", \"overflow\": \"" + overflow + "\"",
                           ", \"max_in_flight\": " + std::to_string(kWindow));
    SeqCounter landed(bootstrap_, {"telemetry", "telemetry.dlq"});
    ASSERT_TRUE(landed.poll_until([&] { return landed.distinct() >= 1000; }, 30s))
        << tail(vane->captured_stderr());
    ASSERT_TRUE(brokers("down"));
    const auto down_at = SteadyClock::now();
    out.seq_at_down = next_seq(buffer_) - 1;
    // The fault: the outage lasts until the source has produced its limit.
    // drop_oldest commits every reading (next seq reaches kLimit + 1);
    // drop_newest refuses readings without a seq, so nothing on disk shows
    // the end: hold the outage for the source's schedule plus a margin (the
    // summary at stop confirms it produced all kLimit).
    const auto schedule = std::chrono::milliseconds(kLimit * 1000 / kRate) + 2s;
    if (overflow == "drop_oldest") {
      EXPECT_TRUE(wait_until([&] { return next_seq(buffer_) - 1 >= kLimit; }, 60s, 100ms))
          << "next seq " << next_seq(buffer_) << "\n" << tail(vane->captured_stderr());
    }
    if (SteadyClock::now() < start + schedule) hold(landed, start + schedule - SteadyClock::now());
    EXPECT_NE(vane->captured_stderr().find("buffer full"), std::string::npos) << tail(vane->captured_stderr());
    ASSERT_TRUE(brokers("up"));
    const auto up_at = SteadyClock::now();
    out.outage_s = std::chrono::duration<double>(up_at - down_at).count();
    EXPECT_TRUE(landed.poll_until([&] { return buffer_rows(buffer_) == 0; }, 60s))
        << "buffer did not drain: " << buffer_rows(buffer_) << " rows\n" << tail(vane->captured_stderr());
    out.drain_s = seconds_since(up_at);

    const std::string log = stop_vane(*vane);
    out.sum = parse_stop(log);
    ASSERT_TRUE(out.sum.ok) << tail(log);
    EXPECT_EQ(out.sum.produced, static_cast<std::uint64_t>(kLimit)) << "the outage ended before the source did";
    EXPECT_EQ(out.sum.rows_left, 0u);
    out.accepted = next_seq(buffer_) - 1;
    ASSERT_TRUE(landed.catch_up(SteadyClock::now() + 30s));
    out.missing = landed.missing(static_cast<std::uint64_t>(out.accepted));
    out.distinct = landed.distinct();
    out.duplicates = landed.duplicates();
    EXPECT_EQ(landed.landed_above(static_cast<std::uint64_t>(out.accepted)), 0u);
    EXPECT_EQ(landed.no_seq(), 0u);
    EXPECT_EQ(landed.mismatched_copies(), 0u);
    EXPECT_LE(out.duplicates, static_cast<std::size_t>(kWindow));
    // What the consumer misses is exactly what vane counted as dropped.
    EXPECT_GT(out.sum.dropped, 0u) << "the cap never bit";
    EXPECT_EQ(static_cast<std::uint64_t>(kLimit) - out.distinct, out.sum.dropped) << tail(log);
  }
};

TEST_F(StoreForwardCap, DropOldestLosesExactlyTheCountedOldestRows) {
  Outcome o;
  ASSERT_NO_FATAL_FAILURE(run_capped("drop_oldest", o));
  // Every reading got a seq; the drops are the gaps, one block of the oldest
  // rows not yet handed to the producer: below it, only what landed before
  // the outage and the rows in flight at it (at most the window); above it,
  // every newer reading.
  EXPECT_EQ(o.accepted, kLimit);
  EXPECT_EQ(o.missing.size(), o.sum.dropped);
  ASSERT_FALSE(o.missing.empty());
  const std::uint64_t first = o.missing.front(), last = o.missing.back();
  EXPECT_EQ(last - first + 1, o.missing.size()) << "dropped seqs are not one block of the oldest";
  EXPECT_LE(first - 1, static_cast<std::uint64_t>(o.seq_at_down + kWindow))
      << "rows older than the dropped ones survived beyond the in-flight window";
  EXPECT_LT(last, static_cast<std::uint64_t>(o.accepted)) << "the newest reading was dropped";
  std::printf(
      "FIGURE cap drop_oldest: produced=%" PRIu64 " dropped=%" PRIu64 " missing seqs=%zu [%" PRIu64 "..%" PRIu64
      "] landed distinct=%zu duplicates=%zu, committed at outage=%ld, kept below the block=%" PRIu64
      " (window %ld), outage_s=%.1f drain_s=%.1f\n",
      o.sum.produced, o.sum.dropped, o.missing.size(), first, last, o.distinct, o.duplicates, o.seq_at_down,
      first - 1, kWindow, o.outage_s, o.drain_s);
}

TEST_F(StoreForwardCap, DropNewestLosesExactlyTheCountedRefusedReadings) {
  Outcome o;
  ASSERT_NO_FATAL_FAILURE(run_capped("drop_newest", o));
  // Refused readings never get a seq: no gaps, and the seqs stop short of
  // the produced count by exactly the drops.
  EXPECT_TRUE(o.missing.empty()) << o.missing.size() << " seqs missing, first " << o.missing.front();
  EXPECT_EQ(o.distinct, static_cast<std::size_t>(o.accepted));
  EXPECT_EQ(static_cast<std::uint64_t>(kLimit - o.accepted), o.sum.dropped);
  std::printf(
      "FIGURE cap drop_newest: produced=%" PRIu64 " dropped=%" PRIu64 " accepted=%ld landed distinct=%zu "
      "missing readings=%zu duplicates=%zu, outage_s=%.1f drain_s=%.1f\n",
      o.sum.produced, o.sum.dropped, o.accepted, o.distinct, static_cast<std::size_t>(kLimit) - o.distinct,
      o.duplicates, o.outage_s, o.drain_s);
}

}  // namespace
}  // namespace vane::test
