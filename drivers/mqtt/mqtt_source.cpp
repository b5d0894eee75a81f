#include "mqtt/mqtt_source.h"

#include <mqtt/async_client.h>

#include <cmath>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "core/log.h"
#include "core/secret_file.h"

namespace vane::mqtt {

using json = nlohmann::json;

namespace {

constexpr std::size_t kMaxFieldNames = 4096;
constexpr std::size_t kKeptPayloadBytes = 64 * 1024;  // of an oversize payload, for the dead letter

// RFC 3339 / ISO 8601 date-time -> µs since epoch; false when malformed.
bool parse_iso8601(const std::string& s, std::int64_t& us) {
  int y, mo, d, h, mi;
  double sec;
  char t;
  int n = 0;
  if (std::sscanf(s.c_str(), "%4d-%2d-%2d%c%2d:%2d:%lf%n", &y, &mo, &d, &t, &h, &mi, &sec, &n) != 7) return false;
  if ((t != 'T' && t != 't' && t != ' ') || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec < 0 ||
      sec >= 61)
    return false;
  std::string zone = s.substr(static_cast<std::size_t>(n));
  int offset_min = 0;
  if (zone == "Z" || zone == "z") {
  } else if (zone.size() == 6 && (zone[0] == '+' || zone[0] == '-') && zone[3] == ':') {
    offset_min = (std::stoi(zone.substr(1, 2)) * 60 + std::stoi(zone.substr(4, 2))) * (zone[0] == '-' ? -1 : 1);
  } else {
    return false;
  }
  // Days from civil (H. Hinnant).
  const int yy = y - (mo <= 2);
  const int era = (yy >= 0 ? yy : yy - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(yy - era * 400);
  const unsigned doy = (153 * static_cast<unsigned>(mo + (mo > 2 ? -3 : 9)) + 2) / 5 + static_cast<unsigned>(d) - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  const std::int64_t days = static_cast<std::int64_t>(era) * 146097 + static_cast<std::int64_t>(doe) - 719468;
  us = ((days * 86400 + h * 3600 + mi * 60 - offset_min * 60) * 1000000) + static_cast<std::int64_t>(std::llround(sec * 1e6));
  return true;
}

std::string_view intern(std::set<std::string>& names, const std::string& n) {
  auto it = names.find(n);
  if (it == names.end()) it = names.insert(n).first;
  return *it;
}

}  // namespace

SourceOptions parse_source(const json& s, const std::string& ptr, std::vector<ConfigError>& errors) {
  SourceOptions o;
  auto str = [&](const char* k, std::string& dst) {
    if (s.contains(k) && s[k].is_string()) dst = s[k];
  };
  str("url", o.url);
  if (o.url.empty()) errors.push_back({ptr, "missing required key \"url\" (e.g. tcp://127.0.0.1:1883)"});
  else if (o.url.rfind("ws://", 0) == 0 || o.url.rfind("wss://", 0) == 0)
    // Debian's Paho did not connect to mosquitto's websockets listener in our
    // tests: refused here rather than retried forever at run time.
    errors.push_back({ptr + "/url", "\"" + o.url + "\": MQTT over websockets is not supported; use tcp:// or ssl://"});
  else if (o.url.rfind("tcp://", 0) != 0 && o.url.rfind("ssl://", 0) != 0 && o.url.rfind("mqtts://", 0) != 0)
    errors.push_back({ptr + "/url", "\"" + o.url + "\": the scheme must be tcp://, ssl:// or mqtts://"});
  if (o.url.rfind("mqtts://", 0) == 0) o.url = "ssl://" + o.url.substr(8);
  str("client_id", o.client_id);
  if (o.client_id.empty()) o.client_id = "vane-" + s.value("name", std::string("mqtt"));
  if (s.contains("qos") && s["qos"].is_number_integer()) o.qos = s["qos"];
  if (s.contains("clean_session") && s["clean_session"].is_boolean()) o.clean_session = s["clean_session"];
  if (s.contains("keep_alive_s") && s["keep_alive_s"].is_number_integer()) o.keep_alive_s = s["keep_alive_s"];
  str("username", o.username);
  str("password_file", o.password_file);
  str("ca_file", o.ca_file);
  str("cert_file", o.cert_file);
  str("key_file", o.key_file);
  if (s.contains("verify_hostname") && s["verify_hostname"].is_boolean()) o.verify_hostname = s["verify_hostname"];
  for (const char* k : {"password_file", "ca_file", "cert_file", "key_file"}) {
    if (!s.contains(k) || !s[k].is_string()) continue;
    const std::string path = s[k].get<std::string>();
    if (std::string(k) == "password_file") {
      if (auto pw = read_secret_file(path); !pw) errors.push_back({ptr + "/" + k, pw.status().message()});
    } else if (Status st = check_readable_file(path); !st) {
      errors.push_back({ptr + "/" + k, st.message()});
    }
  }
  if (o.cert_file.empty() != o.key_file.empty())
    errors.push_back({ptr, "a client certificate needs both \"cert_file\" and \"key_file\""});
  if (!s.contains("topics") || !s["topics"].is_array() || s["topics"].empty()) {
    errors.push_back({ptr, "missing \"topics\": a non-empty array of topic filters"});
  } else {
    for (std::size_t i = 0; i < s["topics"].size(); ++i) {
      const json& t = s["topics"][i];
      const std::string p = ptr + "/topics/" + std::to_string(i);
      if (!t.is_string() || t.get<std::string>().empty()) {
        errors.push_back({p, "expected a topic filter"});
        continue;
      }
      const std::string f = t;
      // '#' only last and alone in its level; '+' alone in its level.
      bool ok = true;
      std::size_t start = 0;
      while (start <= f.size()) {
        const std::size_t end = std::min(f.find('/', start), f.size());
        const std::string level = f.substr(start, end - start);
        if ((level.find('#') != std::string::npos && (level != "#" || end != f.size())) ||
            (level.find('+') != std::string::npos && level != "+"))
          ok = false;
        start = end + 1;
      }
      if (!ok) errors.push_back({p, "\"" + f + "\" is not a valid topic filter ('+' and '#' take a whole level, '#' only last)"});
      o.topics.push_back(f);
    }
  }
  if (s.contains("device_id") && s["device_id"].is_string()) {
    const std::string d = s["device_id"];
    int seg = -1;
    char close[3] = {0};
    if (std::sscanf(d.c_str(), "{topic[%d%2s", &seg, close) == 2 && std::string(close) == "]}" && seg >= 0)
      o.device_topic_segment = seg;
    else if (!d.empty() && d[0] == '/')
      o.device_pointer = d;
    else
      errors.push_back({ptr + "/device_id", "\"" + d + "\": use \"{topic[N]}\" (a topic level, from 0) or a JSON pointer like \"/sensor_id\""});
  } else {
    errors.push_back({ptr, "missing \"device_id\": \"{topic[N]}\" or a JSON pointer into the payload"});
  }
  if (s.contains("fields")) {
    if (!s["fields"].is_object()) {
      errors.push_back({ptr + "/fields", "expected an object: field name -> JSON pointer"});
    } else {
      for (auto it = s["fields"].begin(); it != s["fields"].end(); ++it) {
        if (!it.value().is_string() || (!it.value().get<std::string>().empty() && it.value().get<std::string>()[0] != '/'))
          errors.push_back({ptr + "/fields/" + it.key(), "expected a JSON pointer like \"/temp\""});
        else o.fields.emplace_back(it.key(), it.value().get<std::string>());
      }
    }
  }
  if (s.contains("timestamp")) {
    const json& t = s["timestamp"];
    static const std::pair<const char*, TimeFormat> kFormats[] = {{"iso8601", TimeFormat::kIso8601},
                                                                   {"epoch_s", TimeFormat::kEpochS},
                                                                   {"epoch_ms", TimeFormat::kEpochMs},
                                                                   {"epoch_us", TimeFormat::kEpochUs}};
    bool ok = t.is_object() && t.contains("field") && t["field"].is_string() && t.contains("format") && t["format"].is_string();
    if (ok) {
      o.timestamp_pointer = t["field"];
      ok = false;
      for (auto& [n, f] : kFormats)
        if (t["format"] == n) o.timestamp_format = f, ok = true;
    }
    if (!ok)
      errors.push_back({ptr + "/timestamp", "expected {\"field\": \"/ts\", \"format\": \"iso8601\" | \"epoch_s\" | \"epoch_ms\" | \"epoch_us\"}"});
  }
  if (s.contains("max_payload_bytes") && s["max_payload_bytes"].is_number_unsigned())
    o.max_payload_bytes = s["max_payload_bytes"];
  return o;
}

Reading map_message(const SourceOptions& o, const std::string& topic, const std::string& payload, TimePoint received,
                    std::set<std::string>& names) {
  Reading r;
  r.timestamp = received;
  auto fail = [&](std::string why) {
    r.source_error = std::move(why);
    r.payload = payload.size() > kKeptPayloadBytes ? payload.substr(0, kKeptPayloadBytes) : payload;
    if (r.payload.empty()) r.payload = "\"\"";
    return r;
  };
  if (o.device_topic_segment >= 0) {
    int level = 0;
    std::size_t start = 0;
    while (level < o.device_topic_segment && start != std::string::npos) {
      start = topic.find('/', start);
      if (start != std::string::npos) ++start;
      ++level;
    }
    if (start == std::string::npos) return fail("topic \"" + topic + "\" has no level " + std::to_string(o.device_topic_segment));
    r.device_id = topic.substr(start, topic.find('/', start) - start);
    if (r.device_id.empty()) return fail("topic \"" + topic + "\": the device id level is empty");
  }
  if (payload.size() > o.max_payload_bytes)
    return fail("payload of " + std::to_string(payload.size()) + " bytes exceeds max_payload_bytes " +
                std::to_string(o.max_payload_bytes));
  const json doc = json::parse(payload, nullptr, false);
  if (doc.is_discarded()) return fail("payload is not JSON (or not valid UTF-8)");
  if (!doc.is_object()) return fail("payload is a JSON " + std::string(doc.type_name()) + ", not an object");
  auto at = [&](const std::string& ptr) -> const json* {
    try {
      const json::json_pointer p(ptr);
      return doc.contains(p) ? &doc.at(p) : nullptr;
    } catch (const json::exception&) {
      return nullptr;
    }
  };
  if (!o.device_pointer.empty()) {
    const json* d = at(o.device_pointer);
    if (!d || !(d->is_string() || d->is_number_integer()) || (d->is_string() && d->get<std::string>().empty()))
      return fail("no device id at " + o.device_pointer);
    r.device_id = d->is_string() ? d->get<std::string>() : d->dump();
  }
  if (!o.timestamp_pointer.empty()) {
    const json* t = at(o.timestamp_pointer);
    if (!t) return fail("no timestamp at " + o.timestamp_pointer);
    std::int64_t us = 0;
    if (o.timestamp_format == TimeFormat::kIso8601) {
      if (!t->is_string() || !parse_iso8601(t->get<std::string>(), us))
        return fail("timestamp at " + o.timestamp_pointer + " is not ISO 8601: " + t->dump());
    } else {
      if (!t->is_number()) return fail("timestamp at " + o.timestamp_pointer + " is not a number: " + t->dump());
      const double v = t->get<double>();
      const double mult = o.timestamp_format == TimeFormat::kEpochS ? 1e6 : o.timestamp_format == TimeFormat::kEpochMs ? 1e3 : 1;
      if (!std::isfinite(v) || std::fabs(v * mult) > 9e18) return fail("timestamp at " + o.timestamp_pointer + " is out of range");
      us = static_cast<std::int64_t>(std::llround(v * mult));
    }
    r.timestamp = TimePoint(Micros(us));
  }
  auto to_value = [](const json& v, Value& out) {
    if (v.is_number_unsigned() && v.get<std::uint64_t>() <= static_cast<std::uint64_t>(INT64_MAX)) out = v.get<std::int64_t>();
    else if (v.is_number_integer() && !v.is_number_unsigned()) out = v.get<std::int64_t>();
    else if (v.is_number()) out = v.get<double>();
    else if (v.is_boolean()) out = v.get<bool>();
    else if (v.is_string()) out = v.get<std::string>();
    else if (v.is_null()) out = Value{};
    else return false;
    return true;
  };
  if (!o.fields.empty()) {
    for (const auto& [name, ptr] : o.fields) {
      const json* v = at(ptr);
      if (!v) continue;  // missing: the schema decides whether it is required
      Value val;
      if (!to_value(*v, val)) return fail("field " + name + " at " + ptr + " is a JSON " + v->type_name() + ", not a value");
      r.fields.push_back({name, std::move(val)});
    }
  } else {
    const std::string device_key = o.device_pointer.size() > 1 ? o.device_pointer.substr(1) : "";
    const std::string ts_key = o.timestamp_pointer.size() > 1 ? o.timestamp_pointer.substr(1) : "";
    for (auto it = doc.begin(); it != doc.end(); ++it) {
      if (it.key() == device_key || it.key() == ts_key) continue;
      Value val;
      if (!to_value(it.value(), val)) continue;  // nested objects need a "fields" map
      if (names.size() >= kMaxFieldNames && !names.count(it.key()))
        return fail("more than " + std::to_string(kMaxFieldNames) + " distinct field names: give the source a \"fields\" map");
      r.fields.push_back({intern(names, it.key()), std::move(val)});
    }
  }
  return r;
}

class MqttSource::Client : public ::mqtt::callback {
 public:
  Client(MqttSource& owner) : owner_(owner), cli_(owner.opts_.url, owner.opts_.client_id) { cli_.set_callback(*this); }

