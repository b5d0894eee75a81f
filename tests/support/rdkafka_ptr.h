// Owners for the librdkafka handles the tests create: whatever goes out of
// scope is destroyed, on every path, including a failed ASSERT.
#pragma once

#include <librdkafka/rdkafka.h>

#include <memory>

namespace vane::test {

struct RdKafkaDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};
struct RdKafkaConfDeleter {
  void operator()(rd_kafka_conf_t* conf) const { rd_kafka_conf_destroy(conf); }
};
struct RdKafkaPartitionListDeleter {
  void operator()(rd_kafka_topic_partition_list_t* list) const { rd_kafka_topic_partition_list_destroy(list); }
};
struct RdKafkaHeadersDeleter {
  void operator()(rd_kafka_headers_t* hdrs) const { rd_kafka_headers_destroy(hdrs); }
};
struct RdKafkaMetadataDeleter {
  void operator()(const rd_kafka_metadata_t* md) const { rd_kafka_metadata_destroy(md); }
};
struct RdKafkaMessageDeleter {
  void operator()(rd_kafka_message_t* m) const { rd_kafka_message_destroy(m); }
};

using RdKafkaPtr = std::unique_ptr<rd_kafka_t, RdKafkaDeleter>;
// rd_kafka_new() takes the conf only on success: release() it then.
using RdKafkaConfPtr = std::unique_ptr<rd_kafka_conf_t, RdKafkaConfDeleter>;
using RdKafkaPartitionListPtr = std::unique_ptr<rd_kafka_topic_partition_list_t, RdKafkaPartitionListDeleter>;
// rd_kafka_producev(RD_KAFKA_V_HEADERS) takes the headers only on success:
// release() them then.
using RdKafkaHeadersPtr = std::unique_ptr<rd_kafka_headers_t, RdKafkaHeadersDeleter>;
using RdKafkaMetadataPtr = std::unique_ptr<const rd_kafka_metadata_t, RdKafkaMetadataDeleter>;
using RdKafkaMessagePtr = std::unique_ptr<rd_kafka_message_t, RdKafkaMessageDeleter>;

}  // namespace vane::test
