#include "http_server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include <nlohmann/json.hpp>

#include "core/log.h"
#include "web/assets.h"

namespace vane {
namespace {

std::string base64(const std::string& in) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const unsigned v = (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8) |
                       static_cast<unsigned char>(in[i + 2]);
    out += {t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], t[v & 63]};
  }
  if (i + 1 == in.size()) {
    const unsigned v = static_cast<unsigned char>(in[i]) << 16;
    out += {t[v >> 18], t[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == in.size()) {
    const unsigned v = (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8);
    out += {t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], '='};
  }
  return out;
}

// Compares without returning early at the first difference.
bool same_secret(const std::string& given, const std::string& expected) {
  if (given.size() != expected.size()) return false;
  unsigned char diff = 0;
  for (std::size_t i = 0; i < given.size(); ++i) diff |= static_cast<unsigned char>(given[i] ^ expected[i]);
  return diff == 0;
}

void send_json(httplib::Response& res, int status, const nlohmann::json& body) {
  res.status = status;
  res.set_header("Cache-Control", "no-store");
  res.set_content(body.dump() + "\n", "application/json");
}

}  // namespace

bool split_listen(const std::string& listen, std::string& host, int& port) {
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0) return false;
  host = listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  try {
    port = std::stoi(listen.substr(colon + 1));
  } catch (...) {
    return false;
  }
  return port >= 0 && port <= 65535;
}

bool is_loopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

HttpServer::HttpServer(HttpServerOptions opts, ReportContext ctx, const LiveView& live)
    : opts_(std::move(opts)), ctx_(std::move(ctx)), live_(live) {
  if (!opts_.basic_auth.empty()) expected_auth_ = "Basic " + base64(opts_.basic_auth);
  else if (!opts_.bearer_token.empty()) expected_auth_ = "Bearer " + opts_.bearer_token;
}

HttpServer::~HttpServer() { stop(); }

bool HttpServer::authorized(const std::string& header) const {
  return expected_auth_.empty() || same_secret(header, expected_auth_);
}

Status HttpServer::start() {
  std::string host;
  int port = 0;
  if (!split_listen(opts_.listen, host, port)) return Status::invalid("http.listen: \"" + opts_.listen + "\" is not host:port");
  server_ = std::make_unique<httplib::Server>();
  httplib::Server& s = *server_;
  // Two workers: a scrape and a browser at once. Requests are small and
  // answered from memory.
  s.new_task_queue = [] { return new httplib::ThreadPool(2); };
  s.set_read_timeout(5, 0);
  s.set_write_timeout(5, 0);
  s.set_keep_alive_timeout(5);
  s.set_payload_max_length(4096);
  // SO_REUSEADDR only: httplib's default also sets SO_REUSEPORT, with which
  // a second vane (or anything else) binds the same port without an error
  // and scrapes land on either at random.
  s.set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  s.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (authorized(req.get_header_value("Authorization"))) return httplib::Server::HandlerResponse::Unhandled;
    res.status = 401;
    if (!opts_.basic_auth.empty()) res.set_header("WWW-Authenticate", "Basic realm=\"vane\", charset=\"UTF-8\"");
    else res.set_header("WWW-Authenticate", "Bearer realm=\"vane\"");
    res.set_content("authentication required\n", "text/plain");
    return httplib::Server::HandlerResponse::Handled;
  });
  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(render_metrics(ctx_), "text/plain; version=0.0.4; charset=utf-8");
  });
  s.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    auto [status, body] = render_health(ctx_);
    res.status = status;
    res.set_header("Cache-Control", "no-store");
    res.set_content(body, "application/json");
  });
  s.Get("/api/v1/latest", [this](const httplib::Request& req, httplib::Response& res) {
    if (!req.has_param("device")) return send_json(res, 200, live_.latest(nullptr));
    const std::string device = req.get_param_value("device");
    nlohmann::json j = live_.latest(&device);
    if (j.is_null()) return send_json(res, 404, {{"error", "no reading from device \"" + device + "\" yet"}});
    send_json(res, 200, j);
  });
  s.Get("/api/v1/stats", [this](const httplib::Request& req, httplib::Response& res) {
    if (!req.has_param("device")) return send_json(res, 200, live_.stats(nullptr));
    const std::string device = req.get_param_value("device");
    nlohmann::json j = live_.stats(&device);
    if (j.is_null()) return send_json(res, 404, {{"error", "no reading from device \"" + device + "\" yet"}});
    send_json(res, 200, j);
  });
  s.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_header("Content-Security-Policy",
                   "default-src 'none'; connect-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
                   "img-src 'self' data:");
    res.set_header("X-Content-Type-Options", "nosniff");
    res.set_header("Cache-Control", "no-cache");
    res.set_content(web::kStatusPage, web::kStatusPageSize, "text/html; charset=utf-8");
  });
  s.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (res.body.empty()) res.set_content(std::to_string(res.status) + "\n", "text/plain");
  });

  port_ = port == 0 ? s.bind_to_any_port(host) : (s.bind_to_port(host, port) ? port : -1);
  if (port_ < 0) {
    server_.reset();
    return Status::unavailable("http.listen: cannot listen on " + opts_.listen + ": " + std::strerror(errno));
  }
  listening_done_ = false;
  thread_ = std::thread([this] {
    server_->listen_after_bind();
    listening_done_ = true;
  });
  // httplib's stop() does nothing until the serving loop has marked itself
  // running: a stop that came first would leave the loop running and the
  // join at shutdown waiting forever. So start() returns only once it runs.
  while (!server_->is_running() && !listening_done_) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (!is_loopback(host))
    VANE_LOG_WARN("http: serving on %s, not loopback: whoever reaches it reads every sensor's latest values%s",
                  opts_.listen.c_str(), expected_auth_.empty() ? " (and no authentication is set)" : "");
  VANE_LOG_INFO("http: /metrics, /health, /api/v1 and the status page on %s:%d%s", host.c_str(), port_,
                expected_auth_.empty() ? "" : " (authentication required)");
  return Status::ok();
}

void HttpServer::stop() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
  server_.reset();
}

}  // namespace vane