  Status connect() {
    const SourceOptions& o = owner_.opts_;
    ::mqtt::connect_options opts;
    opts.set_clean_session(o.clean_session);
    opts.set_keep_alive_interval(o.keep_alive_s);
    opts.set_automatic_reconnect(1, 30);
    if (!o.username.empty()) opts.set_user_name(o.username);
    if (!o.password_file.empty()) {
      auto pw = read_secret_file(o.password_file);
      if (!pw) return Status::invalid(pw.status().message());
      opts.set_password(pw.value());
    }
    if (o.url.rfind("ssl://", 0) == 0) {
      ::mqtt::ssl_options ssl;
      if (!o.ca_file.empty()) ssl.set_trust_store(o.ca_file);
      if (!o.cert_file.empty()) ssl.set_key_store(o.cert_file);
      if (!o.key_file.empty()) ssl.set_private_key(o.key_file);
      ssl.set_enable_server_cert_auth(true);
      ssl.set_verify(o.verify_hostname);
      opts.set_ssl(ssl);
    }
    try {
      // The first connect is awaited so that a refused login is reported at
      // start; afterwards Paho reconnects by itself.
      cli_.connect(opts)->wait_for(std::chrono::seconds(10));
    } catch (const ::mqtt::exception& e) {
      VANE_LOG_WARN("mqtt %s: cannot connect to %s: %s (retrying)", owner_.name().c_str(), o.url.c_str(), e.what());
      retry_opts_ = opts;
      retrying_ = true;
    }
    return Status::ok();
  }

