// The plain librdkafka producer every Kafka-facing benchmark figure of vane
// is a ratio to: vane's payloads, produced with the producer settings vane
// uses (agent/kafka_uplink.cpp: idempotence, acks=all, no message timeout,
// linger.ms=5, batch.num.messages=10000, a queue of 2 x max_in_flight
// messages, 32 MiB) and at most max_in_flight messages unacknowledged (the
// forwarder's bound), to the same broker as vane. No vane code: a loop of
// rd_kafka_producev with the same headers (vane-gateway, vane-source,
// vane-seq 1..N, vane-schema) and key, copying payloads as vane does, until
// every delivery report is in.
//
//   kafka_bench [--bootstrap HOST:PORT] [--topic NAME] [--seconds S | --messages N]
//               [--rate R] [--payloads FILE] [--max-in-flight N] [--property K=V]...
//
// --rate: R messages/s on a steady schedule instead of as fast as possible,
// each with the time of its production as the "timestamp" in its value, so a
// consumer (vane-bench-consumer) measures the latency floor of the Kafka path
// alone: producer -> broker -> consumer.
//
// Without --bootstrap it starts a one-node Apache Kafka itself
// (support/kafka_cluster.h; topics telemetry:3, telemetry.dlq:1). --topic:
// default telemetry. --payloads: lines of "key<TAB>source<TAB>schema<TAB>value"
// (what vane-bench-consumer --dump writes: real messages vane produced);
// without it, turbine readings shaped like vane's serializer output. Prints
// one JSON line: counts, rate, CPU and peak RSS of this process, and with
// --rate the producer's own ack latency (produce -> delivery report).
#include <librdkafka/rdkafka.h>
#include <sys/resource.h>

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "support/kafka_cluster.h"
#include "support/rdkafka_ptr.h"

#include "bench_payloads.h"

namespace {

using vane::bench::Payload;

// "YYYY-MM-DDTHH:MM:SS.ffffffZ" of now (UTC), as vane's serializer writes it.
void format_now(char* out) {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  tm t{};
  gmtime_r(&ts.tv_sec, &t);
  char buf[40];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", (t.tm_year + 1900) % 10000, (t.tm_mon + 1) % 100,
                t.tm_mday % 100, t.tm_hour % 100, t.tm_min % 100, t.tm_sec % 100,
                static_cast<int>(ts.tv_nsec / 1000) % 1000000);
  std::memcpy(out, buf, 27);
}

struct Counts {
  std::uint64_t delivered = 0, failed = 0;
  std::string first_error;
  std::vector<std::int64_t> ack_ns;  // --rate: produce -> delivery report, per message
  bool record = false;
};

std::int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
  auto* c = static_cast<Counts*>(opaque);
  if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    ++c->delivered;
    if (c->record) c->ack_ns.push_back(steady_ns() - static_cast<std::int64_t>(reinterpret_cast<std::uintptr_t>(m->_private)));
  } else {
    if (c->failed++ == 0) c->first_error = rd_kafka_err2name(m->err);
  }
}

using vane::bench::cpu_seconds;

// VmHWM of this process, kB, as the harness reads vane's. Not getrusage's
// ru_maxrss: Linux carries that over exec from the forking parent (a Python
// script of 45 MB made every run report 45 MB).
long peak_rss_kb() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmHWM:", 0) == 0) return std::atol(line.c_str() + 6);
  return -1;
}

