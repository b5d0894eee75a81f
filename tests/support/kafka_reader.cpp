#include "support/kafka_reader.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <stdexcept>

namespace vane::test {
namespace {

bool in(const std::vector<std::string>& topics, const std::string& t) {
  return std::find(topics.begin(), topics.end(), t) != topics.end();
}

}  // namespace

int ms_until(Deadline deadline, int cap) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, cap));
}

bool add_partitions(rd_kafka_t* rk, const std::string& topic, Deadline deadline, OffsetMap& next) {
  std::unique_ptr<rd_kafka_topic_t, void (*)(rd_kafka_topic_t*)> rkt(rd_kafka_topic_new(rk, topic.c_str(), nullptr),
                                                                     rd_kafka_topic_destroy);
  const rd_kafka_metadata_t* raw = nullptr;
  const rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt.get(), &raw, std::max(ms_until(deadline, 2000), 1));
  RdKafkaMetadataPtr md(raw);
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR || !md || md->topic_cnt != 1 ||
      md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR || md->topics[0].partition_cnt == 0)
    return false;
  for (int i = 0; i < md->topics[0].partition_cnt; ++i)
    next.emplace(std::make_pair(topic, md->topics[0].partitions[i].id), RD_KAFKA_OFFSET_BEGINNING);
  return true;
}

bool high_watermarks(rd_kafka_t* rk, const OffsetMap& partitions, Deadline deadline, OffsetMap* high) {
  for (const auto& [tp, off] : partitions) {
    std::int64_t lo = 0, hi = 0;
    while (rd_kafka_query_watermark_offsets(rk, tp.first.c_str(), tp.second, &lo, &hi,
                                            std::max(ms_until(deadline, 5000), 1)) != RD_KAFKA_RESP_ERR_NO_ERROR)
      if (Clock::now() >= deadline) return false;
    (*high)[tp] = hi;
  }
  return true;
}

bool reached(const OffsetMap& next, const OffsetMap& high) {
  for (const auto& [tp, hi] : high) {
    auto it = next.find(tp);
    const std::int64_t n = it == next.end() ? RD_KAFKA_OFFSET_BEGINNING : it->second;
    if (hi > 0 && n < hi) return false;  // BEGINNING (<0) with hi > 0: nothing read yet
  }
  return true;
}

bool assign_partitions(rd_kafka_t* rk, const OffsetMap& next) {
  RdKafkaPartitionListPtr list(rd_kafka_topic_partition_list_new(static_cast<int>(next.size())));
  for (const auto& [tp, off] : next) rd_kafka_topic_partition_list_add(list.get(), tp.first.c_str(), tp.second)->offset = off;
  return rd_kafka_assign(rk, list.get()) == RD_KAFKA_RESP_ERR_NO_ERROR;
}

