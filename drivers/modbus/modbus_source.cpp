#include "modbus/modbus_source.h"

#include <modbus/modbus.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <set>
#include <tuple>

#include <nlohmann/json.hpp>

#include "core/log.h"

namespace vane::modbus {

using json = nlohmann::json;

namespace {

struct ModbusDeleter {
  void operator()(modbus_t* m) const {
    modbus_close(m);
    modbus_free(m);
  }
};
using ModbusPtr = std::unique_ptr<modbus_t, ModbusDeleter>;

bool is_exception(int err) { return err > MODBUS_ENOBASE && err <= MODBUS_ENOBASE + MODBUS_EXCEPTION_GATEWAY_TARGET; }

}  // namespace

SourceOptions parse_source(const json& s, const std::string& ptr, std::vector<ConfigError>& errors) {
  SourceOptions o;
  o.rtu = s.value("type", "") == "modbus_rtu";
  auto get_int = [&](const char* k, int& dst) {
    if (s.contains(k) && s[k].is_number_integer()) dst = s[k].get<int>();
  };
  if (o.rtu) {
    if (!s.contains("serial") || !s["serial"].is_string() || s["serial"].get<std::string>().empty())
      errors.push_back({ptr, "missing required key \"serial\" (the serial device, e.g. /dev/ttyUSB0)"});
    else o.serial = s["serial"];
    get_int("baud", o.baud);
    get_int("data_bits", o.data_bits);
    get_int("stop_bits", o.stop_bits);
    if (s.contains("parity") && s["parity"].is_string() && !s["parity"].get<std::string>().empty())
      o.parity = s["parity"].get<std::string>()[0];
  } else {
    if (!s.contains("host") || !s["host"].is_string() || s["host"].get<std::string>().empty())
      errors.push_back({ptr, "missing required key \"host\""});
    else o.host = s["host"];
    get_int("port", o.port);
  }
  get_int("interval_ms", o.interval_ms);
  get_int("timeout_ms", o.timeout_ms);
  get_int("retries", o.retries);
  get_int("max_gap", o.max_gap);

  if (!s.contains("devices") || !s["devices"].is_array() || s["devices"].empty()) {
    errors.push_back({ptr, "missing \"devices\": a non-empty array of {\"id\", \"unit_id\"}"});
  } else {
    std::set<int> units;
    std::set<std::string> ids;
    const json& ds = s["devices"];
    for (std::size_t i = 0; i < ds.size(); ++i) {
      const std::string p = ptr + "/devices/" + std::to_string(i);
      const json& d = ds[i];
      if (!d.is_object() || !d.contains("id") || !d["id"].is_string() || !d.contains("unit_id") ||
          !d["unit_id"].is_number_integer()) {
        errors.push_back({p, "expected {\"id\": string, \"unit_id\": integer}"});
        continue;
      }
      for (auto it = d.begin(); it != d.end(); ++it)
        if (it.key() != "id" && it.key() != "unit_id" && it.key() != "profile") errors.push_back({p + "/" + it.key(), "unknown key \"" + it.key() + "\""});
      Device dev{d["id"].get<std::string>(), d["unit_id"].get<int>(), ""};
      if (d.contains("profile")) {
        if (!d["profile"].is_string()) errors.push_back({p + "/profile", "expected a profile name"});
        else dev.profile = d["profile"];
      }
      // 0 is broadcast (no reply); 248-255 are reserved on serial lines but
      // used by TCP gateways.
      const int max_unit = o.rtu ? 247 : 255;
      if (dev.unit_id < 1 || dev.unit_id > max_unit)
        errors.push_back({p + "/unit_id", "expected 1.." + std::to_string(max_unit) + ", got " + std::to_string(dev.unit_id)});
      else if (!units.insert(dev.unit_id).second)
        errors.push_back({p + "/unit_id", "unit id " + std::to_string(dev.unit_id) + " is used twice"});
      if (!ids.insert(dev.id).second) errors.push_back({p + "/id", "device id \"" + dev.id + "\" is used twice"});
      o.devices.push_back(dev);
    }
  }
  if (s.contains("registers")) o.maps[""] = RegisterMap::parse(s["registers"], ptr + "/registers", errors);
  if (s.contains("profiles")) {
    if (!s["profiles"].is_object()) {
      errors.push_back({ptr + "/profiles", "expected an object: profile name -> register map"});
    } else {
      for (auto it = s["profiles"].begin(); it != s["profiles"].end(); ++it) {
        if (it.key().empty()) errors.push_back({ptr + "/profiles", "a profile needs a name"});
        else o.maps[it.key()] = RegisterMap::parse(it.value(), ptr + "/profiles/" + it.key(), errors);
      }
    }
  }
  for (std::size_t i = 0; i < o.devices.size(); ++i) {
    const Device& dev = o.devices[i];
    if (o.maps.count(dev.profile)) continue;
    if (dev.profile.empty())
      errors.push_back({ptr + "/devices/" + std::to_string(i),
                        "no register map: give the source \"registers\" or the device a \"profile\""});
    else
      errors.push_back({ptr + "/devices/" + std::to_string(i) + "/profile",
                        "profile \"" + dev.profile + "\" is not defined in \"profiles\""});
  }
  return o;
}

std::string describe_plan(const SourceOptions& o) {
  std::string out;
  char line[256];
  std::snprintf(line, sizeof line, "%zu devices, every %d ms\n", o.devices.size(), o.interval_ms);
  out += line;
  for (const auto& [profile, map] : o.maps) {
    const auto plan = map.plan(o.max_gap);
    std::string who;
    for (const Device& d : o.devices)
      if (d.profile == profile) who += (who.empty() ? "" : ", ") + d.id;
    std::snprintf(line, sizeof line, "  %s: %zu requests per poll (%s)\n",
                  profile.empty() ? "registers" : ("profile " + profile).c_str(), plan.size(), who.c_str());
    out += line;
    for (const Request& r : plan) {
      std::string fields;
      for (std::size_t i : r.entries) fields += (fields.empty() ? "" : ", ") + map.entries()[i].field;
      std::snprintf(line, sizeof line, "    %-8s %5d..%-5d (%3d) -> ", to_string(r.table), r.address,
                    r.address + r.count - 1, r.count);
      out += line + fields + "\n";
    }
  }
  return out;
}

struct ModbusSource::Ctx {
  ModbusPtr mb;
  bool connected = false;
  std::vector<std::uint16_t> regs;
  std::vector<std::uint8_t> bits;
  std::chrono::milliseconds reconnect_backoff{0};
  // Exceptions already logged, by (device, table, address): a misconfigured
  // map is logged once, then only counted.
  std::set<std::tuple<std::size_t, int, int>> logged_exceptions;
};

ModbusSource::ModbusSource(SourceOptions opts, const Origin* origin)
    : opts_(std::move(opts)), origin_(origin) {
  for (const auto& [profile, map] : opts_.maps) plans_[profile] = map.plan(opts_.max_gap);
  for (std::size_t i = 0; i < opts_.devices.size(); ++i) stats_.push_back(std::make_unique<DeviceStats>());
}

ModbusSource::~ModbusSource() { stop(); }

Status ModbusSource::start(ReadingSink& sink) {
  thread_ = std::thread([this, &sink] { run(&sink); });
  return Status::ok();
}

std::chrono::milliseconds ModbusSource::expected_gap() const {
  // One cycle when every request of every device times out, every retry
  // too, after a connect attempt that timed out.
  std::int64_t requests = 0;
  for (const Device& d : opts_.devices) {
    auto it = plans_.find(d.profile);
    requests += it == plans_.end() ? 1 : static_cast<std::int64_t>(it->second.size());
  }
  return std::chrono::milliseconds(opts_.interval_ms + opts_.timeout_ms * (1 + requests * (opts_.retries + 1)));
}

void ModbusSource::pause() { control_.pause(); }
void ModbusSource::resume() { control_.resume(); }

void ModbusSource::stop() {
  control_.stop();
  if (thread_.joinable()) thread_.join();
}

std::string ModbusSource::summary() const {
  std::string s = std::to_string(overruns_.load()) + " overruns, " + std::to_string(reconnects_.load()) + " reconnects";
  for (std::size_t i = 0; i < opts_.devices.size(); ++i) {
    const DeviceStats& d = *stats_[i];
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "; device %s (unit %d): %llu readings, %llu requests, %llu timeouts, %llu exceptions, %llu errors",
                  opts_.devices[i].id.c_str(), opts_.devices[i].unit_id, (unsigned long long)d.readings.load(),
                  (unsigned long long)d.requests.load(), (unsigned long long)d.timeouts.load(),
                  (unsigned long long)d.exceptions.load(), (unsigned long long)d.errors.load());
    s += buf;
  }
  return s;
}

