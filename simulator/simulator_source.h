// The simulator as an in-process Source: N turbines (T-001 ...), one reading
// per turbine per tick, paced on a steady clock, or as fast as the pipeline
// takes them (for benchmarks).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "core/run_control.h"
#include "core/source.h"
#include "simulator/turbine_model.h"

namespace vane {

struct SimulatorOptions {
  std::string model = "turbine";
  int devices = 15;
  int interval_ms = 1000;  // per device; used when rate == 0 and !max_speed
  double rate = 0;         // readings/s across all devices
  bool max_speed = false;
  std::uint64_t limit = 0;  // total readings, then finished(); 0 = endless
  std::uint64_t seed = 1;
  double faults = 0;  // fraction of readings with an injected fault
  // While this file exists the loop hangs (no heartbeat, no readings), as a
  // driver stuck in a blocking read would; "" for never.
  std::string hang_file;
};

class SimulatorSource final : public Source {
 public:
  // `origin` outlives the source.
  SimulatorSource(SimulatorOptions opts, const Origin* origin);
  ~SimulatorSource() override;

  const std::string& name() const override { return origin_->source; }
  Status start(ReadingSink& sink) override;
  void pause() override;
  void resume() override;
  void stop() override;
  bool finished() const override { return finished_.load(); }
  std::chrono::milliseconds expected_gap() const override;
  std::uint64_t heartbeat() const override { return beats_.load(std::memory_order_relaxed); }
  // "N readings, M with injected faults": the simulator's own tally.
  std::string summary() const override;

  std::uint64_t produced() const { return produced_.load(); }
  std::uint64_t skipped_ticks() const { return skipped_.load(); }
  std::uint64_t faults_injected() const { return faults_injected_.load(); }

  // One reading of turbine `i` at time `t`, fault applied by the model's
  // stream. Public for tests.
  Reading make_reading(std::size_t i, TimePoint t, double dt_s);

 private:
  void run(ReadingSink* sink);

  SimulatorOptions opts_;
  const Origin* origin_;
  std::vector<sim::Turbine> turbines_;
  std::vector<std::string> ids_;
  std::thread thread_;
  RunControl control_;
  std::atomic<bool> finished_{false};
  std::atomic<std::uint64_t> beats_{0};
  std::atomic<std::uint64_t> produced_{0};
  std::atomic<std::uint64_t> skipped_{0};
  std::atomic<std::uint64_t> faults_injected_{0};
};

}  // namespace vane
