// kafka.exactly_once against Apache Kafka's own transactions (one KRaft
// node; support/kafka_cluster.h): the real vane binary killed (-9) at random
// moments, some while the broker is down or recovering, and restarted, twenty
// times; and a second vane with the same gateway id, which must fence the
// first. What counts is what a read_committed consumer sees.
#include <librdkafka/rdkafka.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <map>
#include <random>
#include <regex>
#include <set>
#include <sstream>

#include "fault/seq_counter.h"
#include "integration/agent_test_util.h"
#include "support/rdkafka_ptr.h"

namespace vane::test {
namespace {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

constexpr int kTelemetryPartitions = 3;
constexpr const char* kEndMarkerKey = "vane-test-end";

// vane's topics for exactly_once: the checkpoint topic is compacted, one
// partition (the transaction state topic is the broker's: RF 1, min ISR 1 on
// one node).
std::vector<TopicSpec> eos_topics() {
  return {{"telemetry", kTelemetryPartitions, {}},
          {"telemetry.dlq", 1, {}},
          {"vane.checkpoints", 1, {{"cleanup.policy", "compact"}}}};
}

const std::string kEosKafka = R"(, "exactly_once": true, "max_in_flight": 500)";

std::string header(const ConsumedMessage& m, const std::string& name) {
  auto it = m.headers.find(name);
  return it == m.headers.end() ? std::string() : it->second;
}

// A sim_config whose simulator source is called `source` instead of "sim".
std::string eos_config(const std::string& buffer, const std::string& bootstrap, const std::string& knobs,
                       const std::string& source = "sim") {
  std::string c = sim_config(buffer, bootstrap, knobs, "", kEosKafka);
  const std::string name = "\"name\": \"sim\"";
  c.replace(c.find(name), name.size(), "\"name\": \"" + source + "\"");
  return c;
}

// Appends one message without a vane-seq header to every partition of
// `topic` and waits until each is acknowledged. A reader that has seen all of
// them has seen everything that landed before: a high watermark cannot tell
// that, because a transactional partition ends in a control record (the
// commit or abort marker), which no consumer is handed. "" or the error.
std::string append_end_markers(const std::string& bootstrap, const std::string& topic, int partitions) {
  RdKafkaConfPtr conf(rd_kafka_conf_new());
  char err[512];
  for (const auto& [k, v] : std::map<std::string, std::string>{
           {"bootstrap.servers", bootstrap}, {"acks", "all"}, {"message.timeout.ms", "30000"}, {"log_level", "2"}})
    if (rd_kafka_conf_set(conf.get(), k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) return err;
  struct Acks {
    int ok = 0;
    std::string error;
  } acks;
  rd_kafka_conf_set_opaque(conf.get(), &acks);
  rd_kafka_conf_set_dr_msg_cb(conf.get(), [](rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    auto* a = static_cast<Acks*>(opaque);
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) ++a->ok;
    else a->error = rd_kafka_err2str(m->err);
  });
  RdKafkaPtr rk(rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), err, sizeof err));
  if (!rk) return err;
  conf.release();
  for (int p = 0; p < partitions; ++p) {
    const rd_kafka_resp_err_t e = rd_kafka_producev(
        rk.get(), RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(p), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY(kEndMarkerKey, std::strlen(kEndMarkerKey)), RD_KAFKA_V_VALUE(const_cast<char*>("end"), 3),
        RD_KAFKA_V_END);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) return rd_kafka_err2str(e);
  }
  rd_kafka_flush(rk.get(), 35000);
  if (acks.ok != partitions) return "end markers: " + std::to_string(acks.ok) + " of " + std::to_string(partitions) +
                                    " acknowledged " + acks.error;
  return "";
}

// The "seq" of a checkpoint record's JSON value; 0 if none.
std::uint64_t seq_of_checkpoint(const std::string& value) {
  const auto at = value.find("\"seq\":");
  return at == std::string::npos ? 0 : std::strtoull(value.c_str() + at + 6, nullptr, 10);
}

unsigned test_seed() {
  if (const char* s = std::getenv("VANE_TEST_SEED")) return static_cast<unsigned>(std::strtoul(s, nullptr, 10));
  return std::random_device{}();
}