std::uint64_t ModbusSource::errors() const {
  std::uint64_t n = 0;
  for (const auto& d : stats_) n += d->timeouts.load() + d->exceptions.load() + d->errors.load();
  return n;
}

void ModbusSource::export_metrics(PromText& out) const {
  using T = PromText::Type;
  out.family("vane_modbus_polls_total", T::kCounter, "Polls of a Modbus device.");
  out.family("vane_modbus_requests_total", T::kCounter, "Modbus requests sent, retries included.");
  out.family("vane_modbus_request_errors_total", T::kCounter, "Failed Modbus requests by kind.");
  out.family("vane_modbus_request_duration_seconds", T::kSummary, "Round trips of Modbus requests.");
  out.family("vane_modbus_reconnects_total", T::kCounter, "Connections to the Modbus endpoint or bus reopened.");
  out.family("vane_modbus_overruns_total", T::kCounter, "Poll ticks skipped because the previous poll overran the interval.");
  const std::string& src = name();
  for (std::size_t i = 0; i < opts_.devices.size(); ++i) {
    const DeviceStats& d = *stats_[i];
    const std::string_view dev = opts_.devices[i].id;
    out.sample("vane_modbus_polls_total", {{"source", src}, {"device", dev}}, static_cast<double>(d.polls.load()));
    const double requests = static_cast<double>(d.requests.load());
    out.sample("vane_modbus_requests_total", {{"source", src}, {"device", dev}}, requests);
    out.sample("vane_modbus_request_errors_total", {{"source", src}, {"device", dev}, {"kind", "timeout"}},
               static_cast<double>(d.timeouts.load()));
    out.sample("vane_modbus_request_errors_total", {{"source", src}, {"device", dev}, {"kind", "exception"}},
               static_cast<double>(d.exceptions.load()));
    out.sample("vane_modbus_request_errors_total", {{"source", src}, {"device", dev}, {"kind", "other"}},
               static_cast<double>(d.errors.load()));
    out.sample("vane_modbus_request_duration_seconds", {{"source", src}, {"device", dev}},
               static_cast<double>(d.latency_us_total.load()) / 1e6, "_sum");
    out.sample("vane_modbus_request_duration_seconds", {{"source", src}, {"device", dev}}, requests, "_count");
  }
  out.sample("vane_modbus_reconnects_total", {{"source", src}}, static_cast<double>(reconnects_.load()));
  out.sample("vane_modbus_overruns_total", {{"source", src}}, static_cast<double>(overruns_.load()));
}

