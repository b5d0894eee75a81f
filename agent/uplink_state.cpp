#include "uplink_state.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <utility>

namespace vane {
namespace {

bool handshake(UplinkReason r) { return r == UplinkReason::kAuthentication || r == UplinkReason::kTls; }
bool connection(UplinkReason r) { return r == UplinkReason::kTransport || r == UplinkReason::kResolve; }

// Refusals that come and go while a cluster heals itself.
bool passing(UplinkReason r) {
  switch (r) {
    case UplinkReason::kNotEnoughReplicas:
    case UplinkReason::kUnavailable:
    case UplinkReason::kThrottled:
    case UplinkReason::kTimeout:
    case UplinkReason::kTransport:
    case UplinkReason::kResolve: return true;
    default: return false;
  }
}

// How much a refusal says: a vague one (a timeout, no leader right now, a
// quota, an unnamed error) gives way to a specific one, not the other way.
int rank(UplinkReason r) {
  switch (r) {
    case UplinkReason::kTimeout:
    case UplinkReason::kUnavailable:
    case UplinkReason::kThrottled:
    case UplinkReason::kBrokerError: return 1;
    default: return 2;
  }
}

std::string upper(const char* s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

// What the status line and the episode lines call a cause.
std::string name_of(UplinkReason r, const std::string& code) { return code.empty() ? upper(to_string(r)) : code; }

}  // namespace

const char* to_string(UplinkState s) {
  switch (s) {
    case UplinkState::kConnecting: return "connecting";
    case UplinkState::kUp: return "up";
    case UplinkState::kRefused: return "refused";
    case UplinkState::kDown: return "down";
  }
  return "?";
}

const char* to_string(UplinkReason r) {
  switch (r) {
    case UplinkReason::kNone: return "none";
    case UplinkReason::kNotEnoughReplicas: return "not_enough_replicas";
    case UplinkReason::kAuthentication: return "authentication";
    case UplinkReason::kTls: return "tls";
    case UplinkReason::kAuthorization: return "authorization";
    case UplinkReason::kFenced: return "fenced";
    case UplinkReason::kUnknownTopic: return "unknown_topic";
    case UplinkReason::kUnavailable: return "unavailable";
    case UplinkReason::kThrottled: return "throttled";
    case UplinkReason::kTimeout: return "timeout";
    case UplinkReason::kBrokerError: return "broker_error";
    case UplinkReason::kBrokersDown: return "brokers_down";
    case UplinkReason::kTransport: return "transport";
    case UplinkReason::kResolve: return "resolve";
  }
  return "?";
}

UplinkState state_of(UplinkReason r) {
  switch (r) {
    case UplinkReason::kNone: return UplinkState::kUp;
    case UplinkReason::kBrokersDown:
    case UplinkReason::kTransport:
    case UplinkReason::kResolve: return UplinkState::kDown;
    default: return UplinkState::kRefused;
  }
}

UplinkTracker::UplinkTracker(Sink sink) : sink_(std::move(sink)), since_(Clock::now()) {}

void UplinkTracker::emit(const std::vector<Line>& lines) const {
  for (const Line& l : lines) {
    if (sink_) sink_(l.level, l.text);
    else logf(l.level, "%s", l.text.c_str());
  }
}

void UplinkTracker::delivered(Clock::time_point now) {
  last_success_ = now;
  // The common case, without the lock.
  if (state() == UplinkState::kUp && !pending_.load(std::memory_order_relaxed)) return;
  std::vector<Line> lines;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ == UplinkState::kUp) {
      // Refusals that did not stop the deliveries for kHold: now they are
      // worth their line.
      for (auto it = partial_pending_.begin(); it != partial_pending_.end();) {
        if (now - it->second.first < kHold) {
          ++it;
          continue;
        }
        lines.push_back({LogLevel::kWarning, std::move(it->second.second)});
        partial_logged_.insert(it->first);
        it = partial_pending_.erase(it);
      }
      pending_.store(!partial_pending_.empty(), std::memory_order_relaxed);
    } else {
      if (state_ == UplinkState::kRefused || state_ == UplinkState::kDown) lines.push_back(leave_line(now));
      state_.store(UplinkState::kUp, std::memory_order_release);
      reason_.store(UplinkReason::kNone, std::memory_order_release);
      explained_.store(false, std::memory_order_release);
      code_.clear();
      detail_.clear();
      since_ = now;
      episode_counts_.clear();
      episode_refused_ = false;
      partial_logged_.clear();
      last_conn_at_ = {};
    }
  }
  emit(lines);
}

