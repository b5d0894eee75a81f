// MQTT subscription (Eclipse Paho C++): each message becomes one reading,
// mapped from its JSON payload; a message that does not parse or map goes
// to the dead-letter path with its original payload and the reason.
//
// Threads: Paho's callback thread only copies messages into a bounded queue;
// one worker maps them and hands them to the pipeline, so a slow pipeline
// never blocks the MQTT client. A full queue counts the overflow.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/config_error.h"
#include "core/source.h"

namespace vane::mqtt {

using vane::ConfigError;

enum class TimeFormat { kReceive, kIso8601, kEpochS, kEpochMs, kEpochUs };

struct SourceOptions {
  std::string url;
  std::string client_id;
  std::vector<std::string> topics;
  int qos = 1;
  bool clean_session = false;  // persistent by default: QoS 1/2 messages wait for vane
  int keep_alive_s = 30;
  std::string username, password_file;
  std::string ca_file, cert_file, key_file;
  bool verify_hostname = true;
  // Device id: a topic segment ({topic[1]}) or a JSON pointer into the payload.
  int device_topic_segment = -1;
  std::string device_pointer;
  // Fields: name -> JSON pointer; empty: every top-level number, bool or string.
  std::vector<std::pair<std::string, std::string>> fields;
  std::string timestamp_pointer;
  TimeFormat timestamp_format = TimeFormat::kReceive;
  std::size_t max_payload_bytes = 256 * 1024;
  std::size_t queue_capacity = 100000;
};

SourceOptions parse_source(const nlohmann::json& src, const std::string& pointer, std::vector<ConfigError>& errors);

// Maps one message to a reading (pure, for tests). On a mapping failure the
// reading carries source_error and the original payload.
Reading map_message(const SourceOptions& o, const std::string& topic, const std::string& payload, TimePoint received,
                    std::set<std::string>& names);

class MqttSource final : public Source {
 public:
  MqttSource(SourceOptions opts, const Origin* origin);
  ~MqttSource() override;

  const std::string& name() const override { return origin_->source; }
  Status start(ReadingSink& sink) override;
  void pause() override;
  void resume() override;
  void stop() override;
  std::string summary() const override;
  std::uint64_t errors() const override { return mapping_errors_.load() + dropped_.load(); }
  bool connected() const override { return connected_.load(std::memory_order_relaxed); }
  void export_metrics(PromText& out) const override;

 private:
  class Client;
  void work(ReadingSink* sink);
  void enqueue(std::string topic, std::string payload);

  SourceOptions opts_;
  const Origin* origin_;
  std::unique_ptr<Client> client_;
  std::thread worker_;
  std::mutex mu_;
  std::condition_variable cv_;
  struct Msg {
    std::string topic, payload;
    TimePoint received;
  };
  std::deque<Msg> queue_;  // guarded by mu_
  bool stop_ = false;      // guarded by mu_
  bool paused_ = false;    // guarded by mu_
  std::set<std::string> names_;  // interned field names; worker thread only
  std::atomic<std::uint64_t> messages_{0}, dropped_{0}, reconnects_{0}, mapping_errors_{0};
  std::atomic<bool> connected_{false};
};

}  // namespace vane::mqtt
