// vane under systemd's eyes, without systemd: the unit file checked by
// systemd-analyze (verify, and the hardening score offline), and the
// notification protocol seen from a socket the test owns in place of
// systemd's: READY=1, STATUS=, WATCHDOG=1 only while the pipeline makes
// progress (through a Kafka outage, not while the buffer is locked), and
// STOPPING=1 at SIGTERM.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>

#include "agent_test_util.h"

namespace vane::test {
namespace {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

std::string read_all(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (auto at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
  return s;
}

struct Outcome {
  int rc = -1;
  std::string out, err;
};

Outcome run(const std::vector<std::string>& argv, const std::string& dir) {
  Outcome r;
  ChildProcess p(argv, dir + "/run.stderr");
  const auto deadline = SteadyClock::now() + 60s;
  while (auto line = p.read_line(deadline)) r.out += *line + "\n";
  if (auto rc = p.wait_exit(deadline)) r.rc = *rc;
  r.err = p.captured_stderr();
  return r;
}

TEST(SystemdUnit, VerifiesCleanlyAndIsHardenedToAtMostOnePointFive) {
  TempDir dir("vane-unit-");
  // verify wants ExecStart's binary to exist: point it at the build.
  const std::string unit = dir.file("vane.service");
  write_file(unit, replace_all(read_all(source_dir() + "/systemd/vane.service"), "/usr/bin/vane", vane_bin()));
  const Outcome verify = run({"systemd-analyze", "verify", unit}, dir.path());
  EXPECT_EQ(verify.rc, 0) << verify.err;
  // verify returns 0 on unknown keys and other mistakes: demand silence.
  EXPECT_EQ(verify.err, "") << "systemd-analyze verify warned";
  EXPECT_EQ(verify.out, "");
  const Outcome sec = run({"systemd-analyze", "security", "--offline=true", "--threshold=15", unit}, dir.path());
  EXPECT_EQ(sec.rc, 0) << sec.out << sec.err;
  std::smatch m;
  const std::regex level(R"(Overall exposure level for vane\.service: ([0-9.]+))");
  ASSERT_TRUE(std::regex_search(sec.out, m, level)) << sec.out;
  const double exposure = std::stod(m[1]);
  EXPECT_LE(exposure, 1.5);
  std::printf("FIGURE systemd-analyze security --offline: exposure %.1f\n", exposure);
}

// A datagram socket in place of systemd's NOTIFY_SOCKET.
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path) : path_(path) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    ok_ = fd_ >= 0 && ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~NotifySocket() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool ok() const { return ok_; }

  // Every message received for `d`, in order.
  std::vector<std::string> collect(std::chrono::milliseconds d) {
    std::vector<std::string> got;
    const auto until = SteadyClock::now() + d;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - SteadyClock::now()).count();
      if (left <= 0) break;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left)) <= 0) continue;
      char buf[4096];
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n > 0) got.emplace_back(buf, static_cast<std::size_t>(n));
    }
    return got;
  }

 private:
  std::string path_;
  int fd_ = -1;
  bool ok_ = false;
};

std::size_t count(const std::vector<std::string>& msgs, const std::string& prefix) {
  std::size_t n = 0;
  for (const auto& m : msgs) n += m.rfind(prefix, 0) == 0;
  return n;
}

std::string joined(const std::vector<std::string>& msgs) {
  std::string s;
  for (const auto& m : msgs) s += m.substr(0, 60) + " | ";
  return s;
}

TEST(SystemdNotify, ReadyStatusWatchdogOnlyWhileProgressingAndStopping) {
  TempDir dir("vane-notify-");
  MockKafka kafka;
  const std::string bootstrap = kafka.start(1, {"telemetry:3", "telemetry.dlq:1"}, dir.file("kafka-mock.stderr"));
  ASSERT_FALSE(bootstrap.empty()) << kafka.last_error();
  NotifySocket sock(dir.file("notify.sock"));
  ASSERT_TRUE(sock.ok());
  const std::string buffer = dir.file("buffer.db"), config = dir.file("vane.jsonc");
  write_file(config, sim_config(buffer, bootstrap, "\"rate\": 200"));
  // WatchdogSec=2s: pings every second while healthy.
  ChildProcess vane({"env", "NOTIFY_SOCKET=" + dir.file("notify.sock"), "WATCHDOG_USEC=2000000", vane_bin(), "run",
                     "-c", config},
                    dir.file("vane.stderr"));

  auto msgs = sock.collect(7s);
  ASSERT_FALSE(msgs.empty()) << vane.captured_stderr();
  EXPECT_EQ(msgs.front(), "READY=1") << joined(msgs);
  EXPECT_GE(count(msgs, "WATCHDOG=1"), 4u) << joined(msgs);
  EXPECT_GE(count(msgs, "STATUS=in "), 1u) << joined(msgs);

  // A Kafka outage the buffer absorbs is not a hang: the pings go on.
  ASSERT_TRUE(kafka.down());
  msgs = sock.collect(5s);
  EXPECT_GE(count(msgs, "WATCHDOG=1"), 3u) << "pings stopped during a Kafka outage: " << joined(msgs);
  ASSERT_TRUE(kafka.up());

  // A stalled pipeline: another process holds the buffer's write lock, so
  // nothing can be committed. The pings stop.
  ChildProcess lock({"/usr/bin/python3", "-c",
                     "import sqlite3, sys\n"
                     "db = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)\n"
                     "db.execute('BEGIN IMMEDIATE')\n"
                     "print('locked', flush=True)\n"
                     "sys.stdin.read()\n"
                     "db.execute('ROLLBACK')\n",
                     buffer},
                    dir.file("lock.stderr"));
  const auto line = lock.read_line(SteadyClock::now() + 20s);
  ASSERT_TRUE(line && *line == "locked") << lock.captured_stderr();
  (void)sock.collect(4s);  // the watch window (2 s) passes
  msgs = sock.collect(5s);
  EXPECT_EQ(count(msgs, "WATCHDOG=1"), 0u) << "pings went on while nothing could be committed: " << joined(msgs);
  ASSERT_TRUE(vane.running());

  // The lock goes: commits, and pings, resume.
  lock.close_stdin();
  ASSERT_TRUE(lock.wait_exit(SteadyClock::now() + 10s).has_value());
  msgs = sock.collect(8s);
  EXPECT_GE(count(msgs, "WATCHDOG=1"), 2u) << "pings did not resume: " << joined(msgs);

  vane.send_signal(SIGTERM);
  msgs = sock.collect(3s);
  EXPECT_EQ(count(msgs, "STOPPING=1"), 1u) << joined(msgs);
  const auto rc = vane.wait_exit(SteadyClock::now() + 30s);
  ASSERT_TRUE(rc.has_value());
  EXPECT_EQ(*rc, 0);
  const std::string log = vane.captured_stderr();
  EXPECT_NE(log.find("no progress: "), std::string::npos) << log;
  EXPECT_NE(log.find("progress again"), std::string::npos) << log;
}

