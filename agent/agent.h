// The daemon's top level: wires config, buffer, pipeline, forwarder and
// sources together and runs until SIGINT/SIGTERM.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vane {

// Exit codes: 0 ok, 1 runtime failure, 2 usage or config error.
int run_agent(const std::string& config_path);
int check_config(const std::string& config_path);
int buffer_stats(const std::string& buffer_path);
// Returns parked rows (those in `seqs`, or all) of a buffer file to the queue.
int buffer_unpark(const std::string& buffer_path, const std::vector<std::uint64_t>& seqs);

}  // namespace vane
