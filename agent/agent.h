// The daemon's top level: wires config, buffer, pipeline, forwarder and
// sources together and runs until SIGINT/SIGTERM.
#pragma once

#include <string>

namespace vane {

// Exit codes: 0 ok, 1 runtime failure, 2 usage or config error.
int run_agent(const std::string& config_path);
int check_config(const std::string& config_path);
int buffer_stats(const std::string& buffer_path);

}  // namespace vane
