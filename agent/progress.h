// The one definition of "the pipeline makes progress", used for the systemd
// watchdog (WATCHDOG=1 only while it holds) and /health (200 only while it
// holds).
//
// Progress holds when, looked at over `window`:
//  * every source that is expected to produce (expected_gap() > 0, not
//    finished) has gone round its loop (heartbeat advanced) within
//    max(window, 3 x its gap) — a dead Modbus slave still counts as a poll;
//  * readings the pipeline's writer took and has not committed yet were
//    committed within window — a hung disk or a locked buffer is not
//    progress;
//  * buffered rows went out within window while the uplink says it is up
//    (or refused with no reason given: rows only go unacknowledged) — an
//    uplink that is connecting, down, or refused for a reason a broker or
//    the client named (not enough replicas, authentication, an ACL...) is an
//    outage the buffer absorbs, not a hang: restarting vane would not end
//    it, and the uplink state and its alert say what to fix.
//    Rows held back because the brokers refuse their topic, and parked rows,
//    do not count as waiting to go out: they wait for a fix on the brokers.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "buffer/buffer.h"
#include "core/source.h"
#include "metrics.h"

namespace vane {

class ProgressWatch {
 public:
  using Clock = std::chrono::steady_clock;

  ProgressWatch(const Metrics& metrics, Buffer& buffer, std::vector<const Source*> sources,
                std::chrono::milliseconds window);

  struct Verdict {
    bool ok = true;
    std::string why;  // when !ok: what is stuck
    std::vector<std::string> stalled_sources;  // sources whose loop does not go round
  };
  // Call regularly (at least a few times per window).
  Verdict check(Clock::time_point now = Clock::now());

 private:
  struct Watched {
    const Source* source;
    std::uint64_t beat = 0;
    Clock::time_point changed;
  };
  const Metrics& metrics_;
  Buffer& buffer_;
  std::vector<Watched> sources_;
  std::chrono::milliseconds window_;
};

}  // namespace vane
