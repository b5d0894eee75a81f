#include "support/kafka_cluster.h"

#include <arpa/inet.h>
#include <librdkafka/rdkafka.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "support/rdkafka_ptr.h"

namespace vane::test {
namespace {

using std::chrono::milliseconds;

std::string kafka_home(const std::string& version) {
  const char* env = std::getenv("VANE_KAFKA_CACHE");
  // The folder scripts/install-kafka.sh fills by default.
  return std::string(env && *env ? env : VANE_KAFKA_CACHE) + "/kafka-" + version;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  if (!out) throw std::runtime_error("kafka harness: cannot write " + path);
}

// Free loopback TCP ports: each bound to port 0 and kept open until all are
// picked, so no two are the same; Kafka binds them right after.
std::vector<int> free_ports(int count) {
  std::vector<int> fds, ports;
  for (int i = 0; i < count; ++i) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      if (fd >= 0) close(fd);
      for (int f : fds) close(f);
      throw std::runtime_error("kafka harness: cannot pick a free loopback port");
    }
    fds.push_back(fd);
    ports.push_back(ntohs(a.sin_port));
  }
  for (int f : fds) close(f);
  return ports;
}

// Runs argv to completion; throws with its output when it fails.
void run_tool(const std::vector<std::string>& argv, const std::string& log, milliseconds timeout) {
  ChildProcess p(argv, log);
  auto rc = p.wait_exit(deadline_in(timeout));
  if (!rc) {
    p.send_signal(SIGKILL);
    throw std::runtime_error("kafka harness: " + argv[0] + " " + argv[1] + " timed out: " + p.captured_stderr());
  }
  if (*rc != 0) {
    std::string out = p.captured_stderr();
    if (out.size() > 2000) out = out.substr(out.size() - 2000);
    throw std::runtime_error("kafka harness: " + argv[0] + " " + (argv.size() > 1 ? argv[1] : "") + " exited " +
                             std::to_string(*rc) + ": " + out);
  }
}

// Kafka's cluster ids are 16 random bytes in URL-safe base64 without padding.
std::string random_cluster_id() {
  static const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::random_device rd;
  unsigned char b[18] = {};
  for (int i = 0; i < 16; ++i) b[i] = static_cast<unsigned char>(rd());
  std::string id;
  for (int i = 0; i < 18; i += 3) {
    const unsigned v = (b[i] << 16) | (b[i + 1] << 8) | b[i + 2];
    for (int k = 3; k >= 0; --k) id += kAlphabet[(v >> (6 * k)) & 63];
  }
  // kafka-storage's argument parser takes a leading '-' for an option (one
  // id in 64): clear those 6 bits instead, still 16 random-enough bytes.
  if (id[0] == '-') id[0] = 'A';
  return id.substr(0, 22);
}

RdKafkaPtr make_admin_client(const std::string& bootstrap) {
  RdKafkaConfPtr conf(rd_kafka_conf_new());
  char err[512];
  for (const auto& [k, v] : std::map<std::string, std::string>{{"bootstrap.servers", bootstrap},
                                                               {"client.id", "vane-test-admin"},
                                                               {"reconnect.backoff.ms", "100"},
                                                               {"reconnect.backoff.max.ms", "500"},
                                                               {"log_level", "0"}}) {
    if (rd_kafka_conf_set(conf.get(), k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK)
      throw std::runtime_error(std::string("kafka harness: ") + err);
  }
  RdKafkaPtr rk(rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), err, sizeof err));
  if (!rk) throw std::runtime_error(std::string("kafka harness: admin client: ") + err);
  conf.release();
  return rk;
}

struct QueueDeleter {
  void operator()(rd_kafka_queue_t* q) const { rd_kafka_queue_destroy(q); }
};
struct EventDeleter {
  void operator()(rd_kafka_event_t* e) const { rd_kafka_event_destroy(e); }
};
struct OptionsDeleter {
  void operator()(rd_kafka_AdminOptions_t* o) const { rd_kafka_AdminOptions_destroy(o); }
};
using QueuePtr = std::unique_ptr<rd_kafka_queue_t, QueueDeleter>;
using EventPtr = std::unique_ptr<rd_kafka_event_t, EventDeleter>;
using OptionsPtr = std::unique_ptr<rd_kafka_AdminOptions_t, OptionsDeleter>;

