// The raw SQLite ceiling of vane's end-to-end path: the same table, pragmas
// and synchronous level as the buffer (the SQL text of buffer/buffer_sql.h)
// and the batch sizes the agent uses (agent/pipeline.h: up to 1024 readings
// per insert transaction; agent/forwarder.cpp: acks deleted in transactions
// of up to 1000, consecutive seqs as one range delete), driven by a plain C
// API loop: no vane code, no reads back,
// no sequence or byte bookkeeping. Up to `keep` rows stay in the table, as
// rows in flight to Kafka do in vane (kafka.max_in_flight).
//
//   sqlite_ceiling [--sync off|normal|full] [--seconds S] [--insert-batch N]
//                  [--delete-batch N] [--keep N] [--payloads FILE] [--dir DIR]
//
// One loop iteration: BEGIN IMMEDIATE; insert-batch INSERTs; COMMIT; then,
// while more than `keep` rows are in the table, BEGIN IMMEDIATE; one
// `DELETE ... WHERE seq BETWEEN ? AND ?` of up to delete-batch rows; COMMIT. Readings/s counts rows
// inserted and deleted again over wall-clock time. The database goes into a
// fresh mkdtemp directory under DIR (default /tmp), removed afterwards.
// Prints one JSON line.
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "buffer/buffer_sql.h"

#include "bench_payloads.h"

namespace {

using vane::bench::Payload;

using vane::bench::cpu_seconds;

int usage() {
  std::fprintf(stderr,
               "usage: sqlite_ceiling [--sync off|normal|full] [--seconds S] [--insert-batch N] [--delete-batch N]"
               " [--keep N] [--payloads FILE] [--dir DIR]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string sync = "normal", payload_path, parent = "/tmp";
  double seconds = 5;
  long insert_batch = 1024, delete_batch = 1000, keep = 10000;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) return usage();
    if (a == "--sync") sync = argv[++i];
    else if (a == "--seconds") seconds = std::atof(argv[++i]);
    else if (a == "--insert-batch") insert_batch = std::atol(argv[++i]);
    else if (a == "--delete-batch") delete_batch = std::atol(argv[++i]);
    else if (a == "--keep") keep = std::atol(argv[++i]);
    else if (a == "--payloads") payload_path = argv[++i];
    else if (a == "--dir") parent = argv[++i];
    else return usage();
  }
  const char* sync_sql = sync == "off" ? vane::sql::kSyncOff
                         : sync == "full" ? vane::sql::kSyncFull
                         : sync == "normal" ? vane::sql::kSyncNormal
                                            : nullptr;
  if (!sync_sql || insert_batch < 1 || delete_batch < 1 || keep < 0) return usage();
  const std::vector<Payload> rows = vane::bench::payloads_from(payload_path);
  if (rows.empty()) {
    std::fprintf(stderr, "sqlite_ceiling: no rows in %s\n", payload_path.c_str());
    return 1;
  }

  std::string tmpl = parent + "/vane-sqlite-ceiling-XXXXXX";
  if (!mkdtemp(tmpl.data())) {
    std::perror("sqlite_ceiling: mkdtemp");
    return 1;
  }
  const std::string dir = tmpl;
  struct Cleanup {
    std::string d;
    ~Cleanup() {
      std::error_code ec;
      std::filesystem::remove_all(d, ec);
    }
  } cleanup{dir};

