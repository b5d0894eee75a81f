#include "config_map.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#ifdef VANE_HAVE_DRIVER_MODBUS
#include "modbus/modbus_source.h"
#endif
#ifdef VANE_HAVE_DRIVER_MQTT
#include "mqtt/mqtt_source.h"
#endif

namespace vane {

const ConfigOption* ConfigTable::find(const std::string& name) const {
  for (const auto& o : options)
    if (o.name == name) return &o;
  return nullptr;
}

const ConfigTable& top_level_table() {
  static const ConfigTable t{"", "Top level", {
      {"gateway", OptType::kObject, "", "this gateway's identity", {}, -1e300, 1e300, true},
      {"buffer", OptType::kObject, "", "the durable store-and-forward buffer"},
      {"kafka", OptType::kObject, "", "the uplink", {}, -1e300, 1e300, true},
      {"schemas", OptType::kStringMap, "{}", "schema name -> JSON Schema file (relative to the config file)"},
      {"sources", OptType::kArray, "", "the southbound sources, each an object (see below)", {}, -1e300, 1e300, true},
      {"http", OptType::kObject, "", "the local HTTP endpoint (metrics, health)"},
  }};
  return t;
}

const ConfigTable& gateway_table() {
  static const ConfigTable t{"/gateway", "gateway", {
      {"id", OptType::kString, "", "gateway id, 1-64 of [A-Za-z0-9._-]; sent as the vane-gateway header",
       {}, -1e300, 1e300, true},
  }};
  return t;
}

const ConfigTable& buffer_table() {
  static const ConfigTable t{"/buffer", "buffer", {
      {"path", OptType::kString, "/var/lib/vane/buffer.db", "SQLite buffer file; its directory must exist"},
      {"max_bytes", OptType::kSize, "1GiB",
       "cap on buffered rows (payload + 32 B per row); a number of bytes or a string with B, KB, MB, GB, "
       "KiB, MiB, GiB; at least 1 MiB", {}, 1048576},
      {"overflow", OptType::kEnum, "drop_oldest", "what the cap does: drop the oldest undelivered rows, or refuse new ones",
       {"drop_oldest", "drop_newest"}},
      {"sync", OptType::kEnum, "normal",
       "SQLite synchronous level: off (survives a process crash), normal (WAL: survives a process crash; "
       "a power loss may lose the last commits), full (fsync per commit: survives power loss)",
       {"off", "normal", "full"}},
      {"replay", OptType::kEnum, "fifo",
       "while a backlog drains: fifo sends strictly oldest first; live_first gives up to half of each batch "
       "to the newest readings and drains the backlog with the rest (per-key order then holds within each of "
       "the two, not across them; see docs/RELIABILITY.md)",
       {"fifo", "live_first"}},
  }};
  return t;
}

const ConfigTable& kafka_table() {
  static const ConfigTable t{"/kafka", "kafka", {
      {"brokers", OptType::kString, "", "bootstrap list \"host:port,...\", or \"embedded\" for an in-process mock cluster (demos)",
       {}, -1e300, 1e300, true},
      {"topic", OptType::kString, "telemetry", "topic for accepted readings"},
      {"dead_letter_topic", OptType::kString, "telemetry.dlq", "topic for rejected readings, with vane-error"},
      {"event_topic", OptType::kString, "vane.events",
       "topic for what the gateway declares about its seq space (drops by seq range, quarantined buffers, parked "
       "rows), keyed by gateway; `vane audit` reconciles gaps against it"},
      {"tls", OptType::kObject, "", "TLS to the brokers (see kafka.tls); security.protocol follows from tls and sasl: "
       "tls only SSL, sasl only SASL_PLAINTEXT, both SASL_SSL"},
      {"sasl", OptType::kObject, "", "SASL authentication, the password from a file (see kafka.sasl)"},
      {"properties", OptType::kStringMap, "{}",
       "librdkafka properties, passed through (e.g. compression.type); the connection ones (`security.*`, "
       "`sasl.*`, `ssl.*`, `socket.*`) apply to the exactly-once checkpoint reader too. A secret inline "
       "(sasl.password, ssl.key.password, ssl.key.pem, ...) is an error naming the `*_file` key to use; with tls "
       "or sasl set, so are the settings they make (security.protocol, sasl.mechanisms, sasl.username, "
       "`ssl.*.location`, ...)"},
      {"max_in_flight", OptType::kUint, "10000",
       "rows handed to the producer and not yet acknowledged; bounds duplicates after a crash", {}, 1, 1000000},
      {"max_drain_rate", OptType::kUint, "0",
       "rows/s at most for the backlog, i.e. the rows buffered when the uplink became usable again (after an "
       "outage, or at start); readings committed after that are live and go first, unpaced; once the backlog is "
       "delivered nothing is paced. 0: unlimited. Not with exactly_once (see docs/RELIABILITY.md)", {}, 0, 100000000},
      {"reconnect_jitter_ms", OptType::kUint, "0",
       "the backlog waits a random delay in [0, this] ms before it drains (live readings flow meanwhile), so that "
       "a fleet coming back at once spreads out", {}, 0, 3600000},
      {"shutdown_timeout_ms", OptType::kUint, "5000", "at stop, how long to wait for in-flight deliveries", {}, 0, 600000},
      {"exactly_once", OptType::kBool, "false",
       "transactional producer (transactional.id vane-<gateway id>): each batch is committed together with a "
       "checkpoint record, and rows at or below the last checkpoint are never sent again, so read_committed "
       "consumers see every reading once, also across crashes"},
      {"checkpoint_topic", OptType::kString, "vane.checkpoints",
       "exactly_once: compacted topic holding each gateway's highest delivered seq, keyed by gateway id"},
  }};
  return t;
}

const ConfigTable& kafka_tls_table() {
  static const ConfigTable t{"/kafka/tls", "kafka.tls", {
      {"ca_file", OptType::kString, "", "CA certificate(s) (PEM) to verify the brokers; absent: the system's CA store"},
      {"cert_file", OptType::kString, "", "client certificate (PEM) for mutual TLS; needs key_file"},
      {"key_file", OptType::kString, "", "client private key (PEM) for mutual TLS; needs cert_file"},
      {"key_password_file", OptType::kString, "", "file holding the passphrase of an encrypted key_file; never logged"},
      {"verify_hostname", OptType::kBool, "true",
       "check that the broker's certificate names the host it was reached by; false still verifies the "
       "certificate chain"},
  }};
  return t;
}

const ConfigTable& kafka_sasl_table() {
  static const ConfigTable t{"/kafka/sasl", "kafka.sasl", {
      {"mechanism", OptType::kEnum, "", "SASL mechanism", {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"},
       -1e300, 1e300, true},
      {"username", OptType::kString, "", "SASL user name", {}, -1e300, 1e300, true},
      {"password_file", OptType::kString, "",
       "file holding the password, e.g. a systemd credential (/run/credentials/vane.service/...); read at start, "
       "one trailing newline ignored; never logged", {}, -1e300, 1e300, true},
  }};
  return t;
}

const ConfigTable& http_table() {
  static const ConfigTable t{"/http", "http", {
      {"listen", OptType::kListen, "127.0.0.1:9464", "host:port of the local HTTP endpoint (/metrics, /health, /api/v1, status page); \"\" or false disables it. Another address than loopback exposes every sensor's latest values: see docs/OBSERVABILITY.md"},
      {"basic_auth_file", OptType::kString, "", "file holding one line user:password; every request must then authenticate (HTTP basic)"},
      {"bearer_token_file", OptType::kString, "", "file holding a token; every request must then send Authorization: Bearer <token>"},
      {"stall_after_ms", OptType::kUint, "30000", "how long without progress before /health answers 503; systemd's WatchdogSec= replaces it so that both agree", {}, 1000, 3600000},
  }};
  return t;
}

namespace {

std::vector<ConfigOption> common_source_options(const std::string& device_field_default) {
  return {
      {"name", OptType::kString, "", "unique source name; the vane-source header", {}, -1e300, 1e300, true},
      {"type", OptType::kString, "", "source type", {}, -1e300, 1e300, true},
      {"schema", OptType::kString, "", "schema name from \"schemas\"; without one, readings are forwarded unchecked"},
      {"device_field", OptType::kString, device_field_default, "JSON name of the device id in the message value"},
  };
}

SourceType simulator_type() {
  SourceType s{"simulator", true, "built-in wind-turbine simulator",
               {"/sources/N", "simulator source", common_source_options("turbine_id")}, nullptr};
  auto& o = s.table.options;
  o.push_back({"model", OptType::kEnum, "turbine", "what to simulate", {"turbine"}});
  o.push_back({"devices", OptType::kUint, "15", "number of turbines, T-001 ...", {}, 1, 100000});
  o.push_back({"interval_ms", OptType::kUint, "1000", "per-device reading interval (when rate is not set)", {}, 1, 86400000});
  o.push_back({"rate", OptType::kRateOrMax, "", "total readings/s across devices, or \"max\" (as fast as the pipeline takes them)", {}, 0, 1e9});
  o.push_back({"limit", OptType::kUint, "0", "stop after this many readings; 0: endless", {}, 0, 1e18});
  o.push_back({"seed", OptType::kUint, "1", "random seed; the same seed gives the same readings", {}, 0, 1e18});
  o.push_back({"faults", OptType::kDouble, "0", "fraction of readings with an injected fault (out of range, missing field, NaN, wrong type)", {}, 0, 1});
  o.push_back({"hang_file", OptType::kString, "", "while this file exists the simulated sensor hangs in its loop, as a driver stuck in a blocking read would: to try /health and the watchdog on a laptop"});
  return s;
}

[[maybe_unused]] SourceType unbuilt(const std::string& type, const std::string& desc) {
  return {type, false, desc, {"/sources/N", type + " source", common_source_options("device_id")}, nullptr};
}

#ifdef VANE_HAVE_DRIVER_MODBUS
SourceType modbus_type(bool rtu) {
  SourceType s{rtu ? "modbus_rtu" : "modbus_tcp", true,
               rtu ? "Modbus RTU polling over a serial line" : "Modbus TCP polling",
               {"/sources/N", rtu ? "modbus_rtu source" : "modbus_tcp source", common_source_options("device_id")},
               [](const nlohmann::json& src, const std::string& ptr, std::vector<std::pair<std::string, std::string>>& out) {
                 std::vector<ConfigError> errors;
                 modbus::parse_source(src, ptr, errors);
                 for (auto& e : errors) out.emplace_back(e.pointer, e.message);
               }};
  auto& o = s.table.options;
  if (rtu) {
    o.push_back({"serial", OptType::kString, "", "serial device, e.g. /dev/ttyUSB0", {}, -1e300, 1e300, true});
    o.push_back({"baud", OptType::kUint, "9600", "baud rate", {}, 300, 4000000});
    o.push_back({"parity", OptType::kEnum, "N", "parity", {"N", "E", "O"}});
    o.push_back({"data_bits", OptType::kUint, "8", "data bits", {}, 7, 8});
    o.push_back({"stop_bits", OptType::kUint, "1", "stop bits", {}, 1, 2});
  } else {
    o.push_back({"host", OptType::kString, "", "device or gateway address (name or IP)", {}, -1e300, 1e300, true});
    o.push_back({"port", OptType::kUint, "502", "TCP port", {}, 1, 65535});
  }
  o.push_back({"interval_ms", OptType::kUint, "1000", "poll interval per source (every device, every poll)", {}, 10, 86400000});
  o.push_back({"timeout_ms", OptType::kUint, "500", "response timeout per request", {}, 10, 60000});
  o.push_back({"retries", OptType::kUint, "1", "extra attempts of a failed request within a poll (not after a timeout)", {}, 0, 5});
  o.push_back({"max_gap", OptType::kUint, "8", "unused registers one merged request may span", {}, 0, 124});
  o.push_back({"devices", OptType::kArray, "",
               "[{\"id\": \"T-007\", \"unit_id\": 1, \"profile\": optional}, ...]: the devices on this connection",
               {}, -1e300, 1e300, true});
  o.push_back({"profiles", OptType::kObject, "",
               "named register maps shared by devices: {\"turbine-v2\": [entries as in registers]}; a device with "
               "\"profile\": \"turbine-v2\" uses that map instead of \"registers\""});
  o.push_back({"registers", OptType::kArray, "",
               "register map: [{\"field\", \"table\" (coil|discrete|holding|input), \"address\" (0-based), \"type\" "
               "(int16|uint16|int32|uint32|int64|uint64|float32|float64|string|bool), \"order\" (ABCD|CDAB|BADC|DCBA), "
               "\"length\" (string registers), \"bit\" (bool of a register), \"scale\", \"offset\", \"unit\"}]: "
               "the map of devices without a profile"});
  return s;
}
#endif

#ifdef VANE_HAVE_DRIVER_MQTT
SourceType mqtt_type() {
  SourceType s{"mqtt", true, "MQTT subscription",
               {"/sources/N", "mqtt source", common_source_options("device_id")},
               [](const nlohmann::json& src, const std::string& ptr, std::vector<std::pair<std::string, std::string>>& out) {
                 std::vector<ConfigError> errors;
                 mqtt::parse_source(src, ptr, errors);
                 for (auto& e : errors) out.emplace_back(e.pointer, e.message);
               }};
  auto& o = s.table.options;
  o.push_back({"url", OptType::kString, "", "broker: tcp://host:1883 or ssl://host:8883 (mqtts:// is the same); websockets are not supported", {}, -1e300, 1e300, true});
  o.push_back({"client_id", OptType::kString, "vane-<source name>", "MQTT client id; keep it stable for a persistent session"});
  o.push_back({"topics", OptType::kArray, "", "topic filters, + and # wildcards", {}, -1e300, 1e300, true});
  o.push_back({"qos", OptType::kUint, "1", "subscription QoS 0, 1 or 2", {}, 0, 2});
  o.push_back({"clean_session", OptType::kBool, "false",
               "false: a persistent session, the broker keeps QoS 1/2 messages while vane is away"});
  o.push_back({"keep_alive_s", OptType::kUint, "30", "keep-alive interval", {}, 5, 3600});
  o.push_back({"username", OptType::kString, "", "user name"});
  o.push_back({"password_file", OptType::kString, "", "file holding the password (e.g. a systemd credential); never logged"});
  o.push_back({"ca_file", OptType::kString, "", "CA certificate(s) to verify the broker (ssl://)"});
  o.push_back({"cert_file", OptType::kString, "", "client certificate for mutual TLS"});
  o.push_back({"key_file", OptType::kString, "", "client private key for mutual TLS"});
  o.push_back({"verify_hostname", OptType::kBool, "true", "check the broker's certificate names its host"});
  o.push_back({"device_id", OptType::kString, "", "\"{topic[N]}\" (topic level N, from 0) or a JSON pointer like \"/sensor_id\"",
               {}, -1e300, 1e300, true});
  o.push_back({"fields", OptType::kObject, "", "field name -> JSON pointer (\"/env/humidity\"); absent: every top-level number, bool and string"});
  o.push_back({"timestamp", OptType::kObject, "receive time",
               "{\"field\": \"/ts\", \"format\": \"iso8601\" | \"epoch_s\" | \"epoch_ms\" | \"epoch_us\"}"});
  o.push_back({"max_payload_bytes", OptType::kUint, "262144", "larger messages go to the dead-letter topic (first 64 KiB kept)",
               {}, 1, 16777216});
  return s;
}
#endif

}  // namespace

const std::vector<SourceType>& source_types() {
  static const std::vector<SourceType> types = {
      simulator_type(),
#ifdef VANE_HAVE_DRIVER_MODBUS
      modbus_type(false),
      modbus_type(true),
#else
      unbuilt("modbus_tcp", "Modbus TCP polling"),
      unbuilt("modbus_rtu", "Modbus RTU polling over a serial line"),
#endif
#ifdef VANE_HAVE_DRIVER_MQTT
      mqtt_type(),
#else
      unbuilt("mqtt", "MQTT subscription"),
#endif
  };
  return types;
}

const SourceType* find_source_type(const std::string& type) {
  for (const auto& s : source_types())
    if (s.type == type) return &s;
  return nullptr;
}

const char* type_name(OptType t) {
  switch (t) {
    case OptType::kString: return "string";
    case OptType::kUint: return "unsigned integer";
    case OptType::kDouble: return "number";
    case OptType::kBool: return "boolean";
    case OptType::kEnum: return "string";
    case OptType::kSize: return "size";
    case OptType::kRateOrMax: return "number or \"max\"";
    case OptType::kListen: return "\"host:port\"";
    case OptType::kStringMap: return "object";
    case OptType::kObject: return "object";
    case OptType::kArray: return "array";
  }
  return "?";
}

std::string closest(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  std::size_t best_d = std::max<std::size_t>(2, word.size() / 3) + 1;
  for (const auto& c : candidates) {
    std::vector<std::size_t> prev(c.size() + 1), cur(c.size() + 1);
    for (std::size_t j = 0; j <= c.size(); ++j) prev[j] = j;
    for (std::size_t i = 1; i <= word.size(); ++i) {
      cur[0] = i;
      for (std::size_t j = 1; j <= c.size(); ++j)
        cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (word[i - 1] == c[j - 1] ? 0 : 1)});
      std::swap(prev, cur);
    }
    if (prev[c.size()] < best_d) {
      best_d = prev[c.size()];
      best = c;
    }
  }
  return best;
}

