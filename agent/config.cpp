#include "config.h"

#include <sys/stat.h>

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "config_map.h"
#include "core/secret_file.h"
#include "jsonc_locator.h"

namespace vane {

using json = nlohmann::json;

std::string ConfigIssue::to_string() const {
  std::string s = file;
  if (line > 0) s += ":" + std::to_string(line);
  if (!s.empty()) s += ": ";
  if (!pointer.empty()) s += pointer + ": ";
  if (warning) s += "warning: ";
  return s + message;
}

namespace {

std::string describe(const json& v) {
  std::string d = v.dump();
  if (d.size() > 40) d = d.substr(0, 37) + "...";
  switch (v.type()) {
    case json::value_t::string: return "string " + d;
    case json::value_t::boolean: return "boolean " + d;
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float: return "number " + d;
    case json::value_t::object: return "an object";
    case json::value_t::array: return "an array";
    case json::value_t::null: return "null";
    default: return d;
  }
}

std::string article(OptType t) {
  switch (t) {
    case OptType::kUint: return "an unsigned integer";
    case OptType::kObject:
    case OptType::kStringMap: return "an object";
    case OptType::kArray: return "an array";
    case OptType::kBool: return "a boolean";
    case OptType::kDouble: return "a number";
    case OptType::kSize: return "a size (number of bytes or a string like \"512MiB\")";
    case OptType::kRateOrMax: return "a number or \"max\"";
    case OptType::kListen: return "\"host:port\" (or \"\" to disable)";
    default: return "a string";
  }
}

// "512MiB" -> bytes; false on a malformed string.
bool parse_size(const std::string& s, std::uint64_t& out) {
  static const std::regex re(R"(^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]i?B|B)?\s*$)", std::regex::icase);
  std::smatch m;
  if (!std::regex_match(s, m, re)) return false;
  const double n = std::stod(m[1].str());
  std::string unit = m[2].str();
  for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  double mult = 1;
  if (unit == "KB") mult = 1e3;
  else if (unit == "MB") mult = 1e6;
  else if (unit == "GB") mult = 1e9;
  else if (unit == "TB") mult = 1e12;
  else if (unit == "KIB") mult = 1024.0;
  else if (unit == "MIB") mult = 1024.0 * 1024;
  else if (unit == "GIB") mult = 1024.0 * 1024 * 1024;
  else if (unit == "TIB") mult = 1024.0 * 1024 * 1024 * 1024;
  out = static_cast<std::uint64_t>(n * mult);
  return true;
}

class Loader {
 public:
  Loader(const std::string& text, std::string file, std::string base_dir, LoadOptions options)
      : text_(text), file_(std::move(file)), base_(std::move(base_dir)), options_(std::move(options)), loc_(text) {}

