// vane-bench-topics: creates and deletes topics on a real broker, for the
// benchmarks: one broker serves a whole benchmark run, and every measurement
// gets topics of its own (fresh offsets, fresh vane-seq counts, and the
// previous measurement's data deleted so it neither fills the disk nor
// lengthens a restart's log recovery).
//
//   vane-bench-topics --bootstrap HOST:PORT create NAME:PARTITIONS[:REPLICATION]...
//   vane-bench-topics --bootstrap HOST:PORT delete NAME...
//
// create returns once every partition of every topic has a leader (a
// producer can write at once); delete once the broker accepted the deletion
// (the files go later, file.delete.delay.ms). Exits 0, or 1 with the
// broker's words on stderr; 2 on usage errors. Deleting a topic that does
// not exist is not an error.
#include <librdkafka/rdkafka.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/process.h"
#include "support/rdkafka_ptr.h"

namespace {

using vane::test::Clock;
using vane::test::deadline_in;
using vane::test::RdKafkaConfPtr;
using vane::test::RdKafkaMetadataPtr;
using vane::test::RdKafkaPtr;

struct QueueDeleter {
  void operator()(rd_kafka_queue_t* q) const { rd_kafka_queue_destroy(q); }
};
struct EventDeleter {
  void operator()(rd_kafka_event_t* e) const { rd_kafka_event_destroy(e); }
};
struct OptionsDeleter {
  void operator()(rd_kafka_AdminOptions_t* o) const { rd_kafka_AdminOptions_destroy(o); }
};
struct TopicDeleter {
  void operator()(rd_kafka_topic_t* t) const { rd_kafka_topic_destroy(t); }
};
struct NewTopicDeleter {
  void operator()(rd_kafka_NewTopic_t* t) const { rd_kafka_NewTopic_destroy(t); }
};
struct DeleteTopicDeleter {
  void operator()(rd_kafka_DeleteTopic_t* t) const { rd_kafka_DeleteTopic_destroy(t); }
};
using QueuePtr = std::unique_ptr<rd_kafka_queue_t, QueueDeleter>;
using EventPtr = std::unique_ptr<rd_kafka_event_t, EventDeleter>;
using OptionsPtr = std::unique_ptr<rd_kafka_AdminOptions_t, OptionsDeleter>;

constexpr int kTimeoutMs = 30000;

RdKafkaPtr make_client(const std::string& bootstrap) {
  RdKafkaConfPtr conf(rd_kafka_conf_new());
  char err[512];
  for (const auto& [k, v] : {std::pair<const char*, std::string>{"bootstrap.servers", bootstrap},
                             {"client.id", "vane-bench-topics"},
                             {"log_level", "2"}}) {
    if (rd_kafka_conf_set(conf.get(), k, v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK)
      throw std::runtime_error(std::string(k) + ": " + err);
  }
  RdKafkaPtr rk(rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), err, sizeof err));
  if (!rk) throw std::runtime_error(err);
  conf.release();  // rd_kafka_new took it
  return rk;
}

OptionsPtr options(rd_kafka_t* rk, rd_kafka_admin_op_t op) {
  OptionsPtr o(rd_kafka_AdminOptions_new(rk, op));
  char err[256];
  rd_kafka_AdminOptions_set_request_timeout(o.get(), kTimeoutMs, err, sizeof err);
  rd_kafka_AdminOptions_set_operation_timeout(o.get(), kTimeoutMs, err, sizeof err);
  return o;
}

EventPtr result(rd_kafka_queue_t* q, const std::string& what) {
  EventPtr ev(rd_kafka_queue_poll(q, kTimeoutMs + 5000));
  if (!ev) throw std::runtime_error(what + ": no answer");
  if (rd_kafka_event_error(ev.get())) throw std::runtime_error(what + ": " + rd_kafka_event_error_string(ev.get()));
  return ev;
}

void check(const rd_kafka_topic_result_t** res, size_t cnt, const std::string& what, rd_kafka_resp_err_t ok_also) {
  for (size_t i = 0; i < cnt; ++i) {
    const rd_kafka_resp_err_t e = rd_kafka_topic_result_error(res[i]);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR && e != ok_also)
      throw std::runtime_error(what + " " + rd_kafka_topic_result_name(res[i]) + ": " +
                               rd_kafka_topic_result_error_string(res[i]));
  }
}

struct Spec {
  std::string name;
  int partitions = 1, replication = 1;
};

