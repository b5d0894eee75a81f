// The register map vane-sim serves per turbine (docs/MODBUS.md documents it
// and examples/modbus.jsonc reads it). Input registers hold measurements as
// float32 ABCD; holding registers hold status and counters in other types
// and word orders, so one device exercises the decoder.
#pragma once

#include <modbus/modbus.h>

#include <cstdint>
#include <cstdio>
#include <cstring>

#include "simulator/turbine_model.h"

namespace vane::sim {

inline constexpr int kCoils = 8, kDiscretes = 8, kHoldings = 128, kInputs = 16;

// Input registers (float32, ABCD: high word first).
inline constexpr int kWindSpeed = 0, kPitch = 2, kPower = 4, kTemperature = 6, kVibration = 8;
// Holding registers.
inline constexpr int kStatus = 0;          // uint16: 1 producing, 2 idle, 3 parked
inline constexpr int kTick = 1;            // uint32 CDAB: value updates since start
inline constexpr int kEnergyWh = 3;        // uint64 ABCD: energy produced, Wh
inline constexpr int kPowerInt = 7;        // int16, kW x 1 (rounded)
inline constexpr int kUnitName = 8;        // string, 4 registers: "T-001"
inline constexpr int kBenchBlock = 16;     // uint16 x 100: a load for benchmarks (tick + offset)
inline constexpr int kBenchCount = 100;
// Discrete inputs: 0 = producing.

inline void put_float_abcd(std::uint16_t* r, float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  r[0] = static_cast<std::uint16_t>(u >> 16);
  r[1] = static_cast<std::uint16_t>(u & 0xffff);
}

inline void write_registers(modbus_mapping_t& m, const TurbineSample& s, int index, std::uint32_t tick) {
  put_float_abcd(m.tab_input_registers + kWindSpeed, static_cast<float>(s.wind_speed));
  put_float_abcd(m.tab_input_registers + kPitch, static_cast<float>(s.pitch_angle));
  put_float_abcd(m.tab_input_registers + kPower, static_cast<float>(s.power_output));
  put_float_abcd(m.tab_input_registers + kTemperature, static_cast<float>(s.temperature));
  put_float_abcd(m.tab_input_registers + kVibration, static_cast<float>(s.vibration));
  const std::uint16_t status = s.power_output > 0 ? 1 : (s.wind_speed > kCutOut ? 3 : 2);
  m.tab_registers[kStatus] = status;
  m.tab_registers[kTick] = static_cast<std::uint16_t>(tick & 0xffff);  // CDAB: low word first
  m.tab_registers[kTick + 1] = static_cast<std::uint16_t>(tick >> 16);
  std::uint64_t wh = (static_cast<std::uint64_t>(m.tab_registers[kEnergyWh]) << 48) |
                     (static_cast<std::uint64_t>(m.tab_registers[kEnergyWh + 1]) << 32) |
                     (static_cast<std::uint64_t>(m.tab_registers[kEnergyWh + 2]) << 16) | m.tab_registers[kEnergyWh + 3];
  wh += static_cast<std::uint64_t>(s.power_output);  // ~1 s of output, in Wh x 3.6: a counter, not physics
  for (int w = 0; w < 4; ++w) m.tab_registers[kEnergyWh + w] = static_cast<std::uint16_t>(wh >> (48 - 16 * w));
  m.tab_registers[kPowerInt] = static_cast<std::uint16_t>(static_cast<std::int16_t>(s.power_output + 0.5));
  char name[16] = {0};  // 8 bytes used: 4 registers
  std::snprintf(name, sizeof name, "T-%03d", (index + 1) % 1000);
  for (int w = 0; w < 4; ++w)
    m.tab_registers[kUnitName + w] = static_cast<std::uint16_t>((static_cast<unsigned char>(name[2 * w]) << 8) |
                                                                static_cast<unsigned char>(name[2 * w + 1]));
  m.tab_input_bits[0] = s.power_output > 0;
  for (int k = 0; k < kBenchCount; ++k) m.tab_registers[kBenchBlock + k] = static_cast<std::uint16_t>(tick + k);
}

}  // namespace vane::sim