bool ModbusSource::connect(Ctx& c) {
  c.mb.reset(opts_.rtu ? modbus_new_rtu(opts_.serial.c_str(), opts_.baud, opts_.parity, opts_.data_bits, opts_.stop_bits)
                       : modbus_new_tcp_pi(opts_.host.c_str(), std::to_string(opts_.port).c_str()));
  if (!c.mb) {
    VANE_LOG_WARN("modbus %s: cannot create context: %s", name().c_str(), modbus_strerror(errno));
    return false;
  }
  const int ms = std::max(1, opts_.timeout_ms);
  modbus_set_response_timeout(c.mb.get(), static_cast<std::uint32_t>(ms / 1000), static_cast<std::uint32_t>((ms % 1000) * 1000));
  if (modbus_connect(c.mb.get()) != 0) {
    if (c.reconnect_backoff.count() == 0)
      VANE_LOG_WARN("modbus %s: cannot connect to %s: %s (retrying)", name().c_str(),
                   opts_.rtu ? opts_.serial.c_str() : (opts_.host + ":" + std::to_string(opts_.port)).c_str(),
                   modbus_strerror(errno));
    c.mb.reset();
    connected_.store(false, std::memory_order_relaxed);
    return false;
  }
  c.connected = true;
  connected_.store(true, std::memory_order_relaxed);
  return true;
}