  ConfigLoad run() {
    ConfigLoad out;
    out.config.file = file_;
    json doc = json::parse(text_, nullptr, false, true);
    if (doc.is_discarded()) {
      parse_error(out);
      return out;
    }
    if (!doc.is_object()) {
      error("", "the config must be a JSON object, got " + describe(doc));
      return finish(out);
    }
    check_table(doc, "", top_level_table());
    Config& c = out.config;
    if (const json* g = object_at(doc, "gateway")) {
      check_table(*g, "/gateway", gateway_table());
      if (g->contains("id") && (*g)["id"].is_string()) {
        c.gateway_id = (*g)["id"];
        static const std::regex id_re("^[A-Za-z0-9._-]{1,64}$");
        if (!std::regex_match(c.gateway_id, id_re))
          error("/gateway/id", "\"" + c.gateway_id + "\" is not a valid gateway id (1-64 of A-Z a-z 0-9 . _ -)");
      }
    }
    if (const json* b = object_at(doc, "buffer")) load_buffer(*b, c.buffer);
    else c.buffer.path = resolve(c.buffer.path);
    if (const json* k = object_at(doc, "kafka")) load_kafka(*k, c.kafka);
    // A checkpoint says "every seq up to here is in Kafka": it needs rows to
    // be committed in seq order, which live_first replay does not do.
    if (c.kafka.exactly_once && c.buffer.replay == Replay::kLiveFirst)
      error("/buffer/replay", "live_first cannot be combined with kafka.exactly_once (checkpoints need seq order)");
    if (c.kafka.exactly_once && c.kafka.max_drain_rate > 0)
      error("/kafka/max_drain_rate", "paced replay cannot be combined with kafka.exactly_once (it sends live rows "
                                     "before the backlog; checkpoints need seq order)");
    if (const json* h = object_at(doc, "http")) {
      check_table(*h, "/http", http_table());
      if (h->contains("listen")) {
        const json& l = (*h)["listen"];
        c.http.listen = l.is_string() ? l.get<std::string>() : std::string();
      }
      if (h->contains("stall_after_ms") && (*h)["stall_after_ms"].is_number_unsigned())
        c.http.stall_after_ms = (*h)["stall_after_ms"].get<int>();
      if (h->contains("basic_auth_file") && h->contains("bearer_token_file"))
        error("/http", "basic_auth_file and bearer_token_file are alternatives: set one");
      c.http.basic_auth = read_secret(*h, "/http", "basic_auth_file");
      c.http.bearer_token = read_secret(*h, "/http", "bearer_token_file");
      if (!c.http.basic_auth.empty() && c.http.basic_auth.find(':') == std::string::npos)
        error("/http/basic_auth_file", "expected one line user:password");
    }
    if (doc.contains("schemas") && doc["schemas"].is_object()) {
      for (auto it = doc["schemas"].begin(); it != doc["schemas"].end(); ++it) {
        const std::string ptr = "/schemas/" + pointer_token(it.key());
        if (!it.value().is_string()) continue;  // reported by check_table
        const std::string path = resolve(it.value().get<std::string>());
        std::ifstream probe(path);
        if (!probe) error(ptr, "cannot read schema file " + path + ": " + std::strerror(errno));
        c.schemas[it.key()] = path;
      }
    }
    if (doc.contains("sources") && doc["sources"].is_array()) load_sources(doc["sources"], c);
    return finish(out);
  }

 private:
  void parse_error(ConfigLoad& out) {
    // Re-parse with exceptions for the position and message.
    try {
      const json unused = json::parse(text_, nullptr, true, true);
      (void)unused;
    } catch (const json::parse_error& e) {
      int line, col;
      line_col_at(text_, e.byte > 0 ? e.byte - 1 : 0, line, col);
      std::string msg = e.what();
      // "[json.exception.parse_error.101] parse error at line 3, column 32: syntax error while
      // parsing object key - invalid literal; last read: ..." -> keep the part after the position.
      const auto colon = msg.find(": ", msg.find("parse error"));
      if (colon != std::string::npos) msg = msg.substr(colon + 2);
      ConfigIssue i{file_, "", line, "invalid JSON at column " + std::to_string(col) + ": " + msg};
      out.errors.push_back(i);
    }
  }

  ConfigLoad& finish(ConfigLoad& out) {
    out.errors = std::move(errors_);
    out.warnings = std::move(warnings_);
    return out;
  }

  void error(const std::string& ptr, const std::string& msg) {
    errors_.push_back({file_, ptr, loc_.line_of(ptr), msg, false});
  }
  void warning(const std::string& ptr, const std::string& msg) {
    warnings_.push_back({file_, ptr, loc_.line_of(ptr), msg, true});
  }

  // The first line of the file named by obj[key], trailing whitespace cut;
  // "" when the key is absent. The content is never put in a message.
  std::string read_secret(const json& obj, const std::string& ptr, const char* key) {
    if (!obj.contains(key) || !obj[key].is_string()) return "";
    const std::string path = resolve(obj[key].get<std::string>());
    const std::string p = ptr + "/" + key;
    auto secret = read_secret_file(path);
    if (!secret) {
      error(p, secret.status().message());
      return "";
    }
    std::string line = secret.value().substr(0, secret.value().find('\n'));
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
    if (line.empty()) error(p, path + " is empty");
    return line;
  }

