// The agent's configuration: JSON with comments (.jsonc), validated against
// declarative tables (agent/config_map.h). Every error names the file, the
// JSON pointer and the line.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "buffer/buffer.h"
#include "core/status.h"

namespace vane {

struct SimulatorConfig {
  std::string model = "turbine";   // only "turbine" so far
  int devices = 15;                // T-001 .. T-015
  int interval_ms = 1000;          // per device; ignored when rate > 0
  double rate = 0;                 // total readings/s across devices; 0: use interval_ms; <0 invalid
  bool max_speed = false;          // "rate": "max": as fast as the pipeline accepts
  std::uint64_t limit = 0;         // total readings, then the source finishes; 0 = endless
  std::uint64_t seed = 1;
  double faults = 0;               // fraction of readings with injected faults (0..1)
  std::string hang_file;           // while it exists the simulated sensor hangs (absolute path)
};

struct SourceConfig {
  std::string name;
  std::string type;        // "simulator" | "modbus_tcp" | "modbus_rtu" | "mqtt"
  std::string schema;      // name in Config::schemas; empty: unchecked
  std::string device_field;  // JSON name of the device id in the value
  std::string pointer;     // JSON pointer of this source in the file, e.g. "/sources/0"
  int line = 0;            // line of the source object in the file
  SimulatorConfig simulator;  // when type == "simulator"
  // Raw JSON text of the source object for drivers that parse their own table.
  std::string raw;
};

// kafka.tls: TLS to the brokers. Paths are absolute (resolved at load) and
// were readable then.
struct KafkaTlsConfig {
  std::string ca_file;               // "" : the system's CA store
  std::string cert_file, key_file;   // mutual TLS: both or neither
  std::string key_password_file;     // passphrase of an encrypted key_file; "" : none
  std::string key_password;          // read from key_password_file at load; never logged
  bool verify_hostname = true;       // ssl.endpoint.identification.algorithm https | none
  bool operator==(const KafkaTlsConfig&) const = default;
};

// kafka.sasl: SASL authentication; the password only ever comes from a file.
struct KafkaSaslConfig {
  std::string mechanism;             // PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
  std::string username;
  std::string password_file;         // absolute
  std::string password;              // read from password_file at load; never logged
  bool operator==(const KafkaSaslConfig&) const = default;
};

struct KafkaConfig {
  std::string brokers;                 // "embedded" or a bootstrap list
  std::string topic = "telemetry";
  std::string dead_letter_topic = "telemetry.dlq";
  std::string event_topic = "vane.events";  // declarations about the seq space (drops, quarantines, parked rows)
  // Passed through to librdkafka. Never a secret (the loader refuses them),
  // and none of the security settings when tls or sasl is set.
  std::map<std::string, std::string> properties;
  std::optional<KafkaTlsConfig> tls;
  std::optional<KafkaSaslConfig> sasl;
  int max_in_flight = 10000;           // rows handed to the producer and not yet acked
  int shutdown_timeout_ms = 5000;      // bound on waiting for in-flight deliveries at stop
  std::uint64_t max_drain_rate = 0;    // backlog rows/s after an outage or at start; 0: unlimited
  int reconnect_jitter_ms = 0;         // the backlog waits a random [0, this] ms before it drains
  bool exactly_once = false;           // transactional producer + checkpoint topic
  std::string checkpoint_topic = "vane.checkpoints";
  bool operator==(const KafkaConfig&) const = default;
};

struct BufferConfig {
  std::string path = "/var/lib/vane/buffer.db";
  std::uint64_t max_bytes = 1ULL << 30;
  Overflow overflow = Overflow::kDropOldest;
  SyncLevel sync = SyncLevel::kNormal;
  Replay replay = Replay::kFifo;
  bool operator==(const BufferConfig&) const = default;
};

struct HttpConfig {
  std::string listen = "127.0.0.1:9464";  // empty: disabled
  // Credentials read from basic_auth_file ("user:password") or
  // bearer_token_file at load; empty: no authentication. Never logged.
  std::string basic_auth;
  std::string bearer_token;
  // How long without progress before /health answers 503, when systemd's
  // watchdog does not set it (WATCHDOG_USEC wins, so both agree).
  int stall_after_ms = 30000;
  bool operator==(const HttpConfig&) const = default;
};

struct Config {
  std::string file;        // the config file as given
  std::string gateway_id;
  BufferConfig buffer;
  KafkaConfig kafka;
  std::map<std::string, std::string> schemas;  // name -> absolute path
  std::vector<SourceConfig> sources;
  HttpConfig http;
};

struct ConfigIssue {
  std::string file;
  std::string pointer;  // JSON pointer, "" for the whole document
  int line = 0;         // 0 when unknown
  std::string message;
  bool warning = false;
  // "file:line: /pointer: message" (parts that are unknown are left out).
  std::string to_string() const;
};

// One librdkafka property of the connection to the cluster, with where it
// came from in the config (for errors).
struct KafkaProperty {
  std::string key, value;
  std::string pointer;  // e.g. "/kafka/brokers", "/kafka/tls/ca_file", "/kafka/properties/socket.timeout.ms"
  bool secret = false;  // its value (and any librdkafka message about it) is never shown
};

// "SSL" (tls only), "SASL_PLAINTEXT" (sasl only), "SASL_SSL" (both), or ""
// when neither is set (kafka.properties or librdkafka's default decide).
std::string kafka_security_protocol(const KafkaConfig& cfg);

// Whether a kafka.properties key is about reaching and authenticating to
// the cluster (security.*, sasl.*, ssl.*, socket.*, bootstrap, ...): those
// apply to every client vane opens, not only to the producer.
bool is_kafka_connection_property(const std::string& key);

// What every librdkafka client vane opens on the cluster (the producer, the
// exactly-once checkpoint reader) connects with: bootstrap.servers =
// `bootstrap`, the connection properties of kafka.properties, then the
// settings kafka.tls and kafka.sasl stand for. Secret values are marked.
std::vector<KafkaProperty> kafka_connection_properties(const KafkaConfig& cfg, const std::string& bootstrap);

struct ConfigLoad {
  Config config;
  std::vector<ConfigIssue> errors;
  std::vector<ConfigIssue> warnings;
  bool ok() const { return errors.empty(); }
};

// How strictly files named by the config are judged.
struct LoadOptions {
  // check-config outside the unit ($CREDENTIALS_DIRECTORY unset): a file
  // under /run/credentials/ that does not exist is a warning (it exists only
  // while the unit runs, LoadCredential=), not an error. `vane run` and a
  // reload leave this false: every file must be there.
  bool outside_service = false;
  // Non-empty: the kafka.tls and kafka.sasl files must also be readable by
  // this user (check-config run by root for the service user "vane").
  std::string service_user;
};

// Reads and validates a config file. Relative paths (buffer.path, schema
// files, kafka.tls and kafka.sasl files) resolve against the config file's
// directory. Secret files are read here; their content is in no message.
// Collects every error rather than stopping at the first one.
ConfigLoad load_config(const std::string& path, const LoadOptions& options = {});
// Same, from text (for tests); `file` names it in messages, `base_dir`
// resolves relative paths.
ConfigLoad parse_config(const std::string& text, const std::string& file,
                        const std::string& base_dir, const LoadOptions& options = {});

}  // namespace vane
