// Waiting on conditions with deadlines: a test never sleeps blindly, it
// re-checks what it waits for until it holds or the deadline passes.
#pragma once

#include <algorithm>
#include <chrono>
#include <thread>

#include "support/temp_dir.h"

namespace vane::test {

// True as soon as pred() holds; false if it still does not hold at the
// timeout. pred() is re-checked every `poll` and once more at the deadline.
template <class Pred>
bool wait_until(Pred pred, std::chrono::milliseconds timeout,
                std::chrono::milliseconds poll = std::chrono::milliseconds(20)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (pred()) return true;
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return false;
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(poll, deadline - now));
  }
}

}  // namespace vane::test