  sqlite3* db = nullptr;
  if (sqlite3_open_v2((dir + "/ceiling.db").c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                      nullptr) != SQLITE_OK) {
    std::fprintf(stderr, "sqlite_ceiling: open: %s\n", db ? sqlite3_errmsg(db) : "?");
    return 1;
  }
  const std::string setup = std::string(vane::sql::kPragmas) + sync_sql + vane::sql::kCreate;
  if (sqlite3_exec(db, setup.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
    std::fprintf(stderr, "sqlite_ceiling: setup: %s\n", sqlite3_errmsg(db));
    return 1;
  }
  auto prepare = [&](const char* sql) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr) != SQLITE_OK) {
      std::fprintf(stderr, "sqlite_ceiling: prepare %s: %s\n", sql, sqlite3_errmsg(db));
      std::exit(1);
    }
    return s;
  };
  sqlite3_stmt* begin = prepare(vane::sql::kBegin);
  sqlite3_stmt* commit = prepare(vane::sql::kCommit);
  sqlite3_stmt* insert = prepare(vane::sql::kInsert);
  sqlite3_stmt* del = prepare(vane::sql::kDeleteRange);
  bool ok = true;
  auto step = [&](sqlite3_stmt* s) {
    const int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE && ok) {
      std::fprintf(stderr, "sqlite_ceiling: %s\n", sqlite3_errmsg(db));
      ok = false;
    }
  };
  auto text = [](sqlite3_stmt* s, int i, const std::string& v) {
    sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
  };

  using clock = std::chrono::steady_clock;
  std::int64_t next_seq = 1, oldest = 1;
  std::uint64_t inserted = 0, deleted = 0, insert_tx = 0, delete_tx = 0;
  const double cpu0 = cpu_seconds();
  const auto t0 = clock::now();
  const auto stop_at = t0 + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(seconds));
  std::size_t r = 0;
  const std::int64_t ts0 = 1795651200000000;
  while (ok && clock::now() < stop_at) {
    step(begin);
    for (long i = 0; i < insert_batch; ++i, r = (r + 1) % rows.size()) {
      const Payload& row = rows[r];
      sqlite3_bind_int64(insert, 1, next_seq);
      sqlite3_bind_int(insert, 2, 0);
      text(insert, 3, row.key);
      sqlite3_bind_int64(insert, 4, ts0 + next_seq);
      text(insert, 5, row.source);
      text(insert, 6, row.schema);
      sqlite3_bind_blob(insert, 7, row.value.data(), static_cast<int>(row.value.size()), SQLITE_STATIC);
      sqlite3_bind_text(insert, 8, "", 0, SQLITE_STATIC);
      sqlite3_bind_int64(insert, 9, static_cast<sqlite3_int64>(row.value.size() + row.key.size() + row.source.size() +
                                                               row.schema.size() + 32));
      step(insert);
      ++next_seq;
    }
    step(commit);
    inserted += static_cast<std::uint64_t>(insert_batch);
    ++insert_tx;
    while (ok && next_seq - oldest > keep) {
      const std::int64_t n = std::min<std::int64_t>(delete_batch, next_seq - oldest - keep);
      step(begin);
      sqlite3_bind_int64(del, 1, oldest);
      sqlite3_bind_int64(del, 2, oldest + n - 1);
      step(del);
      oldest += n;
      step(commit);
      deleted += static_cast<std::uint64_t>(n);
      ++delete_tx;
    }
  }
  const double wall = std::chrono::duration<double>(clock::now() - t0).count();
  const double cpu = cpu_seconds() - cpu0;
  for (sqlite3_stmt* s : {begin, commit, insert, del}) sqlite3_finalize(s);
  sqlite3_close(db);
  if (!ok) return 1;
  std::printf(
      "{\"sync\":\"%s\",\"seconds\":%.3f,\"inserted\":%llu,\"deleted\":%llu,\"readings_per_s\":%.0f,"
      "\"inserted_per_s\":%.0f,\"cpu_s\":%.3f,\"cpu_s_per_million\":%.3f,\"insert_batch\":%ld,"
      "\"delete_batch\":%ld,\"keep\":%ld,\"insert_tx\":%llu,\"delete_tx\":%llu,\"payload_bytes\":%zu}\n",
      sync.c_str(), wall, static_cast<unsigned long long>(inserted), static_cast<unsigned long long>(deleted),
      static_cast<double>(deleted) / wall, static_cast<double>(inserted) / wall, cpu,
      deleted ? cpu / static_cast<double>(deleted) * 1e6 : 0.0, insert_batch, delete_batch, keep,
      static_cast<unsigned long long>(insert_tx), static_cast<unsigned long long>(delete_tx), rows[0].value.size());
  return 0;
}
