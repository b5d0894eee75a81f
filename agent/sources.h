// The one place where source types map to their implementations. Drivers
// register here explicitly (no static initialisers); a type whose driver is
// left out of the build is reported by the config check.
#pragma once

#include <memory>

#include "config.h"
#include "core/source.h"

namespace vane {

// `origin` is owned by the caller and outlives the source.
Result<std::unique_ptr<Source>> make_source(const SourceConfig& cfg, const Origin* origin);

// What `vane check-config` shows of a source beyond OK: e.g. a Modbus
// source's request plan. "" when there is nothing to show.
std::string describe_source(const SourceConfig& cfg);

}  // namespace vane
