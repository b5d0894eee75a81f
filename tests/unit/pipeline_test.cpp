// The pipeline against an in-memory buffer with error injection: routing of
// accepted and rejected readings, original payloads on dead letters, retry
// when the buffer fails, and the counters.
#include <gtest/gtest.h>

#include <mutex>
#include <nlohmann/json.hpp>

#include "pipeline.h"
#include "support/wait.h"

namespace vane {
namespace {

using namespace std::chrono_literals;

class FakeBuffer final : public Buffer {
 public:
  Result<AppendResult> append(std::span<Record> records) override {
    std::lock_guard<std::mutex> lock(mu);
    if (fail_next > 0) {
      --fail_next;
      return Status::io_error("injected: disk I/O error");
    }
    AppendResult r;
    for (Record& rec : records) {
      rows.push_back({next_seq++, rec});
      ++r.appended;
    }
    return r;
  }
  Status claim(std::size_t, std::vector<StoredRecord>& out) override {
    out.clear();
    return Status::ok();
  }
  Status ack(std::span<const std::uint64_t>) override { return Status::ok(); }
  void release(std::span<const std::uint64_t>) override {}
  BufferStats stats() override { return {}; }
  std::optional<BufferStats> try_stats(std::chrono::milliseconds) override { return BufferStats{}; }
  std::uint64_t rows_now() const override { return 0; }

  std::size_t size() {
    std::lock_guard<std::mutex> lock(mu);
    return rows.size();
  }

  std::mutex mu;
  std::vector<StoredRecord> rows;
  std::uint64_t next_seq = 1;
  int fail_next = 0;
};

const Origin kOrigin{"env", "environment", "sensor_id"};

std::unique_ptr<CompiledSchema> schema() {
  auto s = CompiledSchema::compile(nlohmann::json::parse(R"({
    "type": "object",
    "properties": { "humidity": { "type": "number", "minimum": 0, "maximum": 100 } },
    "required": ["humidity"] })"), "environment", "env.json");
  return std::move(s.value());
}

Reading reading(double humidity, std::string payload = "") {
  Reading r;
  r.origin = &kOrigin;
  r.device_id = "S-1";
  r.timestamp = TimePoint(Micros(1764000000000000));
  r.fields = {{"humidity", humidity}};
  r.payload = std::move(payload);
  return r;
}

struct Fixture {
  FakeBuffer buffer;
  Metrics metrics;
  std::unique_ptr<CompiledSchema> s = schema();
  std::unique_ptr<Pipeline> pipeline;
  int commits = 0;
  Fixture() {
    metrics.sources["env"] = std::make_unique<SourceCounters>();
    pipeline = std::make_unique<Pipeline>(buffer, std::map<std::string, const CompiledSchema*>{{"environment", s.get()}},
                                          metrics, PipelineOptions{}, [this] { ++commits; });
    pipeline->start();
  }
};

TEST(Pipeline, RoutesAcceptedAndRejectedWithReasonAndOriginalPayload) {
  Fixture f;
  ASSERT_TRUE(f.pipeline->submit(reading(40)));
  ASSERT_TRUE(f.pipeline->submit(reading(140, R"({"hum": 140, "raw": true})")));
  Reading unmappable = reading(0, "not json at all");
  unmappable.source_error = "payload is not JSON";
  ASSERT_TRUE(f.pipeline->submit(std::move(unmappable)));
  ASSERT_TRUE(test::wait_until([&] { return f.buffer.size() == 3; }, 5s));
  f.pipeline->stop();

  const auto& rows = f.buffer.rows;
  EXPECT_EQ(rows[0].rec.stream, Stream::kTelemetry);
  EXPECT_EQ(rows[0].rec.value,
            R"({"sensor_id":"S-1","timestamp":"2025-11-24T16:00:00.000000Z","humidity":40})");
  EXPECT_EQ(rows[0].rec.key, "S-1");
  EXPECT_EQ(rows[0].rec.source, "env");
  EXPECT_EQ(rows[0].rec.schema, "environment");
  EXPECT_EQ(rows[1].rec.stream, Stream::kDeadLetter);
  EXPECT_EQ(rows[1].rec.value, R"({"hum": 140, "raw": true})");  // the original payload
  EXPECT_EQ(rows[1].rec.error, "/humidity: 140 > maximum 100");
  EXPECT_EQ(rows[2].rec.stream, Stream::kDeadLetter);
  EXPECT_EQ(rows[2].rec.value, "not json at all");
  EXPECT_EQ(rows[2].rec.error, "payload is not JSON");

  const SourceCounters& c = f.metrics.source("env");
  EXPECT_EQ(c.readings.load(), 3u);
  EXPECT_EQ(c.accepted.load(), 1u);
  EXPECT_EQ(c.rejected.load(), 2u);
  auto rule = [&](const char* name) {
    for (std::size_t i = 0; i < schema_rules().size(); ++i)
      if (std::string(schema_rules()[i]) == name) return c.rejected_by_rule[i].load();
    return std::uint64_t{999};
  };
  EXPECT_EQ(rule("maximum"), 1u);
  EXPECT_EQ(rule("source"), 1u);
  EXPECT_EQ(rule("required"), 0u);
  EXPECT_GE(f.commits, 1);
}

TEST(Pipeline, BufferFailuresAreRetriedAndNothingIsLost) {
  Fixture f;
  f.buffer.fail_next = 3;
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(f.pipeline->submit(reading(i % 100)));
  ASSERT_TRUE(test::wait_until([&] { return f.buffer.size() == 100; }, 10s));
  f.pipeline->stop();
  EXPECT_EQ(f.metrics.buffer_errors.load(), 3u);
  EXPECT_EQ(f.metrics.readings_in.load(), 100u);
  for (std::size_t i = 0; i < 100; ++i) EXPECT_EQ(f.buffer.rows[i].seq, i + 1);
}

TEST(Pipeline, StopCommitsWhatIsQueuedAndRefusesMore) {
  Fixture f;
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(f.pipeline->submit(reading(50)));
  f.pipeline->stop();
  EXPECT_EQ(f.buffer.size(), 1000u);
  EXPECT_FALSE(f.pipeline->submit(reading(50)));
}

}  // namespace
}  // namespace vane
