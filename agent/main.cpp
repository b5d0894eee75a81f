// vane: edge-gateway agent. Command line only; the work is in agent.cpp.
#include <CLI/CLI.hpp>

#include "agent.h"
#include "audit.h"
#include "config_map.h"
#ifdef VANE_HAVE_DRIVER_MODBUS
#include "modbus/probe.h"
#endif

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

  auto* buffer = app.add_subcommand("buffer", "inspect a buffer file, return its parked rows");
  buffer->require_subcommand(1);
  std::string buffer_path;
  auto* stats = buffer->add_subcommand("stats", "depth, oldest reading, bytes of a buffer file (offline)");
  stats->add_option("path", buffer_path, "buffer file")->required();
  std::vector<std::uint64_t> unpark_seqs;
  auto* unpark = buffer->add_subcommand(
      "unpark", "return parked rows (no topic took them) to the queue, once their cause is fixed; also while vane runs");
  unpark->add_option("path", buffer_path, "buffer file")->required();
  unpark->add_option("--seq", unpark_seqs, "only these seqs (repeatable); default: every parked row");

#ifdef VANE_HAVE_DRIVER_MODBUS
  auto* probe = app.add_subcommand("probe", "one-shot read from a device, for field wiring checks");
  probe->require_subcommand(1);
  vane::modbus::ProbeOptions po;
  auto* pm = probe->add_subcommand("modbus", "read registers or bits once, print them raw and decoded");
  pm->add_option("--host", po.host, "Modbus TCP device or gateway");
  pm->add_option("--port", po.port, "TCP port")->capture_default_str();
  pm->add_option("--serial", po.serial, "serial device for Modbus RTU, e.g. /dev/ttyUSB0");
  pm->add_option("--baud", po.baud, "RTU baud rate")->capture_default_str();
  pm->add_option("--parity", po.parity, "RTU parity N, E or O")->capture_default_str();
  pm->add_option("--data-bits", po.data_bits, "RTU data bits")->capture_default_str();
  pm->add_option("--stop-bits", po.stop_bits, "RTU stop bits")->capture_default_str();
  pm->add_option("--unit", po.unit, "unit id")->capture_default_str();
  pm->add_option("--table", po.table, "coil, discrete, holding or input")->capture_default_str();
  pm->add_option("--address", po.address, "first address, 0-based")->capture_default_str();
  pm->add_option("--count", po.count, "registers or bits to read")->capture_default_str();
  pm->add_option("--type", po.type, "decode as int16 ... float64 or string");
  pm->add_option("--order", po.order, "ABCD, CDAB, BADC or DCBA")->capture_default_str();
  pm->add_option("--timeout-ms", po.timeout_ms, "response timeout")->capture_default_str();
#endif
  vane::AuditOptions ao;
  auto* audit = app.add_subcommand(
      "audit", "read the gateway topics back from Kafka and account for every seq: received, duplicated, declared "
               "(dropped, quarantined, parked) or unexplained (lost); exit 0 when nothing is unexplained, 1 otherwise");
  audit->add_option("-c,--config", ao.config_path, "config file (its Kafka connection and topics)")
      ->default_str("/etc/vane/vane.jsonc");
  audit->add_option("--gateway", ao.gateway, "only this gateway id (default: every gateway found)");
  audit->add_flag("--json", ao.json, "one JSON document");
  audit->add_option("--from-seq", ao.from_seq, "account from this seq on (e.g. below it retention deleted records)")
      ->capture_default_str();
  audit->add_option("--timeout-ms", ao.timeout_ms, "bound on reading every partition to its end")->capture_default_str();
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
  if (*audit) {
    if (ao.config_path.empty()) ao.config_path = "/etc/vane/vane.jsonc";
    return vane::audit_main(ao);
  }
  if (*unpark) return vane::buffer_unpark(buffer_path, unpark_seqs);
#ifdef VANE_HAVE_DRIVER_MODBUS
  if (*pm) return vane::modbus::probe(po, stdout);
#endif
  if (*reference) {
    std::fputs(vane::config_reference_markdown().c_str(), stdout);
    return 0;
  }
  std::fprintf(stderr, "%s", app.help().c_str());
  return 2;
}
