// vane-kafka-mock: librdkafka's mock cluster as a process of its own, so a
// test can run the real vane binary against "Kafka" and take brokers down
// and up to make outages.
//
//   vane-kafka-mock [--brokers N] [--topic NAME:PARTITIONS]...
//
// Prints "BOOTSTRAP host:port,..." once ready, then takes commands on stdin,
// one per line, answering "OK <command>" or "ERR <reason>":
//   down all|ID     disconnect the broker(s) and refuse connections
//   up all|ID       accept connections again
//   rtt ID|all MS   add round-trip delay
//   quit
// Exits on quit, on EOF of stdin (its parent test went away) and on SIGTERM.
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace {

struct RkDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};

int parse_id(const std::string& s) { return s == "all" ? -1 : std::atoi(s.c_str()); }

}  // namespace

int main(int argc, char** argv) {
  int brokers = 1;
  std::vector<std::pair<std::string, int>> topics;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--brokers" && i + 1 < argc) {
      brokers = std::atoi(argv[++i]);
    } else if (a == "--topic" && i + 1 < argc) {
      const std::string t = argv[++i];
      const auto colon = t.rfind(':');
      if (colon == std::string::npos) topics.emplace_back(t, 1);
      else topics.emplace_back(t.substr(0, colon), std::atoi(t.c_str() + colon + 1));
    } else {
      std::fprintf(stderr, "usage: vane-kafka-mock [--brokers N] [--topic NAME:PARTITIONS]...\n");
      return 2;
    }
  }
  if (brokers < 1) brokers = 1;
  if (topics.empty()) topics = {{"telemetry", 3}, {"telemetry.dlq", 1}};
  std::signal(SIGPIPE, SIG_IGN);

  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err);
  std::unique_ptr<rd_kafka_t, RkDeleter> rk(rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err));
  if (!rk) {
    std::fprintf(stderr, "vane-kafka-mock: %s\n", err);
    return 1;
  }
  rd_kafka_mock_cluster_t* mc = rd_kafka_mock_cluster_new(rk.get(), brokers);
  if (!mc) {
    std::fprintf(stderr, "vane-kafka-mock: cannot create the mock cluster\n");
    return 1;
  }
  const int rf = brokers < 3 ? brokers : 3;
  for (const auto& [name, parts] : topics) {
    if (rd_kafka_mock_topic_create(mc, name.c_str(), parts, rf) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      std::fprintf(stderr, "vane-kafka-mock: cannot create topic %s\n", name.c_str());
      return 1;
    }
  }
  std::printf("BOOTSTRAP %s\n", rd_kafka_mock_cluster_bootstraps(mc));
  std::fflush(stdout);

  // SIGTERM ends the blocking read; the cluster is torn down below.
  struct sigaction sa {};
  sa.sa_handler = [](int) {};
  sigaction(SIGTERM, &sa, nullptr);

  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::string cmd, a, b;
    in >> cmd >> a >> b;
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (cmd == "quit") {
      std::printf("OK %s\n", line.c_str());
      std::fflush(stdout);
      break;
    } else if (cmd == "down" && !a.empty()) {
      e = rd_kafka_mock_broker_set_down(mc, parse_id(a));
    } else if (cmd == "up" && !a.empty()) {
      e = rd_kafka_mock_broker_set_up(mc, parse_id(a));
    } else if (cmd == "rtt" && !b.empty()) {
      e = rd_kafka_mock_broker_set_rtt(mc, parse_id(a), std::atoi(b.c_str()));
    } else {
      std::printf("ERR unknown command: %s\n", line.c_str());
      std::fflush(stdout);
      continue;
    }
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) std::printf("ERR %s\n", rd_kafka_err2str(e));
    else std::printf("OK %s\n", line.c_str());
    std::fflush(stdout);
  }
  rd_kafka_mock_cluster_destroy(mc);
  return 0;
}