  // Keeps trying to connect when the first attempt failed (broker down at start).
  void retry_if_needed() {
    if (!retrying_ || cli_.is_connected()) return;
    try {
      cli_.connect(retry_opts_)->wait_for(std::chrono::seconds(5));
      retrying_ = false;
    } catch (const ::mqtt::exception&) {
    }
  }

  void disconnect() {
    try {
      if (cli_.is_connected()) cli_.disconnect()->wait_for(std::chrono::seconds(5));
    } catch (const ::mqtt::exception&) {
    }
  }

  void connected(const std::string&) override {
    // With a persistent session the broker kept the subscriptions; subscribe
    // anyway: it is idempotent and covers a broker that lost its state.
    const SourceOptions& o = owner_.opts_;
    try {
      for (const auto& t : o.topics) cli_.subscribe(t, o.qos);
    } catch (const ::mqtt::exception& e) {
      VANE_LOG_ERROR("mqtt %s: cannot subscribe: %s", owner_.name().c_str(), e.what());
    }
    if (ever_connected_) owner_.reconnects_.fetch_add(1, std::memory_order_relaxed);
    owner_.connected_.store(true, std::memory_order_relaxed);
    ever_connected_ = true;
    VANE_LOG_INFO("mqtt %s: connected to %s", owner_.name().c_str(), o.url.c_str());
  }

