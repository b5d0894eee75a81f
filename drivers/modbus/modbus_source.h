// Modbus TCP and RTU polling. One poller thread per source (one TCP
// endpoint or one serial bus): requests never interleave on a bus, devices
// (unit ids) are polled in turn, each poll on a steady-clock schedule. A dead
// device costs at most one timeout per poll; the others keep their data.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/run_control.h"
#include "core/source.h"
#include "modbus/register_map.h"

namespace vane::modbus {

struct Device {
  std::string id;
  int unit_id = 1;
  std::string profile;  // key into SourceOptions::maps; "" is the source's own "registers"
};

struct SourceOptions {
  bool rtu = false;
  std::string host;  // TCP
  int port = 502;
  std::string serial;  // RTU
  int baud = 9600;
  char parity = 'N';
  int data_bits = 8;
  int stop_bits = 1;
  int interval_ms = 1000;
  int timeout_ms = 500;
  int retries = 1;   // extra attempts of a failed request within one poll
  int max_gap = 8;   // unused registers a merged request may span
  std::vector<Device> devices;
  // Register maps by profile name: "" is the source's "registers", others
  // come from "profiles" and are shared by the devices that name them.
  std::map<std::string, RegisterMap> maps;
};

// Parses and checks a modbus_tcp / modbus_rtu source object (the keys of the
// common source table are checked by the config loader).
SourceOptions parse_source(const nlohmann::json& src, const std::string& pointer, std::vector<ConfigError>& errors);
// The request plan, one line per request, for `vane check-config`.
std::string describe_plan(const SourceOptions& o);

// Counters of one device, readable from any thread.
struct DeviceStats {
  std::atomic<std::uint64_t> polls{0}, readings{0}, requests{0}, timeouts{0}, exceptions{0}, errors{0};
  std::atomic<std::uint64_t> latency_us_total{0};
};

class ModbusSource final : public Source {
 public:
  ModbusSource(SourceOptions opts, const Origin* origin);
  ~ModbusSource() override;

  const std::string& name() const override { return origin_->source; }
  Status start(ReadingSink& sink) override;
  void pause() override;
  void resume() override;
  void stop() override;
  std::string summary() const override;
  std::chrono::milliseconds expected_gap() const override;
  std::uint64_t heartbeat() const override { return beats_.load(std::memory_order_relaxed); }
  std::uint64_t errors() const override;
  bool connected() const override { return connected_.load(std::memory_order_relaxed); }
  void export_metrics(PromText& out) const override;

  const DeviceStats& stats(std::size_t device) const { return *stats_[device]; }
  std::uint64_t overruns() const { return overruns_.load(); }

 private:
  struct Ctx;
  void run(ReadingSink* sink);
  bool connect(Ctx& c);
  // Polls one device; returns false when the connection must be reopened.
  bool poll_device(Ctx& c, std::size_t d, ReadingSink* sink);

  SourceOptions opts_;
  const Origin* origin_;
  std::map<std::string, std::vector<Request>> plans_;  // by profile
  std::vector<std::unique_ptr<DeviceStats>> stats_;
  std::thread thread_;
  RunControl control_;
  std::atomic<std::uint64_t> overruns_{0}, reconnects_{0}, beats_{0};
  std::atomic<bool> connected_{true};  // optimistic until the first connect fails
};

}  // namespace vane::modbus
