#include "support/kafka_reader.h"

#include <unistd.h>

#include <algorithm>

namespace vane::test {

KafkaReader::KafkaReader(const std::string& bootstrap) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), err, sizeof err);
  rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof err);
  rd_kafka_conf_set(conf, "log_level", "2", err, sizeof err);
  // assign() needs a group id even though the reader never joins the group.
  static int n = 0;
  const std::string group = "vane-test-reader-" + std::to_string(getpid()) + "-" + std::to_string(++n);
  rd_kafka_conf_set(conf, "group.id", group.c_str(), err, sizeof err);
  // Read what was committed, as a downstream consumer would.
  rd_kafka_conf_set(conf, "isolation.level", "read_committed", err, sizeof err);
  rk_ = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  if (!rk_) rd_kafka_conf_destroy(conf);
}

KafkaReader::~KafkaReader() {
  if (rk_) {
    rd_kafka_consumer_close(rk_);
    rd_kafka_destroy(rk_);
  }
}

bool KafkaReader::assign(const std::string& topic, Deadline deadline) {
  if (assigned_.count(topic)) return true;
  while (std::chrono::steady_clock::now() < deadline) {
    rd_kafka_topic_t* t = rd_kafka_topic_new(rk_, topic.c_str(), nullptr);
    const rd_kafka_metadata_t* md = nullptr;
    const rd_kafka_resp_err_t e = rd_kafka_metadata(rk_, 0, t, &md, 2000);
    rd_kafka_topic_destroy(t);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1 && md->topics[0].partition_cnt > 0 &&
        md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      // Without a group, assign() replaces the whole assignment: partitions
      // already read resume after the last message seen, new ones start at
      // the beginning.
      for (int i = 0; i < md->topics[0].partition_cnt; ++i)
        next_offset_[{topic, md->topics[0].partitions[i].id}] = RD_KAFKA_OFFSET_BEGINNING;
      rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(static_cast<int>(next_offset_.size()));
      for (const auto& [tp, off] : next_offset_)
        rd_kafka_topic_partition_list_add(list, tp.first.c_str(), tp.second)->offset = off;
      const rd_kafka_resp_err_t aerr = rd_kafka_assign(rk_, list);
      rd_kafka_topic_partition_list_destroy(list);
      if (aerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_metadata_destroy(md);
        return false;
      }
      rd_kafka_metadata_destroy(md);
      assigned_.insert(topic);
      return true;
    }
    if (md) rd_kafka_metadata_destroy(md);
  }
  return false;
}

std::size_t KafkaReader::count_of(const std::vector<std::string>& topics) const {
  return static_cast<std::size_t>(std::count_if(seen_.begin(), seen_.end(), [&](const ConsumedMessage& m) {
    return std::find(topics.begin(), topics.end(), m.topic) != topics.end();
  }));
}

std::vector<ConsumedMessage> KafkaReader::read_until(const std::vector<std::string>& topics, std::size_t count,
                                                     Deadline deadline) {
  if (rk_) {
    for (const auto& t : topics) assign(t, deadline);
    while (count_of(topics) < count && std::chrono::steady_clock::now() < deadline) {
      rd_kafka_message_t* m = rd_kafka_consumer_poll(rk_, 100);
      if (!m) continue;
      if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        ConsumedMessage c;
        c.topic = rd_kafka_topic_name(m->rkt);
        c.partition = m->partition;
        c.offset = m->offset;
        if (m->key) c.key.assign(static_cast<const char*>(m->key), m->key_len);
        if (m->payload) c.value.assign(static_cast<const char*>(m->payload), m->len);
        rd_kafka_timestamp_type_t tt;
        c.timestamp_ms = rd_kafka_message_timestamp(m, &tt);
        rd_kafka_headers_t* h = nullptr;
        if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR) {
          const char* name;
          const void* val;
          size_t size;
          for (size_t i = 0; rd_kafka_header_get_all(h, i, &name, &val, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; ++i)
            c.headers[name] = val ? std::string(static_cast<const char*>(val), size) : std::string();
        }
        next_offset_[{c.topic, c.partition}] = c.offset + 1;
        seen_.push_back(std::move(c));
      }
      rd_kafka_message_destroy(m);
    }
  }
  std::vector<ConsumedMessage> out;
  for (const auto& m : seen_)
    if (std::find(topics.begin(), topics.end(), m.topic) != topics.end()) out.push_back(m);
  return out;
}

std::string MockKafka::start(int brokers, const std::vector<std::string>& topics) {
  std::vector<std::string> argv{std::string(VANE_BINARY_DIR) + "/tests/support/vane-kafka-mock", "--brokers",
                                std::to_string(brokers)};
  for (const auto& t : topics) {
    argv.push_back("--topic");
    argv.push_back(t);
  }
  proc_ = std::make_unique<ChildProcess>(argv);
  auto line = proc_->read_line(std::chrono::steady_clock::now() + std::chrono::seconds(20));
  if (!line || line->rfind("BOOTSTRAP ", 0) != 0) return "";
  return line->substr(10);
}

bool MockKafka::command(const std::string& cmd) {
  if (!proc_ || !proc_->write_line(cmd)) return false;
  auto reply = proc_->read_line(std::chrono::steady_clock::now() + std::chrono::seconds(10));
  return reply && *reply == "OK " + cmd;
}

bool MockKafka::down(const std::string& which) { return command("down " + which); }
bool MockKafka::up(const std::string& which) { return command("up " + which); }

}  // namespace vane::test
