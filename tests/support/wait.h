// Waiting on conditions with deadlines: a test never sleeps blindly, it
// re-checks what it waits for until it holds or the deadline passes.
#pragma once

#include <chrono>
#include <thread>

#include "support/temp_dir.h"

namespace vane::test {

template <class Pred>
bool wait_until(Pred pred, std::chrono::milliseconds timeout,
                std::chrono::milliseconds poll = std::chrono::milliseconds(20)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(poll);
  }
}

}  // namespace vane::test