// Waits for the admin call's result on `q`; throws when the call as a whole failed.
EventPtr admin_result(rd_kafka_queue_t* q, const std::string& what) {
  EventPtr ev(rd_kafka_queue_poll(q, 30000));
  if (!ev) throw std::runtime_error("kafka harness: " + what + ": no answer in 30 s");
  if (rd_kafka_event_error(ev.get()))
    throw std::runtime_error("kafka harness: " + what + ": " + rd_kafka_event_error_string(ev.get()));
  return ev;
}

OptionsPtr admin_options(rd_kafka_t* rk, rd_kafka_admin_op_t op) {
  OptionsPtr o(rd_kafka_AdminOptions_new(rk, op));
  char err[256];
  rd_kafka_AdminOptions_set_request_timeout(o.get(), 30000, err, sizeof err);
  rd_kafka_AdminOptions_set_operation_timeout(o.get(), 30000, err, sizeof err);
  return o;
}

rd_kafka_AclOperation_t acl_operation(const std::string& op) {
  static const std::map<std::string, rd_kafka_AclOperation_t> ops = {
      {"ALL", RD_KAFKA_ACL_OPERATION_ALL},         {"READ", RD_KAFKA_ACL_OPERATION_READ},
      {"WRITE", RD_KAFKA_ACL_OPERATION_WRITE},     {"CREATE", RD_KAFKA_ACL_OPERATION_CREATE},
      {"DESCRIBE", RD_KAFKA_ACL_OPERATION_DESCRIBE}, {"ALTER", RD_KAFKA_ACL_OPERATION_ALTER},
      {"IDEMPOTENT_WRITE", RD_KAFKA_ACL_OPERATION_IDEMPOTENT_WRITE}};
  auto it = ops.find(op);
  if (it == ops.end()) throw std::runtime_error("kafka harness: unknown ACL operation " + op);
  return it->second;
}

}  // namespace

const char* default_kafka_version() { return VANE_KAFKA_VERSION; }

std::string kafka_unavailable_reason(const std::string& version) {
  const std::string home = kafka_home(version);
  const std::string cp = read_text(home + "/classpath");
  if (cp.empty())
    return "Apache Kafka " + version + " is not installed in " + home +
           " (scripts/install-kafka.sh resolves it with Maven; it failed or was not run)";
  if (system("command -v java >/dev/null 2>&1") != 0) return "no java on PATH (scripts/install-deps.sh installs it)";
  return "";
}

KafkaCluster::KafkaCluster(KafkaClusterOptions options, milliseconds timeout) : options_(std::move(options)) {
  if (const std::string why = kafka_unavailable_reason(options_.version); !why.empty())
    throw std::runtime_error("kafka harness: " + why);
  if (options_.nodes < 1) throw std::runtime_error("kafka harness: nodes must be >= 1");
  classpath_ = read_text(kafka_home(options_.version) + "/classpath");
  while (!classpath_.empty() && (classpath_.back() == '\n' || classpath_.back() == ' ')) classpath_.pop_back();
  cluster_id_ = random_cluster_id();
  const std::vector<int> ports = free_ports(4 * options_.nodes);
  for (int i = 0; i < options_.nodes; ++i) {
    Node n;
    n.id = i + 1;
    n.port = ports[4 * i];
    n.ssl_port = ports[4 * i + 1];
    n.sasl_port = ports[4 * i + 2];
    n.controller_port = ports[4 * i + 3];
    n.dir = dir_.file("node-" + std::to_string(n.id));
    std::filesystem::create_directories(n.dir);
    nodes_.push_back(std::move(n));
  }
  write_text(dir_.file("log4j2.properties"),
             "rootLogger.level = WARN\n"
             "rootLogger.appenderRef.err.ref = ERR\n"
             "appender.err.type = Console\n"
             "appender.err.name = ERR\n"
             "appender.err.target = SYSTEM_ERR\n"
             "appender.err.layout.type = PatternLayout\n"
             "appender.err.layout.pattern = [%d] %p %m (%c)%n\n"
             // One line per start and stop, to read a node's life in its log.
             "logger.raft.name = kafka.server.KafkaRaftServer\n"
             "logger.raft.level = INFO\n"
             "logger.broker.name = kafka.server.BrokerServer\n"
             "logger.broker.level = INFO\n");
  if (options_.security) make_certificates();
  std::vector<int> ids;
  for (const Node& n : nodes_) {
    write_properties(n);
    ids.push_back(n.id);
  }
  format(ids);
  for (Node& n : nodes_) launch(n);
  wait_serving(ids, timeout);
}