  // A kafka.tls / kafka.sasl file: obj[key] resolved to an absolute path, ""
  // when absent. It must be readable now (and by options_.service_user when
  // set); with `secret`, its content (less one trailing newline) goes to
  // *secret. Under /run/credentials/ and outside the unit, a file that does
  // not exist is a warning: systemd makes it only while the unit runs.
  std::string uplink_file(const json& obj, const std::string& ptr, const char* key, std::string* secret = nullptr) {
    if (!obj.contains(key) || !obj[key].is_string()) return "";
    const std::string p = ptr + "/" + key;
    const std::string path = resolve(obj[key].get<std::string>());
    if (path.empty()) {
      error(p, "must not be empty");
      return "";
    }
    const bool credential = path.rfind(kCredentialsRoot, 0) == 0;
    Status readable = Status::ok();
    if (secret) {
      auto r = read_secret_file(path);
      if (r) *secret = std::move(r.value());
      else readable = r.status();
    } else {
      readable = check_readable_file(path);
    }
    if (!readable) {
      std::error_code ec;
      if (credential && options_.outside_service && !std::filesystem::exists(path, ec))
        warning(p, path + " exists only while the unit runs (LoadCredential=): not checked now");
      else
        error(p, readable.message());
      return path;
    }
    // systemd hands the unit its own credentials; elsewhere the mode decides.
    if (!options_.service_user.empty() && !credential) {
      const UserAccess a = file_readable_by(path, options_.service_user);
      if (a.verdict == UserAccess::Verdict::kNotReadable) error(p, a.why);
      else if (a.verdict == UserAccess::Verdict::kUnknown) warning(p, a.why);
    }
    return path;
  }

  std::string resolve(const std::string& p) const {
    if (p.empty() || p[0] == '/') return p;
    return (std::filesystem::path(base_) / p).lexically_normal().string();
  }

  const json* object_at(const json& doc, const char* key) {
    if (!doc.contains(key)) return nullptr;
    const json& v = doc[key];
    return v.is_object() ? &v : nullptr;  // wrong type reported by check_table
  }

  // Unknown keys, missing required keys, and each value's type and range.
  void check_table(const json& obj, const std::string& ptr, const ConfigTable& t) {
    std::vector<std::string> names;
    for (const auto& o : t.options) names.push_back(o.name);
    for (auto it = obj.begin(); it != obj.end(); ++it) {
      const std::string p = ptr + "/" + pointer_token(it.key());
      const ConfigOption* o = t.find(it.key());
      if (!o) {
        std::string msg = "unknown key \"" + it.key() + "\"";
        const std::string near = closest(it.key(), names);
        if (!near.empty()) msg += " (did you mean \"" + near + "\"?)";
        error(p, msg);
        continue;
      }
      check_value(it.value(), p, *o);
    }
    for (const auto& o : t.options)
      if (o.required && !obj.contains(o.name)) error(ptr, "missing required key \"" + o.name + "\"");
  }