UplinkTracker::Line UplinkTracker::leave_line(Clock::time_point now) const {
  std::uint64_t total = 0;
  std::vector<std::pair<std::string, std::uint64_t>> by_code(episode_counts_.begin(), episode_counts_.end());
  for (const auto& [code, n] : by_code) total += n;
  std::stable_sort(by_code.begin(), by_code.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  char head[96];
  std::snprintf(head, sizeof head, "kafka: delivering again after %.1f s",
                std::chrono::duration<double>(now - episode_start_).count());
  std::string text = head;
  if (total > 0) {
    const char* what = episode_refused_ ? (total == 1 ? " refusal (" : " refusals (")
                                        : (total == 1 ? " connection error (" : " connection errors (");
    text += "; " + std::to_string(total) + what;
    for (std::size_t i = 0; i < by_code.size(); ++i) {
      if (i) text += ", ";
      text += by_code[i].first;
      if (by_code.size() > 1) text += " " + std::to_string(by_code[i].second);
    }
    text += ")";
  }
  return {LogLevel::kNotice, std::move(text)};
}

void UplinkTracker::enter(UplinkState s, const UplinkCause& c, bool explained, Clock::time_point now,
                          std::vector<Line>& lines) {
  const UplinkState was = state_.load(std::memory_order_relaxed);
  if (was == UplinkState::kUp || was == UplinkState::kConnecting) {
    episode_start_ = now;
    episode_counts_.clear();
    episode_refused_ = false;
  }
  if (s != was) since_ = now;
  if (s == UplinkState::kRefused) episode_refused_ = true;
  partial_pending_.clear();  // the episode's line says it
  pending_.store(false, std::memory_order_relaxed);
  code_ = c.code;
  detail_ = c.detail;
  last_seen_ = now;
  reason_.store(c.reason, std::memory_order_release);
  explained_.store(explained, std::memory_order_release);
  state_.store(s, std::memory_order_release);
  // Down, then down for a sharper reason (a connection refused, then all
  // brokers down) is the same outage: one line.
  if (was == UplinkState::kDown && s == UplinkState::kDown) return;
  std::string text = std::string("kafka: uplink ") + to_string(s) + " (" + name_of(c.reason, c.code) + ")";
  if (!c.detail.empty()) text += ": " + c.detail;
  text += "; rows stay buffered and are retried (further refusals are counted, not logged)";
  lines.push_back({LogLevel::kWarning, std::move(text)});
}

void UplinkTracker::refused(const UplinkCause& c, Clock::time_point now) {
  if (c.reason == UplinkReason::kNone) return;
  refusals_[static_cast<std::size_t>(c.reason)].fetch_add(c.count, std::memory_order_relaxed);
  std::vector<Line> lines;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const UplinkState cur = state_.load(std::memory_order_relaxed);
    const UplinkReason cur_reason = reason_.load(std::memory_order_relaxed);
    const bool fresh = now - last_seen_ < kStale;
    auto count = [&](const UplinkCause& x) { episode_counts_[name_of(x.reason, x.code)] += x.count; };
    // Said once. A refusal that waits for an operator (an ACL, a missing
    // topic) at once; a passing one (a leader moving, a replica catching up,
    // one broker restarting) only if the uplink still delivers kHold later:
    // the first refusals of an episode are the episode's to tell.
    auto partial = [&] {
      const std::string name = name_of(c.reason, c.code);
      if (partial_logged_.count(name) || partial_pending_.count(name)) return;
      std::string text = "kafka: " + name;
      if (!c.detail.empty()) text += ": " + c.detail;
      text += "; the uplink still delivers, the rows concerned stay buffered and are retried (further ones are "
              "counted, not logged)";
      if (!passing(c.reason)) {
        partial_logged_.insert(name);
        lines.push_back({LogLevel::kWarning, std::move(text)});
        return;
      }
      partial_pending_.emplace(name, std::make_pair(now, std::move(text)));
      pending_.store(true, std::memory_order_relaxed);
    };

    if (connection(c.reason)) {
      // One connection failing says little while other brokers serve: it
      // is remembered as the words for when all of them are down.
      last_conn_ = c;
      last_conn_at_ = now;
      last_conn_counted_ = cur == UplinkState::kDown || cur == UplinkState::kRefused;
      if (cur == UplinkState::kDown) {
        // The latest words on how the connections fail.
        reason_.store(c.reason, std::memory_order_release);
        code_ = c.code;
        detail_ = c.detail;
        last_seen_ = now;
        count(c);
      } else if (cur == UplinkState::kRefused && handshake(cur_reason) && !fresh) {
        enter(UplinkState::kDown, c, true, now, lines);  // no handshake for a while: the brokers are gone too
        count(c);
      } else if (cur == UplinkState::kRefused) {
        count(c);  // another broker still answers
      } else {
        partial();  // up or connecting: said if the deliveries go on
      }
    } else if (c.reason == UplinkReason::kBrokersDown) {
      if (cur == UplinkState::kDown) {
        last_seen_ = now;
      } else if (!(cur == UplinkState::kRefused && handshake(cur_reason) && fresh)) {
        // (Right after a refused handshake, that refusal is why.) Down, in
        // the words of the connection failure that led here if there was one.
        const bool recent = last_conn_at_ != Clock::time_point{} && now - last_conn_at_ < kStale;
        enter(UplinkState::kDown, recent ? last_conn_ : c, true, now, lines);
        if (recent && !last_conn_counted_) count(last_conn_);
        last_conn_counted_ = true;
      }
      count(c);
    } else if (cur == UplinkState::kUp && last_success_ != Clock::time_point{} && now - last_success_ < kHold) {
      partial();  // other rows go through: stay up, say it once
    } else if (cur == UplinkState::kRefused && c.reason == cur_reason) {
      last_seen_ = now;
      code_ = c.code;
      detail_ = c.detail;  // the latest words: /health shows them
      explained_.store(true, std::memory_order_release);
      count(c);
    } else if (cur == UplinkState::kRefused && fresh && explained_.load(std::memory_order_relaxed) &&
               rank(c.reason) <= rank(cur_reason)) {
      count(c);  // the current reason still holds and says as much
    } else {
      enter(UplinkState::kRefused, c, true, now, lines);
      count(c);
    }
  }
  emit(lines);
}

