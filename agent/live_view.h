// What each device is saying right now, for the technician on site: the
// latest reading per device with its validity, and per field count, min,
// max and mean over a sliding window. Fed by the pipeline's writer once per
// committed batch; read by the HTTP server. Memory is bounded: kMaxDevices
// devices, kMaxFields fields each, kSlices window slices.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "buffer/buffer.h"
#include "core/reading.h"

namespace vane {

// Sees every committed batch on the pipeline's writer thread: the readings
// and, index for index, the records they became (stream says whether the
// reading was accepted, error why not).
class BatchObserver {
 public:
  virtual ~BatchObserver() = default;
  virtual void observe(std::span<const Reading> in, std::span<const Record> out) = 0;
};

class LiveView final : public BatchObserver {
 public:
  static constexpr std::size_t kMaxDevices = 4096;
  static constexpr std::size_t kMaxFields = 64;
  static constexpr std::size_t kSlices = 12;
  static constexpr std::chrono::seconds kSlice{5};  // window: kSlices x kSlice = 60 s

  void observe(std::span<const Reading> in, std::span<const Record> out) override;

  // {"devices": [...]} for every device, or the one device's object; null
  // when `device` is given and unknown. Shapes: docs/OBSERVABILITY.md.
  nlohmann::json latest(const std::string* device) const;
  nlohmann::json stats(const std::string* device) const;
  std::size_t devices() const;

 private:
  struct FieldStat {
    std::uint64_t count = 0;
    double min = 0, max = 0, sum = 0;
  };
  struct Slice {
    std::int64_t epoch = -1;  // steady seconds / kSlice of the slice's start
    std::uint64_t accepted = 0, rejected = 0;
    std::vector<FieldStat> fields;  // by field index
  };
  struct Device {
    std::string id, source;
    std::vector<std::string> names;   // field index -> name
    std::vector<const char*> name_keys;  // the string_view data a reading's field name had (fast path)
    // The latest reading.
    std::int64_t ts_us = 0;
    std::chrono::steady_clock::time_point seen{};
    bool valid = true;
    std::string error;
    std::vector<std::pair<std::size_t, Value>> values;  // field index, value
    std::array<Slice, kSlices> slices;
    std::size_t last_in_batch = 0;
    std::uint64_t batch = 0;
  };
  Device* find_or_add(const Reading& r);
  std::size_t field_index(Device& d, std::size_t position, std::string_view name);
  nlohmann::json latest_json(const Device& d, std::chrono::steady_clock::time_point now) const;
  nlohmann::json stats_json(const Device& d, std::int64_t epoch) const;

  mutable std::mutex mu_;
  // By source name, then device id; origins (a reload makes new ones for a
  // changed source) map to their source's devices.
  using Devices = std::unordered_map<std::string, std::unique_ptr<Device>>;
  std::unordered_map<std::string, Devices> by_source_;
  std::unordered_map<const Origin*, Devices*> by_origin_;
  std::vector<Device*> order_;  // first seen first
  std::uint64_t untracked_ = 0;  // readings of devices beyond kMaxDevices
  std::uint64_t batch_ = 0;
  std::vector<Device*> touched_;
};

}  // namespace vane