TEST(ExactlyOnce, TwentyKillNinesLeaveEveryReadingOnceForReadCommittedConsumers) {
  TempDir dir("vane-eos-");
  const auto test_start = SteadyClock::now();
  auto kafka = start_kafka(eos_topics());
  ASSERT_TRUE(kafka);
  const std::string bootstrap = kafka->bootstrap();
  const std::string buffer = dir.file("buffer.db"), config = dir.file("vane.jsonc");
  SeqCounter counter(bootstrap, {"telemetry", "telemetry.dlq"});
  // The run's length, chosen at random, is the fault: spend it reading what
  // lands.
  auto hold = [&](std::chrono::milliseconds d) { counter.poll_until([] { return false; }, d); };

  const unsigned seed = test_seed();
  std::printf("seed %u (VANE_TEST_SEED=%u repeats the kill moments)\n", seed, seed);
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> run_ms(300, 2000);
  // Outages: in these runs the broker is SIGKILLed halfway, and restarted on
  // a thread of its own right after vane's kill (a restart takes seconds),
  // so the next runs start into the outage and through the broker's
  // recovery; at most kRunsPerOutage runs, then the loop waits for it.
  const std::set<int> outage_runs = {3, 9, 15};
  constexpr int kRunsPerOutage = 3;
  std::atomic<bool> broker_up{true};  // set by the restart: declared before it, so it outlives it
  std::future<std::string> restart;   // the restart's error, "" when it serves again
  auto await_broker = [&]() -> std::string {
    if (!restart.valid()) return "";
    return restart.get();
  };
  int kills = 0, during_outage = 0, runs_in_this_outage = 0;
  const auto loop_start = SteadyClock::now();
  const double kafka_s = std::chrono::duration<double>(loop_start - test_start).count();
  write_file(config, eos_config(buffer, bootstrap, R"("devices": 5, "rate": 1500)"));
  for (int i = 0; i < 20; ++i) {
    const bool kill_broker = outage_runs.contains(i);
    if (kill_broker || (!broker_up && runs_in_this_outage >= kRunsPerOutage)) {
      const std::string error = await_broker();
      ASSERT_EQ(error, "") << "broker restart failed";
    }
    ChildProcess vane({vane_bin(), "run", "-c", config}, dir.file("vane-" + std::to_string(i) + ".stderr"));
    ASSERT_TRUE(wait_until([&] { return vane.captured_stderr().find(" running: ") != std::string::npos; }, 10s))
        << vane.captured_stderr();
    const auto ms = std::chrono::milliseconds(run_ms(rng));
    if (kill_broker) {
      hold(ms / 2);
      kafka->kill(1);
      broker_up = false;
      runs_in_this_outage = 0;
      hold(ms / 2);
    } else {
      hold(ms);
    }
    if (!broker_up) {
      ++during_outage;
      ++runs_in_this_outage;
    }
    vane.send_signal(SIGKILL);
    ASSERT_TRUE(vane.wait_exit(SteadyClock::now() + 10s).has_value());
    ++kills;
    if (kill_broker) {
      // Only this thread drives the cluster while it restarts; the loop
      // touches it again only after get().
      restart = std::async(std::launch::async, [&kafka, &broker_up]() -> std::string {
        try {
          kafka->start(1);
        } catch (const std::exception& e) {
          return e.what();
        }
        broker_up = true;
        return "";
      });
    }
  }
  {
    const std::string error = await_broker();
    ASSERT_EQ(error, "") << "broker restart failed";
  }
  const auto loop_end = SteadyClock::now();
  const double loop_s = std::chrono::duration<double>(loop_end - loop_start).count();

  // A last run drains the buffer and stops cleanly.
  write_file(config, eos_config(buffer, bootstrap, R"("devices": 5, "rate": 1500, "limit": 10)"));
  ChildProcess last({vane_bin(), "run", "-c", config}, dir.file("vane-last.stderr"));
  ASSERT_TRUE(wait_until([&] { return buffer_rows(buffer) == 0; }, 90s)) << last.captured_stderr();
  last.send_signal(SIGTERM);
  const auto rc = last.wait_exit(SteadyClock::now() + 30s);
  ASSERT_TRUE(rc.has_value());
  EXPECT_EQ(*rc, 0) << last.captured_stderr();
  const long accepted = buffer_stat(buffer, "next seq:") - 1;
  ASSERT_GT(accepted, 10000);
  const double drain_s = std::chrono::duration<double>(SteadyClock::now() - loop_end).count();

  // Read to the end: the markers come after everything vane committed.
  ASSERT_EQ(append_end_markers(bootstrap, "telemetry", kTelemetryPartitions), "");
  ASSERT_TRUE(counter.poll_until([&] { return counter.no_seq() >= static_cast<std::size_t>(kTelemetryPartitions); },
                                 60s))
      << counter.distinct() << " of " << accepted << " seqs read";

  // The committed checkpoints: each transaction's record, in commit order.
  KafkaReader checkpoints(bootstrap);
  const auto cps = checkpoints.read_until(
      {"vane.checkpoints"},
      [&](const std::vector<ConsumedMessage>& m) {
        return !m.empty() && seq_of_checkpoint(m.back().value) >= static_cast<std::uint64_t>(accepted);
      },
      deadline_in(30s));
  std::size_t not_increasing = 0;
  for (std::size_t i = 1; i < cps.size(); ++i)
    not_increasing += seq_of_checkpoint(cps[i].value) <= seq_of_checkpoint(cps[i - 1].value);

  const std::vector<std::uint64_t> lost = counter.missing(static_cast<std::uint64_t>(accepted));
  std::printf(
      "FIGURE exactly-once crash loop: seed=%u kills=%d (%d while the broker was down or restarting) in %.1f s "
      "(Kafka up in %.1f s, last run drained in %.1f s); accepted=%ld committed transactions=%zu; read_committed: "
      "distinct=%zu lost=%zu duplicates=%zu\n",
      seed, kills, during_outage, loop_s, kafka_s, drain_s, accepted, cps.size(), counter.distinct(), lost.size(),
      counter.duplicates());
  EXPECT_GE(during_outage, static_cast<int>(outage_runs.size()));
  EXPECT_TRUE(lost.empty()) << lost.size() << " lost, first seq " << lost.front();
  EXPECT_EQ(counter.duplicates(), 0u) << counter.duplicate_summary();
  EXPECT_EQ(counter.mismatched_copies(), 0u);
  EXPECT_EQ(counter.distinct(), static_cast<std::size_t>(accepted));
  EXPECT_EQ(counter.landed_above(static_cast<std::uint64_t>(accepted)), 0u);
  EXPECT_EQ(counter.no_seq(), static_cast<std::size_t>(kTelemetryPartitions)) << "only the end markers lack vane-seq";
  ASSERT_FALSE(cps.empty());
  EXPECT_EQ(seq_of_checkpoint(cps.back().value), static_cast<std::uint64_t>(accepted));
  EXPECT_EQ(not_increasing, 0u) << "a committed transaction re-committed seqs of an earlier one";
}

