// vane-kafka-mock: librdkafka's mock cluster as a process of its own, so a
// test can run the real vane binary against "Kafka" and take brokers down
// and up to make outages.
//
//   vane-kafka-mock [--brokers N] [--topic NAME:PARTITIONS]...
//
// Defaults: 1 broker; topics telemetry:3 and telemetry.dlq:1. Replication
// factor min(3, N). Broker ids are 1..N. With N <= 3, partition P starts out
// led by broker P % N + 1, so a test knows which partitions "down ID" stalls
// (N > 3: the mock's random pick among the replicas; ask the metadata).
//
// Prints exactly one line "BOOTSTRAP host:port,..." once ready, then takes
// commands on stdin, one per line, answering "OK <command>" or
// "ERR <reason>":
//   down [ID|all]   drop the broker's connections and refuse new ones
//                   (default all); leadership does not move
//   up [ID|all]     accept connections again (default all)
//   rtt ID|all MS   delay every response by MS milliseconds
//   leader TOPIC PARTITION ID|none
//                   move leadership (clients see NOT_LEADER and follow), or
//                   leave the partition without a leader
//   quit
// Exits 0 on quit, on EOF of stdin (its parent test went away), and on
// SIGTERM, SIGINT or SIGHUP.
//
// What the mock does and does not do (librdkafka 2.0.2): a broker that is
// down drops its connections and refuses new ones, and nothing else changes,
// so producers queue and retry until it is up. Producer sequence numbers are
// checked for transactional producers only: when a broker goes down with
// produce requests in flight, an idempotent producer's retries can land a
// second time (at-least-once), where a real broker would drop them.
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace {

struct RkDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};
struct ConfDeleter {
  void operator()(rd_kafka_conf_t* conf) const { rd_kafka_conf_destroy(conf); }
};
struct ClusterDeleter {
  void operator()(rd_kafka_mock_cluster_t* mc) const { rd_kafka_mock_cluster_destroy(mc); }
};