  void check_value(const json& v, const std::string& p, const ConfigOption& o) {
    auto wrong = [&] { error(p, "expected " + article(o.type) + ", got " + describe(v)); };
    auto range = [&](double d) {
      if (d < o.min || d > o.max) {
        std::ostringstream s;
        s << v.dump() << " is out of range";
        if (std::isfinite(o.min) && std::isfinite(o.max)) s << " (" << o.min << " to " << o.max << ")";
        else if (std::isfinite(o.min)) s << " (at least " << o.min << ")";
        else s << " (at most " << o.max << ")";
        error(p, s.str());
      }
    };
    switch (o.type) {
      case OptType::kString:
        if (!v.is_string()) wrong();
        else if (o.required && v.get<std::string>().empty()) error(p, "must not be empty");
        break;
      case OptType::kEnum:
        if (!v.is_string()) {
          wrong();
        } else if (std::find(o.allowed.begin(), o.allowed.end(), v.get<std::string>()) == o.allowed.end()) {
          std::string all;
          for (const auto& a : o.allowed) all += (all.empty() ? "" : ", ") + a;
          error(p, "\"" + v.get<std::string>() + "\" is not one of: " + all);
        }
        break;
      case OptType::kUint:
        if (!v.is_number_integer() || (v.is_number_integer() && !v.is_number_unsigned() && v.get<std::int64_t>() < 0))
          wrong();
        else range(v.get<double>());
        break;
      case OptType::kDouble:
        if (!v.is_number()) wrong();
        else range(v.get<double>());
        break;
      case OptType::kBool:
        if (!v.is_boolean()) wrong();
        break;
      case OptType::kSize: {
        std::uint64_t n = 0;
        if (v.is_number_unsigned()) n = v.get<std::uint64_t>();
        else if (v.is_string() && parse_size(v.get<std::string>(), n)) {}
        else {
          wrong();
          break;
        }
        if (static_cast<double>(n) < o.min) error(p, v.dump() + " is too small (at least 1 MiB)");
        break;
      }
      case OptType::kRateOrMax:
        if (v.is_string() && v.get<std::string>() == "max") break;
        if (!v.is_number() || v.get<double>() <= 0) {
          error(p, "expected a number > 0 or \"max\", got " + describe(v));
        }
        break;
      case OptType::kListen:
        if (v.is_boolean() && !v.get<bool>()) break;
        if (!v.is_string()) {
          wrong();
        } else if (!v.get<std::string>().empty()) {
          static const std::regex re(R"(^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$)");
          std::smatch m;
          const std::string s = v.get<std::string>();
          if (!std::regex_match(s, m, re) || std::stoi(m[2].str()) > 65535)
            error(p, "\"" + s + "\" is not host:port");
        }
        break;
      case OptType::kStringMap:
        if (!v.is_object()) {
          wrong();
          break;
        }
        for (auto it = v.begin(); it != v.end(); ++it)
          if (!it.value().is_string() && !it.value().is_number() && !it.value().is_boolean())
            error(p + "/" + pointer_token(it.key()), "expected a string, got " + describe(it.value()));
        break;
      case OptType::kObject:
        if (!v.is_object()) wrong();
        break;
      case OptType::kArray:
        if (!v.is_array()) wrong();
        break;
    }
  }

  void load_buffer(const json& b, BufferConfig& out) {
    check_table(b, "/buffer", buffer_table());
    if (b.contains("path") && b["path"].is_string()) out.path = b["path"];
    out.path = resolve(out.path);
    if (out.path.empty()) {
      error("/buffer/path", "must not be empty");
    } else {
      const auto dir = std::filesystem::path(out.path).parent_path();
      std::error_code ec;
      if (!dir.empty() && !std::filesystem::is_directory(dir, ec))
        error("/buffer/path", "directory " + dir.string() + " does not exist");
    }
    if (b.contains("max_bytes")) {
      const json& v = b["max_bytes"];
      std::uint64_t n = 0;
      if (v.is_number_unsigned()) out.max_bytes = v.get<std::uint64_t>();
      else if (v.is_string() && parse_size(v.get<std::string>(), n)) out.max_bytes = n;
    }
    if (b.contains("overflow") && b["overflow"] == "drop_newest") out.overflow = Overflow::kDropNewest;
    if (b.contains("sync") && b["sync"].is_string()) {
      const std::string s = b["sync"];
      out.sync = s == "off" ? SyncLevel::kOff : s == "full" ? SyncLevel::kFull : SyncLevel::kNormal;
    }
    if (b.contains("replay") && b["replay"] == "live_first") out.replay = Replay::kLiveFirst;
  }

