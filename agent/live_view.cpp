#include "live_view.h"

#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>

namespace vane {
namespace {

using json = nlohmann::json;

std::int64_t slice_epoch(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count() / LiveView::kSlice.count();
}

json to_json(const Value& v) {
  return std::visit(
      [](const auto& x) -> json {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::monostate>) return nullptr;
        else if constexpr (std::is_same_v<T, double>) return std::isfinite(x) ? json(x) : json(nullptr);
        else return json(x);
      },
      v);
}

// Numeric for the window statistics: doubles and integers; bools, strings
// and nulls are shown as latest values only.
bool numeric(const Value& v, double& out) {
  if (const double* d = std::get_if<double>(&v)) {
    if (!std::isfinite(*d)) return false;
    out = *d;
    return true;
  }
  if (const std::int64_t* i = std::get_if<std::int64_t>(&v)) {
    out = static_cast<double>(*i);
    return true;
  }
  return false;
}

}  // namespace

LiveView::Device* LiveView::find_or_add(const Reading& r) {
  if (!r.origin || r.device_id.empty()) return nullptr;
  auto o = by_origin_.find(r.origin);
  if (o == by_origin_.end()) o = by_origin_.emplace(r.origin, &by_source_[r.origin->source]).first;
  Devices& devices = *o->second;
  auto it = devices.find(r.device_id);
  if (it != devices.end()) return it->second.get();
  if (order_.size() >= kMaxDevices) return nullptr;
  auto d = std::make_unique<Device>();
  d->id = r.device_id;
  d->source = r.origin->source;
  Device* p = d.get();
  devices.emplace(r.device_id, std::move(d));
  order_.push_back(p);
  return p;
}

std::size_t LiveView::field_index(Device& d, std::size_t position, std::string_view name) {
  // Readings of one device usually list the same fields in the same order,
  // with names pointing into the same storage: try that first.
  if (position < d.name_keys.size() && d.name_keys[position] == name.data() && d.names[position] == name)
    return position;
  for (std::size_t i = 0; i < d.names.size(); ++i)
    if (d.names[i] == name) return i;
  if (d.names.size() >= kMaxFields) return kMaxFields;
  d.names.emplace_back(name);
  d.name_keys.push_back(name.data());
  return d.names.size() - 1;
}

void LiveView::observe(std::span<const Reading> in, std::span<const Record> out) {
  const auto now = std::chrono::steady_clock::now();
  const std::int64_t epoch = slice_epoch(now);
  std::lock_guard<std::mutex> lock(mu_);
  ++batch_;
  touched_.clear();
  for (std::size_t i = 0; i < in.size() && i < out.size(); ++i) {
    const Reading& r = in[i];
    Device* d = find_or_add(r);
    if (!d) {
      if (r.origin && !r.device_id.empty()) ++untracked_;
      continue;
    }
    if (d->batch != batch_) {
      d->batch = batch_;
      touched_.push_back(d);
    }
    d->last_in_batch = i;
    Slice& s = d->slices[static_cast<std::size_t>(epoch) % kSlices];
    if (s.epoch != epoch) {
      s.epoch = epoch;
      s.accepted = s.rejected = 0;
      s.fields.clear();
    }
    if (out[i].stream != Stream::kTelemetry) {
      ++s.rejected;
      continue;  // invalid values stay out of the statistics
    }
    ++s.accepted;
    for (std::size_t f = 0; f < r.fields.size(); ++f) {
      double v;
      if (!numeric(r.fields[f].value, v)) continue;
      const std::size_t idx = field_index(*d, f, r.fields[f].name);
      if (idx >= kMaxFields) continue;
      if (s.fields.size() <= idx) s.fields.resize(idx + 1);
      FieldStat& st = s.fields[idx];
      if (st.count == 0 || v < st.min) st.min = v;
      if (st.count == 0 || v > st.max) st.max = v;
      st.sum += v;
      ++st.count;
    }
  }
  // The latest reading: copied once per device and batch.
  for (Device* d : touched_) {
    const Reading& r = in[d->last_in_batch];
    const Record& rec = out[d->last_in_batch];
    d->ts_us = r.timestamp.time_since_epoch().count();
    d->seen = now;
    d->valid = rec.stream == Stream::kTelemetry;
    d->error = d->valid ? std::string() : rec.error;
    d->values.clear();
    for (std::size_t f = 0; f < r.fields.size(); ++f) {
      const std::size_t idx = field_index(*d, f, r.fields[f].name);
      if (idx < kMaxFields) d->values.emplace_back(idx, r.fields[f].value);
    }
  }
}

json LiveView::latest_json(const Device& d, std::chrono::steady_clock::time_point now) const {
  json fields = json::object();
  for (const auto& [idx, v] : d.values) fields[d.names[idx]] = to_json(v);
  return {{"device", d.id},
          {"source", d.source},
          {"ts_us", d.ts_us},
          {"age_s", std::chrono::duration<double>(now - d.seen).count()},
          {"valid", d.valid},
          {"error", d.error},
          {"fields", std::move(fields)}};
}

json LiveView::stats_json(const Device& d, std::int64_t epoch) const {
  std::uint64_t accepted = 0, rejected = 0;
  std::vector<FieldStat> total(d.names.size());
  for (const Slice& s : d.slices) {
    if (s.epoch < 0 || epoch - s.epoch >= static_cast<std::int64_t>(kSlices)) continue;
    accepted += s.accepted;
    rejected += s.rejected;
    for (std::size_t i = 0; i < s.fields.size(); ++i) {
      const FieldStat& f = s.fields[i];
      if (f.count == 0) continue;
      FieldStat& t = total[i];
      t.min = t.count == 0 ? f.min : std::min(t.min, f.min);
      t.max = t.count == 0 ? f.max : std::max(t.max, f.max);
      t.sum += f.sum;
      t.count += f.count;
    }
  }
  json fields = json::object();
  for (std::size_t i = 0; i < total.size(); ++i) {
    const FieldStat& t = total[i];
    if (t.count == 0) continue;
    fields[d.names[i]] = {{"count", t.count}, {"min", t.min}, {"max", t.max}, {"mean", t.sum / static_cast<double>(t.count)}};
  }
  return {{"device", d.id},         {"source", d.source},     {"count", accepted + rejected},
          {"accepted", accepted},   {"rejected", rejected},   {"fields", std::move(fields)}};
}

namespace {

template <typename Order, typename Fn>
json collect(const Order& order, const std::string* device, Fn&& one) {
  if (device) {
    for (const auto* d : order)
      if (d->id == *device) return one(*d);
    return nullptr;
  }
  json all = json::array();
  for (const auto* d : order) all.push_back(one(*d));
  return all;
}

}  // namespace

json LiveView::latest(const std::string* device) const {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> lock(mu_);
  json r = collect(order_, device, [&](const Device& d) { return latest_json(d, now); });
  if (device) return r;
  return {{"devices", std::move(r)}, {"untracked", untracked_}};
}

json LiveView::stats(const std::string* device) const {
  const std::int64_t epoch = slice_epoch(std::chrono::steady_clock::now());
  std::lock_guard<std::mutex> lock(mu_);
  json r = collect(order_, device, [&](const Device& d) { return stats_json(d, epoch); });
  const auto window = static_cast<std::int64_t>(kSlices) * kSlice.count();
  if (device) {
    if (!r.is_null()) r["window_s"] = window;
    return r;
  }
  return {{"window_s", window}, {"devices", std::move(r)}, {"untracked", untracked_}};
}

std::size_t LiveView::devices() const {
  std::lock_guard<std::mutex> lock(mu_);
  return order_.size();
}

}  // namespace vane
