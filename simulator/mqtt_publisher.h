// vane-sim mqtt: environmental sensors publishing JSON over MQTT.
#pragma once

#include <csignal>
#include <cstdint>
#include <string>

namespace vane::sim {

struct MqttPublishOptions {
  std::string broker = "tcp://127.0.0.1:1883";
  int sensors = 5;
  double rate_hz = 1.0;     // per sensor
  double faults = 0;        // fraction of malformed or out-of-range messages
  std::uint64_t count = 0;  // total messages, then exit; 0 = until stopped
  int qos = 1;
  std::uint64_t seed = 1;
  std::string topic_prefix = "sensors";
};

// Publishes until `count` or *stop; prints "PUBLISHED N" (acknowledged by
// the broker at QoS >= 1) at the end. Returns an exit code.
int publish_sensors(const MqttPublishOptions& o, volatile std::sig_atomic_t* stop);

}  // namespace vane::sim
