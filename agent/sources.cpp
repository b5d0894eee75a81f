#include "sources.h"

#include <nlohmann/json.hpp>

#include "simulator/simulator_source.h"
#ifdef VANE_HAVE_DRIVER_MODBUS
#include "modbus/modbus_source.h"
#endif
#ifdef VANE_HAVE_DRIVER_MQTT
#include "mqtt/mqtt_source.h"
#endif

namespace vane {
namespace {

Result<std::unique_ptr<Source>> make_simulator(const SourceConfig& cfg, const Origin* origin) {
  const SimulatorConfig& c = cfg.simulator;
  SimulatorOptions o;
  o.model = c.model;
  o.devices = c.devices;
  o.interval_ms = c.interval_ms;
  o.rate = c.rate;
  o.max_speed = c.max_speed;
  o.limit = c.limit;
  o.seed = c.seed;
  o.faults = c.faults;
  o.hang_file = c.hang_file;
  return std::unique_ptr<Source>(std::make_unique<SimulatorSource>(o, origin));
}

// A driver source from its raw config object: the driver parses it (the
// config loader already reported its errors) and builds the source.
template <class SourceT, class ParseFn>
Result<std::unique_ptr<Source>> make_driver_source(const SourceConfig& cfg, const Origin* origin, ParseFn parse) {
  std::vector<ConfigError> errors;
  auto opts = parse(nlohmann::json::parse(cfg.raw), cfg.pointer, errors);
  if (!errors.empty()) return Status::invalid(errors[0].pointer + ": " + errors[0].message);
  return std::unique_ptr<Source>(std::make_unique<SourceT>(std::move(opts), origin));
}

}  // namespace

Result<std::unique_ptr<Source>> make_source(const SourceConfig& cfg, const Origin* origin) {
  if (cfg.type == "simulator") return make_simulator(cfg, origin);
#ifdef VANE_HAVE_DRIVER_MODBUS
  if (cfg.type == "modbus_tcp" || cfg.type == "modbus_rtu")
    return make_driver_source<modbus::ModbusSource>(cfg, origin, modbus::parse_source);
#endif
#ifdef VANE_HAVE_DRIVER_MQTT
  if (cfg.type == "mqtt") return make_driver_source<mqtt::MqttSource>(cfg, origin, mqtt::parse_source);
#endif
  return Status::invalid(cfg.pointer + ": source type \"" + cfg.type + "\" is not available in this build");
}

}  // namespace vane

namespace vane {

std::string describe_source(const SourceConfig& cfg) {
#ifdef VANE_HAVE_DRIVER_MODBUS
  if (cfg.type == "modbus_tcp" || cfg.type == "modbus_rtu") {
    std::vector<ConfigError> errors;
    auto opts = modbus::parse_source(nlohmann::json::parse(cfg.raw), cfg.pointer, errors);
    if (errors.empty()) return modbus::describe_plan(opts);
  }
#endif
  (void)cfg;
  return "";
}

}  // namespace vane