  void connection_lost(const std::string& cause) override {
    owner_.connected_.store(false, std::memory_order_relaxed);
    VANE_LOG_WARN("mqtt %s: connection lost%s%s (reconnecting)", owner_.name().c_str(), cause.empty() ? "" : ": ",
                  cause.c_str());
  }

  void message_arrived(::mqtt::const_message_ptr msg) override {
    owner_.enqueue(msg->get_topic(), msg->get_payload_str());
  }

 private:
  MqttSource& owner_;
  ::mqtt::async_client cli_;
  ::mqtt::connect_options retry_opts_;
  bool retrying_ = false;
  bool ever_connected_ = false;
};

void MqttSource::export_metrics(PromText& out) const {
  using T = PromText::Type;
  out.family("vane_mqtt_messages_total", T::kCounter, "MQTT messages received.");
  out.family("vane_mqtt_dropped_total", T::kCounter, "MQTT messages lost to a full intake queue.");
  out.family("vane_mqtt_mapping_errors_total", T::kCounter, "MQTT messages that did not parse or map (sent as dead letters).");
  out.family("vane_mqtt_reconnects_total", T::kCounter, "Reconnections to the MQTT broker.");
  out.family("vane_mqtt_connected", T::kGauge, "1 while connected to the MQTT broker.");
  const PromText::Labels l{{"source", name()}};
  out.sample("vane_mqtt_messages_total", l, static_cast<double>(messages_.load()));
  out.sample("vane_mqtt_dropped_total", l, static_cast<double>(dropped_.load()));
  out.sample("vane_mqtt_mapping_errors_total", l, static_cast<double>(mapping_errors_.load()));
  out.sample("vane_mqtt_reconnects_total", l, static_cast<double>(reconnects_.load()));
  out.sample("vane_mqtt_connected", l, connected_.load() ? 1 : 0);
}

MqttSource::MqttSource(SourceOptions opts, const Origin* origin) : opts_(std::move(opts)), origin_(origin) {}

MqttSource::~MqttSource() { stop(); }

Status MqttSource::start(ReadingSink& sink) {
  try {
    client_ = std::make_unique<Client>(*this);
  } catch (const ::mqtt::exception& e) {
    return Status::invalid(std::string("mqtt: ") + e.what());
  }
  worker_ = std::thread([this, &sink] { work(&sink); });
  return client_->connect();
}

void MqttSource::enqueue(std::string topic, std::string payload) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (queue_.size() >= opts_.queue_capacity) {
      dropped_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    queue_.push_back({std::move(topic), std::move(payload), now_us()});
  }
  messages_.fetch_add(1, std::memory_order_relaxed);
  cv_.notify_one();
}

void MqttSource::work(ReadingSink* sink) {
  std::deque<Msg> batch;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::seconds(1), [&] { return stop_ || (!queue_.empty() && !paused_); });
      if (queue_.empty() && stop_) return;
      if (!paused_ || stop_) batch.swap(queue_);
    }
    if (batch.empty()) {
      if (client_) client_->retry_if_needed();
      continue;
    }
    for (Msg& m : batch) {
      Reading r = map_message(opts_, m.topic, m.payload, m.received, names_);
      r.origin = origin_;
      if (!r.source_error.empty()) mapping_errors_.fetch_add(1, std::memory_order_relaxed);
      if (!sink->submit(std::move(r))) return;
    }
    batch.clear();
  }
}

void MqttSource::pause() {
  std::lock_guard<std::mutex> lock(mu_);
  paused_ = true;
}

void MqttSource::resume() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    paused_ = false;
  }
  cv_.notify_all();
}

void MqttSource::stop() {
  // Stop receiving first, then hand over everything already received.
  if (client_) client_->disconnect();
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    paused_ = false;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
  client_.reset();
}

std::string MqttSource::summary() const {
  return std::to_string(messages_.load()) + " messages, " + std::to_string(mapping_errors_.load()) +
         " not mappable, " + std::to_string(dropped_.load()) + " dropped (queue full), " +
         std::to_string(reconnects_.load()) + " reconnects";
}

}  // namespace vane::mqtt
