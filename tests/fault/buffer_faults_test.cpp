// Faults of the buffer's file and filesystem, with the real vane binary
// against the Kafka mock cluster helper: a buffer file truncated or
// scribbled over between runs, a filesystem that fills up, and a SIGTERM in
// the middle of an outage. Counted by vane-seq in Kafka.
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "fault/seq_counter.h"
#include "integration/agent_test_util.h"

namespace vane::test {
namespace {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

// The figure after `label` in the last line of `log` that has it, or -1.
long figure_after(const std::string& log, const std::string& label) {
  const auto at = log.rfind(label);
  if (at == std::string::npos) return -1;
  return std::strtol(log.c_str() + at + label.size(), nullptr, 10);
}

std::uint64_t file_size(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
}

// `vane buffer stats` inside the mount namespace of process `pid` (the
// tmpfs is visible only there; SQLite resolves /proc/PID/root back to ours).
// `vane buffer stats` inside the mount namespace of process `pid` (a tmpfs
// mounted there is visible only there; SQLite resolves /proc/PID/root back
// to ours).
long stat_in_namespace(pid_t pid, const std::string& path, const std::string& field) {
  ChildProcess p({"nsenter", "-t", std::to_string(pid), "-U", "-m", vane_bin(), "buffer", "stats", path});
  long v = -1;
  const auto deadline = SteadyClock::now() + 10s;
  while (auto line = p.read_line(deadline))
    if (line->rfind(field, 0) == 0) v = std::stol(line->substr(field.size()));
  const auto rc = p.wait_exit(deadline);
  return rc && *rc == 0 ? v : -1;
}

// A small tmpfs at `dir`: as root mounted directly (and lazily unmounted at
// the end); otherwise vane gets a user and mount namespace of its own
// (unshare -rm) to mount it in.
struct SmallFs {
  std::string dir;
  bool direct = false;
  ~SmallFs() {
    if (direct) ::umount2(dir.c_str(), MNT_DETACH);
  }
};

class BufferFaults : public ::testing::Test {
 protected:
  void SetUp() override {
    bootstrap_ = kafka_.start(1, {"telemetry:3", "telemetry.dlq:1", "vane.events:1"}, dir_.file("kafka-mock.stderr"));
    ASSERT_FALSE(bootstrap_.empty()) << kafka_.last_error();
    config_ = dir_.file("vane.jsonc");
  }

  // Runs vane with a source that produces `produce` readings, until the
  // buffer has handed out seqs up to `last` and every row left it (broker
  // up); stops it and returns its stderr.
  std::string run_to_empty(const std::string& buffer, long produce, long last, const std::string& log_name) {
    write_file(config_, sim_config(buffer, bootstrap_, "\"rate\": 20000, \"limit\": " + std::to_string(produce)));
    ChildProcess vane({vane_bin(), "run", "-c", config_}, dir_.file(log_name));
    EXPECT_TRUE(wait_until(
        [&] { return buffer_stat(buffer, "next seq:") > last && buffer_rows(buffer) == 0; }, 60s))
        << tail(vane.captured_stderr());
    vane.send_signal(SIGTERM);
    const auto rc = vane.wait_exit(SteadyClock::now() + 30s);
    EXPECT_TRUE(rc.has_value() && *rc == 0) << tail(vane.captured_stderr());
    return vane.captured_stderr();
  }

