#include "pipeline.h"

#include <cstring>
#include <optional>
#include <unordered_map>

#include "core/log.h"
#include "serialize.h"

namespace vane {
Pipeline::Pipeline(Buffer& buffer, std::map<std::string, const CompiledSchema*> schemas, Metrics& metrics,
                   PipelineOptions opts, std::function<void()> on_commit)
    : buffer_(buffer),
      schemas_(std::move(schemas)),
      metrics_(metrics),
      opts_(opts),
      on_commit_(std::move(on_commit)) {
  queue_.reserve(opts_.queue_capacity);
}

Pipeline::~Pipeline() { stop(); }

void Pipeline::start() { writer_ = std::thread([this] { run(); }); }

void Pipeline::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  not_empty_.notify_all();
  not_full_.notify_all();
  if (writer_.joinable()) writer_.join();
}

void Pipeline::reconfigure(std::map<std::string, const CompiledSchema*> schemas, std::function<void()> change) {
  Reconfig r{std::move(schemas), std::move(change)};
  std::unique_lock<std::mutex> lock(mu_);
  reconfig_ = &r;
  if (!writer_.joinable()) {
    apply_reconfigure_locked();  // no writer running: apply here
    return;
  }
  not_empty_.notify_all();
  reconfigured_.wait(lock, [&] { return r.done; });
}

void Pipeline::apply_reconfigure_locked() {
  if (!reconfig_) return;
  schemas_ = std::move(reconfig_->schemas);
  if (reconfig_->change) reconfig_->change();
  origin_cache_.clear();
  reconfig_->done = true;
  reconfig_ = nullptr;
  reconfigured_.notify_all();
}

bool Pipeline::submit(Reading&& r) {
  std::unique_lock<std::mutex> lock(mu_);
  if (queue_.size() >= opts_.queue_capacity) {
    const bool room = not_full_.wait_for(lock, opts_.submit_timeout, [&] {
      return stopping_ || queue_.size() < opts_.queue_capacity;
    });
    if (!room) {
      metrics_.dropped_ingest_timeout.fetch_add(1, std::memory_order_relaxed);
      return true;  // still running; the reading is counted as dropped
    }
  }
  if (stopping_) return false;
  const bool was_empty = queue_.empty();
  queue_.push_back(std::move(r));
  lock.unlock();
  if (was_empty) not_empty_.notify_one();
  return true;
}

