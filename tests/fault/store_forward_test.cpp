// Store-and-forward under faults: the real vane binary, simulator source,
// against Apache Kafka itself (support/kafka_cluster.h: one KRaft node in a
// child JVM), SIGKILLed for a long outage and restarted on its own data, vane
// killed with SIGKILL over and over (with broker kills in between), and the
// buffer held at a tiny cap. Every test counts what landed by vane-seq, with
// a read_committed consumer: seqs are assigned at commit and gap-free from 1,
// so the set of seqs that must land is {1 .. next_seq-1} minus what the
// overflow policy dropped (and counted).
//
// One node, not three: a whole-cluster kill takes every replica down either
// way, and what these tests prove (the broker's dedupe of an idempotent
// producer's retries across its own restart, the buffer's accounting) does
// not depend on replication; the crash loop restarts the cluster four times,
// and one JVM starts faster than three on a small machine. Replication, ISR
// and leader movement are cluster_faults_test.cpp's.
//
// Duplicates: a broker keeps every idempotent producer's last sequence
// numbers per partition (rebuilt from the log after a SIGKILL), so a batch
// retried across an outage lands once: without a vane crash the tests assert
// 0 duplicates. A vane crash starts a new producer (a new producer id): rows
// that were in flight at the kill land again (at most kafka.max_in_flight,
// which the crash loop sets), and so do rows acknowledged but not yet deleted
// (at most one delete batch); the crash loop asserts that bound. Figures a
// reader of the test log wants are printed on stdout as lines starting
// "FIGURE".
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <stdexcept>

#include <set>

#include <nlohmann/json.hpp>

#include "fault/seq_counter.h"
#include "integration/agent_test_util.h"
#include "support/kafka_cluster.h"

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

