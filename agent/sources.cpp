#include "sources.h"

#include "simulator/simulator_source.h"

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

}  // namespace

Result<std::unique_ptr<Source>> make_source(const SourceConfig& cfg, const Origin* origin) {
  if (cfg.type == "simulator") return make_simulator(cfg, origin);
  return Status::invalid(cfg.pointer + ": source type \"" + cfg.type + "\" is not available in this build");
}

}  // namespace vane
