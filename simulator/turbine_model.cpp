#include "simulator/turbine_model.h"

#include <algorithm>
#include <cmath>

namespace vane::sim {

double power_curve_kw(double v) {
  if (v < kCutIn || v > kCutOut) return 0.0;
  if (v >= kRated) return kRatedKw;
  // Cubic between cut-in and rated: P ∝ v³ − v_in³, reaching rated at v_rated.
  const double f = (v * v * v - kCutIn * kCutIn * kCutIn) / (kRated * kRated * kRated - kCutIn * kCutIn * kCutIn);
  return kRatedKw * f;
}

double pitch_for(double v) {
  if (v > kCutOut) return 90.0;  // parked, feathered
  if (v <= kRated) return 0.5;   // fine pitch for maximum capture
  // Above rated the blades pitch out to shed power: roughly linear to ~25°
  // at cut-out.
  return 0.5 + (v - kRated) * (24.5 / (kCutOut - kRated));
}

Turbine::Turbine(std::uint64_t seed, int index)
    // splitmix-style mixing so neighbouring seeds/indexes give unrelated streams.
    : rng_([&] {
        std::uint64_t z = seed * 0x9E3779B97F4A7C15ULL + static_cast<std::uint64_t>(index) * 0xBF58476D1CE4E5B9ULL + 1;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
      }()) {
  mean_wind_ = 6.5 + 3.0 * uniform();  // site differences between turbines
  wind_ = mean_wind_ + 2.0 * normal();
  ambient_ = 10.0 + 5.0 * uniform();
  temp_ = ambient_ + 5.0;
}

double Turbine::uniform() {
  // 53 random bits -> [0, 1), exactly representable.
  return static_cast<double>(rng_() >> 11) * 0x1.0p-53;
}

double Turbine::normal() {
  // Marsaglia's polar method.
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  double u, v, s;
  do {
    u = 2.0 * uniform() - 1.0;
    v = 2.0 * uniform() - 1.0;
    s = u * u + v * v;
  } while (s >= 1.0 || s == 0.0);
  const double m = std::sqrt(-2.0 * std::log(s) / s);
  spare_ = v * m;
  has_spare_ = true;
  return u * m;
}

TurbineSample Turbine::step(double dt) {
  dt = std::clamp(dt, 1e-3, 60.0);
  // Ornstein–Uhlenbeck wind around the site mean (time constant ~2 min),
  // plus short gusts that decay within seconds.
  const double theta = 1.0 / 120.0, sigma = 0.35;
  wind_ += theta * (mean_wind_ - wind_) * dt + sigma * std::sqrt(dt) * normal();
  if (uniform() < 0.002 * dt) gust_ += 4.0 + 6.0 * uniform();
  gust_ *= std::exp(-dt / 8.0);
  // Clamped below the 30 m/s the fleet's schema allows: the model never
  // produces invalid data by itself, so injected faults are the only rejects.
  const double wind = std::clamp(wind_ + gust_, 0.0, 29.9);

  const double power = std::max(0.0, power_curve_kw(wind) * (1.0 + 0.01 * normal()));
  const double load = power / kRatedKw;
  // First-order thermal lag towards ambient + 35 K at full load (τ ~10 min).
  const double target = ambient_ + 5.0 + 35.0 * load;
  temp_ += (target - temp_) * (1.0 - std::exp(-dt / 600.0));

  TurbineSample s;
  s.wind_speed = wind;
  s.pitch_angle = pitch_for(wind) + (wind <= kCutOut ? 0.2 * normal() : 0.0);
  s.power_output = std::min(power, 5000.0);
  s.temperature = temp_ + 0.1 * normal();
  s.vibration = std::max(0.0, 0.05 + 0.5 * load + 0.02 * wind / kRated + 0.03 * normal());
  return s;
}

}  // namespace vane::sim