  void load_kafka(const json& k, KafkaConfig& out) {
    check_table(k, "/kafka", kafka_table());
    auto str = [&](const char* key, std::string& dst) {
      if (k.contains(key) && k[key].is_string()) dst = k[key];
    };
    str("brokers", out.brokers);
    str("topic", out.topic);
    str("dead_letter_topic", out.dead_letter_topic);
    str("checkpoint_topic", out.checkpoint_topic);
    str("event_topic", out.event_topic);
    if (k.contains("exactly_once") && k["exactly_once"].is_boolean()) out.exactly_once = k["exactly_once"];
    if (out.checkpoint_topic.empty()) error("/kafka/checkpoint_topic", "must not be empty");
    if (out.checkpoint_topic == out.topic || out.checkpoint_topic == out.dead_letter_topic)
      error("/kafka/checkpoint_topic", "must differ from kafka.topic and kafka.dead_letter_topic");
    if (out.topic.empty()) error("/kafka/topic", "must not be empty");
    if (out.dead_letter_topic.empty()) error("/kafka/dead_letter_topic", "must not be empty");
    if (out.topic == out.dead_letter_topic)
      error("/kafka/dead_letter_topic", "must differ from kafka.topic (\"" + out.topic + "\")");
    if (out.event_topic.empty()) error("/kafka/event_topic", "must not be empty");
    else if (out.event_topic == out.topic || out.event_topic == out.dead_letter_topic ||
             out.event_topic == out.checkpoint_topic)
      error("/kafka/event_topic", "must differ from kafka.topic, kafka.dead_letter_topic and kafka.checkpoint_topic");
    if (k.contains("max_in_flight") && k["max_in_flight"].is_number_unsigned())
      out.max_in_flight = static_cast<int>(std::min<std::uint64_t>(k["max_in_flight"].get<std::uint64_t>(), 1000000));
    if (k.contains("max_drain_rate") && k["max_drain_rate"].is_number_unsigned())
      out.max_drain_rate = std::min<std::uint64_t>(k["max_drain_rate"].get<std::uint64_t>(), 100000000);
    if (k.contains("reconnect_jitter_ms") && k["reconnect_jitter_ms"].is_number_unsigned())
      out.reconnect_jitter_ms = static_cast<int>(std::min<std::uint64_t>(k["reconnect_jitter_ms"].get<std::uint64_t>(), 3600000));
    if (k.contains("shutdown_timeout_ms") && k["shutdown_timeout_ms"].is_number_unsigned())
      out.shutdown_timeout_ms = static_cast<int>(std::min<std::uint64_t>(k["shutdown_timeout_ms"].get<std::uint64_t>(), 600000));
    if (k.contains("properties") && k["properties"].is_object()) {
      for (auto it = k["properties"].begin(); it != k["properties"].end(); ++it) {
        const json& v = it.value();
        if (v.is_string()) out.properties[it.key()] = v.get<std::string>();
        else if (v.is_boolean()) out.properties[it.key()] = v.get<bool>() ? "true" : "false";
        else if (v.is_number()) out.properties[it.key()] = v.dump();
      }
    }
    if (const json* t = object_at(k, "tls")) load_kafka_tls(*t, out);
    if (const json* s = object_at(k, "sasl")) load_kafka_sasl(*s, out);
    if (k.contains("properties") && k["properties"].is_object()) check_kafka_properties(k["properties"], out);
    if (out.brokers == "embedded" && (out.tls || out.sasl))
      error(out.tls ? "/kafka/tls" : "/kafka/sasl",
            "the embedded cluster speaks PLAINTEXT only: kafka.tls and kafka.sasl need a real cluster");
    else if (out.sasl && !out.tls)
      warning("/kafka/sasl", "without kafka.tls the uplink is SASL_PLAINTEXT: the password (with PLAIN) and every "
                             "reading travel unencrypted; add \"tls\" for SASL_SSL");
  }