KafkaCluster::~KafkaCluster() {
  for (Node& n : nodes_) {
    if (n.proc) {
      n.proc->send_signal(SIGCONT);  // a paused JVM still dies of SIGKILL, but be plain about it
      n.proc->send_signal(SIGKILL);
      n.proc->wait_exit(deadline_in(std::chrono::seconds(10)));
    }
  }
}

KafkaCluster::Node& KafkaCluster::node(int id) {
  if (id < 1 || id > nodes()) throw std::runtime_error("kafka harness: no node " + std::to_string(id));
  return nodes_[static_cast<std::size_t>(id - 1)];
}
const KafkaCluster::Node& KafkaCluster::node(int id) const {
  if (id < 1 || id > nodes()) throw std::runtime_error("kafka harness: no node " + std::to_string(id));
  return nodes_[static_cast<std::size_t>(id - 1)];
}

std::string KafkaCluster::list(int Node::*port) const {
  std::string out;
  for (const Node& n : nodes_) out += (out.empty() ? "" : ",") + std::string("127.0.0.1:") + std::to_string(n.*port);
  return out;
}
std::string KafkaCluster::bootstrap() const { return list(&Node::port); }
std::string KafkaCluster::bootstrap_ssl() const { return list(&Node::ssl_port); }
std::string KafkaCluster::bootstrap_sasl_ssl() const { return list(&Node::sasl_port); }
std::string KafkaCluster::address(int id) const { return "127.0.0.1:" + std::to_string(node(id).port); }
std::string KafkaCluster::log_file(int id) const { return node(id).dir + "/server.log"; }

std::string KafkaCluster::log_tail(int id) const {
  std::string log = read_text(log_file(id));
  return log.size() > 3000 ? log.substr(log.size() - 3000) : log;
}

void KafkaCluster::make_certificates() {
  const auto f = [&](const char* name) { return dir_.file(name); };
  const milliseconds t = std::chrono::seconds(60);
  const std::string log = f("openssl.log");
  auto make_ca = [&](const char* key, const char* pem, const char* cn) {
    run_tool({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f(key), "-out", f(pem), "-days",
              "7", "-subj", std::string("/CN=") + cn},
             log, t);
  };
  // A leaf: key (PKCS#8, unencrypted), CSR, certificate signed by ca.pem.
  auto make_leaf = [&](const std::string& name, const std::string& cn, const std::string& ext) {
    run_tool({"openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f((name + ".key").c_str()), "-out",
              f((name + ".csr").c_str()), "-subj", "/CN=" + cn},
             log, t);
    write_text(f((name + ".ext").c_str()), ext);
    run_tool({"openssl", "x509", "-req", "-in", f((name + ".csr").c_str()), "-CA", f("ca.pem"), "-CAkey", f("ca.key"),
              "-CAcreateserial", "-out", f((name + ".pem").c_str()), "-days", "7", "-extfile",
              f((name + ".ext").c_str())},
             log, t);
  };
  make_ca("ca.key", "ca.pem", "vane-test-ca");
  make_ca("other-ca.key", "other-ca.pem", "vane-test-other-ca");
  make_leaf("broker", "localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n");
  make_leaf("client", options_.client_cn, "extendedKeyUsage=clientAuth\n");
  // Kafka's PEM key store: the private key and the certificate in one file.
  write_text(f("broker-keystore.pem"), read_text(f("broker.key")) + read_text(f("broker.pem")));
}

