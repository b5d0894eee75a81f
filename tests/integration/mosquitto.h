// mosquitto as a test peer: started by the test on a free loopback port
// with its own config and persistence under the test's directory.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "agent_test_util.h"

namespace vane::test {

inline int free_port() {
  const int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  close(s);
  return ntohs(a.sin_port);
}

class Mosquitto {
 public:
  Mosquitto(const TempDir& dir, int port) : dir_(dir), port_(port) {
    // Started as root, mosquitto drops to its own user: let it in.
    ::chmod(dir.path().c_str(), 0777);
    write_file(dir.path() + "/mosquitto.conf", "listener " + std::to_string(port) +
                                                    " 127.0.0.1\nallow_anonymous true\npersistence true\n"
                                                    "persistence_location " + dir.path() + "/\n");
    start();
  }
  void start() {
    proc_ = std::make_unique<ChildProcess>(std::vector<std::string>{"mosquitto", "-c", dir_.path() + "/mosquitto.conf"},
                                           dir_.path() + "/mosquitto.log");
    // Ready when a client can connect.
    ready_ = wait_until(
        [&] {
          const int s = socket(AF_INET, SOCK_STREAM, 0);
          sockaddr_in a{};
          a.sin_family = AF_INET;
          a.sin_port = htons(static_cast<std::uint16_t>(port_));
          a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
          const bool ok = connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
          close(s);
          return ok;
        },
        std::chrono::seconds(10));
  }
  void stop() {
    proc_->send_signal(SIGTERM);  // mosquitto saves its persistence file on SIGTERM
    proc_->wait_exit(std::chrono::steady_clock::now() + std::chrono::seconds(10));
  }
  bool ready() const { return ready_; }
  std::string url() const { return "tcp://127.0.0.1:" + std::to_string(port_); }

 private:
  const TempDir& dir_;
  int port_;
  std::unique_ptr<ChildProcess> proc_;
  bool ready_ = false;
};

}  // namespace vane::test
