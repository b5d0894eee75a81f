// A wind-turbine model for the simulator: a ~3.6 MW class turbine per unit,
// wind as a mean-reverting random process with gusts, power from a power
// curve, pitch control above rated wind, nacelle temperature following load
// with a thermal lag, vibration growing with load.
//
// Deterministic: the same seed gives the same samples on every platform
// (own normal deviates from raw 64-bit draws; no std:: distributions, whose
// output is implementation-defined). Each turbine has its own stream derived
// from (seed, index), so adding turbines leaves the first ones unchanged.
#pragma once

#include <cstdint>
#include <random>

namespace vane::sim {

inline constexpr double kCutIn = 3.0;       // m/s
inline constexpr double kRated = 12.0;      // m/s
inline constexpr double kCutOut = 25.0;     // m/s
inline constexpr double kRatedKw = 3600.0;  // kW

// Electrical output at a steady wind speed, kW.
double power_curve_kw(double wind_ms);
// Blade pitch the controller holds at a steady wind speed, degrees.
double pitch_for(double wind_ms);

struct TurbineSample {
  double wind_speed;    // m/s
  double pitch_angle;   // deg
  double power_output;  // kW
  double temperature;   // °C, nacelle
  double vibration;     // normalised, ~0..1
};

// Fault kinds the simulator can inject to show the schema check at work.
enum class Fault { kNone, kOutOfRange, kMissingField, kNaN, kWrongType };

class Turbine {
 public:
  Turbine(std::uint64_t seed, int index);
  // Advances the model by dt seconds and returns the new state.
  TurbineSample step(double dt_s);
  // Uniform in [0, 1), from this turbine's stream.
  double uniform();
  double normal();

 private:
  std::mt19937_64 rng_;
  double wind_;
  double mean_wind_;
  double temp_;
  double ambient_;
  double gust_ = 0;
  bool has_spare_ = false;
  double spare_ = 0;
};

}  // namespace vane::sim