std::optional<int> parse_int(const std::string& s) {
  int v = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

// "all" -> -1 (the mock API's "every broker"), else a broker id 1..brokers.
std::optional<int> parse_broker(const std::string& s, int brokers) {
  if (s.empty() || s == "all") return -1;
  auto id = parse_int(s);
  if (!id || *id < 1 || *id > brokers) return std::nullopt;
  return id;
}

void reply(const std::string& line) {
  std::fputs(line.c_str(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

int usage() {
  std::fprintf(stderr, "usage: vane-kafka-mock [--brokers N] [--topic NAME:PARTITIONS]...\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  int brokers = 1;
  std::vector<std::pair<std::string, int>> topics;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--brokers" && i + 1 < argc) {
      auto n = parse_int(argv[++i]);
      if (!n || *n < 1) return usage();
      brokers = *n;
    } else if (a == "--topic" && i + 1 < argc) {
      const std::string t = argv[++i];
      const auto colon = t.rfind(':');
      if (colon == std::string::npos) {
        topics.emplace_back(t, 1);
      } else {
        auto parts = parse_int(t.substr(colon + 1));
        if (colon == 0 || !parts || *parts < 1) return usage();
        topics.emplace_back(t.substr(0, colon), *parts);
      }
    } else {
      return usage();
    }
  }
  if (topics.empty()) topics = {{"telemetry", 3}, {"telemetry.dlq", 1}};

  // Termination signals are taken from a signalfd in the command loop. They
  // are blocked before librdkafka starts its threads, which inherit the mask.
  sigset_t term;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  sigaddset(&term, SIGINT);
  sigaddset(&term, SIGHUP);
  sigprocmask(SIG_BLOCK, &term, nullptr);
  const int sig_fd = signalfd(-1, &term, SFD_CLOEXEC);
  if (sig_fd < 0) {
    std::perror("vane-kafka-mock: signalfd");
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);  // the parent closing stdout shows up as a write error

  char err[512];
  std::unique_ptr<rd_kafka_conf_t, ConfDeleter> conf(rd_kafka_conf_new());
  rd_kafka_conf_set(conf.get(), "log_level", "4", err, sizeof err);
  std::unique_ptr<rd_kafka_t, RkDeleter> rk(rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), err, sizeof err));
  if (!rk) {
    std::fprintf(stderr, "vane-kafka-mock: %s\n", err);
    return 1;
  }
  conf.release();  // owned by rk now
  // Declared after rk: destroyed before it.
  std::unique_ptr<rd_kafka_mock_cluster_t, ClusterDeleter> mc(rd_kafka_mock_cluster_new(rk.get(), brokers));
  if (!mc) {
    std::fprintf(stderr, "vane-kafka-mock: cannot create the mock cluster\n");
    return 1;
  }
  const int rf = brokers < 3 ? brokers : 3;
  for (const auto& [name, parts] : topics) {
    rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(mc.get(), name.c_str(), parts, rf);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
      std::fprintf(stderr, "vane-kafka-mock: cannot create topic %s: %s\n", name.c_str(), rd_kafka_err2str(e));
      return 1;
    }
    // The mock picks a random replica as leader; make it predictable where
    // every broker is a replica. (Which brokers replicate what beyond that
    // differs between librdkafka versions, and the API does not tell.) Each
    // mock call can stall for a second (2.0.2's mock thread sometimes misses
    // its wake-up and sleeps out its 1 s poll), so none that change nothing.
    for (int p = 0; brokers > 1 && brokers <= 3 && p < parts; ++p) {
      const int leader = p % brokers + 1;
      if ((e = rd_kafka_mock_partition_set_leader(mc.get(), name.c_str(), p, leader)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        std::fprintf(stderr, "vane-kafka-mock: cannot set the leader of %s [%d]: %s\n", name.c_str(), p,
                     rd_kafka_err2str(e));
        return 1;
      }
    }
  }
  reply(std::string("BOOTSTRAP ") + rd_kafka_mock_cluster_bootstraps(mc.get()));

  std::string buf;
  bool quit = false;
  while (!quit) {
    pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {sig_fd, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[1].revents & POLLIN) break;  // SIGTERM and friends
    if (!(fds[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
    char chunk[1024];
    const ssize_t n = read(STDIN_FILENO, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // EOF: whoever started us is gone
    buf.append(chunk, static_cast<std::size_t>(n));

    for (auto nl = buf.find('\n'); nl != std::string::npos && !quit; nl = buf.find('\n')) {
      std::string line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      std::istringstream words(line);
      std::string cmd, a, b, c, extra;
      words >> cmd >> a >> b >> c >> extra;
      if (cmd.empty()) continue;
      if (!extra.empty() || (cmd != "leader" && !c.empty())) {
        reply("ERR too many arguments: " + line);
        continue;
      }

      rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
      if (cmd == "quit" && a.empty()) {
        quit = true;
      } else if ((cmd == "down" || cmd == "up") && b.empty()) {
        auto id = parse_broker(a, brokers);
        if (!id) {
          reply("ERR no such broker: " + a);
          continue;
        }
        e = cmd == "down" ? rd_kafka_mock_broker_set_down(mc.get(), *id) : rd_kafka_mock_broker_set_up(mc.get(), *id);
      } else if (cmd == "rtt" && !b.empty()) {
        auto id = parse_broker(a, brokers);
        auto ms = parse_int(b);
        if (!id || !ms || *ms < 0) {
          reply("ERR usage: rtt ID|all MS");
          continue;
        }
        e = rd_kafka_mock_broker_set_rtt(mc.get(), *id, *ms);
      } else if (cmd == "leader" && !c.empty()) {
        const auto part = parse_int(b);
        const auto id = c == "none" ? std::optional<int>(-1) : parse_broker(c, brokers);
        // The mock would create a topic it does not know: only ours.
        const auto t = std::find_if(topics.begin(), topics.end(), [&](const auto& tp) { return tp.first == a; });
        if (t == topics.end() || !part || *part < 0 || *part >= t->second || !id || c == "all") {
          reply("ERR usage: leader TOPIC PARTITION ID|none");
          continue;
        }
        e = rd_kafka_mock_partition_set_leader(mc.get(), a.c_str(), *part, *id);
      } else {
        reply("ERR unknown command: " + line);
        continue;
      }
      if (e != RD_KAFKA_RESP_ERR_NO_ERROR) reply(std::string("ERR ") + rd_kafka_err2str(e));
      else reply("OK " + line);
    }
    if (std::ferror(stdout)) break;  // nobody reads our answers any more
  }
  // Tearing the cluster and its handle down can take a second; nothing
  // outside this process depends on it, the kernel closes the sockets.
  std::fflush(stdout);
  std::_Exit(0);
}