Spec parse(const std::string& s) {
  Spec t;
  const auto a = s.find(':');
  t.name = s.substr(0, a);
  if (a != std::string::npos) {
    const auto b = s.find(':', a + 1);
    t.partitions = std::stoi(s.substr(a + 1, b == std::string::npos ? std::string::npos : b - a - 1));
    if (b != std::string::npos) t.replication = std::stoi(s.substr(b + 1));
  }
  if (t.name.empty() || t.partitions < 1 || t.replication < 1) throw std::invalid_argument(s);
  return t;
}

// Every partition of `t` has a leader.
bool led(rd_kafka_t* rk, const Spec& t) {
  std::unique_ptr<rd_kafka_topic_t, TopicDeleter> rkt(rd_kafka_topic_new(rk, t.name.c_str(), nullptr));
  const rd_kafka_metadata_t* raw = nullptr;
  if (rd_kafka_metadata(rk, 0, rkt.get(), &raw, 2000) != RD_KAFKA_RESP_ERR_NO_ERROR) return false;
  RdKafkaMetadataPtr md(raw);
  if (md->topic_cnt != 1 || md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR ||
      md->topics[0].partition_cnt != t.partitions)
    return false;
  for (int p = 0; p < md->topics[0].partition_cnt; ++p)
    if (md->topics[0].partitions[p].leader < 0) return false;
  return true;
}

void create(rd_kafka_t* rk, const std::vector<Spec>& specs) {
  std::vector<std::unique_ptr<rd_kafka_NewTopic_t, NewTopicDeleter>> owned;
  std::vector<rd_kafka_NewTopic_t*> raw;
  char err[512];
  for (const Spec& t : specs) {
    owned.emplace_back(rd_kafka_NewTopic_new(t.name.c_str(), t.partitions, t.replication, err, sizeof err));
    if (!owned.back()) throw std::runtime_error("topic " + t.name + ": " + err);
    raw.push_back(owned.back().get());
  }
  QueuePtr q(rd_kafka_queue_new(rk));
  OptionsPtr o = options(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
  rd_kafka_CreateTopics(rk, raw.data(), raw.size(), o.get(), q.get());
  EventPtr ev = result(q.get(), "create");
  size_t cnt = 0;
  const rd_kafka_topic_result_t** res = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev.get()), &cnt);
  check(res, cnt, "create", RD_KAFKA_RESP_ERR_NO_ERROR);
  // Created is not yet led.
  const auto deadline = deadline_in(std::chrono::milliseconds(kTimeoutMs));
  for (const Spec& t : specs) {
    while (!led(rk, t)) {
      if (Clock::now() >= deadline) throw std::runtime_error("topic " + t.name + " has no leaders after 30 s");
      std::this_thread::sleep_for(std::chrono::milliseconds(50));  // poll interval of the deadline loop
    }
  }
}

void remove(rd_kafka_t* rk, const std::vector<std::string>& names) {
  std::vector<std::unique_ptr<rd_kafka_DeleteTopic_t, DeleteTopicDeleter>> owned;
  std::vector<rd_kafka_DeleteTopic_t*> raw;
  for (const std::string& n : names) {
    owned.emplace_back(rd_kafka_DeleteTopic_new(n.c_str()));
    raw.push_back(owned.back().get());
  }
  QueuePtr q(rd_kafka_queue_new(rk));
  OptionsPtr o = options(rk, RD_KAFKA_ADMIN_OP_DELETETOPICS);
  rd_kafka_DeleteTopics(rk, raw.data(), raw.size(), o.get(), q.get());
  EventPtr ev = result(q.get(), "delete");
  size_t cnt = 0;
  const rd_kafka_topic_result_t** res = rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(ev.get()), &cnt);
  check(res, cnt, "delete", RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
}

int usage() {
  std::fprintf(stderr,
               "usage: vane-bench-topics --bootstrap B create NAME:PARTITIONS[:REPLICATION]...\n"
               "       vane-bench-topics --bootstrap B delete NAME...\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5 || std::string(argv[1]) != "--bootstrap") return usage();
  const std::string bootstrap = argv[2], cmd = argv[3];
  std::vector<std::string> args(argv + 4, argv + argc);
  try {
    RdKafkaPtr rk = make_client(bootstrap);
    if (cmd == "create") {
      std::vector<Spec> specs;
      for (const std::string& a : args) specs.push_back(parse(a));
      create(rk.get(), specs);
    } else if (cmd == "delete") {
      remove(rk.get(), args);
    } else {
      return usage();
    }
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "vane-bench-topics: bad topic %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vane-bench-topics: %s\n", e.what());
    return 1;
  }
  return 0;
}