void KafkaCluster::write_properties(const Node& n) const {
  const int rf = std::min(3, nodes());
  const int isr = std::min(2, nodes());
  std::string voters;
  for (const Node& v : nodes_)
    voters += (voters.empty() ? "" : ",") + std::to_string(v.id) + "@127.0.0.1:" + std::to_string(v.controller_port);
  const std::string host = "127.0.0.1:";
  std::string listeners = "PLAINTEXT://" + host + std::to_string(n.port);
  std::string map = "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT";
  if (options_.security) {
    listeners += ",SSL://" + host + std::to_string(n.ssl_port) + ",SASL_SSL://" + host + std::to_string(n.sasl_port);
    map += ",SSL:SSL,SASL_SSL:SASL_SSL";
  }
  std::map<std::string, std::string> p = {
      {"process.roles", "broker,controller"},
      {"node.id", std::to_string(n.id)},
      {"controller.quorum.voters", voters},
      {"listeners", listeners + ",CONTROLLER://" + host + std::to_string(n.controller_port)},
      {"advertised.listeners", listeners},
      {"listener.security.protocol.map", map},
      {"controller.listener.names", "CONTROLLER"},
      {"inter.broker.listener.name", "PLAINTEXT"},
      {"log.dirs", n.dir + "/data"},
      {"num.partitions", "3"},
      {"default.replication.factor", std::to_string(rf)},
      {"min.insync.replicas", std::to_string(isr)},
      {"offsets.topic.replication.factor", std::to_string(rf)},
      {"offsets.topic.num.partitions", "3"},
      {"transaction.state.log.replication.factor", std::to_string(rf)},
      {"transaction.state.log.min.isr", std::to_string(isr)},
      {"transaction.state.log.num.partitions", "3"},
      {"share.coordinator.state.topic.replication.factor", std::to_string(rf)},
      {"share.coordinator.state.topic.min.isr", std::to_string(isr)},
      {"group.initial.rebalance.delay.ms", "0"},
      {"unclean.leader.election.enable", "false"},
      // A killed node is fenced (and leaves the ISR) within seconds, not 9 s.
      {"broker.heartbeat.interval.ms", "500"},
      {"broker.session.timeout.ms", "4000"},
      {"num.network.threads", "2"},
      {"num.io.threads", "4"},
      {"log.retention.hours", "24"},
  };
  if (options_.security) {
    std::string plain_users;
    for (const auto& [user, password] : options_.users) plain_users += " user_" + user + "=\"" + password + "\"";
    p.insert({
        {"ssl.keystore.type", "PEM"},
        {"ssl.keystore.location", dir_.file("broker-keystore.pem")},
        {"ssl.truststore.type", "PEM"},
        {"ssl.truststore.location", dir_.file("ca.pem")},
        {"listener.name.ssl.ssl.client.auth", "required"},
        // "CN=gw-test" authenticates as User:gw-test, the same principal as SASL.
        {"ssl.principal.mapping.rules", "RULE:^CN=([^,]+)$/$1/,DEFAULT"},
        {"listener.name.sasl_ssl.sasl.enabled.mechanisms", "SCRAM-SHA-512,SCRAM-SHA-256,PLAIN"},
        {"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config",
         "org.apache.kafka.common.security.scram.ScramLoginModule required;"},
        {"listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config",
         "org.apache.kafka.common.security.scram.ScramLoginModule required;"},
        {"listener.name.sasl_ssl.plain.sasl.jaas.config",
         "org.apache.kafka.common.security.plain.PlainLoginModule required" + plain_users + ";"},
    });
  }
  if (options_.acls) {
    p["authorizer.class.name"] = "org.apache.kafka.metadata.authorizer.StandardAuthorizer";
    p["super.users"] = "User:ANONYMOUS";
    p["allow.everyone.if.no.acl.found"] = "true";
  }
  for (const auto& [k, v] : options_.broker_properties) p[k] = v;
  std::string text = "# written by the vane test harness\n";
  for (const auto& [k, v] : p) text += k + "=" + v + "\n";
  write_text(n.dir + "/server.properties", text);
}