// What a vane logged as the checkpoint it started from (the last one, if it
// opened transactions more than once); -1 if none.
long long logged_checkpoint(const std::string& log) {
  static const std::regex re(R"(last committed checkpoint is seq ([0-9]+))");
  long long seq = -1;
  for (auto it = std::sregex_iterator(log.begin(), log.end(), re); it != std::sregex_iterator(); ++it)
    seq = std::stoll((*it)[1]);
  return seq;
}

// Log lines that say, at error level (sd-daemon "<3>"), that this vane was
// fenced and stopped forwarding.
std::vector<std::string> fenced_lines(const std::string& log) {
  std::vector<std::string> out;
  std::istringstream in(log);
  for (std::string line; std::getline(in, line);) {
    std::string lower = line;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (lower.rfind("<3>", 0) == 0 && lower.find("fenced") != std::string::npos &&
        lower.find("forward") != std::string::npos)
      out.push_back(line);
  }
  return out;
}

bool mentions_fenced(const std::string& log) {
  std::string lower = log;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return lower.find("fenced") != std::string::npos;
}

// Per vane-seq, how many copies of `source`'s readings a read_committed
// consumer got.
std::map<std::uint64_t, int> copies_from(const std::vector<ConsumedMessage>& msgs, const std::string& source) {
  std::map<std::uint64_t, int> out;
  for (const auto& m : msgs)
    if (header(m, "vane-source") == source) ++out[seq_of(m)];
  return out;
}

std::size_t duplicates_in(const std::map<std::uint64_t, int>& copies) {
  std::size_t n = 0;
  for (const auto& [seq, c] : copies) n += static_cast<std::size_t>(c - 1);
  return n;
}