bool ModbusSource::poll_device(Ctx& c, std::size_t d, ReadingSink* sink) {
  const Device& dev = opts_.devices[d];
  DeviceStats& st = *stats_[d];
  st.polls.fetch_add(1, std::memory_order_relaxed);
  modbus_set_slave(c.mb.get(), dev.unit_id);
  Reading r;
  r.origin = origin_;
  r.device_id = dev.id;
  r.timestamp = now_us();
  const RegisterMap& map = opts_.maps.at(dev.profile);
  r.fields.reserve(map.entries().size());
  bool any = false;
  for (const Request& req : plans_.at(dev.profile)) {
    int rc = -1;
    for (int attempt = 0; attempt <= opts_.retries; ++attempt) {
      st.requests.fetch_add(1, std::memory_order_relaxed);
      const auto t0 = std::chrono::steady_clock::now();
      switch (req.table) {
        case Table::kHolding:
          c.regs.resize(static_cast<std::size_t>(req.count));
          rc = modbus_read_registers(c.mb.get(), req.address, req.count, c.regs.data());
          break;
        case Table::kInput:
          c.regs.resize(static_cast<std::size_t>(req.count));
          rc = modbus_read_input_registers(c.mb.get(), req.address, req.count, c.regs.data());
          break;
        case Table::kCoil:
          c.bits.resize(static_cast<std::size_t>(req.count));
          rc = modbus_read_bits(c.mb.get(), req.address, req.count, c.bits.data());
          break;
        case Table::kDiscrete:
          c.bits.resize(static_cast<std::size_t>(req.count));
          rc = modbus_read_input_bits(c.mb.get(), req.address, req.count, c.bits.data());
          break;
      }
      st.latency_us_total.fetch_add(static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                                                    std::chrono::steady_clock::now() - t0).count()),
                                    std::memory_order_relaxed);
      if (rc == req.count) break;
      const int err = errno;
      if (rc >= 0) {
        // A short answer: never decode a partial block.
        st.errors.fetch_add(1, std::memory_order_relaxed);
        rc = -1;
        continue;
      }
      if (is_exception(err)) {
        // The device answered: retrying will not change its mind.
        st.exceptions.fetch_add(1, std::memory_order_relaxed);
        if (c.logged_exceptions.emplace(d, static_cast<int>(req.table), req.address).second)
          VANE_LOG_WARN("modbus %s: device %s unit %d: %s at %s %d..%d", name().c_str(), dev.id.c_str(),
                        dev.unit_id, modbus_strerror(err), to_string(req.table), req.address,
                        req.address + req.count - 1);
        break;
      }
      if (err == ETIMEDOUT) {
        st.timeouts.fetch_add(1, std::memory_order_relaxed);
        modbus_flush(c.mb.get());  // a late reply must not answer the next request
        // A silent device costs one timeout per poll, not one per block.
        if (!any) return true;
        continue;
      }
      st.errors.fetch_add(1, std::memory_order_relaxed);
      if (err == ECONNRESET || err == EPIPE || err == EBADF || err == ENOTCONN || err == ECONNREFUSED) {
        c.connected = false;
        return false;
      }
      modbus_flush(c.mb.get());
    }
    if (rc != req.count) continue;
    any = true;
    for (std::size_t i : req.entries) {
      const Entry& e = map.entries()[i];
      std::optional<Value> v;
      if (req.table == Table::kCoil || req.table == Table::kDiscrete) {
        std::uint16_t bit[1] = {c.bits[static_cast<std::size_t>(e.address - req.address)]};
        v = decode(e, bit, 1, e.address);
      } else {
        v = decode(e, c.regs.data(), c.regs.size(), req.address);
      }
      if (v) r.fields.push_back({e.field, std::move(*v)});
    }
  }
  if (!any) return true;
  st.readings.fetch_add(1, std::memory_order_relaxed);
  sink->submit(std::move(r));
  return true;
}

void ModbusSource::run(ReadingSink* sink) {
  using clock = std::chrono::steady_clock;
  Ctx c;
  const auto period = std::chrono::milliseconds(std::max(1, opts_.interval_ms));
  auto next = clock::now();
  for (;;) {
    if (!control_.wait(next)) return;
    beats_.fetch_add(1, std::memory_order_relaxed);
    next += period;
    if (!c.connected) {
      if (!connect(c)) {
        c.reconnect_backoff = std::clamp(c.reconnect_backoff * 2, std::chrono::milliseconds(500), std::chrono::milliseconds(30000));
        next = clock::now() + c.reconnect_backoff;
        continue;
      }
      if (c.reconnect_backoff.count() > 0) reconnects_.fetch_add(1, std::memory_order_relaxed);
      c.reconnect_backoff = std::chrono::milliseconds(0);
    }
    for (std::size_t d = 0; d < opts_.devices.size(); ++d) {
      if (!poll_device(c, d, sink)) {
        VANE_LOG_WARN("modbus %s: connection lost, reconnecting", name().c_str());
        c.mb.reset();
        c.connected = false;
        connected_.store(false, std::memory_order_relaxed);
        c.reconnect_backoff = std::chrono::milliseconds(250);
        break;
      }
    }
    // A slow poll never piles up: skip the ticks it overran, and count them.
    const auto now = clock::now();
    if (now > next) {
      const auto missed = (now - next) / period + 1;
      overruns_.fetch_add(static_cast<std::uint64_t>(missed), std::memory_order_relaxed);
      next += period * missed;
    }
  }
}

}  // namespace vane::modbus