void KafkaCluster::format(const std::vector<int>& ids) {
  std::vector<std::unique_ptr<ChildProcess>> runs;
  for (int id : ids) {
    std::vector<std::string> argv = {"java", "-Xmx256m", "-cp", classpath_,
                                     "-Dlog4j2.configurationFile=" + dir_.file("log4j2.properties"),
                                     "kafka.tools.StorageTool", "format", "-t", cluster_id_, "-c",
                                     node(id).dir + "/server.properties"};
    for (const auto& [user, password] : options_.users) {
      for (const char* mech : {"SCRAM-SHA-512", "SCRAM-SHA-256"}) {
        argv.push_back("--add-scram");
        argv.push_back(std::string(mech) + "=[name=" + user + ",password=" + password + "]");
      }
    }
    runs.push_back(std::make_unique<ChildProcess>(argv, node(id).dir + "/format.log"));
  }
  const Deadline deadline = deadline_in(std::chrono::seconds(120));
  for (std::size_t i = 0; i < runs.size(); ++i) {
    auto rc = runs[i]->wait_exit(deadline);
    if (!rc || *rc != 0)
      throw std::runtime_error("kafka harness: formatting node " + std::to_string(ids[i]) + " failed: " +
                               runs[i]->captured_stderr());
  }
}

void KafkaCluster::launch(Node& n) {
  // The shell becomes the JVM (exec), so pid() is the JVM's and signals reach
  // it directly. Beside it a watcher holds the stdin pipe from this process:
  // when the test goes away without its destructor (a crash, a kill), the
  // pipe closes and the watcher SIGKILLs the JVM, so no broker outlives its test.
  const std::string cmd =
      "exec 3<&0; (cat <&3 >/dev/null; kill -9 $$ 2>/dev/null) & "
      "exec java -Xms128m -Xmx" + options_.heap +
      " -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:-UsePerfData -Djava.awt.headless=true"
      " -Dlog4j2.configurationFile='" + dir_.file("log4j2.properties") + "' -cp '" + classpath_ +
      "' kafka.Kafka '" + n.dir + "/server.properties' >>'" + n.dir + "/server.log' 2>&1 </dev/null 3<&-";
  n.proc = std::make_unique<ChildProcess>(std::vector<std::string>{"/bin/sh", "-c", cmd});
}

bool KafkaCluster::running(int id) {
  Node& n = node(id);
  return n.proc && n.proc->running();
}

bool KafkaCluster::serving(const std::vector<int>& ids) {
  std::string boot;
  for (const Node& n : nodes_)
    if (n.proc && n.proc->running()) boot += (boot.empty() ? "" : ",") + std::string("127.0.0.1:") + std::to_string(n.port);
  if (boot.empty()) return false;
  RdKafkaPtr rk = make_admin_client(boot);
  const rd_kafka_metadata_t* raw = nullptr;
  if (rd_kafka_metadata(rk.get(), 0, nullptr, &raw, 2000) != RD_KAFKA_RESP_ERR_NO_ERROR) return false;
  RdKafkaMetadataPtr md(raw);
  for (int id : ids) {
    bool listed = false;
    for (int b = 0; b < md->broker_cnt; ++b) listed = listed || md->brokers[b].id == id;
    if (!listed) return false;
  }
  return true;
}

void KafkaCluster::wait_serving(const std::vector<int>& ids, milliseconds timeout) {
  const Deadline deadline = deadline_in(timeout);
  for (;;) {
    for (int id : ids) {
      if (!node(id).proc->running())
        throw std::runtime_error("kafka harness: node " + std::to_string(id) + " exited at start: " + log_tail(id));
    }
    if (serving(ids)) return;
    if (Clock::now() >= deadline) {
      std::string tails;
      for (int id : ids) tails += "\n--- node " + std::to_string(id) + " ---\n" + log_tail(id);
      throw std::runtime_error("kafka harness: the cluster did not serve within " +
                               std::to_string(timeout.count()) + " ms" + tails);
    }
    std::this_thread::sleep_for(milliseconds(200));  // poll interval of the deadline loop
  }
}

void KafkaCluster::kill(int id) {
  Node& n = node(id);
  if (!n.proc) return;
  n.proc->send_signal(SIGKILL);
  if (!n.proc->wait_exit(deadline_in(std::chrono::seconds(10))))
    throw std::runtime_error("kafka harness: node " + std::to_string(id) + " survived SIGKILL");
  n.proc.reset();
}

void KafkaCluster::pause(int id) {
  Node& n = node(id);
  if (!n.proc || !n.proc->send_signal(SIGSTOP))
    throw std::runtime_error("kafka harness: node " + std::to_string(id) + " is not running");
}

void KafkaCluster::resume(int id) {
  Node& n = node(id);
  if (!n.proc || !n.proc->send_signal(SIGCONT))
    throw std::runtime_error("kafka harness: node " + std::to_string(id) + " is not running");
}

