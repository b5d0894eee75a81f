// Stop and pause for a source's worker thread, driven from the control
// thread (Source::pause/resume/stop). Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

namespace vane {

class RunControl {
 public:
  void pause() {
    std::lock_guard<std::mutex> lock(mu_);
    paused_ = true;
  }
  void resume() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      paused_ = false;
    }
    cv_.notify_all();
  }
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
  }
  // Sleeps until `deadline` (none: not at all), then for as long as paused.
  // Returns false as soon as stop() was called.
  bool wait(std::chrono::steady_clock::time_point deadline = {}) {
    std::unique_lock<std::mutex> lock(mu_);
    if (deadline != std::chrono::steady_clock::time_point{}) cv_.wait_until(lock, deadline, [&] { return stop_; });
    cv_.wait(lock, [&] { return stop_ || !paused_; });
    return !stop_;
  }
  // Blocks until stop() (a finished source waits to be stopped).
  void wait_for_stop() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return stop_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;    // guarded by mu_
  bool paused_ = false;  // guarded by mu_
};

}  // namespace vane
