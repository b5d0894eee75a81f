// vane: edge-gateway agent. Command line only; the work is in agent.cpp.
#include <CLI/CLI.hpp>

#include "agent.h"
#include "config_map.h"

int main(int argc, char** argv) {
  CLI::App app{"vane: reads sensors, checks each reading against its schema, buffers durably, forwards to Kafka"};
  app.require_subcommand(0, 1);
  bool version = false;
  app.add_flag("--version", version, "print the version and exit");

  std::string config = "/etc/vane/vane.jsonc";
  auto* run = app.add_subcommand("run", "run the agent");
  run->add_option("-c,--config", config, "config file")->capture_default_str();

  auto* check = app.add_subcommand("check-config", "validate the config and its schemas");
  check->add_option("-c,--config", config, "config file")->capture_default_str();

  auto* buffer = app.add_subcommand("buffer", "inspect a buffer file");
  buffer->require_subcommand(1);
  std::string buffer_path;
  auto* stats = buffer->add_subcommand("stats", "depth, oldest reading, bytes of a buffer file (offline)");
  stats->add_option("path", buffer_path, "buffer file")->required();

  auto* reference = app.add_subcommand("config-reference", "print the config reference (Markdown)");
  reference->group("");  // for docs/CONFIG.md; not in --help

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  if (version) {
    std::printf("vane %s\n", VANE_VERSION);
    return 0;
  }
  if (*run) return vane::run_agent(config);
  if (*check) return vane::check_config(config);
  if (*stats) return vane::buffer_stats(buffer_path);
  if (*reference) {
    std::fputs(vane::config_reference_markdown().c_str(), stdout);
    return 0;
  }
  std::fprintf(stderr, "%s", app.help().c_str());
  return 2;
}
