// Apache Kafka itself as a test peer: 1 or 3 KRaft nodes (each a combined
// broker and controller) in child JVMs on free loopback ports, with fresh
// data directories, from the jars scripts/install-kafka.sh put in its cache.
// A test kills (SIGKILL), pauses (SIGSTOP/SIGCONT) and restarts nodes to make
// faults, and talks to the cluster's admin API to create topics, change
// topic configs and add ACLs.
//
// Listeners per node, all on 127.0.0.1, no JMX port:
//   PLAINTEXT  no authentication (principal ANONYMOUS, a super user when
//              ACLs are on: the tests' own admin and reader path)
//   SSL        TLS with a client certificate required (mutual TLS;
//              principal "User:CN=<cn>")
//   SASL_SSL   TLS, then SASL SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN
//              against the users given at start (principal "User:<name>")
// plus the controller listener. The certificates are made with openssl by
// the harness under work_dir(): a CA, the brokers' certificate (SAN
// localhost, 127.0.0.1), a client certificate for client_cn, and a second,
// unrelated CA for wrong-CA tests.
//
// Not thread-safe: one test thread drives a cluster. Destruction SIGKILLs
// every node and removes the data (a test's data dir is its own).
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "support/process.h"
#include "support/temp_dir.h"

namespace vane::test {

// The Kafka version every test runs against unless it asks for another
// (tests/kafka/pom.xml's kafka.version).
const char* default_kafka_version();

struct KafkaClusterOptions {
  int nodes = 1;
  // One of the versions scripts/install-kafka.sh installs.
  std::string version = default_kafka_version();
  // SSL and SASL_SSL listeners (certificates made at start). Off: PLAINTEXT only.
  bool security = false;
  // StandardAuthorizer; ANONYMOUS (PLAINTEXT) is the super user, everyone
  // else is allowed what no ACL denies (allow.everyone.if.no.acl.found).
  bool acls = false;
  // SCRAM users created at format time (SCRAM-SHA-512 and -256) and
  // accepted by PLAIN too: name -> password.
  std::map<std::string, std::string> users = {{"gw-test", "gw-test-secret"}};
  std::string client_cn = "gw-test";
  // Extra server.properties for every node (override the defaults).
  std::map<std::string, std::string> broker_properties;
  // -Xmx of each JVM.
  std::string heap = "512m";
};

// One line naming why Kafka `version` cannot run here (jars not installed,
// no java), or "" when it can. Tests that need a broker fail with it.
std::string kafka_unavailable_reason(const std::string& version = default_kafka_version());

class KafkaCluster {
 public:
  // Formats and starts every node and waits until the whole cluster serves
  // (every node registered and listed in the metadata). Throws
  // std::runtime_error with one line naming what failed (and the log tail).
  explicit KafkaCluster(KafkaClusterOptions options = {},
                        std::chrono::milliseconds timeout = std::chrono::seconds(90));
  ~KafkaCluster();
  KafkaCluster(const KafkaCluster&) = delete;
  KafkaCluster& operator=(const KafkaCluster&) = delete;

  int nodes() const { return static_cast<int>(nodes_.size()); }
  // Node ids are 1..nodes().
  // Bootstrap lists of every node's listener of that kind.
  std::string bootstrap() const;           // PLAINTEXT
  std::string bootstrap_ssl() const;       // SSL (client certificate required)
  std::string bootstrap_sasl_ssl() const;  // SASL_SSL
  // One node's PLAINTEXT address.
  std::string address(int id) const;

  // PEM files made at start (security on).
  std::string ca_file() const { return dir_.file("ca.pem"); }
  std::string other_ca_file() const { return dir_.file("other-ca.pem"); }
  std::string client_cert_file() const { return dir_.file("client.pem"); }
  std::string client_key_file() const { return dir_.file("client.key"); }
  const std::string& work_dir() const { return dir_.path(); }
  std::string log_file(int id) const;

  // Faults. kill: SIGKILL and reap (the data dir stays). pause/resume:
  // SIGSTOP/SIGCONT. start: a killed node again, same ports and data; waits
  // until it is registered and serving again. Throw std::runtime_error on
  // failure.
  void kill(int id);
  void pause(int id);
  void resume(int id);
  void start(int id, std::chrono::milliseconds timeout = std::chrono::seconds(90));
  void kill_all();
  // Starts every killed node at once and waits until the whole cluster serves.
  void start_all(std::chrono::milliseconds timeout = std::chrono::seconds(90));
  bool running(int id);

  // Admin, over PLAINTEXT. Throw std::runtime_error with the broker's words.
  // replication < 0: min(3, nodes()).
  void create_topic(const std::string& name, int partitions, int replication = -1,
                    const std::map<std::string, std::string>& configs = {});
  // Sets the topic's dynamic configs to exactly `configs` (AlterConfigs
  // replaces the dynamic set).
  void set_topic_configs(const std::string& name, const std::map<std::string, std::string>& configs);
  // Deletes the records of one partition below `before_offset`
  // (DeleteRecords): records gone behind the producer's back.
  void delete_records(const std::string& topic, int partition, std::int64_t before_offset);
  // Denies (or allows) `operation` ("WRITE", "READ", "DESCRIBE", ...) on a
  // topic to `principal` ("User:gw-test").
  void add_topic_acl(const std::string& principal, const std::string& topic, const std::string& operation,
                     bool allow);

  // librdkafka properties for a client of the SSL / SASL_SSL listener.
  std::map<std::string, std::string> ssl_client_properties() const;
  std::map<std::string, std::string> sasl_client_properties(const std::string& user,
                                                            const std::string& mechanism = "SCRAM-SHA-512") const;

 private:
  struct Node {
    int id = 0;
    int port = 0, ssl_port = 0, sasl_port = 0, controller_port = 0;
    std::string dir;
    std::unique_ptr<ChildProcess> proc;
  };

  void make_certificates();
  void write_properties(const Node& n) const;
  void format(const std::vector<int>& ids);
  void launch(Node& n);
  // True when metadata from any running node lists every id in `ids`.
  bool serving(const std::vector<int>& ids);
  void wait_serving(const std::vector<int>& ids, std::chrono::milliseconds timeout);
  Node& node(int id);
  const Node& node(int id) const;
  std::string list(int Node::*port) const;
  std::string log_tail(int id) const;

  KafkaClusterOptions options_;
  TempDir dir_{"vane-kafka-"};
  std::string classpath_, cluster_id_;
  std::vector<Node> nodes_;
};

}  // namespace vane::test
