// The pieces behind the HTTP endpoint, in process: the live view's bounds
// and window arithmetic, and the Prometheus text it all becomes.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/prom_text.h"
#include "live_view.h"

namespace vane {
namespace {

struct Batch {
  std::vector<Reading> in;
  std::vector<Record> out;
  void add(const Origin* o, const std::string& device, std::vector<Field> fields, bool valid = true) {
    Reading r;
    r.origin = o;
    r.device_id = device;
    r.timestamp = now_us();
    r.fields = std::move(fields);
    in.push_back(std::move(r));
    Record rec;
    rec.stream = valid ? Stream::kTelemetry : Stream::kDeadLetter;
    rec.error = valid ? "" : "/speed: 99 > maximum 30";
    out.push_back(rec);
  }
};

TEST(LiveView, LatestPerDeviceAndWindowStatistics) {
  const Origin sim{"sim", "turbine", "turbine_id"};
  LiveView v;
  Batch b;
  b.add(&sim, "T-1", {{"speed", 4.0}, {"state", std::string("run")}});
  b.add(&sim, "T-2", {{"speed", 1.0}});
  b.add(&sim, "T-1", {{"speed", 8.0}, {"state", std::string("run")}});
  b.add(&sim, "T-1", {{"speed", 99.0}}, false);
  v.observe(b.in, b.out);

  const std::string t1_id = "T-1";
  const nlohmann::json t1 = v.latest(&t1_id);
  EXPECT_EQ(t1["valid"], false) << "the latest reading of T-1 was rejected";
  EXPECT_EQ(t1["error"], "/speed: 99 > maximum 30");
  EXPECT_EQ(t1["fields"]["speed"], 99.0);
  const std::string t2_id = "T-2";
  EXPECT_EQ(v.latest(&t2_id)["fields"]["speed"], 1.0);
  const std::string none = "T-9";
  EXPECT_TRUE(v.latest(&none).is_null());

  const nlohmann::json s = v.stats(&t1_id);
  EXPECT_EQ(s["count"], 3);
  EXPECT_EQ(s["accepted"], 2);
  EXPECT_EQ(s["rejected"], 1);
  // The rejected 99 stays out of the statistics; strings are not numbers.
  EXPECT_EQ(s["fields"]["speed"]["min"], 4.0);
  EXPECT_EQ(s["fields"]["speed"]["max"], 8.0);
  EXPECT_EQ(s["fields"]["speed"]["mean"], 6.0);
  EXPECT_FALSE(s["fields"].contains("state"));
  EXPECT_EQ(v.stats(nullptr)["window_s"], 60);
}

TEST(LiveView, DevicesAndFieldsAreBounded) {
  const Origin sim{"sim", "", "id"};
  LiveView v;
  std::vector<std::string> names;  // field names outlive the readings, as a source's config does
  for (std::size_t f = 0; f < LiveView::kMaxFields + 5; ++f) names.push_back("f" + std::to_string(f));
  std::vector<Field> wide;
  for (const auto& n : names) wide.push_back({n, 2.0});
  Batch b;
  b.add(&sim, "W", wide);  // one device with too many fields, then too many devices
  for (std::size_t i = 0; i + 1 < LiveView::kMaxDevices + 10; ++i) b.add(&sim, "D" + std::to_string(i), {{"x", 1.0}});
  v.observe(b.in, b.out);
  EXPECT_EQ(v.devices(), LiveView::kMaxDevices);
  EXPECT_EQ(v.latest(nullptr)["untracked"], 10);
  const std::string w = "W";
  EXPECT_EQ(v.latest(&w)["fields"].size(), LiveView::kMaxFields);
  // The same device id under another source is another device.
  const Origin other{"other", "", "id"};
  Batch c;
  c.add(&other, "D0", {{"x", 3.0}});
  v.observe(c.in, c.out);
  EXPECT_EQ(v.latest(nullptr)["untracked"], 11) << "no room for a new device";
}

TEST(PromText, GroupsFamiliesAndEscapesLabels) {
  PromText p;
  p.family("vane_b_total", PromText::Type::kCounter, "B with a \\ and\na newline.");
  p.family("vane_a", PromText::Type::kGauge, "A.");
  p.sample("vane_b_total", {{"source", "s\"1"}}, 1);
  p.sample("vane_a", 0.5);
  p.sample("vane_b_total", {{"source", "s\\2\n"}}, 2);
  EXPECT_EQ(p.render(),
            "# HELP vane_a A.\n# TYPE vane_a gauge\nvane_a 0.5\n"
            "# HELP vane_b_total B with a \\\\ and\\na newline.\n# TYPE vane_b_total counter\n"
            "vane_b_total{source=\"s\\\"1\"} 1\nvane_b_total{source=\"s\\\\2\\n\"} 2\n");
}

}  // namespace
}  // namespace vane