  void load_kafka_tls(const json& t, KafkaConfig& out) {
    check_table(t, "/kafka/tls", kafka_tls_table());
    KafkaTlsConfig& tls = out.tls.emplace();
    tls.ca_file = uplink_file(t, "/kafka/tls", "ca_file");
    tls.cert_file = uplink_file(t, "/kafka/tls", "cert_file");
    tls.key_file = uplink_file(t, "/kafka/tls", "key_file");
    tls.key_password_file = uplink_file(t, "/kafka/tls", "key_password_file", &tls.key_password);
    if (t.contains("verify_hostname") && t["verify_hostname"].is_boolean()) tls.verify_hostname = t["verify_hostname"];
    if (t.contains("cert_file") != t.contains("key_file"))
      error("/kafka/tls", "a client certificate needs both \"cert_file\" and \"key_file\"");
    if (t.contains("key_password_file") && !t.contains("key_file"))
      error("/kafka/tls/key_password_file", "a key passphrase without \"key_file\"");
  }

  void load_kafka_sasl(const json& s, KafkaConfig& out) {
    check_table(s, "/kafka/sasl", kafka_sasl_table());
    KafkaSaslConfig& sasl = out.sasl.emplace();
    if (s.contains("mechanism") && s["mechanism"].is_string()) sasl.mechanism = s["mechanism"];
    if (s.contains("username") && s["username"].is_string()) sasl.username = s["username"];
    sasl.password_file = uplink_file(s, "/kafka/sasl", "password_file", &sasl.password);
  }

  // Secrets never inline; and with kafka.tls / kafka.sasl set, they alone
  // make the security settings (one source of truth).
  void check_kafka_properties(const json& props, const KafkaConfig& out) {
    struct Rule {
      const char* key;
      const char* instead;
    };
    static const Rule kSecrets[] = {
        {"sasl.password", "put it in a file and set kafka.sasl.password_file"},
        {"ssl.key.password", "put it in a file and set kafka.tls.key_password_file"},
        {"ssl.key.pem", "put the key in a file and set kafka.tls.key_file"},
        {"ssl_key", "put the key in a file and set kafka.tls.key_file"},
        {"ssl.keystore.password",
         "convert the keystore to PEM files and set kafka.tls.cert_file and kafka.tls.key_file "
         "(and kafka.tls.key_password_file)"},
        {"sasl.oauthbearer.client.secret",
         "vane takes SASL credentials only from files: set kafka.sasl (PLAIN or SCRAM) with kafka.sasl.password_file"},
        {"sasl.oauthbearer.config",
         "vane takes SASL credentials only from files: set kafka.sasl (PLAIN or SCRAM) with kafka.sasl.password_file"},
    };
    static const Rule kMadeByTlsOrSasl[] = {
        {"security.protocol", "it follows from kafka.tls and kafka.sasl"},
        {"sasl.mechanisms", "set by kafka.sasl.mechanism"},
        {"sasl.mechanism", "set by kafka.sasl.mechanism"},
        {"sasl.username", "set by kafka.sasl.username"},
        {"ssl.ca.location", "set by kafka.tls.ca_file"},
        {"ssl.ca.pem", "set by kafka.tls.ca_file"},
        {"ssl.certificate.location", "set by kafka.tls.cert_file"},
        {"ssl.certificate.pem", "set by kafka.tls.cert_file"},
        {"ssl.key.location", "set by kafka.tls.key_file"},
        {"ssl.keystore.location", "set by kafka.tls.cert_file and kafka.tls.key_file"},
        {"ssl.endpoint.identification.algorithm", "set by kafka.tls.verify_hostname"},
    };
    for (auto it = props.begin(); it != props.end(); ++it) {
      const std::string p = "/kafka/properties/" + pointer_token(it.key());
      for (const Rule& r : kSecrets)
        if (it.key() == r.key) error(p, std::string("a secret inline; ") + r.instead);
      if (!out.tls && !out.sasl) continue;
      for (const Rule& r : kMadeByTlsOrSasl)
        if (it.key() == r.key)
          error(p, std::string(r.instead) + "; with kafka.tls or kafka.sasl set, leave it out of kafka.properties");
    }
  }