int usage() {
  std::fprintf(stderr,
               "usage: kafka_bench [--bootstrap B] [--topic T] [--seconds S | --messages N] [--rate R]"
               " [--payloads FILE] [--max-in-flight N] [--property K=V]...\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string bootstrap, payload_path, topic_name = "telemetry";
  double seconds = 10, rate = 0;
  std::uint64_t messages = 0;
  int max_in_flight = 10000;  // kafka.max_in_flight default
  std::vector<std::pair<std::string, std::string>> props;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) return usage();
    if (a == "--bootstrap") bootstrap = argv[++i];
    else if (a == "--topic") topic_name = argv[++i];
    else if (a == "--seconds") seconds = std::atof(argv[++i]);
    else if (a == "--messages") messages = std::strtoull(argv[++i], nullptr, 10);
    else if (a == "--rate") rate = std::atof(argv[++i]);
    else if (a == "--payloads") payload_path = argv[++i];
    else if (a == "--max-in-flight") max_in_flight = std::atoi(argv[++i]);
    else if (a == "--property") {
      const std::string kv = argv[++i];
      const auto eq = kv.find('=');
      if (eq == std::string::npos) return usage();
      props.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
    } else return usage();
  }
  std::vector<Payload> payloads = vane::bench::payloads_from(payload_path);
  if (payloads.empty()) {
    std::fprintf(stderr, "kafka_bench: no payloads in %s\n", payload_path.c_str());
    return 1;
  }

  std::unique_ptr<vane::test::KafkaCluster> cluster;  // only when no --bootstrap
  if (bootstrap.empty()) {
    try {
      cluster = std::make_unique<vane::test::KafkaCluster>();
      cluster->create_topic("telemetry", 3);
      cluster->create_topic("telemetry.dlq", 1);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "kafka_bench: %s\n", e.what());
      return 1;
    }
    bootstrap = cluster->bootstrap();
  }

  const std::string gateway = "gw-bench";
  char err[512];
  vane::test::RdKafkaConfPtr conf(rd_kafka_conf_new());
  const std::pair<std::string, std::string> settings[] = {
      {"bootstrap.servers", bootstrap},
      {"client.id", "vane-" + gateway},
      {"enable.idempotence", "true"},
      {"acks", "all"},
      {"message.timeout.ms", "0"},
      {"linger.ms", "5"},
      {"batch.num.messages", "10000"},
      {"queue.buffering.max.messages", std::to_string(std::max(max_in_flight * 2, 1000))},
      {"queue.buffering.max.kbytes", "32768"},
  };
  for (const auto& kv : settings) props.insert(props.begin(), kv);  // --property overrides
  for (const auto& [k, v] : props) {
    if (rd_kafka_conf_set(conf.get(), k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      std::fprintf(stderr, "kafka_bench: %s: %s\n", k.c_str(), err);
      return 2;
    }
  }
  Counts counts;
  rd_kafka_conf_set_opaque(conf.get(), &counts);
  rd_kafka_conf_set_dr_msg_cb(conf.get(), on_delivery);
  vane::test::RdKafkaPtr producer(rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), err, sizeof err));
  if (!producer) {
    std::fprintf(stderr, "kafka_bench: %s\n", err);
    return 1;
  }
  conf.release();  // rd_kafka_new took it
  rd_kafka_t* rk = producer.get();
  std::unique_ptr<rd_kafka_topic_t, void (*)(rd_kafka_topic_t*)> topic_handle(
      rd_kafka_topic_new(rk, topic_name.c_str(), nullptr), rd_kafka_topic_destroy);
  rd_kafka_topic_t* topic = topic_handle.get();

  // Warm up: metadata, the idempotent producer id, connections.
  {
    const Payload& p = payloads[0];
    rd_kafka_producev(rk, RD_KAFKA_V_RKT(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                      RD_KAFKA_V_KEY(p.key.data(), p.key.size()),
                      RD_KAFKA_V_VALUE(const_cast<char*>(p.value.data()), p.value.size()), RD_KAFKA_V_END);
    rd_kafka_flush(rk, 30000);
    if (counts.delivered != 1) {
      std::fprintf(stderr, "kafka_bench: warm-up message not delivered (%s)\n", counts.first_error.c_str());
      return 1;
    }
    counts = Counts{};
    counts.record = rate > 0;
  }

  using clock = std::chrono::steady_clock;
  const double cpu0 = cpu_seconds();
  const auto t0 = clock::now();
  const auto stop_at = t0 + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(seconds));
  std::uint64_t produced = 0, queue_full = 0;
  char seq[24];
  const auto period = rate > 0 ? std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(1.0 / rate))
                               : clock::duration::zero();
  auto next = t0;
  std::string stamped;
  for (std::size_t i = 0;; ++i) {
    if (rate > 0) {
      // Paced: sleep until the next message is due, serving reports meanwhile.
      for (auto now = clock::now(); now < next; now = clock::now()) {
        const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(next - now).count();
        if (ms >= 1) rd_kafka_poll(rk, static_cast<int>(ms));
        else std::this_thread::sleep_until(next);
      }
      next += period;
    }
    if (messages > 0 ? produced >= messages
                     : ((rate > 0 || (produced & 1023) == 0) && clock::now() >= stop_at))
      break;
    // The forwarder's bound on rows handed over and not yet reported.
    while (produced - counts.delivered - counts.failed >= static_cast<std::uint64_t>(max_in_flight))
      rd_kafka_poll(rk, 10);
    const Payload& p = payloads[i % payloads.size()];
    const std::string* value = &p.value;
    if (rate > 0) {
      stamped = p.value;
      const auto at = stamped.find("\"timestamp\":\"");
      if (at != std::string::npos && at + 13 + 27 <= stamped.size()) format_now(stamped.data() + at + 13);
      value = &stamped;
    }
    const int seq_len = std::snprintf(seq, sizeof seq, "%llu", static_cast<unsigned long long>(produced + 1));
    vane::test::RdKafkaHeadersPtr headers(rd_kafka_headers_new(5));
    rd_kafka_headers_t* h = headers.get();
    rd_kafka_header_add(h, "vane-gateway", -1, gateway.data(), static_cast<ssize_t>(gateway.size()));
    rd_kafka_header_add(h, "vane-source", -1, p.source.data(), static_cast<ssize_t>(p.source.size()));
    rd_kafka_header_add(h, "vane-seq", -1, seq, seq_len);
    rd_kafka_header_add(h, "vane-schema", -1, p.schema.data(), static_cast<ssize_t>(p.schema.size()));
    const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch()).count();
    rd_kafka_resp_err_t e;
    while ((e = rd_kafka_producev(rk, RD_KAFKA_V_RKT(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                  RD_KAFKA_V_KEY(p.key.data(), p.key.size()),
                                  RD_KAFKA_V_VALUE(const_cast<char*>(value->data()), value->size()),
                                  RD_KAFKA_V_TIMESTAMP(now_ms), RD_KAFKA_V_HEADERS(h),
                                  RD_KAFKA_V_OPAQUE(reinterpret_cast<void*>(static_cast<std::uintptr_t>(steady_ns()))),
                                  RD_KAFKA_V_END)) ==
           RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      ++queue_full;
      rd_kafka_poll(rk, 10);
    }
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
      std::fprintf(stderr, "kafka_bench: produce: %s\n", rd_kafka_err2str(e));
      return 1;
    }
    headers.release();  // the message owns them now
    ++produced;
    rd_kafka_poll(rk, 0);
  }
  // Every delivery report in: that is when the last message counts.
  const auto flush_deadline = clock::now() + std::chrono::seconds(120);
  while (counts.delivered + counts.failed < produced && clock::now() < flush_deadline) rd_kafka_poll(rk, 100);
  const double wall = std::chrono::duration<double>(clock::now() - t0).count();
  const double cpu = cpu_seconds() - cpu0;
  std::sort(counts.ack_ns.begin(), counts.ack_ns.end());
  auto pct = [&](double p) {
    if (counts.ack_ns.empty()) return -1.0;
    return counts.ack_ns[std::min(counts.ack_ns.size() - 1, static_cast<std::size_t>(p * counts.ack_ns.size()))] / 1e6;
  };
  std::printf(
      "{\"ack_p50_ms\":%.3f,\"ack_p99_ms\":%.3f,\"ack_p999_ms\":%.3f,", pct(0.5), pct(0.99), pct(0.999));
  std::printf(
      "\"produced\":%llu,\"delivered\":%llu,\"failed\":%llu,\"first_error\":\"%s\",\"seconds\":%.3f,"
      "\"readings_per_s\":%.0f,\"cpu_s\":%.3f,\"cpu_s_per_million\":%.3f,\"payloads\":%zu,"
      "\"payload_bytes\":%zu,\"queue_full\":%llu,\"max_in_flight\":%d,\"rate\":%.0f,\"peak_rss_kb\":%ld}\n",
      static_cast<unsigned long long>(produced), static_cast<unsigned long long>(counts.delivered),
      static_cast<unsigned long long>(counts.failed), counts.first_error.c_str(), wall,
      static_cast<double>(counts.delivered) / wall, cpu,
      counts.delivered ? cpu / static_cast<double>(counts.delivered) * 1e6 : 0.0, payloads.size(),
      payloads[0].value.size(), static_cast<unsigned long long>(queue_full), max_in_flight, rate, peak_rss_kb());
  return counts.failed == 0 && counts.delivered == produced ? 0 : 1;
}
