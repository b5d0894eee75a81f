// The turbine model's physics and the simulator source's pacing.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <mutex>

#include "simulator/simulator_source.h"
#include "support/wait.h"

namespace vane {
namespace {

using namespace std::chrono_literals;

TEST(PowerCurve, Shape) {
  EXPECT_EQ(sim::power_curve_kw(0.0), 0.0);
  EXPECT_EQ(sim::power_curve_kw(2.9), 0.0);
  double prev = 0;
  for (double v = sim::kCutIn; v <= sim::kRated; v += 0.1) {
    const double p = sim::power_curve_kw(v);
    EXPECT_GE(p, prev) << "not monotonic at " << v;
    prev = p;
  }
  for (double v = sim::kRated; v <= sim::kCutOut; v += 0.5) EXPECT_EQ(sim::power_curve_kw(v), sim::kRatedKw);
  EXPECT_EQ(sim::power_curve_kw(25.1), 0.0);
  EXPECT_EQ(sim::power_curve_kw(40.0), 0.0);
  for (double v = 0; v < 50; v += 0.25) EXPECT_LE(sim::power_curve_kw(v), 5000.0);
  // Below rated it is far from linear: half the rated wind gives well under half the power.
  EXPECT_LT(sim::power_curve_kw(sim::kRated / 2), sim::kRatedKw / 4);
}

TEST(Pitch, RisesAboveRatedAndFeathersAboveCutOut) {
  EXPECT_LT(sim::pitch_for(8.0), 2.0);
  EXPECT_GT(sim::pitch_for(18.0), sim::pitch_for(13.0));
  EXPECT_GT(sim::pitch_for(13.0), sim::pitch_for(11.0));
  EXPECT_EQ(sim::pitch_for(30.0), 90.0);
}

TEST(Turbine, SamplesArePlausible) {
  sim::Turbine t(7, 0);
  for (int i = 0; i < 20000; ++i) {
    auto s = t.step(1.0);
    ASSERT_GE(s.wind_speed, 0.0);
    ASSERT_GE(s.power_output, 0.0);
    ASSERT_LE(s.power_output, 5000.0);
    ASSERT_GE(s.vibration, 0.0);
    ASSERT_GT(s.temperature, -20.0);
    ASSERT_LT(s.temperature, 90.0);
  }
}

TEST(Turbine, TemperatureFollowsSustainedLoad) {
  // Average nacelle temperature over high-power stretches exceeds that over
  // idle stretches, for the same turbine.
  sim::Turbine t(3, 2);
  double hot = 0, cold = 0;
  int nh = 0, nc = 0;
  double load_avg = 0;
  for (int i = 0; i < 200000; ++i) {
    auto s = t.step(1.0);
    load_avg = 0.995 * load_avg + 0.005 * s.power_output;
    if (load_avg > 2500) hot += s.temperature, ++nh;
    if (load_avg < 300) cold += s.temperature, ++nc;
  }
  ASSERT_GT(nh, 100);
  ASSERT_GT(nc, 100);
  EXPECT_GT(hot / nh, cold / nc + 5.0);
}

TEST(Turbine, DeterministicPerSeedAndIndependentPerTurbine) {
  sim::Turbine a(42, 3), b(42, 3), c(43, 3), d(42, 4);
  bool differs_seed = false, differs_index = false;
  for (int i = 0; i < 1000; ++i) {
    auto x = a.step(1.0), y = b.step(1.0), z = c.step(1.0), w = d.step(1.0);
    ASSERT_EQ(x.wind_speed, y.wind_speed);
    ASSERT_EQ(x.power_output, y.power_output);
    ASSERT_EQ(x.temperature, y.temperature);
    differs_seed = differs_seed || x.wind_speed != z.wind_speed;
    differs_index = differs_index || x.wind_speed != w.wind_speed;
  }
  EXPECT_TRUE(differs_seed);
  EXPECT_TRUE(differs_index);
}

struct CollectingSink final : ReadingSink {
  bool submit(Reading&& r) override {
    std::lock_guard<std::mutex> lock(mu);
    readings.push_back(std::move(r));
    return true;
  }
  std::size_t count() {
    std::lock_guard<std::mutex> lock(mu);
    return readings.size();
  }
  std::mutex mu;
  std::vector<Reading> readings;
};

const Origin kOrigin{"sim", "turbine", "turbine_id"};

TEST(SimulatorSource, SameSeedSameReadingsRegardlessOfDeviceCount) {
  SimulatorOptions o;
  o.devices = 3;
  SimulatorSource a(o, &kOrigin);
  o.devices = 10;
  SimulatorSource b(o, &kOrigin);
  for (int i = 0; i < 100; ++i) {
    auto x = a.make_reading(1, TimePoint{}, 1.0);
    auto y = b.make_reading(1, TimePoint{}, 1.0);
    ASSERT_EQ(x.device_id, "T-002");
    ASSERT_EQ(x.fields.size(), 5u);
    ASSERT_EQ(std::get<double>(x.fields[0].value), std::get<double>(y.fields[0].value));
  }
}

TEST(SimulatorSource, FaultFractionAndKinds) {
  SimulatorOptions o;
  o.devices = 5;
  o.faults = 0.1;
  SimulatorSource s(o, &kOrigin);
  int faulty = 0, missing = 0, nan = 0, wrong_type = 0, out_of_range = 0;
  for (int i = 0; i < 10000; ++i) {
    auto r = s.make_reading(static_cast<std::size_t>(i % 5), TimePoint{}, 1.0);
    bool f = false;
    if (r.fields.size() != 5) ++missing, f = true;
    for (auto& fld : r.fields) {
      if (auto* d = std::get_if<double>(&fld.value)) {
        if (std::isnan(*d)) ++nan, f = true;
        if ((fld.name == "wind_speed" && *d > 30) || (fld.name == "power_output" && *d < 0)) ++out_of_range, f = true;
      } else {
        ++wrong_type, f = true;
      }
    }
    faulty += f;
  }
  EXPECT_GT(faulty, 800);
  EXPECT_LT(faulty, 1200);
  EXPECT_GT(missing, 0);
  EXPECT_GT(nan, 0);
  EXPECT_GT(wrong_type, 0);
  EXPECT_GT(out_of_range, 0);
}

TEST(SimulatorSource, LimitIsExact) {
  SimulatorOptions o;
  o.devices = 7;
  o.max_speed = true;
  o.limit = 12345;
  SimulatorSource s(o, &kOrigin);
  CollectingSink sink;
  ASSERT_TRUE(s.start(sink).is_ok());
  ASSERT_TRUE(test::wait_until([&] { return s.finished(); }, 10s));
  s.stop();
  EXPECT_EQ(sink.count(), 12345u);
  EXPECT_EQ(sink.readings[7].device_id, "T-001");
  EXPECT_EQ(sink.readings[6].device_id, "T-007");
}

TEST(SimulatorSource, RatePacing) {
  SimulatorOptions o;
  o.devices = 4;
  o.rate = 200;
  SimulatorSource s(o, &kOrigin);
  CollectingSink sink;
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(s.start(sink).is_ok());
  ASSERT_TRUE(test::wait_until([&] { return sink.count() >= 100; }, 5s));
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  s.stop();
  // 100 readings at 200/s take ~0.5 s.
  EXPECT_GT(secs, 0.4);
  EXPECT_LT(secs, 1.0);
}

TEST(SimulatorSource, PauseStopsSubmissionsAndStopIsPrompt) {
  SimulatorOptions o;
  o.devices = 2;
  o.rate = 1000;
  SimulatorSource s(o, &kOrigin);
  CollectingSink sink;
  ASSERT_TRUE(s.start(sink).is_ok());
  ASSERT_TRUE(test::wait_until([&] { return sink.count() >= 50; }, 5s));
  s.pause();
  // After pausing, the count settles and stays put.
  std::size_t settled = 0;
  ASSERT_TRUE(test::wait_until(
      [&] {
        const std::size_t a = sink.count();
        const bool same = a == settled;
        settled = a;
        return same;
      },
      2s, 50ms));
  EXPECT_FALSE(test::wait_until([&] { return sink.count() > settled; }, 300ms));
  s.resume();
  EXPECT_TRUE(test::wait_until([&] { return sink.count() > settled + 20; }, 2s));
  const auto t0 = std::chrono::steady_clock::now();
  s.stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 200ms);
}

}  // namespace
}  // namespace vane
