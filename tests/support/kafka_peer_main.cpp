// vane-kafka-peer: a real Apache Kafka cluster (support/kafka_cluster.h) as a
// process of its own, for the benchmarks and scripts that are not C++. It
// speaks vane-kafka-mock's protocol, so either can serve a script:
//
//   vane-kafka-peer [--nodes N] [--security] [--heap SIZE]
//                   [--topic NAME:PARTITIONS[:REPLICATION]]...
//
// Prints "BOOTSTRAP host:port,..." (the PLAINTEXT listeners) once every node
// serves and the topics exist (default topics: telemetry:3, telemetry.dlq:1),
// then takes commands on stdin, one per line, answering "OK <command>" or
// "ERR <reason>":
//   down [ID|all]   SIGKILL the node(s)          up [ID|all]   start them again
//   stop ID         SIGSTOP                      cont ID       SIGCONT
//   quit
// Exits 0 on quit or EOF of stdin (its parent went away), 1 when the cluster
// cannot start (the reason on stderr, one line first).
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "support/kafka_cluster.h"

using vane::test::KafkaCluster;
using vane::test::KafkaClusterOptions;

namespace {

void for_ids(KafkaCluster& k, const std::string& which, void (KafkaCluster::*op)(int)) {
  if (which.empty() || which == "all") {
    for (int id = 1; id <= k.nodes(); ++id) (k.*op)(id);
  } else {
    (k.*op)(std::stoi(which));
  }
}

}  // namespace

int main(int argc, char** argv) {
  KafkaClusterOptions opt;
  std::vector<std::string> topics;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "vane-kafka-peer: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--nodes") opt.nodes = std::stoi(value());
    else if (a == "--security") opt.security = true;
    else if (a == "--heap") opt.heap = value();
    else if (a == "--topic") topics.push_back(value());
    else {
      std::fprintf(stderr, "vane-kafka-peer: unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  if (topics.empty()) topics = {"telemetry:3", "telemetry.dlq:1"};
  try {
    KafkaCluster k(opt);
    for (const std::string& t : topics) {
      std::stringstream ss(t);
      std::string name, parts, rf;
      std::getline(ss, name, ':');
      std::getline(ss, parts, ':');
      std::getline(ss, rf, ':');
      k.create_topic(name, parts.empty() ? 1 : std::stoi(parts), rf.empty() ? -1 : std::stoi(rf));
    }
    std::cout << "BOOTSTRAP " << k.bootstrap() << std::endl;
    std::string line;
    while (std::getline(std::cin, line)) {
      std::stringstream ss(line);
      std::string cmd, arg;
      ss >> cmd >> arg;
      try {
        if (cmd == "quit") {
          std::cout << "OK quit" << std::endl;
          return 0;
        } else if (cmd == "down") {
          for_ids(k, arg, &KafkaCluster::kill);
        } else if (cmd == "up") {
          if (arg.empty() || arg == "all") k.start_all();
          else k.start(std::stoi(arg));
        } else if (cmd == "stop") {
          k.pause(std::stoi(arg));
        } else if (cmd == "cont") {
          k.resume(std::stoi(arg));
        } else {
          std::cout << "ERR unknown command: " << cmd << std::endl;
          continue;
        }
        std::cout << "OK " << line << std::endl;
      } catch (const std::exception& e) {
        std::cout << "ERR " << e.what() << std::endl;
      }
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vane-kafka-peer: %s\n", e.what());
    return 1;
  }
}
