// A child process for tests: argv spawned with a stdin pipe and a stdout
// pipe; stderr to a file the test can read. Killed and reaped on destruction.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace vane::test {

using Deadline = std::chrono::steady_clock::time_point;

class ChildProcess {
 public:
  // stderr_path empty: stderr is inherited.
  explicit ChildProcess(const std::vector<std::string>& argv, const std::string& stderr_path = "");
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  // The next line of stdout without its newline; nullopt at EOF or deadline.
  std::optional<std::string> read_line(Deadline deadline);
  bool write_line(const std::string& line);
  void close_stdin();
  void send_signal(int sig);
  // Exit code, or 128 + signal; nullopt if still running at the deadline.
  std::optional<int> wait_exit(Deadline deadline);
  std::string captured_stderr() const;

 private:
  pid_t pid_ = -1;
  int in_fd_ = -1, out_fd_ = -1;
  std::string stderr_path_;
  std::string pending_;
  std::optional<int> exit_;
};

}  // namespace vane::test
