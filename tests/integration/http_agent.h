// A running vane (the real binary) with its HTTP endpoint on a port it
// picked itself (http.listen 127.0.0.1:0), read from its log line.
#pragma once

#include <httplib.h>

#include <regex>
#include <string>
#include <vector>

#include "support/process.h"
#include "support/wait.h"

namespace vane::test {

// The port a starting `vane run` (http.listen 127.0.0.1:0) logs that it
// listens on; 0 if it exits or says nothing within `timeout`.
inline int wait_http_port(ChildProcess& vane, std::chrono::milliseconds timeout) {
  const std::regex re(R"(http: .* on 127\.0\.0\.1:([0-9]+))");
  int port = 0;
  wait_until(
      [&] {
        std::smatch m;
        const std::string err = vane.captured_stderr();
        if (std::regex_search(err, m, re)) port = std::stoi(m[1]);
        return port > 0 || !vane.running();
      },
      timeout);
  return port;
}

class HttpAgent {
 public:
  HttpAgent(const std::string& config, const std::string& log)
      : proc_({vane_path(), "run", "-c", config}, log), port_(wait_http_port(proc_, std::chrono::seconds(20))) {}
  ChildProcess& proc() { return proc_; }
  int port() const { return port_; }
  std::string get(const std::string& path) {
    httplib::Client c("127.0.0.1", port_);
    c.set_connection_timeout(2);
    c.set_read_timeout(5);
    auto r = c.Get(path);
    return r ? r->body : "";
  }
  // GET's status code, 0 when nothing answered.
  int status(const std::string& path) {
    httplib::Client c("127.0.0.1", port_);
    c.set_connection_timeout(2);
    c.set_read_timeout(5);
    auto r = c.Get(path);
    return r ? r->status : 0;
  }
  // Everything a user can read from the outside: the log and every page.
  std::string all_output() {
    return proc_.captured_stderr() + get("/metrics") + get("/health") + get("/") + get("/api/v1/stats") +
           get("/api/v1/latest");
  }
  int stop() {
    using namespace std::chrono_literals;
    proc_.send_signal(SIGTERM);
    auto rc = proc_.wait_exit(deadline_in(30s));
    return rc ? *rc : -1;
  }

 private:
  static std::string vane_path() { return std::string(VANE_BINARY_DIR) + "/agent/vane"; }
  ChildProcess proc_;
  int port_ = 0;
};

}  // namespace vane::test