class StoreForward : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string why = kafka_unavailable_reason();
    ASSERT_EQ(why, "") << "no real Kafka for this test: " << why;
    try {
      kafka_ = std::make_unique<KafkaCluster>();
      kafka_->create_topic("telemetry", 3, 1);
      kafka_->create_topic("telemetry.dlq", 1, 1);
      kafka_->create_topic("vane.events", 1, 1);
    } catch (const std::exception& e) {
      FAIL() << e.what();
    }
    bootstrap_ = kafka_->bootstrap();
    buffer_ = dir_.file("buffer.db");
    config_ = dir_.file("vane.jsonc");
  }

  // `extra_source`: a second source object spliced into "sources" ("" for none).
  std::unique_ptr<ChildProcess> start_vane(const std::string& sim_knobs, const std::string& buffer_extra,
                                          const std::string& kafka_extra, const std::string& log_name = "vane.stderr",
                                          const std::string& extra_source = "") {
    std::string c = sim_config(buffer_, bootstrap_, sim_knobs, buffer_extra, kafka_extra);
    if (!extra_source.empty()) {
      const std::string end = " } ]\n";
      c.replace(c.rfind(end), end.size(), " },\n    " + extra_source + " ]\n");
    }
    write_file(config_, c);
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

  // The fault: SIGKILL every node (the data dirs stay).
  ::testing::AssertionResult kill_cluster() {
    try {
      kafka_->kill_all();
    } catch (const std::exception& e) {
      return ::testing::AssertionFailure() << e.what();
    }
    return ::testing::AssertionSuccess();
  }

  // Restarts every node on its data and waits until the cluster serves;
  // the time that took is kept for the figures.
  ::testing::AssertionResult restart_cluster() {
    const auto asked = SteadyClock::now();
    try {
      kafka_->start_all();
    } catch (const std::exception& e) {
      return ::testing::AssertionFailure() << e.what();
    }
    restart_s_.push_back(seconds_since(asked));
    return ::testing::AssertionSuccess();
  }

  // "a.b s, ..." of every restart so far.
  std::string restarts() const {
    std::string out;
    char buf[32];
    for (double s : restart_s_) {
      std::snprintf(buf, sizeof buf, "%s%.1f", out.empty() ? "" : " ", s);
      out += buf;
    }
    return out;
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
  std::unique_ptr<KafkaCluster> kafka_;
  std::string bootstrap_, buffer_, config_;
  std::vector<double> restart_s_;
};

// 1. The whole cluster SIGKILLed for 30 s under 5000 readings/s, then
// restarted on its data: nothing is lost, nothing lands twice (the broker
// drops the producer's retried batches), and the backlog drains.
TEST_F(StoreForward, ThirtySecondKillOfTheWholeClusterLosesAndDuplicatesNothing) {
  constexpr long kRate = 5000;
  constexpr long kWindow = 2000;  // kafka.max_in_flight
  constexpr auto kOutage = 30s;
  // About 2 s before the kill plus the outage itself: the source finishes
  // around when the cluster is restarted, so the drain figure is the backlog's.
  constexpr long kLimit = kRate * 32;
  const auto t0 = SteadyClock::now();
  auto vane = start_vane("\"devices\": 10, \"rate\": " + std::to_string(kRate) + ", \"limit\": " +
                             std::to_string(kLimit),
                         "", ", \"max_in_flight\": " + std::to_string(kWindow));
  SeqCounter landed(bootstrap_, {"telemetry", "telemetry.dlq"});
  ASSERT_TRUE(landed.poll_until([&] { return landed.distinct() >= 2000; }, 30s))
      << landed.distinct() << " landed\n" << tail(vane->captured_stderr());

  ASSERT_TRUE(kill_cluster());
  const auto down_at = SteadyClock::now();
  const long seq_at_down = next_seq(buffer_) - 1;
  const std::size_t landed_at_down = landed.distinct();
  // The fault: no broker process exists for kOutage.
  hold(landed, kOutage);
  ASSERT_TRUE(vane->running()) << "vane died during the outage\n" << tail(vane->captured_stderr());
  const double dead_s = seconds_since(down_at);
  const long seq_at_up = next_seq(buffer_) - 1;
  const long backlog_at_up = buffer_rows(buffer_);
  const std::size_t landed_during = landed.distinct() - landed_at_down;
  ASSERT_TRUE(restart_cluster());
  const auto up_at = SteadyClock::now();

  // Readings kept being accepted and buffered through the outage.
  EXPECT_GT(seq_at_up - seq_at_down, kRate * 15) << "intake stalled during the outage";
  EXPECT_GT(backlog_at_up, kRate * 15);

  // Drained: every seq committed before the restart has landed ...
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

  // Accepted = every seq committed; all of them landed, once, and nothing else did.
  EXPECT_EQ(sum.produced, static_cast<std::uint64_t>(kLimit));
  EXPECT_EQ(sum.dropped, 0u) << tail(log);
  EXPECT_EQ(sum.accepted, static_cast<std::uint64_t>(accepted));
  EXPECT_EQ(accepted, kLimit);
  const std::vector<std::uint64_t> missing = landed.missing(static_cast<std::uint64_t>(accepted));
  EXPECT_TRUE(missing.empty()) << missing.size() << " readings lost, first seq " << missing.front();
  EXPECT_EQ(landed.distinct(), static_cast<std::size_t>(accepted));
  EXPECT_EQ(landed.landed_above(static_cast<std::uint64_t>(accepted)), 0u);
  EXPECT_EQ(landed.no_seq(), 0u);
  EXPECT_EQ(landed.mismatched_copies(), 0u);
  EXPECT_EQ(landed.duplicates(), 0u) << "a retried batch landed twice: the broker should have dropped it\n"
                                     << landed.duplicate_summary();

  std::printf(
      "FIGURE outage: whole cluster (1 node) SIGKILLed %.1f s at %ld readings/s, restarted on its data in %.1f s: "
      "accepted=%ld (%ld during the outage), landed distinct=%zu, lost=%zu, duplicates=%zu (max_in_flight %ld), "
      "backlog at restart=%ld rows, drain_s=%.1f (every seq <= %ld landed, from serving again), drain_all_s=%.1f, "
      "test_s=%.0f\n",
      dead_s, kRate, restart_s_.back(), accepted, seq_at_up - seq_at_down, landed.distinct(), missing.size(),
      landed.duplicates(), kWindow, backlog_at_up, drain_backlog_s, seq_at_up, drain_all_s, seconds_since(t0));
  // Read back after the kill: rows the consumer had fetched just before.
  std::printf("outage: %zu readings read back after the cluster was killed\n", landed_during);
}

// 2. Twenty SIGKILLs of vane at random moments, during intake, during
// forwarding, during a broker outage (the broker SIGKILLed too) and while a
// backlog drains: nothing committed is lost, and only rows in flight at a
// vane kill (or acknowledged and not yet deleted) may land twice.
TEST_F(StoreForward, CrashLoopOfKillNineLosesNothing) {
  constexpr int kIterations = 20;
  constexpr long kWindow = 1000;  // kafka.max_in_flight
  // What a kill may land again: the rows in flight (at most kWindow) and the
  // rows acknowledged but not yet deleted (the forwarder deletes in batches
  // of at most 1000 rows, every 50 ms: Forwarder::kAckChunk, kAckDelay).
  constexpr long kPerKill = kWindow + 1000;
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
  // One broker outage spans three vane lives: it starts in the middle of
  // one, lasts through the next, and ends in the middle of a third, which
  // is killed while its backlog drains. Four outages in twenty runs (a
  // restart of the broker takes several seconds, during which the backlog
  // grows).
  enum Scenario { kRunning, kOutageStarts, kOutageThroughout, kBacklogDrains, kRunningAgain };
  constexpr int kScenarios = 5;
  const char* names[] = {"intake+forwarding", "outage starts mid-run", "during outage", "backlog draining",
                         "intake+forwarding"};
  int kills = 0, broker_kills = 0;
  long last_seq = 0;
  for (int i = 0; i < kIterations; ++i) {
    const auto scenario = static_cast<Scenario>(i % kScenarios);
    const auto run = std::chrono::milliseconds(run_ms(rng));
    const auto first = std::chrono::duration_cast<std::chrono::milliseconds>(run * split(rng));
    SCOPED_TRACE("iteration " + std::to_string(i) + " (" + names[scenario] + ", " +
                 std::to_string(run.count()) + " ms)");
    auto vane = start_vane(R"("devices": 6, "rate": 2000)", "", kafka_extra, "vane-" + std::to_string(i) + ".stderr");
    // The fault: let vane run for `run`, with the broker killed or restarted
    // at `first` in two of the scenarios, then kill vane.
    switch (scenario) {
      case kRunning:
      case kOutageThroughout:
      case kRunningAgain:
        hold(landed, run);
        break;
      case kOutageStarts:
        hold(landed, first);
        ASSERT_TRUE(kill_cluster());
        ++broker_kills;
        hold(landed, run - first);
        break;
      case kBacklogDrains: {
        hold(landed, first);
        ASSERT_TRUE(restart_cluster());
        // Draining means rows land: wait for the first (vane's reconnect
        // backoff grew during the outage), then let it drain for the rest.
        const std::size_t before = landed.distinct();
        ASSERT_TRUE(landed.poll_until([&] { return landed.distinct() > before; }, 30s))
            << "nothing landed after the restart\n" << tail(vane->captured_stderr());
        hold(landed, run - first);
        break;
      }
    }
    ASSERT_TRUE(vane->send_signal(SIGKILL)) << "vane already gone\n" << tail(vane->captured_stderr());
    const auto rc = vane->wait_exit(SteadyClock::now() + 10s);
    ASSERT_TRUE(rc.has_value());
    ASSERT_EQ(*rc, 128 + SIGKILL) << "vane exited by itself before the kill\n" << tail(vane->captured_stderr());
    ++kills;
    // The sequence survives the kill: never reused, never goes back.
    const long seq = next_seq(buffer_) - 1;
    ASSERT_GE(seq, last_seq) << "next seq went back after a kill";
    std::printf("iteration %2d: %-22s ran %4lld ms, committed %ld so far, landed %zu distinct\n", i, names[scenario],
                static_cast<long long>(run.count()), seq, landed.distinct());
    last_seq = seq;
  }
  ASSERT_TRUE(kafka_->running(1)) << "the loop must end with the broker up";

  // A last run whose source stops by itself; it forwards everything left.
  const long committed = next_seq(buffer_) - 1;
  ASSERT_GT(committed, 0);
  const auto final_at = SteadyClock::now();
  auto vane = start_vane("\"devices\": 6, \"rate\": 2000, \"limit\": " + std::to_string(kFinal), "", kafka_extra,
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
  EXPECT_LE(landed.duplicates(), static_cast<std::size_t>(kills * kPerKill)) << landed.duplicate_summary();
  std::printf(
      "FIGURE crash loop: seed=%u kills=%d (broker SIGKILLed %d times, restarted in %s s) accepted=%ld landed "
      "distinct=%zu lost=%zu duplicates=%zu (bound %ld = %d kills x (window %ld + ack batch 1000)), final "
      "drain_s=%.1f, test_s=%.0f\n",
      seed, kills, broker_kills, restarts().c_str(), accepted, landed.distinct(), missing.size(), landed.duplicates(),
      kills * kPerKill, kills, kWindow, drain_s, seconds_since(t0));
  std::printf("crash loop: %s\n", landed.duplicate_summary().c_str());
}

// 3. A tiny buffer cap during an outage (the broker SIGKILLed, then
// restarted). What a consumer misses is exactly what vane says it dropped.
class StoreForwardCap : public StoreForward {
 protected:
  static constexpr long kLimit = 24000;  // readings the source "sim" produces
  static constexpr long kRate = 4000;
  static constexpr long kWarm = 500;    // readings of the source "warm", before sim starts
  static constexpr long kWindow = 500;  // kafka.max_in_flight

  struct Outcome {
    StopSummary sum;
    long seq_at_down = 0;  // committed when the broker was killed
    long accepted = 0;     // next seq - 1 after the stop
    std::vector<std::uint64_t> missing;
    std::size_t distinct = 0, duplicates = 0;
    // The declarations on vane.events: seqs of the event rows, and every
    // seq a "dropped" event names as dropped (within its range, not landed).
    std::set<std::uint64_t> event_seqs;
    std::uint64_t declared_count = 0;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> declared_ranges;
    double outage_s = 0, drain_s = 0;  // kill to serving again; serving again to an empty buffer
  };

  // The cap must bite in the outage only: a cold producer (connections,
  // producer id, metadata) takes a second or two to deliver its first rows,
  // and the source would fill 1 MiB before that. So a slow source ("warm",
  // kWarm readings) goes first and the fast one ("sim") waits on its
  // hang_file until those landed. Then sim runs, some of its readings land,
  // the broker is killed while sim produces the rest of kLimit into a 1 MiB
  // buffer (the smallest cap the config allows: ~4000 rows), then it is
  // restarted, the buffer drains, clean stop.
  void run_capped(const std::string& overflow, Outcome& out) {
    const std::string hang = dir_.file("sim.hang");
    write_file(hang, "");
    auto vane = start_vane("\"devices\": 4, \"rate\": " + std::to_string(kRate) + ", \"limit\": " +
                               std::to_string(kLimit) + ", \"hang_file\": \"" + hang + "\"",
                           ", \"max_bytes\": \"1MiB\", \"overflow\": \"" + overflow + "\"",
                           ", \"max_in_flight\": " + std::to_string(kWindow), "vane.stderr",
                           "{ \"name\": \"warm\", \"type\": \"simulator\", \"model\": \"turbine\", \"schema\": "
                           "\"turbine\", \"devices\": 4, \"rate\": 500, \"limit\": " + std::to_string(kWarm) + " }");
    SeqCounter landed(bootstrap_, {"telemetry", "telemetry.dlq", "vane.events"});
    ASSERT_TRUE(landed.poll_until([&] { return landed.distinct() >= static_cast<std::size_t>(kWarm); }, 60s))
        << "the warm-up readings did not land\n" << tail(vane->captured_stderr());
    ASSERT_EQ(::unlink(hang.c_str()), 0);
    const auto start = SteadyClock::now();
    ASSERT_TRUE(landed.poll_until([&] { return landed.distinct() >= static_cast<std::size_t>(kWarm + 1000); }, 30s))
        << tail(vane->captured_stderr());
    ASSERT_EQ(vane->captured_stderr().find("buffer full"), std::string::npos)
        << "the cap bit before the outage: the uplink did not keep up with " << kRate << " readings/s\n"
        << tail(vane->captured_stderr());
    ASSERT_TRUE(kill_cluster());
    const auto down_at = SteadyClock::now();
    out.seq_at_down = next_seq(buffer_) - 1;
    // The fault: the outage lasts until the source has produced its limit.
    // drop_oldest commits every reading (next seq reaches kWarm + kLimit + 1);
    // drop_newest refuses readings without a seq, so nothing on disk shows
    // the end: hold the outage for the source's schedule plus a margin (the
    // summary at stop confirms it produced all kLimit).
    const auto schedule = std::chrono::milliseconds(kLimit * 1000 / kRate) + 2s;
    if (overflow == "drop_oldest") {
      EXPECT_TRUE(wait_until([&] { return next_seq(buffer_) - 1 >= kWarm + kLimit; }, 60s, 100ms))
          << "next seq " << next_seq(buffer_) << "\n" << tail(vane->captured_stderr());
    }
    if (SteadyClock::now() < start + schedule) hold(landed, start + schedule - SteadyClock::now());
    EXPECT_NE(vane->captured_stderr().find("buffer full"), std::string::npos) << tail(vane->captured_stderr());
    ASSERT_TRUE(restart_cluster());
    const auto up_at = SteadyClock::now();
    out.outage_s = std::chrono::duration<double>(up_at - down_at).count();
    EXPECT_TRUE(landed.poll_until([&] { return buffer_rows(buffer_) == 0; }, 60s))
        << "buffer did not drain: " << buffer_rows(buffer_) << " rows\n" << tail(vane->captured_stderr());
    out.drain_s = seconds_since(up_at);

    const std::string log = stop_vane(*vane);
    out.sum = parse_stop(log);
    ASSERT_TRUE(out.sum.ok) << tail(log);
    EXPECT_EQ(out.sum.produced, static_cast<std::uint64_t>(kLimit)) << "the outage ended before the source did";
    EXPECT_EQ(out.sum.readings_in, static_cast<std::uint64_t>(kWarm + kLimit)) << tail(log);
    EXPECT_EQ(out.sum.rows_left, 0u);
    out.accepted = next_seq(buffer_) - 1;
    ASSERT_TRUE(landed.catch_up(SteadyClock::now() + 30s));
    out.missing = landed.missing(static_cast<std::uint64_t>(out.accepted));
    out.distinct = landed.distinct();
    {
      KafkaReader events(bootstrap_);
      for (const auto& m : events.read_until({"vane.events"}, ~std::size_t{0}, deadline_in(3s))) {
        if (!out.event_seqs.insert(seq_of(m)).second) continue;
        const auto ev = nlohmann::json::parse(m.value, nullptr, false);
        ASSERT_TRUE(ev.is_object()) << m.value;
        EXPECT_EQ(ev["gateway"], "gw-test");
        EXPECT_EQ(m.key, "gw-test");
        if (ev["event"] != "dropped") continue;
        EXPECT_EQ(ev["reason"], "buffer_cap") << m.value;
        out.declared_count += ev["count"].get<std::uint64_t>();
        out.declared_ranges.emplace_back(ev["first_seq"].get<std::uint64_t>(), ev["last_seq"].get<std::uint64_t>());
      }
    }
    out.duplicates = landed.duplicates();
    EXPECT_EQ(landed.landed_above(static_cast<std::uint64_t>(out.accepted)), 0u);
    EXPECT_EQ(landed.no_seq(), 0u);
    EXPECT_EQ(landed.mismatched_copies(), 0u);
    // An outage without a vane crash: the broker drops retried batches.
    EXPECT_EQ(out.duplicates, 0u) << landed.duplicate_summary();
    // What the consumer misses is exactly what vane counted as dropped.
    EXPECT_GT(out.sum.dropped, 0u) << "the cap never bit";
    EXPECT_EQ(static_cast<std::uint64_t>(kWarm + kLimit) + out.event_seqs.size() - out.distinct, out.sum.dropped)
        << tail(log);
  }
};

TEST_F(StoreForwardCap, DropOldestLosesExactlyTheCountedOldestRows) {
  Outcome o;
  ASSERT_NO_FATAL_FAILURE(run_capped("drop_oldest", o));
  // Every reading got a seq; the drops are the gaps, one block of the oldest
  // rows not yet handed to the producer: below it, only what landed before
  // the outage and the rows in flight at it (at most the window); above it,
  // every newer reading.
  // Every reading got a seq, and so did each declaration of the drops.
  EXPECT_EQ(o.accepted, static_cast<long>(kWarm + kLimit + o.event_seqs.size()));
  EXPECT_EQ(o.missing.size(), o.sum.dropped);
  ASSERT_FALSE(o.missing.empty());
  // Declared: the events' counts add up to the drops and every missing seq
  // lies in a declared range (what `vane audit` checks).
  EXPECT_FALSE(o.event_seqs.empty());
  EXPECT_EQ(o.declared_count, o.sum.dropped);
  for (const std::uint64_t seq : o.missing) {
    const bool declared = std::any_of(o.declared_ranges.begin(), o.declared_ranges.end(),
                                      [&](const auto& r) { return seq >= r.first && seq <= r.second; });
    ASSERT_TRUE(declared) << "seq " << seq << " is missing and no event declares it";
  }
  const std::uint64_t first = o.missing.front(), last = o.missing.back();
  // One block of the oldest, but for the event rows inside it (never dropped).
  const auto events_inside = static_cast<std::uint64_t>(
      std::count_if(o.event_seqs.begin(), o.event_seqs.end(), [&](std::uint64_t s) { return s > first && s < last; }));
  EXPECT_EQ(last - first + 1, o.missing.size() + events_inside) << "dropped seqs are not one block of the oldest";
  // And the operator's tool says the same: every gap declared, exit 0.
  {
    ChildProcess audit({vane_bin(), "audit", "-c", config_, "--json"}, dir_.file("audit.stderr"));
    std::string out;
    while (auto line = audit.read_line(SteadyClock::now() + 60s)) out += *line + "\n";
    EXPECT_EQ(audit.wait_exit(SteadyClock::now() + 10s), 0) << out << audit.captured_stderr();
    const auto j = nlohmann::json::parse(out, nullptr, false);
    ASSERT_TRUE(j.is_object()) << out;
    EXPECT_EQ(j["gateways"][0]["declared"]["dropped"], o.sum.dropped) << out;
    EXPECT_EQ(j["gateways"][0]["unexplained"], 0) << out;
  }
  EXPECT_LE(first - 1, static_cast<std::uint64_t>(o.seq_at_down + kWindow))
      << "rows older than the dropped ones survived beyond the in-flight window";
  EXPECT_LT(last, static_cast<std::uint64_t>(o.accepted)) << "the newest reading was dropped";
  std::printf(
      "FIGURE cap drop_oldest: produced=%" PRIu64 " dropped=%" PRIu64 " missing seqs=%zu [%" PRIu64 "..%" PRIu64
      "] landed distinct=%zu duplicates=%zu, committed at outage=%ld, kept below the block=%" PRIu64
      " (window %ld), outage_s=%.1f drain_s=%.1f, declared in %zu events\n",
      o.sum.produced + kWarm, o.sum.dropped, o.missing.size(), first, last, o.distinct, o.duplicates, o.seq_at_down,
      first - 1, kWindow, o.outage_s, o.drain_s, o.event_seqs.size());
}

TEST_F(StoreForwardCap, DropNewestLosesExactlyTheCountedRefusedReadings) {
  Outcome o;
  ASSERT_NO_FATAL_FAILURE(run_capped("drop_newest", o));
  // Refused readings never get a seq: no gaps, and the seqs stop short of
  // the produced count by exactly the drops.
  EXPECT_TRUE(o.missing.empty()) << o.missing.size() << " seqs missing, first " << o.missing.front();
  EXPECT_TRUE(o.event_seqs.empty()) << "drop_newest makes no gap to declare";
  EXPECT_EQ(o.distinct, static_cast<std::size_t>(o.accepted));
  EXPECT_EQ(static_cast<std::uint64_t>(kWarm + kLimit - o.accepted), o.sum.dropped);
  std::printf(
      "FIGURE cap drop_newest: produced=%" PRIu64 " dropped=%" PRIu64 " accepted=%ld landed distinct=%zu "
      "missing readings=%zu duplicates=%zu, outage_s=%.1f drain_s=%.1f\n",
      o.sum.produced + kWarm, o.sum.dropped, o.accepted, o.distinct, static_cast<std::size_t>(kWarm + kLimit) - o.distinct,
      o.duplicates, o.outage_s, o.drain_s);
}

}  // namespace
}  // namespace vane::test
