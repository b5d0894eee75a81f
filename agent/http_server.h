// The local HTTP endpoint (cpp-httplib): /metrics, /health, /api/v1/latest,
// /api/v1/stats and the status page. Two worker threads; every answer is
// rendered from counters and snapshots, so a scrape never waits on Kafka and
// waits on the buffer at most a bounded time.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "core/status.h"
#include "live_view.h"
#include "status_report.h"

namespace httplib {
class Server;
}

namespace vane {

struct HttpServerOptions {
  std::string listen;        // host:port; port 0 picks a free one
  std::string basic_auth;    // "user:password", or ""
  std::string bearer_token;  // or ""
};

class HttpServer {
 public:
  HttpServer(HttpServerOptions opts, ReportContext ctx, const LiveView& live);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and starts serving; an error names the address and why.
  Status start();
  void stop();
  int port() const { return port_; }

 private:
  bool authorized(const std::string& header) const;

  HttpServerOptions opts_;
  ReportContext ctx_;
  const LiveView& live_;
  std::string expected_auth_;  // the whole Authorization header value, or ""
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::atomic<bool> listening_done_{false};  // listen_after_bind() returned
  int port_ = 0;
};

// "host:port" split; false when it is not one.
bool split_listen(const std::string& listen, std::string& host, int& port);
// True for 127.0.0.0/8, ::1 and "localhost".
bool is_loopback(const std::string& host);

}  // namespace vane
