// Ingestion: sources submit readings; one writer thread checks each against
// its schema, serialises it, and commits batches to the buffer in one
// transaction each. Rejected readings are committed too, as dead letters with
// the reason: nothing is dropped silently.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "buffer/buffer.h"
#include "core/source.h"
#include "live_view.h"
#include "metrics.h"
#include "schema.h"

namespace vane {

struct PipelineOptions {
  // Readings waiting for the writer: 16 transactions' worth. Memory: about
  // 0.5 KiB a reading, so this bounds the queue at ~8 MiB when full.
  std::size_t queue_capacity = 16384;
  // Readings per buffer transaction. The forwarder's claims and acks wait
  // for a running append: 1024 keeps that wait near 2 ms; 8192 let the
  // writer starve the forwarder (62k/s delivered against 252k/s taken in).
  std::size_t max_batch = 1024;
  // How long submit() waits for room before the reading is counted as dropped
  // (reason ingest_timeout). Sources never block forever.
  std::chrono::milliseconds submit_timeout{2000};
  // At stop, how long a failing buffer is retried before queued readings are
  // given up (counted and logged).
  std::chrono::milliseconds stop_retry{3000};
};

class Pipeline final : public ReadingSink {
 public:
  // Schemas by name; a reading whose origin names no schema is forwarded
  // unchecked. on_commit is called (writer thread) after rows were committed.
  Pipeline(Buffer& buffer, std::map<std::string, const CompiledSchema*> schemas, Metrics& metrics,
           PipelineOptions opts, std::function<void()> on_commit);
  ~Pipeline() override;

  // Before start(): who else sees each committed batch (the live view).
  void set_observer(BatchObserver* o) { observer_ = o; }

  void start();
  // Refuses new readings, commits what is queued, joins the writer.
  void stop();

  bool submit(Reading&& r) override;

  // Live reconfiguration (SIGHUP): between two batches, on the writer thread,
  // swaps in `schemas` and runs `change` (which may add per-source counters
  // to the metrics); returns once done. Readings already queued are checked
  // against the new schemas by name.
  void reconfigure(std::map<std::string, const CompiledSchema*> schemas, std::function<void()> change);

 private:
  struct OriginInfo {
    SourceCounters* counters;
    const CompiledSchema* schema;
  };
  // Applies a waiting reconfigure(); mu_ held.
  void apply_reconfigure_locked();
  void run();
  // Checks and serialises `in`, commits it in one transaction; false on
  // failure (nothing committed, the caller retries).
  bool commit(std::span<Reading> in);

  Buffer& buffer_;
  std::map<std::string, const CompiledSchema*> schemas_;
  Metrics& metrics_;
  PipelineOptions opts_;
  std::function<void()> on_commit_;
  BatchObserver* observer_ = nullptr;

  std::mutex mu_;
  std::condition_variable not_empty_, not_full_, retry_cv_;
  std::vector<Reading> queue_;  // guarded by mu_
  bool stopping_ = false;       // guarded by mu_
  // A reconfiguration waiting for the writer, guarded by mu_.
  struct Reconfig {
    std::map<std::string, const CompiledSchema*> schemas;
    std::function<void()> change;
    bool done = false;
  };
  Reconfig* reconfig_ = nullptr;
  std::condition_variable reconfigured_;
  std::thread writer_;

  // Writer-thread state.
  std::unordered_map<const Origin*, OriginInfo> origin_cache_;
  std::vector<Record> records_;
  std::vector<SchemaViolation> violations_;
  std::vector<std::uint32_t> rule_masks_;  // per record: bit i = schema_rules()[i] violated
  bool failing_ = false;   // a buffer failure episode is under way (logged once)
  bool dropping_cap_ = false;   // the last batch lost rows to buffer.max_bytes
  bool dropping_disk_ = false;  // a full-filesystem episode is under way
  std::chrono::steady_clock::time_point last_disk_drop_{};
  static constexpr std::chrono::seconds kDiskQuiet{5};
  // Rejections are logged, at most kRejectLogsPerMinute a minute; the rest
  // are counted and summarised when the minute is over.
  static constexpr int kRejectLogsPerMinute = 10;
  std::chrono::steady_clock::time_point reject_window_{};
  int reject_logged_ = 0;
  std::uint64_t reject_suppressed_ = 0;
  void log_rejection(const Reading& r, const std::string& why);
  static std::uint32_t rule_bit(const char* rule);
};

}  // namespace vane
