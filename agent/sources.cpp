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
  return std::unique_ptr<Source>(std::make_unique<SimulatorSource>(o, origin));
}

#ifdef VANE_HAVE_DRIVER_MODBUS
Result<std::unique_ptr<Source>> make_modbus(const SourceConfig& cfg, const Origin* origin) {
  std::vector<modbus::ConfigError> errors;
  auto opts = modbus::parse_source(nlohmann::json::parse(cfg.raw), cfg.pointer, errors);
  if (!errors.empty()) return Status::invalid(errors[0].pointer + ": " + errors[0].message);
  return std::unique_ptr<Source>(std::make_unique<modbus::ModbusSource>(std::move(opts), origin));
}
#endif

#ifdef VANE_HAVE_DRIVER_MQTT
Result<std::unique_ptr<Source>> make_mqtt(const SourceConfig& cfg, const Origin* origin) {
  std::vector<mqtt::ConfigError> errors;
  auto opts = mqtt::parse_source(nlohmann::json::parse(cfg.raw), cfg.pointer, errors);
  if (!errors.empty()) return Status::invalid(errors[0].pointer + ": " + errors[0].message);
  return std::unique_ptr<Source>(std::make_unique<mqtt::MqttSource>(std::move(opts), origin));
}
#endif

}  // namespace

Result<std::unique_ptr<Source>> make_source(const SourceConfig& cfg, const Origin* origin) {
  if (cfg.type == "simulator") return make_simulator(cfg, origin);
#ifdef VANE_HAVE_DRIVER_MODBUS
  if (cfg.type == "modbus_tcp" || cfg.type == "modbus_rtu") return make_modbus(cfg, origin);
#endif
#ifdef VANE_HAVE_DRIVER_MQTT
  if (cfg.type == "mqtt") return make_mqtt(cfg, origin);
#endif
  return Status::invalid(cfg.pointer + ": source type \"" + cfg.type + "\" is not available in this build");
}

}  // namespace vane

namespace vane {

std::string describe_source(const SourceConfig& cfg) {
#ifdef VANE_HAVE_DRIVER_MODBUS
  if (cfg.type == "modbus_tcp" || cfg.type == "modbus_rtu") {
    std::vector<modbus::ConfigError> errors;
    auto opts = modbus::parse_source(nlohmann::json::parse(cfg.raw), cfg.pointer, errors);
    if (errors.empty()) return modbus::describe_plan(opts);
  }
#endif
  (void)cfg;
  return "";
}

}  // namespace vane