void KafkaCluster::start(int id, milliseconds timeout) {
  Node& n = node(id);
  if (n.proc) throw std::runtime_error("kafka harness: node " + std::to_string(id) + " is already running");
  launch(n);
  wait_serving({id}, timeout);
}

void KafkaCluster::kill_all() {
  for (Node& n : nodes_) kill(n.id);
}

void KafkaCluster::start_all(milliseconds timeout) {
  std::vector<int> ids;
  for (Node& n : nodes_) {
    if (!n.proc) launch(n);
    ids.push_back(n.id);
  }
  wait_serving(ids, timeout);
}

void KafkaCluster::create_topic(const std::string& name, int partitions, int replication,
                                const std::map<std::string, std::string>& configs) {
  if (replication < 0) replication = std::min(3, nodes());
  RdKafkaPtr rk = make_admin_client(bootstrap());
  char err[512];
  rd_kafka_NewTopic_t* nt = rd_kafka_NewTopic_new(name.c_str(), partitions, replication, err, sizeof err);
  if (!nt) throw std::runtime_error(std::string("kafka harness: topic ") + name + ": " + err);
  for (const auto& [k, v] : configs) rd_kafka_NewTopic_set_config(nt, k.c_str(), v.c_str());
  QueuePtr q(rd_kafka_queue_new(rk.get()));
  OptionsPtr o = admin_options(rk.get(), RD_KAFKA_ADMIN_OP_CREATETOPICS);
  rd_kafka_CreateTopics(rk.get(), &nt, 1, o.get(), q.get());
  rd_kafka_NewTopic_destroy(nt);
  EventPtr ev = admin_result(q.get(), "create topic " + name);
  size_t cnt = 0;
  const rd_kafka_topic_result_t** res =
      rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev.get()), &cnt);
  for (size_t i = 0; i < cnt; ++i) {
    if (rd_kafka_topic_result_error(res[i]) != RD_KAFKA_RESP_ERR_NO_ERROR)
      throw std::runtime_error("kafka harness: create topic " + name + ": " +
                               rd_kafka_topic_result_error_string(res[i]));
  }
  // Created is not yet led: wait until every partition has a leader, so a
  // test can produce at once.
  const Deadline deadline = deadline_in(std::chrono::seconds(30));
  for (;;) {
    std::unique_ptr<rd_kafka_topic_t, void (*)(rd_kafka_topic_t*)> rkt(rd_kafka_topic_new(rk.get(), name.c_str(), nullptr),
                                                                       rd_kafka_topic_destroy);
    const rd_kafka_metadata_t* raw = nullptr;
    if (rd_kafka_metadata(rk.get(), 0, rkt.get(), &raw, 2000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      RdKafkaMetadataPtr md(raw);
      bool led = md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR &&
                 md->topics[0].partition_cnt == partitions;
      for (int p = 0; led && p < md->topics[0].partition_cnt; ++p) led = md->topics[0].partitions[p].leader >= 0;
      if (led) return;
    }
    if (Clock::now() >= deadline) throw std::runtime_error("kafka harness: topic " + name + " has no leaders after 30 s");
    std::this_thread::sleep_for(milliseconds(100));  // poll interval of the deadline loop
  }
}

void KafkaCluster::set_topic_configs(const std::string& name, const std::map<std::string, std::string>& configs) {
  RdKafkaPtr rk = make_admin_client(bootstrap());
  rd_kafka_ConfigResource_t* res = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, name.c_str());
  for (const auto& [k, v] : configs) rd_kafka_ConfigResource_set_config(res, k.c_str(), v.c_str());
  QueuePtr q(rd_kafka_queue_new(rk.get()));
  OptionsPtr o = admin_options(rk.get(), RD_KAFKA_ADMIN_OP_ALTERCONFIGS);
  rd_kafka_AlterConfigs(rk.get(), &res, 1, o.get(), q.get());
  rd_kafka_ConfigResource_destroy(res);
  EventPtr ev = admin_result(q.get(), "alter configs of " + name);
  size_t cnt = 0;
  const rd_kafka_ConfigResource_t** out =
      rd_kafka_AlterConfigs_result_resources(rd_kafka_event_AlterConfigs_result(ev.get()), &cnt);
  for (size_t i = 0; i < cnt; ++i) {
    if (rd_kafka_ConfigResource_error(out[i]) != RD_KAFKA_RESP_ERR_NO_ERROR)
      throw std::runtime_error("kafka harness: alter configs of " + name + ": " +
                               rd_kafka_ConfigResource_error_string(out[i]));
  }
}

