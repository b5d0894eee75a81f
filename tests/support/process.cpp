#include "support/process.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <system_error>

extern char** environ;

namespace vane::test {
namespace {

// posix_spawn's attribute and file-action objects, destroyed on every path.
struct SpawnSetup {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  SpawnSetup() {
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
  }
  ~SpawnSetup() {
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
  }
  SpawnSetup(const SpawnSetup&) = delete;
  SpawnSetup& operator=(const SpawnSetup&) = delete;
};

void close_fd(int& fd) {
  if (fd >= 0) close(fd);
  fd = -1;
}

int open_pidfd(pid_t pid) {
#ifdef SYS_pidfd_open
  const long fd = syscall(SYS_pidfd_open, pid, 0);
  if (fd >= 0) {
    fcntl(static_cast<int>(fd), F_SETFD, FD_CLOEXEC);
    return static_cast<int>(fd);
  }
#else
  (void)pid;
#endif
  return -1;  // old kernel or qemu-user without pidfd: wait_exit re-checks instead
}

int ms_until(Deadline deadline) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, 60'000));
}

}  // namespace

ChildProcess::ChildProcess(const std::vector<std::string>& argv, const std::string& stderr_path)
    : stderr_path_(stderr_path) {
  if (argv.empty()) throw std::invalid_argument("ChildProcess: empty argv");
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe2");
  if (pipe2(out, O_CLOEXEC) != 0) {
    const int e = errno;
    close(in[0]);
    close(in[1]);
    throw std::system_error(e, std::generic_category(), "pipe2");
  }

  // Everything the child needs is prepared here: posix_spawn runs no code of
  // ours between fork and exec, so a multithreaded test (librdkafka threads)
  // cannot deadlock the child on a lock some other thread held.
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  SpawnSetup s;
  posix_spawn_file_actions_adddup2(&s.actions, in[0], STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&s.actions, out[1], STDOUT_FILENO);
  if (!stderr_path.empty())
    posix_spawn_file_actions_addopen(&s.actions, STDERR_FILENO, stderr_path.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
  // Signals the test runner blocked or ignored must not stay so in the child.
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  sigdelset(&all, SIGKILL);
  sigdelset(&all, SIGSTOP);
  posix_spawnattr_setsigmask(&s.attr, &none);
  posix_spawnattr_setsigdefault(&s.attr, &all);
  posix_spawnattr_setflags(&s.attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  const int rc = posix_spawnp(&pid_, args[0], &s.actions, &s.attr, args.data(), environ);
  close(in[0]);
  close(out[1]);
  if (rc != 0) {
    close(in[1]);
    close(out[0]);
    pid_ = -1;
    throw std::system_error(rc, std::generic_category(), "spawn " + argv[0]);
  }
  in_fd_ = in[1];
  out_fd_ = out[0];
  pid_fd_ = open_pidfd(pid_);
}

ChildProcess::~ChildProcess() {
  close_fd(in_fd_);
  close_fd(out_fd_);
  if (pid_ > 0 && !exit_ && !try_reap()) {
    kill(pid_, SIGKILL);
    int st = 0;
    while (waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
    }
  }
  close_fd(pid_fd_);
}

std::optional<std::string> ChildProcess::read_line(Deadline deadline) {
  for (;;) {
    const auto nl = pending_.find('\n');
    if (nl != std::string::npos) {
      std::string line = pending_.substr(0, nl);
      pending_.erase(0, nl + 1);
      return line;
    }
    if (out_fd_ < 0) {
      if (pending_.empty()) return std::nullopt;
      std::string line;
      line.swap(pending_);
      return line;
    }
    pollfd p{out_fd_, POLLIN, 0};
    const int r = poll(&p, 1, ms_until(deadline));
    if (r < 0) {
      if (errno == EINTR) continue;
      return std::nullopt;
    }
    if (r == 0) {
      if (Clock::now() >= deadline) return std::nullopt;
      continue;  // the 60 s clamp in ms_until ran out before the deadline
    }
    char buf[4096];
    const ssize_t n = read(out_fd_, buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) {
      close_fd(out_fd_);
      continue;
    }
    pending_.append(buf, static_cast<std::size_t>(n));
  }
}

bool ChildProcess::write_line(const std::string& line) {
  if (in_fd_ < 0) return false;
  const std::string s = line + "\n";

  // A child that went away would raise SIGPIPE in the test: block it for this
  // thread, and swallow the one our write raised, if any.
  sigset_t pipe_set, old_mask, pending;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old_mask);
  sigpending(&pending);
  const bool was_pending = sigismember(&pending, SIGPIPE) == 1;

  std::size_t done = 0;
  bool ok = true;
  while (done < s.size()) {
    const ssize_t n = write(in_fd_, s.data() + done, s.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EPIPE && !was_pending) {
        const timespec zero{};
        while (sigtimedwait(&pipe_set, nullptr, &zero) < 0 && errno == EINTR) {
        }
      }
      ok = false;
      break;
    }
    done += static_cast<std::size_t>(n);
  }
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  return ok;
}

void ChildProcess::close_stdin() { close_fd(in_fd_); }

bool ChildProcess::send_signal(int sig) {
  if (pid_ <= 0 || exit_) return false;
  // Until reaped the pid stays ours (a zombie at worst), so this cannot hit
  // another process.
  return kill(pid_, sig) == 0;
}

bool ChildProcess::try_reap() {
  if (exit_) return true;
  int st = 0;
  pid_t r;
  do {
    r = waitpid(pid_, &st, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == pid_) {
    exit_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return true;
  }
  if (r < 0) {
    exit_ = -1;  // not our child any more (someone else reaped it)
    return true;
  }
  return false;
}

std::optional<int> ChildProcess::wait_exit(Deadline deadline) {
  while (!try_reap()) {
    const int ms = ms_until(deadline);
    if (ms == 0) return std::nullopt;
    if (pid_fd_ >= 0) {
      // Readable once the child has exited.
      pollfd p{pid_fd_, POLLIN, 0};
      poll(&p, 1, ms);
    } else {
      // No pidfd: re-check the child's state every 10 ms until the deadline.
      poll(nullptr, 0, std::min(ms, 10));
    }
  }
  return exit_;
}

std::string ChildProcess::captured_stderr() const {
  if (stderr_path_.empty()) return {};
  std::ifstream in(stderr_path_, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace vane::test