  void load_sources(const json& arr, Config& c) {
    if (arr.empty()) error("/sources", "no sources: add at least one");
    std::set<std::string> names;
    std::map<std::string, std::string> serial_owner;  // serial device -> source name
    std::vector<std::string> type_names;
    for (const auto& t : source_types()) type_names.push_back(t.type);
    for (std::size_t i = 0; i < arr.size(); ++i) {
      const std::string ptr = "/sources/" + std::to_string(i);
      const json& s = arr[i];
      if (!s.is_object()) {
        error(ptr, "expected an object, got " + describe(s));
        continue;
      }
      SourceConfig sc;
      sc.pointer = ptr;
      sc.line = loc_.line_of(ptr);
      sc.raw = s.dump();
      if (!s.contains("type")) {
        error(ptr, "missing required key \"type\"");
        continue;
      }
      if (!s["type"].is_string()) {
        error(ptr + "/type", "expected a string, got " + describe(s["type"]));
        continue;
      }
      sc.type = s["type"];
      const SourceType* st = find_source_type(sc.type);
      if (!st) {
        std::string all;
        for (const auto& n : type_names) all += (all.empty() ? "" : ", ") + n;
        error(ptr + "/type", "unknown source type \"" + sc.type + "\" (expected one of: " + all + ")");
        continue;
      }
      if (!st->built) {
        error(ptr + "/type", "source type \"" + sc.type + "\" is not available in this build");
        continue;
      }
      check_table(s, ptr, st->table);
      if (st->validate) {
        std::vector<std::pair<std::string, std::string>> driver_errors;
        st->validate(s, ptr, driver_errors);
        for (auto& [p, msg] : driver_errors) error(p, msg);
      }
      if (s.contains("name") && s["name"].is_string()) sc.name = s["name"];
      if (!sc.name.empty() && !names.insert(sc.name).second)
        error(ptr + "/name", "duplicate source name \"" + sc.name + "\"");
      if (s.contains("schema") && s["schema"].is_string()) {
        sc.schema = s["schema"];
        if (!c.schemas.count(sc.schema)) {
          std::vector<std::string> known;
          for (const auto& [n, _] : c.schemas) known.push_back(n);
          std::string msg = "schema \"" + sc.schema + "\" is not defined in \"schemas\"";
          const std::string near = closest(sc.schema, known);
          if (!near.empty()) msg += " (did you mean \"" + near + "\"?)";
          error(ptr + "/schema", msg);
        }
      } else if (!sc.name.empty()) {
        warning(ptr, "source \"" + sc.name + "\" has no schema: its readings are forwarded unchecked");
      }
      const ConfigOption* df = st->table.find("device_field");
      sc.device_field = s.contains("device_field") && s["device_field"].is_string()
                            ? s["device_field"].get<std::string>()
                            : df->def;
      // One serial bus has one master: two sources on it would interleave requests.
      if (sc.type == "modbus_rtu" && s.contains("serial") && s["serial"].is_string()) {
        const std::string dev = s["serial"];
        auto [it, fresh] = serial_owner.emplace(dev, sc.name);
        if (!fresh)
          error(ptr + "/serial", "serial device " + dev + " is already polled by source \"" + it->second +
                                     "\": put all devices of one bus in one source");
      }
      if (sc.type == "simulator") load_simulator(s, sc.simulator);
      c.sources.push_back(std::move(sc));
    }
  }

  void load_simulator(const json& s, SimulatorConfig& o) {
    if (s.contains("model") && s["model"].is_string()) o.model = s["model"];
    if (s.contains("devices") && s["devices"].is_number_unsigned()) o.devices = s["devices"].get<int>();
    if (s.contains("interval_ms") && s["interval_ms"].is_number_unsigned()) o.interval_ms = s["interval_ms"].get<int>();
    if (s.contains("rate")) {
      if (s["rate"] == "max") o.max_speed = true;
      else if (s["rate"].is_number()) o.rate = s["rate"].get<double>();
    }
    if (s.contains("limit") && s["limit"].is_number_unsigned()) o.limit = s["limit"];
    if (s.contains("seed") && s["seed"].is_number_unsigned()) o.seed = s["seed"];
    if (s.contains("faults") && s["faults"].is_number()) o.faults = s["faults"];
    if (s.contains("hang_file") && s["hang_file"].is_string()) o.hang_file = resolve(s["hang_file"]);
  }

