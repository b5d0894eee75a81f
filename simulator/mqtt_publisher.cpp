#include "simulator/mqtt_publisher.h"

#include <mqtt/async_client.h>

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <random>
#include <thread>

namespace vane::sim {

namespace {

std::string iso_now() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() % 1000000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[80];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<long long>(us));
  return buf;
}

}  // namespace

int publish_sensors(const MqttPublishOptions& o, volatile std::sig_atomic_t* stop) {
  ::mqtt::async_client cli(o.broker, "vane-sim-" + std::to_string(::getpid()));
  ::mqtt::connect_options copts;
  copts.set_clean_session(true);
  copts.set_automatic_reconnect(1, 5);
  // The window of unacknowledged QoS 1/2 publishes; the loop keeps below it.
  constexpr std::size_t kWindow = 512;
  copts.set_max_inflight(static_cast<int>(kWindow * 2));
  try {
    cli.connect(copts)->wait();
  } catch (const ::mqtt::exception& e) {
    std::fprintf(stderr, "vane-sim: cannot connect to %s: %s\n", o.broker.c_str(), e.what());
    return 1;
  }
  std::mt19937_64 rng(o.seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::deque<::mqtt::delivery_token_ptr> pending;
  std::uint64_t sent = 0, acked = 0;
  std::vector<std::uint64_t> n(static_cast<std::size_t>(o.sensors), 0);
  const auto period = std::chrono::nanoseconds(static_cast<std::int64_t>(1e9 / (o.rate_hz * o.sensors)));
  auto next = std::chrono::steady_clock::now();
  int s = 0;
  while (!*stop && (o.count == 0 || sent < o.count)) {
    char id[16];
    std::snprintf(id, sizeof id, "S-%03d", s + 1);
    const double t = static_cast<double>(n[static_cast<std::size_t>(s)]);
    std::string payload;
    char buf[512];
    std::snprintf(buf, sizeof buf,
                  "{\"sensor_id\":\"%s\",\"timestamp\":\"%s\",\"temperature\":%.2f,\"humidity\":%.1f,"
                  "\"pressure\":%.1f,\"location\":{\"latitude\":%.5f,\"longitude\":%.5f},\"status\":\"ok\",\"n\":%llu}",
                  id, iso_now().c_str(), 12.0 + 4.0 * std::sin(t / 60.0) + u(rng), 55.0 + 15.0 * u(rng),
                  1005.0 + 10.0 * u(rng), 53.55 + 0.01 * s, 8.58 + 0.01 * s,
                  static_cast<unsigned long long>(n[static_cast<std::size_t>(s)]));
    payload = buf;
    if (o.faults > 0 && u(rng) < o.faults) {
      const double k = u(rng);
      if (k < 0.34) payload = payload.substr(0, payload.size() / 2);  // truncated: not JSON
      else if (k < 0.67) payload.replace(payload.find("\"humidity\":") + 11, 4, "140");  // out of range
      else payload.replace(payload.find("\"status\":\"ok\""), 13, "\"status\":\"exploded\"");
    }
    const std::string topic = o.topic_prefix + "/" + id + "/telemetry";
    bool ok = false;
    for (int attempt = 0; attempt < 2 && !ok; ++attempt) {
      try {
        pending.push_back(cli.publish(topic, payload, o.qos, false));
        ok = true;
      } catch (const ::mqtt::exception& e) {
        // The client's queue is full: let the broker catch up, then retry.
        if (attempt == 0 && e.get_return_code() == -12) {
          for (auto& tok : pending) {
            tok->wait();
            ++acked;
          }
          pending.clear();
          continue;
        }
        std::fprintf(stderr, "vane-sim: publish failed: %s\n", e.what());
      }
    }
    if (!ok) break;
    ++sent;
    ++n[static_cast<std::size_t>(s)];
    s = (s + 1) % o.sensors;
    while (pending.size() >= kWindow) {
      pending.front()->wait();
      pending.pop_front();
      ++acked;
    }
    next += period;
    std::this_thread::sleep_until(next);  // pacing of a publisher, not a test wait
  }
  for (auto& tok : pending) {
    try {
      tok->wait_for(std::chrono::seconds(10));
      ++acked;
    } catch (const ::mqtt::exception&) {
    }
  }
  std::printf("PUBLISHED %llu\n", static_cast<unsigned long long>(acked));
  std::fflush(stdout);
  try {
    cli.disconnect()->wait();
  } catch (const ::mqtt::exception&) {
  }
  return 0;
}

}  // namespace vane::sim