namespace {

void render(std::string& md, const ConfigTable& t) {
  md += "## " + t.title + "\n\n| key | type | default | description |\n|---|---|---|---|\n";
  for (const auto& o : t.options) {
    std::string type = type_name(o.type);
    if (o.type == OptType::kEnum) {
      type.clear();
      for (const auto& a : o.allowed) type += (type.empty() ? "" : " \\| ") + ("`" + a + "`");
    }
    std::string def = o.required ? "required" : (o.def.empty() ? "" : "`" + o.def + "`");
    md += "| `" + o.name + "` | " + type + " | " + def + " | " + o.description + " |\n";
  }
  md += "\n";
}

}  // namespace

std::string config_reference_markdown() {
  std::string md =
      "# Config reference\n\n"
      "Generated from the tables in `agent/config_map.cpp` (`vane config-reference`); "
      "a test keeps this file in step with them.\n\n"
      "The config is JSON with comments. Unknown keys are errors. Relative paths resolve "
      "against the config file's directory.\n\n";
  render(md, top_level_table());
  render(md, gateway_table());
  render(md, buffer_table());
  render(md, kafka_table());
  render(md, kafka_tls_table());
  render(md, kafka_sasl_table());
  render(md, http_table());
  md += "## sources\n\nEach source has a `type`:\n\n";
  for (const auto& s : source_types())
    md += "- `" + s.type + "`: " + s.description + (s.built ? "" : " (driver not in this build yet)") + "\n";
  md += "\n";
  for (const auto& s : source_types())
    if (s.built) render(md, s.table);
  return md;
}

}  // namespace vane