  TempDir dir_{"vane-fault-"};
  MockKafka kafka_;
  std::string bootstrap_, config_;
};

// A buffer left with 20000 undelivered rows is truncated to half its size,
// then (second round) scribbled over in the middle. Each time vane starts,
// moves the file aside, salvages what is readable, and keeps working: the
// salvaged rows and every new reading land, under seqs never used before.
TEST_F(BufferFaults, CorruptBufferFileIsQuarantinedAndVaneKeepsWorking) {
  const std::string buffer = dir_.file("buffer.db");
  SeqCounter landed(bootstrap_, {"telemetry", "telemetry.dlq", "vane.events"});
  long limit = 0;
  for (const char* damage : {"truncate", "scribble"}) {
    // Fill the buffer with the broker down, stop cleanly: rows stay buffered.
    ASSERT_TRUE(kafka_.down());
    limit += 20000;
    write_file(config_, sim_config(buffer, bootstrap_, "\"rate\": 50000, \"limit\": 20000"));
    {
      ChildProcess vane({vane_bin(), "run", "-c", config_}, dir_.file(std::string("fill-") + damage + ".stderr"));
      ASSERT_TRUE(wait_until([&] { return buffer_stat(buffer, "next seq:") > limit; }, 30s))
          << tail(vane.captured_stderr());
      vane.send_signal(SIGTERM);
      ASSERT_TRUE(vane.wait_exit(SteadyClock::now() + 30s).has_value());
    }
    ASSERT_TRUE(kafka_.up());
    const std::uint64_t size = file_size(buffer);
    ASSERT_GT(size, 1u << 20);
    if (std::string(damage) == "truncate") {
      ASSERT_EQ(::truncate(buffer.c_str(), static_cast<off_t>(size / 2)), 0);
    } else {
      std::fstream f(buffer, std::ios::binary | std::ios::in | std::ios::out);
      // Two pages at every eighth of the file: some land on the rows' b-tree.
      const std::string junk(2 * 4096, '\x3c');
      for (int i = 1; i < 8; ++i) {
        f.seekp(static_cast<std::streamoff>(size * i / 8 / 4096 * 4096));
        f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
      }
    }
    // The next run: starts, quarantines (declared on vane.events under the
    // next seq), salvages, forwards, takes new readings.
    const long declaration = limit + 1;
    limit += 1 + 1000;
    const std::string log = run_to_empty(buffer, 1000, limit, std::string("after-") + damage + ".stderr");
    EXPECT_NE(log.find("was unusable"), std::string::npos) << tail(log);
    const long salvaged = figure_after(log, "a fresh buffer starts with the ");
    EXPECT_GT(salvaged, 0) << tail(log);
    EXPECT_LT(salvaged, 20000) << tail(log);
    bool moved = false;
    for (const auto& e : std::filesystem::directory_iterator(dir_.path()))
      moved |= e.path().filename().string().rfind("buffer.db.corrupt-", 0) == 0;
    EXPECT_TRUE(moved) << "no buffer.db.corrupt-* file";
    ASSERT_TRUE(landed.catch_up(SteadyClock::now() + 30s));
    // The new readings continue the old sequence and all landed.
    for (long s = limit - 999; s <= limit; ++s) EXPECT_EQ(landed.count(static_cast<std::uint64_t>(s)), 1u) << s;
    EXPECT_EQ(landed.count(static_cast<std::uint64_t>(declaration)), 1u) << "the quarantine was not declared";
    std::printf("FIGURE corrupt buffer (%s): 20000 rows buffered, %ld salvaged and delivered, 1000 new readings "
                "delivered under seqs %ld..%ld\n",
                damage, salvaged, limit - 999, limit);
  }
  EXPECT_EQ(landed.duplicates(), 0u) << "messages " << landed.messages() << " distinct " << landed.distinct()
                                     << " missing " << landed.missing(static_cast<std::uint64_t>(limit)).size();
  EXPECT_EQ(landed.landed_above(static_cast<std::uint64_t>(limit)), 0u);
}

// SIGTERM while the brokers are down with rows in flight: vane waits at most
// kafka.shutdown_timeout_ms for them, exits 0 promptly, and leaves every
// undelivered row in the buffer for the next start, which delivers them.
TEST_F(BufferFaults, SigtermDuringAnOutageExitsPromptlyAndKeepsEverything) {
  const std::string buffer = dir_.file("buffer.db");
  write_file(config_, sim_config(buffer, bootstrap_, "\"rate\": 5000", "", ", \"shutdown_timeout_ms\": 1000"));
  ChildProcess vane({vane_bin(), "run", "-c", config_}, dir_.file("vane.stderr"));
  SeqCounter landed(bootstrap_, {"telemetry", "telemetry.dlq"});
  ASSERT_TRUE(landed.poll_until([&] { return landed.distinct() >= 1000; }, 30s)) << tail(vane.captured_stderr());
  ASSERT_TRUE(kafka_.down());
  ASSERT_TRUE(wait_until([&] { return buffer_rows(buffer) > 5000; }, 30s));
  const auto t = SteadyClock::now();
  vane.send_signal(SIGTERM);
  const auto rc = vane.wait_exit(t + 20s);
  const double took = std::chrono::duration<double>(SteadyClock::now() - t).count();
  ASSERT_TRUE(rc.has_value()) << tail(vane.captured_stderr());
  EXPECT_EQ(*rc, 0);
  EXPECT_LT(took, 5.0) << "shutdown_timeout_ms is 1000";
  const long left = buffer_rows(buffer);
  const long accepted = buffer_stat(buffer, "next seq:") - 1;
  EXPECT_GT(left, 5000);
  ASSERT_TRUE(kafka_.up());
  run_to_empty(buffer, 100, accepted + 100, "restart.stderr");
  ASSERT_TRUE(landed.catch_up(SteadyClock::now() + 30s));
  EXPECT_TRUE(landed.missing(static_cast<std::uint64_t>(accepted + 100)).empty());
  std::printf("FIGURE sigterm in outage: exit 0 after %.2f s (shutdown_timeout_ms 1000), %ld rows kept, all "
              "delivered after restart, duplicates=%zu\n",
              took, left, landed.duplicates());
}

// A filesystem that fills up: the buffer lives on a 32 MiB tmpfs (SmallFs),
// the brokers are down, and the
// source keeps producing. SQLITE_FULL applies the overflow policy
// (drop_oldest): vane keeps running, counts every drop as a disk-full drop,
// and once the brokers return and the backlog drains it takes readings
// without dropping. What is missing in Kafka is exactly what it counted.
TEST_F(BufferFaults, FullFilesystemDropsByPolicyCountsAndRecovers) {
  SmallFs fs{dir_.file("small-fs")};
  std::filesystem::create_directory(fs.dir);
  const std::string buffer = fs.dir + "/buffer.db";
  write_file(config_, sim_config(buffer, bootstrap_, "\"rate\": 10000, \"limit\": 300000", "",
                                 ", \"max_in_flight\": 2000"));
  const std::string mount = "mount -t tmpfs -o size=32m tmpfs " + fs.dir;
  if (::geteuid() == 0) {
    ChildProcess m({"sh", "-c", mount});
    const auto rc = m.wait_exit(SteadyClock::now() + 10s);
    fs.direct = rc && *rc == 0;
  }
  if (!fs.direct) {
    ChildProcess probe({"unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs " + fs.dir});
    const auto rc = probe.wait_exit(SteadyClock::now() + 10s);
    if (!rc || *rc != 0) GTEST_SKIP() << "cannot mount a tmpfs here, neither as root nor in a user namespace";
  }
  ASSERT_TRUE(kafka_.down());
  const std::vector<std::string> run{vane_bin(), "run", "-c", config_};
  ChildProcess vane(fs.direct ? run
                              : std::vector<std::string>{"unshare", "-rm", "sh", "-c",
                                                         mount + " && exec " + vane_bin() + " run -c " + config_},
                    dir_.file("vane.stderr"));
  ASSERT_TRUE(wait_until(
      [&] { return vane.captured_stderr().find("filesystem is full") != std::string::npos || !vane.running(); },
      60s))
      << tail(vane.captured_stderr());
  ASSERT_TRUE(vane.running()) << tail(vane.captured_stderr());
  // Keep it full for a while: drops go on, vane stays up.
  auto inside = [&](const char* field) {
    return fs.direct ? buffer_stat(buffer, field) : stat_in_namespace(vane.pid(), buffer, field);
  };
  // Looks at the buffer at most once a second: every look is a reader that
  // holds the WAL for a moment, and on a full disk a WAL that cannot be
  // reset is what makes drops.
  auto seldom = [last = SteadyClock::time_point{}](auto pred) mutable {
    return [&last, pred]() mutable {
      if (SteadyClock::now() - last < 1s) return false;
      last = SteadyClock::now();
      return pred();
    };
  };
  ASSERT_TRUE(wait_until(seldom([&] { return inside("next seq:") > 100000; }), 60s))
      << tail(vane.captured_stderr());
  ASSERT_TRUE(vane.running()) << tail(vane.captured_stderr());
  // Read while it drains: the mock cluster keeps only ~5 MB per partition.
  SeqCounter landed(bootstrap_, {"telemetry", "telemetry.dlq"});
  ASSERT_TRUE(kafka_.up());
  long accepted = 0;
  ASSERT_TRUE(landed.poll_until(
      seldom([&] {
        // The source is done (no new seq since the last look), the buffer is
        // empty, and the episode was declared over.
        const long next = inside("next seq:");
        const bool still = next > 0 && next - 1 == accepted;
        accepted = next - 1;
        return still && inside("rows:") == 0 &&
               vane.captured_stderr().find("disk space is back") != std::string::npos;
      }),
      90s))
      << tail(vane.captured_stderr());
  vane.send_signal(SIGTERM);
  const auto rc = vane.wait_exit(SteadyClock::now() + 30s);
  ASSERT_TRUE(rc.has_value());
  EXPECT_EQ(*rc, 0) << tail(vane.captured_stderr());
  const std::string log = vane.captured_stderr();
  ASSERT_TRUE(landed.catch_up(SteadyClock::now() + 30s));
  const long readings_in = figure_after(log, "stopped: ");
  const long dropped = figure_after(log, " delivered, 0 rejected, ");
  const std::size_t missing = landed.missing(static_cast<std::uint64_t>(accepted)).size();
  // Dropped = old rows deleted to make room (their seqs are missing) + new
  // readings refused outright (they never got a seq).
  const long refused = readings_in - accepted;
  EXPECT_EQ(readings_in, 300000) << tail(log);
  EXPECT_GT(dropped, 0) << tail(log);
  EXPECT_EQ(static_cast<long>(missing) + refused, dropped) << tail(log);
  EXPECT_NE(log.find("disk space is back"), std::string::npos) << tail(log);
  // Once space came back, nothing more was dropped: the newest readings all landed.
  long newest_missing = 0;
  for (long s = accepted - 999; s <= accepted; ++s) newest_missing += landed.count(static_cast<std::uint64_t>(s)) != 1;
  EXPECT_EQ(newest_missing, 0) << "of the newest 1000 readings\n" << tail(log);
  std::printf("FIGURE disk full: 32 MiB tmpfs, 300000 readings at 10000/s, %ld got a seq, %ld dropped (disk full, drop_oldest: "
              "%zu old rows deleted = missing seqs, %ld refused), duplicates=%zu\n",
              accepted, dropped, missing, refused, landed.duplicates());
}

}  // namespace
}  // namespace vane::test
