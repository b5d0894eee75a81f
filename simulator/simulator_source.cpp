#include "simulator/simulator_source.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>

namespace vane {
namespace {

constexpr std::string_view kWind = "wind_speed";
constexpr std::string_view kPitch = "pitch_angle";
constexpr std::string_view kPower = "power_output";
constexpr std::string_view kTemp = "temperature";
constexpr std::string_view kVib = "vibration";

}  // namespace

SimulatorSource::SimulatorSource(SimulatorOptions opts, const Origin* origin)
    : opts_(std::move(opts)), origin_(origin) {
  const int n = std::max(1, opts_.devices);
  turbines_.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    turbines_.emplace_back(opts_.seed, i);
    char id[16];
    std::snprintf(id, sizeof id, "T-%03d", i + 1);
    ids_.emplace_back(id);
  }
}

SimulatorSource::~SimulatorSource() { stop(); }

Reading SimulatorSource::make_reading(std::size_t i, TimePoint t, double dt_s) {
  sim::Turbine& tb = turbines_[i];
  const sim::TurbineSample s = tb.step(dt_s);
  Reading r;
  r.origin = origin_;
  r.device_id = ids_[i];
  r.timestamp = t;
  r.fields.reserve(5);
  r.fields.push_back({kWind, s.wind_speed});
  r.fields.push_back({kPitch, s.pitch_angle});
  r.fields.push_back({kPower, s.power_output});
  r.fields.push_back({kTemp, s.temperature});
  r.fields.push_back({kVib, s.vibration});
  if (opts_.faults > 0 && tb.uniform() < opts_.faults) {
    faults_injected_.fetch_add(1, std::memory_order_relaxed);
    const double pick = tb.uniform();
    if (pick < 0.25) {
      // Out of range: a gust the anemometer cannot have seen, or negative power.
      if (pick < 0.125) r.fields[0].value = 41.2;
      else r.fields[2].value = -150.0;
    } else if (pick < 0.5) {
      r.fields.erase(r.fields.begin() + static_cast<std::ptrdiff_t>(1 + (pick < 0.375 ? 2 : 0)));
    } else if (pick < 0.75) {
      r.fields[3].value = std::nan("");
    } else {
      r.fields[0].value = std::string("n/a");
    }
  }
  return r;
}

std::string SimulatorSource::summary() const {
  return std::to_string(produced_.load()) + " readings, " + std::to_string(faults_injected_.load()) +
         " with injected faults, " + std::to_string(skipped_.load()) + " ticks skipped";
}

Status SimulatorSource::start(ReadingSink& sink) {
  if (opts_.model != "turbine") return Status::invalid("unknown simulator model \"" + opts_.model + "\"");
  thread_ = std::thread([this, &sink] { run(&sink); });
  return Status::ok();
}

std::chrono::milliseconds SimulatorSource::expected_gap() const {
  if (finished_.load()) return std::chrono::milliseconds(0);
  if (opts_.max_speed) return std::chrono::milliseconds(1000);
  const double per_s = opts_.rate > 0 ? opts_.rate
                                      : static_cast<double>(turbines_.size()) * 1000.0 / std::max(1, opts_.interval_ms);
  return std::chrono::milliseconds(std::max<std::int64_t>(1, static_cast<std::int64_t>(1000.0 / per_s)));
}

void SimulatorSource::pause() { control_.pause(); }
void SimulatorSource::resume() { control_.resume(); }

void SimulatorSource::stop() {
  control_.stop();
  if (thread_.joinable()) thread_.join();
}

void SimulatorSource::run(ReadingSink* sink) {
  using clock = std::chrono::steady_clock;
  const std::size_t n = turbines_.size();
  // Period between consecutive readings (one device each), round-robin.
  std::chrono::nanoseconds period{0};
  if (!opts_.max_speed) {
    const double per_s = opts_.rate > 0 ? opts_.rate : static_cast<double>(n) * 1000.0 / std::max(1, opts_.interval_ms);
    period = std::chrono::nanoseconds(static_cast<std::int64_t>(1e9 / per_s));
  }
  // Model time advances per device by its own interval, so the physics are the
  // same whatever the rate knob says.
  const double dt_s = opts_.max_speed || period.count() == 0
                          ? 1.0
                          : std::chrono::duration<double>(period).count() * static_cast<double>(n);
  auto next = clock::now();
  std::size_t i = 0;
  // How many readings one wake-up may emit when paced: keeps high rates from
  // costing one condition-variable wait per reading.
  auto next_hang_check = clock::now();
  for (;;) {
    if (!control_.wait(period.count() > 0 ? next : clock::time_point{})) return;
    if (!opts_.hang_file.empty() && clock::now() >= next_hang_check) {
      // Checked at most every 100 ms: a stat() per reading would cost the
      // max-speed simulator.
      while (::access(opts_.hang_file.c_str(), F_OK) == 0) {
        if (!control_.wait(clock::now() + std::chrono::milliseconds(100))) return;
      }
      next_hang_check = clock::now() + std::chrono::milliseconds(100);
    }
    beats_.fetch_add(1, std::memory_order_relaxed);
    // Emit every reading that is due now (absolute schedule: no drift).
    const auto now = clock::now();
    if (period.count() > 0 && now - next > std::chrono::seconds(1)) {
      // Far behind (suspended, overloaded): re-anchor instead of bursting.
      skipped_ += static_cast<std::uint64_t>((now - next) / period);
      next = now;
    }
    int burst = 0;
    do {
      if (opts_.limit > 0 && produced_.load(std::memory_order_relaxed) >= opts_.limit) {
        finished_ = true;
        control_.wait_for_stop();
        return;
      }
      if (!sink->submit(make_reading(i, now_us(), dt_s))) return;
      produced_.fetch_add(1, std::memory_order_relaxed);
      i = (i + 1) % n;
      next += period;
      ++burst;
    } while ((period.count() == 0 && burst < 1024) || (period.count() > 0 && next <= now && burst < 100000));
  }
}

}  // namespace vane