// SIGHUP with a changed config: a new source starts and its readings land;
// with a broken config: refused and logged, the running sources go on.
TEST(SystemdReload, SighupAppliesANewSourceAndRefusesABrokenConfig) {
  TempDir dir("vane-reload-");
  MockKafka kafka;
  const std::string bootstrap = kafka.start(1, {"telemetry:3", "telemetry.dlq:1"}, dir.file("kafka-mock.stderr"));
  ASSERT_FALSE(bootstrap.empty()) << kafka.last_error();
  const std::string buffer = dir.file("buffer.db"), config = dir.file("vane.jsonc");
  const std::string one = sim_config(buffer, bootstrap, "\"rate\": 100");
  write_file(config, one);
  ChildProcess vane({vane_bin(), "run", "-c", config}, dir.file("vane.stderr"));
  KafkaReader reader(bootstrap);
  auto from = [](const std::vector<ConsumedMessage>& msgs, const std::string& source) {
    std::size_t n = 0;
    for (const auto& m : msgs) {
      auto it = m.headers.find("vane-source");
      n += it != m.headers.end() && it->second == source;
    }
    return n;
  };
  std::vector<ConsumedMessage> msgs;
  ASSERT_TRUE(wait_until([&] {
    msgs = reader.read_until({"telemetry"}, 100000, SteadyClock::now() + 200ms);
    return from(msgs, "sim") >= 50;
  }, 20s)) << vane.captured_stderr();

  // A second source, added to the same file.
  const std::string two = replace_all(
      one, "\"rate\": 100 } ]",
      "\"rate\": 100 },\n    { \"name\": \"sim2\", \"type\": \"simulator\", \"devices\": 2, \"rate\": 50 } ]");
  ASSERT_NE(two, one);
  write_file(config, two);
  vane.send_signal(SIGHUP);
  ASSERT_TRUE(wait_until([&] {
    msgs = reader.read_until({"telemetry"}, 100000, SteadyClock::now() + 200ms);
    return from(msgs, "sim2") >= 20;
  }, 20s)) << vane.captured_stderr();
  EXPECT_NE(vane.captured_stderr().find("SIGHUP: applied: 2 sources running (1 added, 0 changed, 0 removed)"),
            std::string::npos)
      << vane.captured_stderr();

  // A broken config: refused, logged, and both sources go on.
  write_file(config, two.substr(0, two.size() / 2));
  vane.send_signal(SIGHUP);
  ASSERT_TRUE(wait_until([&] { return vane.captured_stderr().find("config refused") != std::string::npos; }, 10s))
      << vane.captured_stderr();
  const std::size_t sim_before = from(msgs, "sim"), sim2_before = from(msgs, "sim2");
  ASSERT_TRUE(wait_until([&] {
    msgs = reader.read_until({"telemetry"}, 100000, SteadyClock::now() + 200ms);
    return from(msgs, "sim") >= sim_before + 50 && from(msgs, "sim2") >= sim2_before + 25;
  }, 20s)) << vane.captured_stderr();
  ASSERT_TRUE(vane.running());

  vane.send_signal(SIGTERM);
  const auto rc = vane.wait_exit(SteadyClock::now() + 30s);
  ASSERT_TRUE(rc.has_value());
  EXPECT_EQ(*rc, 0) << vane.captured_stderr();
  // Every reading of both sources landed once.
  msgs = reader.read_until({"telemetry"}, 100000, SteadyClock::now() + 500ms);
  const SeqCheck c = check_seqs(msgs);
  EXPECT_EQ(c.missing, 0u);
  EXPECT_EQ(c.duplicates, 0u);
}

}  // namespace
}  // namespace vane::test