void KafkaCluster::delete_records(const std::string& topic, int partition, std::int64_t before_offset) {
  RdKafkaPtr rk = make_admin_client(bootstrap());
  rd_kafka_topic_partition_list_t* parts = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(parts, topic.c_str(), partition)->offset = before_offset;
  rd_kafka_DeleteRecords_t* del = rd_kafka_DeleteRecords_new(parts);
  rd_kafka_topic_partition_list_destroy(parts);
  QueuePtr q(rd_kafka_queue_new(rk.get()));
  OptionsPtr o = admin_options(rk.get(), RD_KAFKA_ADMIN_OP_DELETERECORDS);
  rd_kafka_DeleteRecords(rk.get(), &del, 1, o.get(), q.get());
  rd_kafka_DeleteRecords_destroy(del);
  const std::string what = "delete records of " + topic + " [" + std::to_string(partition) + "]";
  EventPtr ev = admin_result(q.get(), what);
  const rd_kafka_topic_partition_list_t* out =
      rd_kafka_DeleteRecords_result_offsets(rd_kafka_event_DeleteRecords_result(ev.get()));
  for (int i = 0; out && i < out->cnt; ++i)
    if (out->elems[i].err != RD_KAFKA_RESP_ERR_NO_ERROR)
      throw std::runtime_error("kafka harness: " + what + ": " + rd_kafka_err2str(out->elems[i].err));
}

void KafkaCluster::add_topic_acl(const std::string& principal, const std::string& topic, const std::string& operation,
                                 bool allow) {
  RdKafkaPtr rk = make_admin_client(bootstrap());
  char err[512];
  rd_kafka_AclBinding_t* acl = rd_kafka_AclBinding_new(
      RD_KAFKA_RESOURCE_TOPIC, topic.c_str(), RD_KAFKA_RESOURCE_PATTERN_LITERAL, principal.c_str(), "*",
      acl_operation(operation), allow ? RD_KAFKA_ACL_PERMISSION_TYPE_ALLOW : RD_KAFKA_ACL_PERMISSION_TYPE_DENY, err,
      sizeof err);
  if (!acl) throw std::runtime_error(std::string("kafka harness: ACL: ") + err);
  QueuePtr q(rd_kafka_queue_new(rk.get()));
  OptionsPtr o = admin_options(rk.get(), RD_KAFKA_ADMIN_OP_CREATEACLS);
  rd_kafka_CreateAcls(rk.get(), &acl, 1, o.get(), q.get());
  rd_kafka_AclBinding_destroy(acl);
  EventPtr ev = admin_result(q.get(), "create ACL on " + topic);
  size_t cnt = 0;
  const rd_kafka_acl_result_t** res = rd_kafka_CreateAcls_result_acls(rd_kafka_event_CreateAcls_result(ev.get()), &cnt);
  for (size_t i = 0; i < cnt; ++i) {
    if (const rd_kafka_error_t* e = rd_kafka_acl_result_error(res[i]))
      throw std::runtime_error(std::string("kafka harness: create ACL on ") + topic + ": " + rd_kafka_error_string(e));
  }
}

std::map<std::string, std::string> KafkaCluster::ssl_client_properties() const {
  return {{"security.protocol", "ssl"},
          {"ssl.ca.location", ca_file()},
          {"ssl.certificate.location", client_cert_file()},
          {"ssl.key.location", client_key_file()}};
}

std::map<std::string, std::string> KafkaCluster::sasl_client_properties(const std::string& user,
                                                                        const std::string& mechanism) const {
  auto it = options_.users.find(user);
  return {{"security.protocol", "sasl_ssl"},
          {"ssl.ca.location", ca_file()},
          {"sasl.mechanisms", mechanism},
          {"sasl.username", user},
          {"sasl.password", it == options_.users.end() ? "" : it->second}};
}

}  // namespace vane::test
