// vane-bench-consumer: reads what lands in Kafka while a benchmark runs, fast
// enough to keep up with several hundred thousand messages/s (reading along
// loads the machine the same way in every measurement, vane's or the plain
// producer's, and gives the latency of each message), and answers questions
// about it.
//
//   vane-bench-consumer --bootstrap HOST:PORT --topic NAME [--topic NAME]...
//                       [--latency all|none|SOURCE[,SOURCE...]] [--fetch-wait-ms MS]
//                       [--dump FILE --dump-count N]
//
// Assigns every partition of the topics from the beginning (no group
// membership, no commits), prints "READY" once assigned, then takes commands
// on stdin, one per line, and answers each with one JSON line on stdout:
//
//   stats                counts: per topic; per source (the vane-source
//                        header; "-" without one): messages, unique vane-seq,
//                        duplicates, highest seq, when this consumer got the
//                        first and the last (µs since the epoch); offsets
//                        skipped (gone before they were read: retention)
//   lat SOURCE FROM TO   latency percentiles (ms) of the messages of SOURCE
//                        whose reading timestamp (µs since the epoch) is in
//                        [FROM, TO); latency = the time this consumer got the
//                        message - the reading's timestamp (the "timestamp"
//                        in the JSON value, else the Kafka message timestamp)
//   missing N [FILE]     how many of the vane-seqs 1..N were not seen (and
//                        are not listed in FILE, one seq a line), and up
//                        to 20 of them
//   quit
//
// Exits on quit and on EOF of stdin. --dump writes the first N messages (key,
// headers and value, tab-separated, one per line) to FILE: a sample of what
// vane really produces, for the ceilings.
#include <librdkafka/rdkafka.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "support/kafka_reader.h"

namespace {

std::int64_t now_us() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

// Days from 1970-01-01 for a civil date (H. Hinnant).
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

// "YYYY-MM-DDTHH:MM:SS.ffffffZ" (what vane writes) -> µs since the epoch; -1 if not that.
std::int64_t parse_ts(std::string_view s) {
  if (s.size() < 20) return -1;
  auto num = [&](std::size_t at, std::size_t n) -> std::int64_t {
    std::int64_t v = 0;
    for (std::size_t i = at; i < at + n; ++i) {
      if (i >= s.size() || s[i] < '0' || s[i] > '9') return -1;
      v = v * 10 + (s[i] - '0');
    }
    return v;
  };
  const std::int64_t y = num(0, 4), mo = num(5, 2), d = num(8, 2), h = num(11, 2), mi = num(14, 2), se = num(17, 2);
  if (y < 0 || mo < 1 || d < 1 || h < 0 || mi < 0 || se < 0) return -1;
  std::int64_t frac = 0;
  if (s.size() > 20 && s[19] == '.') {
    int digits = 0;
    for (std::size_t i = 20; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i, ++digits)
      if (digits < 6) frac = frac * 10 + (s[i] - '0');
    for (; digits < 6; ++digits) frac *= 10;
  }
  return ((days_from_civil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d)) * 86400 + h * 3600 + mi * 60 + se) *
          1000000) + frac;
}

struct SourceStats {
  std::uint64_t messages = 0, unique = 0, dup = 0, max_seq = 0;
  std::int64_t first_us = 0, last_us = 0;  // when this consumer got the first and the last
  // (reading ts µs, latency µs), when latency is recorded for this source.
  std::vector<std::pair<std::int64_t, std::int32_t>> lat;
};

struct State {
  std::mutex mu;
  std::map<std::string, std::uint64_t> per_topic;
  std::map<std::string, SourceStats> per_source;
  std::vector<std::uint64_t> seen_bits;  // vane-seq bitmap
  std::map<std::pair<std::string, std::int32_t>, std::int64_t> next_offset;
  std::uint64_t skipped_offsets = 0, errors = 0, total = 0;
  std::string last_error;
};

bool test_and_set(std::vector<std::uint64_t>& bits, std::uint64_t seq) {
  const std::size_t word = seq / 64;
  if (word >= bits.size()) bits.resize(std::max<std::size_t>(word + 1, bits.size() * 2), 0);
  const std::uint64_t mask = std::uint64_t{1} << (seq % 64);
  const bool was = bits[word] & mask;
  bits[word] |= mask;
  return was;
}