  static constexpr const char* kCredentialsRoot = "/run/credentials/";

  const std::string& text_;
  std::string file_, base_;
  LoadOptions options_;
  JsoncLocator loc_;
  std::vector<ConfigIssue> errors_, warnings_;
};

}  // namespace

std::string kafka_security_protocol(const KafkaConfig& cfg) {
  if (cfg.tls && cfg.sasl) return "SASL_SSL";
  if (cfg.tls) return "SSL";
  if (cfg.sasl) return "SASL_PLAINTEXT";
  return "";
}

bool is_kafka_connection_property(const std::string& key) {
  for (const char* prefix : {"security.", "sasl.", "ssl.", "socket."})
    if (key.rfind(prefix, 0) == 0) return true;
  for (const char* k : {"bootstrap.servers", "metadata.broker.list", "enable.ssl.certificate.verification",
                        "enable.sasl.oauthbearer.unsecure.jwt", "broker.address.family"})
    if (key == k) return true;
  return false;
}

std::vector<KafkaProperty> kafka_connection_properties(const KafkaConfig& cfg, const std::string& bootstrap) {
  std::vector<KafkaProperty> out;
  out.push_back({"bootstrap.servers", bootstrap, "/kafka/brokers", false});
  for (const auto& [k, v] : cfg.properties) {
    // The loader refuses inline secrets; should one get here all the same
    // (a config built in code), its value is still never shown.
    const bool secret = k.find("password") != std::string::npos || k.find("secret") != std::string::npos ||
                        k == "ssl.key.pem" || k == "sasl.oauthbearer.config";
    if (is_kafka_connection_property(k)) out.push_back({k, v, "/kafka/properties/" + k, secret});
  }
  const std::string protocol = kafka_security_protocol(cfg);
  if (!protocol.empty()) out.push_back({"security.protocol", protocol, cfg.tls ? "/kafka/tls" : "/kafka/sasl", false});
  if (cfg.tls) {
    const KafkaTlsConfig& t = *cfg.tls;
    if (!t.ca_file.empty()) out.push_back({"ssl.ca.location", t.ca_file, "/kafka/tls/ca_file", false});
    if (!t.cert_file.empty()) out.push_back({"ssl.certificate.location", t.cert_file, "/kafka/tls/cert_file", false});
    if (!t.key_file.empty()) out.push_back({"ssl.key.location", t.key_file, "/kafka/tls/key_file", false});
    if (!t.key_password.empty())
      out.push_back({"ssl.key.password", t.key_password, "/kafka/tls/key_password_file", true});
    out.push_back({"ssl.endpoint.identification.algorithm", t.verify_hostname ? "https" : "none",
                   "/kafka/tls/verify_hostname", false});
  }
  if (cfg.sasl) {
    const KafkaSaslConfig& a = *cfg.sasl;
    out.push_back({"sasl.mechanisms", a.mechanism, "/kafka/sasl/mechanism", false});
    out.push_back({"sasl.username", a.username, "/kafka/sasl/username", false});
    out.push_back({"sasl.password", a.password, "/kafka/sasl/password_file", true});
  }
  return out;
}

ConfigLoad parse_config(const std::string& text, const std::string& file, const std::string& base_dir,
                        const LoadOptions& options) {
  return Loader(text, file, base_dir, options).run();
}

ConfigLoad load_config(const std::string& path, const LoadOptions& options) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    ConfigLoad out;
    out.config.file = path;
    out.errors.push_back({path, "", 0, std::string("cannot read config file: ") + std::strerror(errno), false});
    return out;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  std::string base = std::filesystem::path(path).parent_path().string();
  if (base.empty()) base = ".";
  base = std::filesystem::absolute(base).lexically_normal().string();
  return parse_config(ss.str(), path, base, options);
}

}  // namespace vane