void Pipeline::run() {
  std::vector<Reading> batch;
  batch.reserve(opts_.queue_capacity);
  for (;;) {
    bool stopping;
    {
      std::unique_lock<std::mutex> lock(mu_);
      not_empty_.wait(lock, [&] { return stopping_ || !queue_.empty() || reconfig_; });
      stopping = stopping_;
      batch.swap(queue_);
      apply_reconfigure_locked();
    }
    metrics_.taken.fetch_add(batch.size(), std::memory_order_relaxed);
    not_full_.notify_all();
    if (batch.empty()) {
      if (stopping) break;
      continue;
    }
    std::size_t done = 0;
    std::chrono::milliseconds backoff{50};
    std::optional<std::chrono::steady_clock::time_point> give_up_at;
    while (done < batch.size()) {
      const std::size_t n = std::min(opts_.max_batch, batch.size() - done);
      if (commit(std::span<Reading>(batch).subspan(done, n))) {
        done += n;
        backoff = std::chrono::milliseconds(50);
        continue;
      }
      // Keep the readings and retry; meanwhile sources feel back-pressure.
      std::unique_lock<std::mutex> lock(mu_);
      if (stopping_) {
        const auto now = std::chrono::steady_clock::now();
        if (!give_up_at) give_up_at = now + opts_.stop_retry;
        if (now >= *give_up_at) {
          const std::size_t lost = batch.size() - done;
          metrics_.dropped_shutdown.fetch_add(lost, std::memory_order_relaxed);
          VANE_LOG_ERROR("buffer: giving up on %zu readings at shutdown: the buffer cannot be written",
                         lost);
          break;
        }
      }
      retry_cv_.wait_for(lock, backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
    }
    batch.clear();
  }
}

std::uint32_t Pipeline::rule_bit(const char* rule) {
  const auto& rules = schema_rules();
  for (std::size_t i = 0; i < rules.size() && i < kMaxRules; ++i)
    if (std::strcmp(rules[i], rule) == 0) return 1u << i;
  return 0;
}

void Pipeline::log_rejection(const Reading& r, const std::string& why) {
  const auto now = std::chrono::steady_clock::now();
  if (now - reject_window_ >= std::chrono::minutes(1)) {
    if (reject_suppressed_ > 0)
      VANE_LOG_NOTICE("%llu more rejected readings in the last minute (not logged one by one)",
                      static_cast<unsigned long long>(reject_suppressed_));
    reject_window_ = now;
    reject_logged_ = 0;
    reject_suppressed_ = 0;
  }
  if (reject_logged_ < kRejectLogsPerMinute) {
    ++reject_logged_;
    VANE_LOG_NOTICE("rejected reading from source %s, device %s: %s",
                    r.origin ? r.origin->source.c_str() : "?", r.device_id.c_str(), why.c_str());
  } else {
    ++reject_suppressed_;
  }
}

bool Pipeline::commit(std::span<Reading> in) {
  auto& cache = origin_cache_;
  records_.resize(in.size());
  rule_masks_.assign(in.size(), 0);
  std::size_t accepted = 0, rejected = 0;
  for (std::size_t i = 0; i < in.size(); ++i) {
    Reading& r = in[i];
    auto it = cache.find(r.origin);
    if (it == cache.end()) {
      OriginInfo info{nullptr, nullptr};
      if (r.origin) {
        auto m = metrics_.sources.find(r.origin->source);
        if (m != metrics_.sources.end()) info.counters = m->second.get();
        auto s = schemas_.find(r.origin->schema);
        if (s != schemas_.end()) info.schema = s->second;
      }
      it = cache.emplace(r.origin, info).first;
    }
    Record& rec = records_[i];
    rec.key = r.device_id;
    rec.ts_us = r.timestamp.time_since_epoch().count();
    rec.source = r.origin ? r.origin->source : std::string();
    rec.schema = r.origin ? r.origin->schema : std::string();
    rec.value.clear();
    rec.error.clear();
    violations_.clear();
    bool ok = r.source_error.empty();
    if (!ok) {
      rec.error = r.source_error;
      rule_masks_[i] = rule_bit("source");
    } else if (it->second.schema && !it->second.schema->validate(r, violations_)) {
      ok = false;
      rec.error = join_violations(violations_);
      for (const SchemaViolation& v : violations_) rule_masks_[i] |= rule_bit(v.rule);
    }
    if (ok) {
      rec.stream = Stream::kTelemetry;
      serialize_reading(r, rec.value);
      ++accepted;
    } else {
      rec.stream = Stream::kDeadLetter;
      // Keep the original payload when the source had one.
      if (!r.payload.empty()) rec.value = r.payload;
      else serialize_reading(r, rec.value);
      ++rejected;
    }
  }
  auto res = buffer_.append(records_);
  if (!res) {
    metrics_.buffer_errors.fetch_add(1, std::memory_order_relaxed);
    if (!failing_) {
      VANE_LOG_ERROR("buffer: cannot commit %zu readings, retrying: %s", in.size(),
                     res.status().message().c_str());
      failing_ = true;
    }
    return false;
  }
  if (failing_) {
    VANE_LOG_NOTICE("buffer: commits succeed again");
    failing_ = false;
  }
  // Per-source counts; dropped_newest rows were refused whatever their source.
  const auto wall_us = static_cast<std::uint64_t>(now_us().time_since_epoch().count());
  SourceCounters* last = nullptr;
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (records_[i].stream == Stream::kDeadLetter) log_rejection(in[i], records_[i].error);
    auto it = cache.find(in[i].origin);
    if (it == cache.end() || !it->second.counters) continue;
    if (it->second.counters != last) {
      last = it->second.counters;
      last->last_commit_us.store(wall_us, std::memory_order_relaxed);
    }
    it->second.counters->readings.fetch_add(1, std::memory_order_relaxed);
    if (records_[i].stream == Stream::kTelemetry)
      it->second.counters->accepted.fetch_add(1, std::memory_order_relaxed);
    else {
      it->second.counters->rejected.fetch_add(1, std::memory_order_relaxed);
      for (std::size_t b = 0; b < kMaxRules; ++b)
        if (rule_masks_[i] & (1u << b)) it->second.counters->rejected_by_rule[b].fetch_add(1, std::memory_order_relaxed);
    }
  }
  if (observer_) observer_->observe(in, records_);
  metrics_.readings_in.fetch_add(in.size(), std::memory_order_relaxed);
  metrics_.accepted.fetch_add(accepted, std::memory_order_relaxed);
  metrics_.rejected.fetch_add(rejected, std::memory_order_relaxed);
  // Logged once per episode and reason; every drop is counted.
  const std::size_t dropped = res->dropped_newest + res->dropped_oldest;
  const bool cap = dropped > res->dropped_disk_full, disk = res->dropped_disk_full > 0;
  if (cap && !dropping_cap_)
    VANE_LOG_WARN("buffer full (buffer.max_bytes): the overflow policy drops readings; every drop is counted");
  if (!cap && dropping_cap_) VANE_LOG_NOTICE("buffer below its cap again: no more drops");
  dropping_cap_ = cap;
  // On a full filesystem drops come in chunks (old rows make room for
  // several batches): the episode ends only after kDiskQuiet without one.
  const auto now = std::chrono::steady_clock::now();
  if (disk) {
    if (!dropping_disk_)
      VANE_LOG_WARN("buffer: the filesystem is full: the overflow policy drops readings until space returns; "
                    "every drop is counted");
    dropping_disk_ = true;
    last_disk_drop_ = now;
  } else if (dropping_disk_ && res->appended > 0 && now - last_disk_drop_ >= kDiskQuiet) {
    VANE_LOG_NOTICE("buffer: disk space is back: no drops for %lld s",
                    static_cast<long long>(std::chrono::duration_cast<std::chrono::seconds>(kDiskQuiet).count()));
    dropping_disk_ = false;
  }
  metrics_.dropped_disk_full.fetch_add(res->dropped_disk_full, std::memory_order_relaxed);
  metrics_.dropped_newest.fetch_add(res->dropped_newest, std::memory_order_relaxed);
  metrics_.dropped_oldest.fetch_add(res->dropped_oldest, std::memory_order_relaxed);
  metrics_.last_commit_ns.store(steady_ns(), std::memory_order_relaxed);
  if (res->appended > 0) {
    metrics_.last_progress_ns.store(steady_ns(), std::memory_order_relaxed);
    if (on_commit_) on_commit_();
  }
  return true;
}

}  // namespace vane