void UplinkTracker::unacknowledged(std::size_t in_flight, Clock::duration quiet, Clock::time_point now) {
  std::vector<Line> lines;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const UplinkState cur = state_.load(std::memory_order_relaxed);
    const bool silent = cur == UplinkState::kRefused && reason_.load(std::memory_order_relaxed) == UplinkReason::kTimeout &&
                        !explained_.load(std::memory_order_relaxed);
    // A refusal not heard of for kStale no longer explains the silence.
    const bool stale = cur == UplinkState::kRefused && !silent && now - last_seen_ >= kStale;
    if (cur != UplinkState::kUp && cur != UplinkState::kConnecting && !silent && !stale) return;
    char detail[160];
    std::snprintf(detail, sizeof detail, "nothing acknowledged for %.1f s with %zu rows in flight, and no reason given",
                  std::chrono::duration<double>(quiet).count(), in_flight);
    UplinkCause c{UplinkReason::kTimeout, "", detail, 1};
    if (silent) {
      last_seen_ = now;
      detail_ = detail;
    } else {
      enter(UplinkState::kRefused, c, false, now, lines);
    }
  }
  emit(lines);
}

UplinkTracker::Snapshot UplinkTracker::snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return {state_.load(std::memory_order_relaxed), reason_.load(std::memory_order_relaxed), code_, detail_, since_};
}

std::string UplinkTracker::summary() const {
  const Snapshot s = snapshot();
  std::string out = to_string(s.state);
  if (s.reason != UplinkReason::kNone) out += " (" + name_of(s.reason, s.code) + ")";
  return out;
}

}  // namespace vane
