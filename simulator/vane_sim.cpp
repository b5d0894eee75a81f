// vane-sim: the simulator's devices on real protocols, for demos, tests and
// benchmarks.
//
//   vane-sim modbus --listen HOST:PORT --turbines N [--interval-ms MS] [--seed S]
//   vane-sim mqtt --broker URL --sensors N --rate HZ [--faults F] [--count N]
//
// Each turbine is a Modbus TCP slave with its own unit id (T-001 is unit 1);
// the register map is in docs/MODBUS.md. Prints "LISTENING HOST:PORT" once it
// accepts connections (port 0 picks a free one). Exits on SIGINT/SIGTERM or
// when stdin closes, if stdin is a pipe.
#include <modbus/modbus.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <vector>

#include "simulator/modbus_map.h"
#ifdef VANE_SIM_MQTT
#include "simulator/mqtt_publisher.h"
#endif
#include "simulator/turbine_model.h"

namespace {

volatile sig_atomic_t g_stop = 0;

struct MappingDeleter {
  void operator()(modbus_mapping_t* m) const { modbus_mapping_free(m); }
};
struct ModbusDeleter {
  void operator()(modbus_t* m) const {
    modbus_close(m);
    modbus_free(m);
  }
};

int serve_modbus(const std::string& listen, int turbines, int interval_ms, std::uint64_t seed) {
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos) {
    std::fprintf(stderr, "vane-sim: --listen expects HOST:PORT, got %s\n", listen.c_str());
    return 2;
  }
  const std::string host = listen.substr(0, colon), port = listen.substr(colon + 1);
  std::unique_ptr<modbus_t, ModbusDeleter> ctx(modbus_new_tcp_pi(host.c_str(), port.c_str()));
  if (!ctx) {
    std::fprintf(stderr, "vane-sim: %s\n", modbus_strerror(errno));
    return 1;
  }
  const int server = modbus_tcp_pi_listen(ctx.get(), 16);
  if (server < 0) {
    std::fprintf(stderr, "vane-sim: cannot listen on %s: %s\n", listen.c_str(), modbus_strerror(errno));
    return 1;
  }
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  getsockname(server, reinterpret_cast<sockaddr*>(&addr), &len);
  const int bound_port = addr.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port)
                                                    : ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);

  std::vector<vane::sim::Turbine> models;
  std::vector<std::unique_ptr<modbus_mapping_t, MappingDeleter>> maps;
  for (int i = 0; i < turbines; ++i) {
    models.emplace_back(seed, i);
    maps.emplace_back(modbus_mapping_new(vane::sim::kCoils, vane::sim::kDiscretes, vane::sim::kHoldings,
                                         vane::sim::kInputs));
    vane::sim::write_registers(*maps.back(), models.back().step(1.0), i, 0);
  }
  std::printf("LISTENING %s:%d\n", host.c_str(), bound_port);
  std::fflush(stdout);

  struct stat st;
  const bool watch_stdin = fstat(STDIN_FILENO, &st) == 0 && S_ISFIFO(st.st_mode);
  std::vector<int> clients;
  std::uint8_t query[MODBUS_TCP_MAX_ADU_LENGTH];
  auto next = std::chrono::steady_clock::now() + std::chrono::milliseconds(interval_ms);
  std::uint32_t tick = 0;
  while (!g_stop) {
    std::vector<pollfd> fds{{server, POLLIN, 0}};
    for (int c : clients) fds.push_back({c, POLLIN, 0});
    if (watch_stdin) fds.push_back({STDIN_FILENO, POLLIN, 0});
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next - std::chrono::steady_clock::now());
    const int n = poll(fds.data(), fds.size(), static_cast<int>(std::max<long>(0, wait.count())));
    if (n < 0 && errno != EINTR) break;
    if (std::chrono::steady_clock::now() >= next) {
      ++tick;
      for (int i = 0; i < turbines; ++i)
        vane::sim::write_registers(*maps[i], models[i].step(interval_ms / 1000.0), i, tick);
      next += std::chrono::milliseconds(interval_ms);
    }
    if (n <= 0) continue;
    if (watch_stdin && (fds.back().revents & (POLLIN | POLLHUP))) {
      char buf[256];
      if (read(STDIN_FILENO, buf, sizeof buf) <= 0) break;
    }
    if (fds[0].revents & POLLIN) {
      const int c = accept(server, nullptr, nullptr);
      if (c >= 0) clients.push_back(c);
    }
    for (std::size_t k = 1; k <= clients.size(); ++k) {
      if (!(fds[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      const int c = fds[k].fd;
      modbus_set_socket(ctx.get(), c);
      const int rc = modbus_receive(ctx.get(), query);
      if (rc <= 0) {
        close(c);
        clients.erase(std::find(clients.begin(), clients.end(), c));
        break;  // fds is stale now; poll again
      }
      // The unit id picks the turbine; an unknown unit gets no answer, as
      // from a gateway whose device is off.
      const int unit = query[modbus_get_header_length(ctx.get()) - 1];
      if (unit >= 1 && unit <= turbines) modbus_reply(ctx.get(), query, rc, maps[unit - 1].get());
    }
  }
  for (int c : clients) close(c);
  close(server);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"vane-sim: simulated devices on real protocols"};
  app.require_subcommand(1);
  auto* mb = app.add_subcommand("modbus", "turbines as Modbus TCP slaves, one unit id each");
  std::string listen = "127.0.0.1:5020";
  int turbines = 15, interval_ms = 1000;
  std::uint64_t seed = 1;
  mb->add_option("--listen", listen, "HOST:PORT (port 0: any free port)")->capture_default_str();
  mb->add_option("--turbines", turbines, "number of turbines (unit ids 1..N)")->check(CLI::Range(1, 247))->capture_default_str();
  mb->add_option("--interval-ms", interval_ms, "how often the values change")->check(CLI::Range(10, 3600000))->capture_default_str();
  mb->add_option("--seed", seed, "random seed")->capture_default_str();
#ifdef VANE_SIM_MQTT
  vane::sim::MqttPublishOptions mo;
  auto* mq = app.add_subcommand("mqtt", "environmental sensors publishing JSON");
  mq->add_option("--broker", mo.broker, "broker URL")->capture_default_str();
  mq->add_option("--sensors", mo.sensors, "number of sensors S-001..")->check(CLI::Range(1, 100000))->capture_default_str();
  mq->add_option("--rate", mo.rate_hz, "messages per second per sensor")->check(CLI::Range(0.001, 1e6))->capture_default_str();
  mq->add_option("--faults", mo.faults, "fraction of malformed or out-of-range messages")->check(CLI::Range(0.0, 1.0));
  mq->add_option("--count", mo.count, "total messages, then exit (0: until stopped)");
  mq->add_option("--qos", mo.qos, "publish QoS")->check(CLI::Range(0, 2))->capture_default_str();
  mq->add_option("--seed", mo.seed, "random seed")->capture_default_str();
#endif
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  struct sigaction sa {};
  sa.sa_handler = [](int) { g_stop = 1; };
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  if (*mb) return serve_modbus(listen, turbines, interval_ms, seed);
#ifdef VANE_SIM_MQTT
  if (*mq) return vane::sim::publish_sensors(mo, &g_stop);
#endif
  return 2;
}