// Two vanes with one gateway id share one transactional id: the newer one
// fences the older, which must see that, say so, and stop forwarding, never
// take the id back (that would fence the newer one in turn) and never delete
// a row it did not commit. A stands for the old gateway, B for its
// replacement (or a clone) with a fresh buffer; their sources are named
// apart so that vane-source tells whose readings landed.
TEST(ExactlyOnce, ASecondVaneWithTheSameGatewayIdFencesTheFirst) {
  TempDir dir("vane-fence-");
  auto kafka = start_kafka(eos_topics());
  ASSERT_TRUE(kafka);
  const std::string bootstrap = kafka->bootstrap();
  const std::string buffer_a = dir.file("a.db"), buffer_b = dir.file("b.db");
  write_file(dir.file("a.jsonc"), eos_config(buffer_a, bootstrap, R"("devices": 5, "rate": 1000)", "sim-a"));
  ChildProcess a({vane_bin(), "run", "-c", dir.file("a.jsonc")}, dir.file("a.stderr"));
  KafkaReader reader(bootstrap);
  auto landed_from = [&](const std::string& source, std::size_t n) {
    return [source, n](const std::vector<ConsumedMessage>& msgs) { return copies_from(msgs, source).size() >= n; };
  };
  ASSERT_GE(copies_from(reader.read_until({"telemetry"}, landed_from("sim-a", 1500), deadline_in(60s)), "sim-a").size(),
            1500u)
      << a.captured_stderr();

  // B: same gateway id, its own buffer; its first readings carry seqs that A
  // already committed, which B finds in the checkpoint and does not send.
  constexpr long kB = 10000;
  write_file(dir.file("b.jsonc"),
             eos_config(buffer_b, bootstrap, R"("devices": 5, "rate": 2500, "limit": )" + std::to_string(kB), "sim-b"));
  ChildProcess b({vane_bin(), "run", "-c", dir.file("b.jsonc")}, dir.file("b.stderr"));

  // A hears of the fence at its next transactional call or produce.
  EXPECT_TRUE(wait_until([&] { return !fenced_lines(a.captured_stderr()).empty(); }, 30s))
      << "A never said, at error level, that it was fenced and stopped forwarding:\n"
      << a.captured_stderr();
  const auto fenced_at = SteadyClock::now();

  // B delivers everything it has above A's last checkpoint, while A runs on.
  const bool b_done = wait_until(
      [&] { return buffer_stat(buffer_b, "next seq:") - 1 == kB && buffer_rows(buffer_b) == 0; }, 60s, 200ms);
  EXPECT_TRUE(b_done) << "B did not deliver its readings; B:\n" << b.captured_stderr();
  // Some more time with A alive and B idle, so that an A that still
  // forwards has every chance to show it (with B's buffer empty, B has
  // nothing to commit that would fence A back).
  const auto b_done_at = SteadyClock::now();
  reader.read_until({"telemetry"}, ~std::size_t{0}, deadline_in(3s));
  const bool a_running = a.running();

  b.send_signal(SIGTERM);
  const auto rc_b = b.wait_exit(deadline_in(30s));
  EXPECT_TRUE(rc_b.has_value() && *rc_b == 0) << b.captured_stderr();
  a.send_signal(SIGTERM);
  const auto rc_a = a.wait_exit(deadline_in(30s));
  EXPECT_TRUE(rc_a.has_value()) << "A did not stop after SIGTERM";

  ASSERT_EQ(append_end_markers(bootstrap, "telemetry", kTelemetryPartitions), "");
  const auto msgs = reader.read_until(
      {"telemetry"},
      [](const std::vector<ConsumedMessage>& m) {
        return std::count_if(m.begin(), m.end(), [](const ConsumedMessage& x) { return x.key == kEndMarkerKey; }) >=
               kTelemetryPartitions;
      },
      deadline_in(60s));

  const std::string log_a = a.captured_stderr(), log_b = b.captured_stderr();
  const auto from_a = copies_from(msgs, "sim-a"), from_b = copies_from(msgs, "sim-b");
  const long accepted_a = buffer_stat(buffer_a, "next seq:") - 1, rows_a = buffer_rows(buffer_a);
  const long long checkpoint_b = logged_checkpoint(log_b);
  const std::uint64_t max_a = from_a.empty() ? 0 : from_a.rbegin()->first;
  const std::uint64_t min_b = from_b.empty() ? 0 : from_b.begin()->first;
  const std::uint64_t max_b = from_b.empty() ? 0 : from_b.rbegin()->first;
  std::printf(
      "FIGURE fencing: A committed %zu distinct (max seq %" PRIu64 ", %zu duplicates), accepted %ld, %ld rows kept; "
      "B started from checkpoint %lld, committed %zu distinct (seqs %" PRIu64 "..%" PRIu64 ", %zu duplicates); "
      "A %s when stopped (exit %d); %.1f s from A's fence to B done; B logged 'fenced': %s\n",
      from_a.size(), max_a, duplicates_in(from_a), accepted_a, rows_a, checkpoint_b, from_b.size(), min_b, max_b,
      duplicates_in(from_b), a_running ? "running" : "gone", rc_a ? *rc_a : -1,
      std::chrono::duration<double>(b_done_at - fenced_at).count(), mentions_fenced(log_b) ? "yes" : "no");
  for (const std::string& line : fenced_lines(log_a)) std::printf("A: %s\n", line.c_str());

  // A: what it committed before the fence is there, once; nothing after.
  EXPECT_EQ(duplicates_in(from_a), 0u);
  EXPECT_EQ(from_a.size(), max_a) << "A's committed readings have gaps";
  EXPECT_EQ(static_cast<long long>(max_a), checkpoint_b)
      << "A committed readings after B took over the transactional id";
  // A's buffer keeps every row it did not commit: deleting a row it did not
  // commit (e.g. one at or below B's checkpoint) would lose it.
  EXPECT_EQ(rows_a, accepted_a - static_cast<long>(max_a)) << "A deleted rows it did not commit";
  // B: never fenced back; everything above its starting checkpoint, once.
  EXPECT_FALSE(mentions_fenced(log_b)) << "B was fenced in turn (A took the transactional id back):\n" << log_b;
  EXPECT_EQ(duplicates_in(from_b), 0u);
  EXPECT_GE(checkpoint_b, 1500);
  EXPECT_LT(checkpoint_b, kB);
  EXPECT_EQ(min_b, static_cast<std::uint64_t>(checkpoint_b + 1));
  EXPECT_EQ(max_b, static_cast<std::uint64_t>(kB));
  EXPECT_EQ(static_cast<long long>(from_b.size()), kB - checkpoint_b);
}