bool test(const std::vector<std::uint64_t>& bits, std::uint64_t seq) {
  const std::size_t word = seq / 64;
  return word < bits.size() && (bits[word] & (std::uint64_t{1} << (seq % 64)));
}

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      o += '\\';
      o += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", c);
      o += b;
    } else {
      o += c;
    }
  }
  return o;
}

void out(const std::string& line) {
  std::fputs(line.c_str(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

int usage() {
  std::fprintf(stderr,
               "usage: vane-bench-consumer --bootstrap B --topic T [--topic T]... [--latency all|none|S,...]"
               " [--fetch-wait-ms MS] [--dump FILE --dump-count N]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string bootstrap, latency = "none", dump_path;
  std::vector<std::string> topics;
  int fetch_wait_ms = 100;  // the broker answers as soon as a message lands (fetch.min.bytes=1)
  long dump_count = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) return usage();
    if (a == "--bootstrap") bootstrap = argv[++i];
    else if (a == "--topic") topics.push_back(argv[++i]);
    else if (a == "--latency") latency = argv[++i];
    else if (a == "--fetch-wait-ms") fetch_wait_ms = std::atoi(argv[++i]);
    else if (a == "--dump") dump_path = argv[++i];
    else if (a == "--dump-count") dump_count = std::atol(argv[++i]);
    else return usage();
  }
  if (bootstrap.empty() || topics.empty()) return usage();
  std::set<std::string> lat_sources;
  const bool lat_all = latency == "all";
  if (!lat_all && latency != "none") {
    std::stringstream ss(latency);
    for (std::string s; std::getline(ss, s, ',');) lat_sources.insert(s);
  }

  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  auto set = [&](const char* k, const std::string& v) {
    if (rd_kafka_conf_set(conf, k, v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      std::fprintf(stderr, "vane-bench-consumer: %s: %s\n", k, err);
      std::exit(2);
    }
  };
  set("bootstrap.servers", bootstrap);
  set("group.id", "vane-bench-" + std::to_string(getpid()));
  set("enable.auto.commit", "false");
  set("enable.auto.offset.store", "false");
  set("auto.offset.reset", "earliest");
  set("enable.partition.eof", "false");
  set("check.crcs", "false");
  set("fetch.wait.max.ms", std::to_string(fetch_wait_ms));
  set("fetch.min.bytes", "1");
  set("fetch.max.bytes", "52428800");
  set("max.partition.fetch.bytes", "10485760");
  set("queued.min.messages", "200000");
  set("queued.max.messages.kbytes", "262144");
  set("reconnect.backoff.ms", "20");
  set("reconnect.backoff.max.ms", "100");
  set("log_level", "2");  // brokers go down on purpose
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  if (!rk) {
    std::fprintf(stderr, "vane-bench-consumer: %s\n", err);
    return 1;
  }
  rd_kafka_poll_set_consumer(rk);

  // Every partition of every topic, from the beginning (the test support's
  // metadata lookup, retried until a deadline: the broker may be starting).
  vane::test::OffsetMap partitions;
  for (const std::string& t : topics) {
    const auto deadline = vane::test::deadline_in(std::chrono::seconds(30));
    while (!vane::test::add_partitions(rk, t, deadline, partitions)) {
      if (vane::test::Clock::now() >= deadline) {
        std::fprintf(stderr, "vane-bench-consumer: no metadata for topic %s\n", t.c_str());
        return 1;
      }
    }
  }
  if (!vane::test::assign_partitions(rk, partitions)) {
    std::fprintf(stderr, "vane-bench-consumer: assign failed\n");
    return 1;
  }
  rd_kafka_queue_t* queue = rd_kafka_queue_get_consumer(rk);

  FILE* dump = dump_path.empty() ? nullptr : std::fopen(dump_path.c_str(), "w");
  State st;
  std::atomic<bool> stop{false};
  std::thread reader([&] {
    std::vector<rd_kafka_message_t*> msgs(4096);
    while (!stop.load(std::memory_order_relaxed)) {
      // Block for the first message only: a batch call with a timeout waits
      // for a full batch (or the timeout), which would add up to the
      // timeout to every latency. Then take what is already there.
      rd_kafka_message_t* first = rd_kafka_consume_queue(queue, 100);
      if (!first) continue;
      msgs[0] = first;
      const ssize_t more = rd_kafka_consume_batch_queue(queue, 0, msgs.data() + 1, msgs.size() - 1);
      const ssize_t n = 1 + (more > 0 ? more : 0);
      const std::int64_t now = now_us();
      std::lock_guard<std::mutex> lock(st.mu);
      for (ssize_t i = 0; i < n; ++i) {
        rd_kafka_message_t* m = msgs[static_cast<std::size_t>(i)];
        if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR || !m->rkt) {
          ++st.errors;
          st.last_error = rd_kafka_message_errstr(m);
          rd_kafka_message_destroy(m);
          continue;
        }
        const std::string topic = rd_kafka_topic_name(m->rkt);
        auto& next = st.next_offset[{topic, m->partition}];
        if (m->offset < next) {  // re-delivered after an offset reset: counted already
          rd_kafka_message_destroy(m);
          continue;
        }
        st.skipped_offsets += static_cast<std::uint64_t>(m->offset - next);
        next = m->offset + 1;
        ++st.total;
        ++st.per_topic[topic];
        std::string_view source = "-";
        std::uint64_t seq = 0;
        rd_kafka_headers_t* h = nullptr;
        if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR) {
          const void* v;
          size_t sz;
          if (rd_kafka_header_get_last(h, "vane-source", &v, &sz) == RD_KAFKA_RESP_ERR_NO_ERROR && v)
            source = std::string_view(static_cast<const char*>(v), sz);
          if (rd_kafka_header_get_last(h, "vane-seq", &v, &sz) == RD_KAFKA_RESP_ERR_NO_ERROR && v) {
            for (size_t k = 0; k < sz; ++k) seq = seq * 10 + static_cast<std::uint64_t>(static_cast<const char*>(v)[k] - '0');
          }
        }
        auto it = st.per_source.find(std::string(source));  // few sources: fine
        if (it == st.per_source.end()) it = st.per_source.emplace(std::string(source), SourceStats{}).first;
        SourceStats& ss = it->second;
        if (ss.messages++ == 0) ss.first_us = now;
        ss.last_us = now;
        if (seq > 0) {
          if (test_and_set(st.seen_bits, seq)) ++ss.dup;
          else ++ss.unique;
          ss.max_seq = std::max(ss.max_seq, seq);
        } else {
          ++ss.unique;
        }
        if (lat_all || lat_sources.count(it->first)) {
          std::int64_t ts = -1;
          const std::string_view val(static_cast<const char*>(m->payload), m->len);
          const auto at = val.find("\"timestamp\":\"");
          if (at != std::string_view::npos) ts = parse_ts(val.substr(at + 13, 32));
          if (ts < 0) {
            rd_kafka_timestamp_type_t tt;
            const std::int64_t ms = rd_kafka_message_timestamp(m, &tt);
            if (ms >= 0) ts = ms * 1000;
          }
          if (ts >= 0) ss.lat.emplace_back(ts, static_cast<std::int32_t>(std::clamp<std::int64_t>(now - ts, INT32_MIN, INT32_MAX)));
        }
        if (dump && dump_count > 0) {
          --dump_count;
          std::string line(static_cast<const char*>(m->key), m->key_len);
          line += '\t';
          line.append(source);
          line += '\t';
          const void* v;
          size_t sz;
          if (h && rd_kafka_header_get_last(h, "vane-schema", &v, &sz) == RD_KAFKA_RESP_ERR_NO_ERROR && v)
            line.append(static_cast<const char*>(v), sz);
          line += '\t';
          line.append(static_cast<const char*>(m->payload), m->len);
          std::fprintf(dump, "%s\n", line.c_str());
          if (dump_count == 0) {
            std::fclose(dump);
            dump = nullptr;
          }
        }
        rd_kafka_message_destroy(m);
      }
    }
  });

  out("READY");
  std::string buf;
  for (bool quit = false; !quit;) {
    pollfd pfd{STDIN_FILENO, POLLIN, 0};
    if (poll(&pfd, 1, -1) < 0) continue;
    char chunk[1024];
    const ssize_t n = read(STDIN_FILENO, chunk, sizeof chunk);
    if (n <= 0) break;
    buf.append(chunk, static_cast<std::size_t>(n));
    for (auto nl = buf.find('\n'); nl != std::string::npos && !quit; nl = buf.find('\n')) {
      std::istringstream words(buf.substr(0, nl));
      buf.erase(0, nl + 1);
      std::string cmd;
      words >> cmd;
      if (cmd == "quit") {
        quit = true;
      } else if (cmd == "stats") {
        std::lock_guard<std::mutex> lock(st.mu);
        std::string o = "{\"t_us\":" + std::to_string(now_us()) + ",\"total\":" + std::to_string(st.total) +
                        ",\"skipped_offsets\":" + std::to_string(st.skipped_offsets) +
                        ",\"errors\":" + std::to_string(st.errors) + ",\"last_error\":\"" +
                        json_escape(st.last_error) + "\",\"topics\":{";
        bool first = true;
        for (const auto& [t, c] : st.per_topic) {
          o += (first ? "\"" : ",\"") + json_escape(t) + "\":" + std::to_string(c);
          first = false;
        }
        o += "},\"sources\":{";
        first = true;
        for (const auto& [s, ss] : st.per_source) {
          o += (first ? "\"" : ",\"") + json_escape(s) + "\":{\"messages\":" + std::to_string(ss.messages) +
               ",\"unique\":" + std::to_string(ss.unique) + ",\"dup\":" + std::to_string(ss.dup) +
               ",\"max_seq\":" + std::to_string(ss.max_seq) + ",\"first_us\":" + std::to_string(ss.first_us) +
               ",\"last_us\":" + std::to_string(ss.last_us) + "}";
          first = false;
        }
        o += "}}";
        out(o);
      } else if (cmd == "lat") {
        std::string source;
        long long from = 0, to = 0;
        words >> source >> from >> to;
        std::vector<std::int32_t> v;
        {
          std::lock_guard<std::mutex> lock(st.mu);
          auto it = st.per_source.find(source);
          if (it != st.per_source.end())
            for (const auto& [ts, l] : it->second.lat)
              if (ts >= from && ts < to) v.push_back(l);
        }
        std::sort(v.begin(), v.end());
        auto pct = [&](double p) -> double {
          if (v.empty()) return -1;
          const std::size_t k = std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())));
          return v[k] / 1000.0;
        };
        char line[512];
        std::snprintf(line, sizeof line,
                      "{\"n\":%zu,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,\"max_ms\":%.3f,\"min_ms\":%.3f}",
                      v.size(), pct(0.5), pct(0.99), pct(0.999), v.empty() ? -1.0 : v.back() / 1000.0,
                      v.empty() ? -1.0 : v.front() / 1000.0);
        out(line);
      } else if (cmd == "missing") {
        std::uint64_t upto = 0;
        std::string exclude_path;
        words >> upto >> exclude_path;
        std::vector<std::uint64_t> exclude;
        if (!exclude_path.empty()) {
          if (FILE* f = std::fopen(exclude_path.c_str(), "r")) {
            unsigned long long v;
            while (std::fscanf(f, "%llu", &v) == 1) test_and_set(exclude, v);
            std::fclose(f);
          }
        }
        std::uint64_t miss = 0;
        std::string sample;
        {
          std::lock_guard<std::mutex> lock(st.mu);
          for (std::uint64_t s = 1; s <= upto; ++s) {
            if (test(st.seen_bits, s) || test(exclude, s)) continue;
            if (++miss <= 20) sample += (sample.empty() ? "" : ",") + std::to_string(s);
          }
        }
        out("{\"missing\":" + std::to_string(miss) + ",\"sample\":[" + sample + "]}");
      } else if (!cmd.empty()) {
        out("{\"error\":\"unknown command\"}");
      }
    }
  }
  stop = true;
  reader.join();
  if (dump) std::fclose(dump);
  rd_kafka_queue_destroy(queue);
  // No consumer close: it would wait on a coordinator that may be down.
  rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
  return 0;
}
