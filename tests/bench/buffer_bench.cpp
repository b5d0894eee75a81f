// What each buffer.sync level costs: the agent's cycle on vane::SqliteBuffer
// (append a batch in one transaction, claim it, ack it: delete-on-ack in one
// transaction) against a ceiling that does only the two transactions with the
// sqlite3 C API directly — same table, same pragmas, no reads back, no
// sequence bookkeeping. Throughput is readings/s over wall-clock time: the
// cost of a durable commit is waiting for the disk, not CPU.
//
// Every run gets its own mkdtemp directory under /tmp and a fresh database,
// removed afterwards.
#include <benchmark/benchmark.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "buffer/buffer_sql.h"
#include "buffer/sqlite_buffer.h"

namespace {

using vane::SyncLevel;

constexpr SyncLevel kLevels[] = {SyncLevel::kOff, SyncLevel::kNormal, SyncLevel::kFull};
constexpr int kBatches[] = {1, 64, 512};

const char* level_name(SyncLevel l) {
  switch (l) {
    case SyncLevel::kOff: return "off";
    case SyncLevel::kNormal: return "normal";
    case SyncLevel::kFull: return "full";
  }
  return "?";
}

// A directory under /tmp for one benchmark run, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/vane-buffer-bench-XXXXXX";
    if (mkdtemp(tmpl) != nullptr) path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  bool ok() const { return !path_.empty(); }
  std::string file(const char* name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A turbine reading as the pipeline hands it to the buffer: ~200 bytes of JSON.
std::vector<vane::Record> make_batch(int n) {
  std::vector<vane::Record> batch(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    vane::Record& r = batch[static_cast<std::size_t>(i)];
    char key[16];
    std::snprintf(key, sizeof key, "T-%03d", i % 100 + 1);
    r.key = key;
    r.ts_us = 1795651200000000 + i * 100000LL;
    r.source = "sim";
    r.schema = "turbine";
    r.value = std::string(R"({"turbine_id":")") + key +
              R"(","timestamp":"2026-11-26T10:00:00.100000Z","wind_speed":9.81,)"
              R"("pitch_angle":0.9,"power_output":1894.2,"temperature":31.7,"vibration":0.31,)"
              R"("rotor_rpm":14.2,"nacelle_yaw":182.5,"status":"running"})";
  }
  return batch;
}

void BM_Vane(benchmark::State& state, SyncLevel level) {
  const int n = static_cast<int>(state.range(0));
  TempDir dir;
  if (!dir.ok()) {
    state.SkipWithError("mkdtemp failed");
    return;
  }
  vane::SqliteBufferOptions opts;
  opts.path = dir.file("buffer.db");
  opts.sync = level;
  auto opened = vane::SqliteBuffer::open(opts);
  if (!opened) {
    state.SkipWithError(opened.status().message().c_str());
    return;
  }
  std::unique_ptr<vane::SqliteBuffer> buf = std::move(*opened);
  std::vector<vane::Record> batch = make_batch(n);
  std::vector<vane::StoredRecord> claimed;
  std::vector<std::uint64_t> seqs;
  claimed.reserve(batch.size());
  seqs.reserve(batch.size());

  for (auto _ : state) {
    auto appended = buf->append(batch);
    if (!appended || appended->appended != batch.size()) {
      state.SkipWithError("append failed");
      break;
    }
    claimed.clear();
    if (!buf->claim(batch.size(), claimed) || claimed.size() != batch.size()) {
      state.SkipWithError("claim failed");
      break;
    }
    seqs.clear();
    for (const vane::StoredRecord& r : claimed) seqs.push_back(r.seq);
    if (!buf->ack(seqs)) {
      state.SkipWithError("ack failed");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * n);
}

// The ceiling: raw SQLite, nothing of vane but the handle owners.
using Db = vane::SqliteBuffer::Db;
using Stmt = vane::SqliteBuffer::Stmt;

// The pragmas and tables of the buffer (buffer/buffer_sql.h): the same SQL
// text, run directly, no vane code.
const std::string kCeilingSetup = std::string(vane::sql::kPragmas) + vane::sql::kCreate;

bool step_done(sqlite3_stmt* s) {
  const int rc = sqlite3_step(s);
  sqlite3_reset(s);
  return rc == SQLITE_DONE;
}

void BM_Ceiling(benchmark::State& state, SyncLevel level) {
  const int n = static_cast<int>(state.range(0));
  TempDir dir;
  if (!dir.ok()) {
    state.SkipWithError("mkdtemp failed");
    return;
  }
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(dir.file("ceiling.db").c_str(), &raw,
                                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  Db db(raw);
  const std::string setup = kCeilingSetup + "PRAGMA synchronous=" + level_name(level) + ";";
  if (rc != SQLITE_OK || sqlite3_exec(db.get(), setup.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
    state.SkipWithError(raw ? sqlite3_errmsg(raw) : "sqlite3_open_v2 failed");
    return;
  }
  auto prepare = [&](const char* sql) {
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v3(db.get(), sql, -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr);
    return Stmt(s);
  };
  Stmt begin = prepare("BEGIN IMMEDIATE;");
  Stmt commit = prepare("COMMIT;");
  Stmt insert = prepare(
      "INSERT INTO rows(seq, stream, key, ts_us, source, schema, value, error, size)"
      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9);");
  Stmt del = prepare("DELETE FROM rows WHERE seq = ?1;");
  if (!begin || !commit || !insert || !del) {
    state.SkipWithError(sqlite3_errmsg(db.get()));
    return;
  }
  const std::vector<vane::Record> batch = make_batch(n);
  auto text = [](sqlite3_stmt* s, int i, const std::string& v) {
    sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
  };
  std::int64_t next_seq = 1;

  for (auto _ : state) {
    const std::int64_t first = next_seq;
    bool ok = step_done(begin.get());
    for (const vane::Record& r : batch) {
      sqlite3_stmt* s = insert.get();
      sqlite3_bind_int64(s, 1, next_seq++);
      sqlite3_bind_int(s, 2, static_cast<int>(r.stream));
      text(s, 3, r.key);
      sqlite3_bind_int64(s, 4, r.ts_us);
      text(s, 5, r.source);
      text(s, 6, r.schema);
      sqlite3_bind_blob(s, 7, r.value.data(), static_cast<int>(r.value.size()), SQLITE_STATIC);
      text(s, 8, r.error);
      const std::size_t size = r.value.size() + r.key.size() + r.source.size() + r.schema.size() + 32;
      sqlite3_bind_int64(s, 9, static_cast<sqlite3_int64>(size));
      ok = step_done(s) && ok;
    }
    ok = step_done(commit.get()) && ok;
    ok = step_done(begin.get()) && ok;
    for (std::int64_t seq = first; seq < next_seq; ++seq) {
      sqlite3_bind_int64(del.get(), 1, seq);
      ok = step_done(del.get()) && ok;
    }
    ok = step_done(commit.get()) && ok;
    if (!ok) {
      state.SkipWithError(sqlite3_errmsg(db.get()));
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * n);
}

}  // namespace

int main(int argc, char** argv) {
  // Vane and its ceiling side by side for each case, so a reader of the
  // console output sees the pairs that make a ratio.
  for (int n : kBatches) {
    for (SyncLevel level : kLevels) {
      const std::string suffix = std::string("/") + level_name(level);  // Arg(n) appends "/n"
      benchmark::RegisterBenchmark(("BM_Vane" + suffix).c_str(), BM_Vane, level)->Arg(n)->UseRealTime();
      benchmark::RegisterBenchmark(("BM_Ceiling" + suffix).c_str(), BM_Ceiling, level)->Arg(n)->UseRealTime();
    }
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
