// A consumer for timing what reaches Kafka: no group membership, every
// partition of the telemetry topic assigned from the beginning, a 10 ms
// fetch wait so that it adds little delay of its own to what it measures
// (support/make_test_consumer() waits longer). `extra` properties are set
// after the defaults. Throws std::runtime_error if it cannot be created.
#pragma once

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <utility>

#include "support/rdkafka_ptr.h"

namespace vane::test {

// Wall clock in ms, as message timestamps are: when a probe saw a message.
inline std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

using ProbeProperties = std::initializer_list<std::pair<const char*, const char*>>;

inline RdKafkaPtr make_probe_consumer(const std::string& bootstrap, const char* group, int partitions,
                                      ProbeProperties extra = {}) {
  RdKafkaConfPtr conf(rd_kafka_conf_new());
  char err[512];
  for (const auto& [k, v] : ProbeProperties{
           {"group.id", group}, {"enable.auto.commit", "false"}, {"fetch.wait.max.ms", "10"}, {"log_level", "2"}})
    rd_kafka_conf_set(conf.get(), k, v, err, sizeof err);
  for (const auto& [k, v] : extra) rd_kafka_conf_set(conf.get(), k, v, err, sizeof err);
  rd_kafka_conf_set(conf.get(), "bootstrap.servers", bootstrap.c_str(), err, sizeof err);
  RdKafkaPtr rk(rd_kafka_new(RD_KAFKA_CONSUMER, conf.get(), err, sizeof err));
  if (!rk) throw std::runtime_error(err);
  conf.release();
  rd_kafka_poll_set_consumer(rk.get());
  RdKafkaPartitionListPtr parts(rd_kafka_topic_partition_list_new(partitions));
  for (int p = 0; p < partitions; ++p)
    rd_kafka_topic_partition_list_add(parts.get(), "telemetry", p)->offset = RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_assign(rk.get(), parts.get());
  return rk;
}

}  // namespace vane::test
