#include "forwarder.h"

#include <algorithm>

#include "core/log.h"

namespace vane {
namespace {

constexpr std::chrono::milliseconds kMinBackoff{250};
constexpr std::chrono::milliseconds kMaxBackoff{30000};

}  // namespace

Forwarder::Forwarder(Buffer& buffer, UplinkFactory factory, Metrics& metrics, ForwarderOptions opts)
    : buffer_(buffer), factory_(std::move(factory)), metrics_(metrics), opts_(opts) {}

Forwarder::~Forwarder() { stop(); }

Status Forwarder::start() {
  auto up = factory_();
  if (!up) return up.status();
  uplink_ = std::move(up.value());
  thread_ = std::thread([this] { run(); });
  return Status::ok();
}

void Forwarder::notify() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_ = true;
  }
  cv_.notify_one();
}

void Forwarder::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void Forwarder::settle(std::vector<Delivery>& deliveries) {
  std::string first_error;
  for (Delivery& d : deliveries) {
    if (in_flight_ > 0) --in_flight_;
    if (d.ok) {
      acks_.push_back(d.seq);
    } else {
      if (failed_.empty()) first_error = d.error;
      failed_.push_back(d.seq);
      metrics_.delivery_errors.fetch_add(1, std::memory_order_relaxed);
    }
  }
  deliveries.clear();
  flush_acks();
  if (!failed_.empty()) {
    // Logged once per failure episode: the rows stay buffered and are retried.
    if (backoff_.count() == 0)
      VANE_LOG_WARN("kafka: delivery of %zu rows failed (%s); they stay buffered and are retried",
                    failed_.size(), first_error.c_str());
    buffer_.release(failed_);
    failed_.clear();
    backoff_ = std::clamp(backoff_ * 2, kMinBackoff, kMaxBackoff);
    backoff_until_ = std::chrono::steady_clock::now() + backoff_;
  }
}

void Forwarder::flush_acks() {
  if (acks_.empty()) return;
  Status s = buffer_.ack(acks_);
  if (!s) {
    // Rows stay buffered and the acks are retried; a crash before then means
    // those rows are sent again (duplicates bounded by the in-flight window).
    metrics_.buffer_errors.fetch_add(1, std::memory_order_relaxed);
    VANE_LOG_WARN("buffer: cannot delete %zu delivered rows: %s", acks_.size(), s.message().c_str());
    return;
  }
  metrics_.delivered.fetch_add(acks_.size(), std::memory_order_relaxed);
  metrics_.last_progress_ns.store(steady_ns(), std::memory_order_relaxed);
  backoff_ = std::chrono::milliseconds(0);
  acks_.clear();
}

void Forwarder::run() {
  std::vector<StoredRecord> batch;
  std::vector<Delivery> deliveries;
  std::vector<std::uint64_t> unsent;
  std::string error;
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) break;
    }
    if (std::string reason; uplink_->fatal(&reason)) {
      // The idempotent producer cannot continue: abandon its queue (rows stay
      // buffered) and start a fresh producer.
      VANE_LOG_ERROR("kafka: fatal producer error, recreating the producer: %s", reason.c_str());
      uplink_->purge(deliveries);
      settle(deliveries);
      uplink_.reset();
      for (;;) {
        auto up = factory_();
        if (up) {
          uplink_ = std::move(up.value());
          break;
        }
        std::unique_lock<std::mutex> lock(mu_);
        if (cv_.wait_for(lock, std::chrono::seconds(1), [&] { return stop_; })) return;
      }
      in_flight_ = 0;
    }

    bool sent = false;
    if (std::chrono::steady_clock::now() >= backoff_until_ && in_flight_ < opts_.max_in_flight) {
      batch.clear();
      Status s = buffer_.claim(std::min(opts_.claim_batch, opts_.max_in_flight - in_flight_), batch);
      if (!s) {
        metrics_.buffer_errors.fetch_add(1, std::memory_order_relaxed);
        VANE_LOG_WARN("buffer: cannot read rows to forward: %s", s.message().c_str());
        backoff_until_ = std::chrono::steady_clock::now() + kMinBackoff;
      }
      for (std::size_t i = 0; i < batch.size(); ++i) {
        const Uplink::SendResult r = uplink_->send(batch[i], &error);
        if (r == Uplink::SendResult::kOk) {
          ++in_flight_;
          sent = true;
          continue;
        }
        unsent.clear();
        for (std::size_t j = i; j < batch.size(); ++j) unsent.push_back(batch[j].seq);
        buffer_.release(unsent);
        if (r == Uplink::SendResult::kError) {
          metrics_.delivery_errors.fetch_add(1, std::memory_order_relaxed);
          VANE_LOG_WARN("kafka: cannot send seq %llu: %s", static_cast<unsigned long long>(batch[i].seq),
                        error.c_str());
          backoff_ = std::clamp(backoff_ * 2, kMinBackoff, kMaxBackoff);
          backoff_until_ = std::chrono::steady_clock::now() + backoff_;
        }
        break;
      }
    }

    // Serve delivery reports; block briefly only when there is nothing to send.
    uplink_->poll(sent ? 0 : (in_flight_ > 0 ? 20 : 0), deliveries);
    settle(deliveries);
    metrics_.uplink.store(static_cast<int>(uplink_->state()), std::memory_order_relaxed);

    if (!sent && in_flight_ == 0) {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(100), [&] { return stop_ || pending_; });
      pending_ = false;
    }
  }

  // Shutdown: bounded wait for what is in flight; acks still delete rows.
  if (in_flight_ > 0) {
    uplink_->flush(opts_.shutdown_timeout_ms, deliveries);
    settle(deliveries);
  }
  if (in_flight_ > 0) {
    VANE_LOG_NOTICE("%zu rows not acknowledged before shutdown stay buffered", in_flight_);
    uplink_->purge(deliveries);
    settle(deliveries);  // late acks still delete; purged rows stay buffered
  }
  flush_acks();
  uplink_.reset();
}

}  // namespace vane