// A topic that takes no reading (max.message.bytes 300) under
// exactly_once: each refused record goes again in a transaction of its
// own, then as a dead letter; the transactions with the others commit.
// read_committed sees every reading once, on the dead-letter topic with the
// broker's reason, and the buffer empties: no transaction aborted forever.
TEST(ExactlyOnce, RecordsTheBrokersRefuseAreDeadLetteredNotAbortedForever) {
  TempDir dir("vane-eos-refused-");
  auto topics = eos_topics();
  topics[0].configs["max.message.bytes"] = "300";
  auto kafka = start_kafka(topics);
  ASSERT_TRUE(kafka);
  constexpr std::size_t kN = 60;
  write_file(dir.file("vane.jsonc"), eos_config(dir.file("b.db"), kafka->bootstrap(), R"("devices": 2, "rate": 30, "limit": 60)"));
  ChildProcess vane({vane_bin(), "run", "-c", dir.file("vane.jsonc")}, dir.file("vane.stderr"));
  KafkaReader reader(kafka->bootstrap());
  const auto dlq = reader.read_until({"telemetry.dlq"}, kN, deadline_in(120s));
  ASSERT_EQ(dlq.size(), kN) << vane.captured_stderr();
  const SeqCheck c = check_seqs(dlq);
  EXPECT_EQ(c.distinct, kN);
  EXPECT_EQ(c.duplicates, 0u);
  EXPECT_EQ(c.max, kN);
  for (const auto& m : dlq)
    EXPECT_NE(header(m, "vane-error").find("MSG_SIZE_TOO_LARGE"), std::string::npos) << header(m, "vane-error");
  EXPECT_TRUE(wait_until([&] { return buffer_rows(dir.file("b.db")) == 0; }, 30s));
  vane.send_signal(SIGTERM);
  EXPECT_EQ(vane.wait_exit(deadline_in(30s)), 0) << vane.captured_stderr();
}

}  // namespace
}  // namespace vane::test
