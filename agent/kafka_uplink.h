// Uplink to Apache Kafka through librdkafka: an idempotent producer with
// acks=all. One message per buffered row: key = device id, timestamp = the
// reading's time, headers vane-gateway, vane-source, vane-seq, vane-schema
// (and vane-error on dead letters). The row's seq rides along as the message
// opaque, so a delivery report names the row to delete.
#pragma once

#include <memory>
#include <string>

#include "config.h"
#include "uplink.h"

typedef struct rd_kafka_conf_s rd_kafka_conf_t;

namespace vane {

// Sets one of kafka_connection_properties() on a librdkafka config; the
// error names its config key, and never a secret's value.
Status set_kafka_property(rd_kafka_conf_t* conf, const KafkaProperty& p);

// Builds the producer. Invalid kafka.properties are an invalid Status naming
// the property; an unreachable cluster is not an error here (the producer
// keeps trying, rows stay buffered).
Result<std::unique_ptr<Uplink>> make_kafka_uplink(const KafkaConfig& cfg, const std::string& bootstrap,
                                                  const std::string& gateway_id);

// librdkafka's mock cluster, in process: "brokers": "embedded" makes the
// laptop demo work with nothing else installed. Lives as long as the object.
class EmbeddedKafka {
 public:
  static Result<std::unique_ptr<EmbeddedKafka>> start(const KafkaConfig& cfg);
  ~EmbeddedKafka();
  EmbeddedKafka(const EmbeddedKafka&) = delete;
  EmbeddedKafka& operator=(const EmbeddedKafka&) = delete;
  const std::string& bootstrap() const { return bootstrap_; }

 private:
  struct Impl;
  explicit EmbeddedKafka(std::unique_ptr<Impl> impl, std::string bootstrap);
  std::unique_ptr<Impl> impl_;
  std::string bootstrap_;
};

}  // namespace vane