RdKafkaPtr make_test_consumer(const std::string& bootstrap, const std::string& who) {
  RdKafkaConfPtr conf(rd_kafka_conf_new());
  auto set = [&](const char* name, const std::string& value) {
    char err[512];
    if (rd_kafka_conf_set(conf.get(), name, value.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK)
      throw std::runtime_error(who + ": " + name + ": " + err);
  };
  set("bootstrap.servers", bootstrap);
  // rd_kafka_assign() and rd_kafka_consumer_poll() need a group id, but the
  // consumer never joins the group (no subscribe) and never commits.
  static std::atomic<int> n{0};
  set("group.id", "vane-test-" + who + "-" + std::to_string(getpid()) + "-" + std::to_string(++n));
  set("enable.auto.commit", "false");
  set("enable.auto.offset.store", "false");
  set("isolation.level", "read_committed");
  set("fetch.wait.max.ms", "100");
  set("reconnect.backoff.max.ms", "500");
  // Tests take brokers down on purpose; connection-refused noise would bury
  // the failures that matter.
  set("log_level", "2");
  char err[512];
  RdKafkaPtr rk(rd_kafka_new(RD_KAFKA_CONSUMER, conf.get(), err, sizeof err));
  if (!rk) throw std::runtime_error(who + ": " + err);
  conf.release();  // owned by rk now
  // Errors come out of rd_kafka_consumer_poll() instead of piling up.
  rd_kafka_poll_set_consumer(rk.get());
  return rk;
}

void destroy_test_consumer(RdKafkaPtr& rk) {
  if (rk) rd_kafka_destroy_flags(rk.release(), RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
}

KafkaReader::KafkaReader(const std::string& bootstrap) : rk_(make_test_consumer(bootstrap, "reader")) {}

KafkaReader::~KafkaReader() { destroy_test_consumer(rk_); }

bool KafkaReader::assign(const std::string& topic, Deadline deadline) {
  if (assigned_.count(topic)) return true;
  for (;;) {
    if (add_partitions(rk_.get(), topic, deadline, next_offset_)) {
      // assign() replaces the whole assignment: partitions already being read
      // resume after the last message seen, the new ones start at the beginning.
      if (!assign_partitions(rk_.get(), next_offset_)) return false;
      assigned_.insert(topic);
      return true;
    }
    if (Clock::now() >= deadline) return false;
    // Not known yet (or brokers down): keep serving what is assigned while
    // waiting to ask again.
    poll_batch(ms_until(deadline, 100));
  }
}

void KafkaReader::poll_batch(int timeout_ms) {
  // Block for the first message, then take what is already there.
  for (int i = 0; i < 10000; ++i) {
    RdKafkaMessagePtr m(rd_kafka_consumer_poll(rk_.get(), i == 0 ? timeout_ms : 0));
    if (!m) return;
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR || !m->rkt) continue;  // transport errors etc.: retried by librdkafka
    ConsumedMessage c;
    c.topic = rd_kafka_topic_name(m->rkt);
    c.partition = m->partition;
    c.offset = m->offset;
    auto& next = next_offset_[{c.topic, c.partition}];
    if (next >= 0 && c.offset < next) continue;  // re-fetched after a re-assignment
    next = c.offset + 1;
    if (m->key) c.key.assign(static_cast<const char*>(m->key), m->key_len);
    if (m->payload) c.value.assign(static_cast<const char*>(m->payload), m->len);
    rd_kafka_timestamp_type_t tt;
    c.timestamp_ms = rd_kafka_message_timestamp(m.get(), &tt);
    rd_kafka_headers_t* h = nullptr;  // owned by the message
    if (rd_kafka_message_headers(m.get(), &h) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      const char* name;
      const void* val;
      size_t size;
      for (size_t j = 0; rd_kafka_header_get_all(h, j, &name, &val, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; ++j)
        c.headers[name] = val ? std::string(static_cast<const char*>(val), size) : std::string();
    }
    seen_.push_back(std::move(c));
  }
}

bool KafkaReader::catch_up(Deadline deadline) {
  OffsetMap high;
  if (!high_watermarks(rk_.get(), next_offset_, deadline, &high)) return false;
  while (!reached(next_offset_, high)) {
    if (Clock::now() >= deadline) return false;
    poll_batch(ms_until(deadline, 100));
  }
  return true;
}

std::vector<ConsumedMessage> KafkaReader::of(const std::vector<std::string>& topics) const {
  std::vector<ConsumedMessage> out;
  for (const auto& m : seen_)
    if (in(topics, m.topic)) out.push_back(m);
  return out;
}

std::vector<ConsumedMessage> KafkaReader::read_until(const std::vector<std::string>& topics, std::size_t count,
                                                     Deadline deadline) {
  auto count_of = [&] {
    return static_cast<std::size_t>(
        std::count_if(seen_.begin(), seen_.end(), [&](const ConsumedMessage& m) { return in(topics, m.topic); }));
  };
  for (const auto& t : topics) assign(t, deadline);
  while (count_of() < count && Clock::now() < deadline) poll_batch(ms_until(deadline, 100));
  return of(topics);
}

std::vector<ConsumedMessage> KafkaReader::read_until(const std::vector<std::string>& topics, const Done& done,
                                                     Deadline deadline) {
  for (const auto& t : topics) assign(t, deadline);
  auto msgs = of(topics);
  while (!done(msgs) && Clock::now() < deadline) {
    poll_batch(ms_until(deadline, 100));
    msgs = of(topics);
  }
  return msgs;
}

std::string kafka_mock_path() { return VANE_KAFKA_MOCK_PATH; }

MockKafka::~MockKafka() {
  if (proc_) stop(deadline_in(std::chrono::seconds(5)));
}

std::string MockKafka::start(int brokers, const std::vector<std::string>& topics, const std::string& stderr_path) {
  if (proc_) stop();
  bootstrap_.clear();
  last_error_.clear();
  std::vector<std::string> argv{kafka_mock_path(), "--brokers", std::to_string(brokers)};
  for (const auto& t : topics) {
    argv.push_back("--topic");
    argv.push_back(t);
  }
  try {
    proc_ = std::make_unique<ChildProcess>(argv, stderr_path);
  } catch (const std::exception& e) {
    last_error_ = e.what();
    return "";
  }
  const auto deadline = deadline_in(std::chrono::seconds(20));
  auto line = proc_->read_line(deadline);
  if (!line || line->rfind("BOOTSTRAP ", 0) != 0 || line->size() <= 10) {
    last_error_ = line ? "unexpected first line: " + *line : "no BOOTSTRAP line";
    if (auto rc = proc_->wait_exit(deadline_in(std::chrono::seconds(1))))
      last_error_ += " (exit " + std::to_string(*rc) + ")";
    last_error_ += proc_->captured_stderr();
    proc_.reset();
    return "";
  }
  bootstrap_ = line->substr(10);
  return bootstrap_;
}

bool MockKafka::command(const std::string& cmd) {
  if (!proc_) {
    last_error_ = "not started";
    return false;
  }
  if (!proc_->write_line(cmd)) {
    last_error_ = "helper is gone";
    return false;
  }
  auto reply = proc_->read_line(deadline_in(std::chrono::seconds(10)));
  if (!reply) {
    last_error_ = "no reply to: " + cmd;
    return false;
  }
  if (*reply != "OK " + cmd) {
    last_error_ = *reply;
    return false;
  }
  return true;
}

bool MockKafka::down(const std::string& which) { return command("down " + which); }
bool MockKafka::up(const std::string& which) { return command("up " + which); }
bool MockKafka::rtt(const std::string& which, int ms) { return command("rtt " + which + " " + std::to_string(ms)); }
bool MockKafka::leader(const std::string& topic, int partition, int broker_id) {
  return command("leader " + topic + " " + std::to_string(partition) + " " +
                 (broker_id < 0 ? std::string("none") : std::to_string(broker_id)));
}

bool MockKafka::stop(Deadline deadline) {
  if (!proc_) return true;
  if (proc_->write_line("quit")) proc_->read_line(deadline);  // "OK quit"
  proc_->close_stdin();
  const auto rc = proc_->wait_exit(deadline);
  if (!rc) last_error_ = "helper did not exit after quit";
  proc_.reset();  // kills it if it is still there
  bootstrap_.clear();
  return rc && *rc == 0;
}

}  // namespace vane::test
