// A child process for tests: argv spawned (posix_spawnp) with a stdin pipe
// and a stdout pipe; stderr inherited or written to a file the test can read.
// Every wait has a deadline and is a poll() on the pipe or the child's pidfd.
// Killed (SIGKILL) and reaped on destruction if still running.
//
// stdout is a pipe: a child that writes more than it holds (64 KiB) without
// the test reading blocks. Give chatty children a stderr file instead.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace vane::test {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;

inline Deadline deadline_in(std::chrono::milliseconds d) { return Clock::now() + d; }

class ChildProcess {
 public:
  // argv[0] is looked up in PATH unless it contains a '/'. stderr_path empty:
  // stderr is inherited; otherwise it is truncated and receives the child's
  // stderr. Throws std::system_error if the program cannot be started.
  explicit ChildProcess(const std::vector<std::string>& argv, const std::string& stderr_path = "");
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }

  // The next line of stdout without its newline. nullopt at the deadline or
  // at EOF with nothing left; a last line without newline is returned at EOF.
  std::optional<std::string> read_line(Deadline deadline);
  // True once stdout reached EOF and every buffered line was read.
  bool stdout_closed() const { return out_fd_ < 0 && pending_.empty(); }

  // Writes line + '\n' to the child's stdin. False if stdin is closed or the
  // child went away (no SIGPIPE reaches the test).
  bool write_line(const std::string& line);
  // The child sees EOF on stdin.
  void close_stdin();

  // False if the child was already reaped.
  bool send_signal(int sig);
  // Exit code, or 128 + signal; nullopt if still running at the deadline.
  std::optional<int> wait_exit(Deadline deadline);
  bool running() { return !wait_exit(Clock::now()).has_value(); }

  // What the child wrote to stderr so far; "" when stderr is inherited.
  std::string captured_stderr() const;
  const std::string& stderr_path() const { return stderr_path_; }

 private:
  bool try_reap();

  pid_t pid_ = -1;
  int pid_fd_ = -1;  // pidfd to poll() for exit; -1 where the kernel has none
  int in_fd_ = -1, out_fd_ = -1;
  std::string stderr_path_;
  std::string pending_;
  std::optional<int> exit_;
};

}  // namespace vane::test
