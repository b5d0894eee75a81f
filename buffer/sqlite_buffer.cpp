#include "buffer/sqlite_buffer.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <thread>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <utility>

#include <nlohmann/json.hpp>

#include "buffer/buffer_sql.h"

namespace vane {
namespace {

// Per-row bookkeeping on top of the payload, so many tiny rows still count.
constexpr std::uint64_t kRowOverhead = 32;

std::uint64_t row_size(const Record& r) {
  return r.value.size() + r.key.size() + r.source.size() + r.schema.size() + r.error.size() + kRowOverhead;
}

std::uint64_t file_size(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
}

Status status_from(int rc, const std::string& msg) {
  switch (rc & 0xff) {
    case SQLITE_FULL: return Status::full(msg);
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return Status::busy(msg);
    default: return Status::io_error(msg);
  }
}

// Resets a cached statement when leaving a scope, whatever happened.
struct Reset {
  sqlite3_stmt* s;
  ~Reset() {
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
  }
};

void bind_text(sqlite3_stmt* s, int i, const std::string& v) {
  sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
}

// Into existing storage: a claim reuses its records' strings.
void assign_text(std::string& to, sqlite3_stmt* s, int i) {
  const auto* p = static_cast<const char*>(sqlite3_column_blob(s, i));
  if (p) to.assign(p, static_cast<std::size_t>(sqlite3_column_bytes(s, i)));
  else to.clear();
}

std::string column_text(sqlite3_stmt* s, int i) {
  const auto* p = static_cast<const char*>(sqlite3_column_blob(s, i));
  return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(s, i))) : std::string();
}

std::int64_t wall_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string iso_utc(std::int64_t us) {
  const std::time_t secs = static_cast<std::time_t>(us / 1000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  const std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%06lldZ", static_cast<long long>(us % 1000000));
  return buf;
}

// An event row: keyed by the gateway, its value one JSON object.
Record event_record(const std::string& gateway, std::string value, std::int64_t ts_us) {
  Record r;
  r.stream = Stream::kEvent;
  r.key = gateway;
  r.ts_us = ts_us;
  r.source = "vane";
  r.schema = "vane.event";
  r.value = std::move(value);
  return r;
}

}  // namespace

const char* stream_name(Stream s) {
  switch (s) {
    case Stream::kDeadLetter: return "dead_letter";
    case Stream::kEvent: return "event";
    default: return "telemetry";
  }
}

SqliteBuffer::~SqliteBuffer() {
  stop_checkpointer();
  std::lock_guard<std::timed_mutex> lock(mu_);
  close_db();
  if (lock_fd_ >= 0) close(lock_fd_);
}

void SqliteBuffer::close_db() {
  // Statements first: sqlite3_close_v2 would otherwise defer the close.
  for (Stmt* st : {&insert_, &delete_, &delete_range_, &select_after_, &select_one_, &oldest_after_, &update_next_seq_, &begin_,
                   &commit_, &rollback_, &oldest_, &dead_letter_, &park_, &unpark_one_, &update_value_, &data_version_})
    st->reset();
  db_.reset();
}

Status SqliteBuffer::error(const char* what, int rc) const {
  const char* msg = db_ ? sqlite3_errmsg(db_.get()) : sqlite3_errstr(rc);
  return status_from(rc, opts_.path + ": " + what + ": " + msg);
}

Status SqliteBuffer::exec(const char* sql) {
  char* err = nullptr;
  const int rc = sqlite3_exec(db_.get(), sql, nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = opts_.path + ": " + (err ? err : sqlite3_errstr(rc));
    sqlite3_free(err);
    return status_from(rc, msg);
  }
  return Status::ok();
}

Result<std::unique_ptr<SqliteBuffer>> SqliteBuffer::open(const SqliteBufferOptions& opts) {
  std::unique_ptr<SqliteBuffer> b(new SqliteBuffer(opts));
  if (Status s = b->lock(); !s) return s;
  bool unusable = false;
  Status s = b->init(unusable);
  if (!s) {
    if (!unusable) return s;
    if (Status q = b->quarantine_and_reopen(s.message()); !q) return q;
  }
  b->cap_ = opts.max_bytes;
  b->take_reserve();
  b->start_checkpointer();
  const PublishRows publish{*b};
  return b;
}

// Checkpoints copy the WAL into the database and sync it: on a slow disk
// that takes hundreds of milliseconds, and run by the connection whose
// commit crossed wal_autocheckpoint, it would hold the buffer (and every
// append and claim) that long. A second connection does them in the
// background instead (PASSIVE: it never blocks the writer), so the
// autocheckpoint on the main connection is only a bound for when it falls
// behind.
void SqliteBuffer::start_checkpointer() {
  sqlite3* raw = nullptr;
  if (sqlite3_open_v2(opts_.path.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK) {
    sqlite3_close_v2(raw);
    return;  // the main connection's autocheckpoint still does the work
  }
  Db db(raw);
  const char* sync = opts_.sync == SyncLevel::kOff ? sql::kSyncOff
                     : opts_.sync == SyncLevel::kFull ? sql::kSyncFull
                                                      : sql::kSyncNormal;
  if (sqlite3_exec(db.get(), sync, nullptr, nullptr, nullptr) != SQLITE_OK) return;
  checkpointer_ = std::thread([this, db = std::move(db)]() mutable {
    std::unique_lock<std::mutex> lock(checkpoint_mu_);
    while (!checkpoint_cv_.wait_for(lock, kCheckpointEvery, [&] { return checkpoint_stop_; })) {
      lock.unlock();
      int wal_frames = 0, done = 0;
      sqlite3_wal_checkpoint_v2(db.get(), nullptr, SQLITE_CHECKPOINT_PASSIVE, &wal_frames, &done);
      lock.lock();
    }
  });
}

void SqliteBuffer::stop_checkpointer() {
  {
    std::lock_guard<std::mutex> lock(checkpoint_mu_);
    checkpoint_stop_ = true;
  }
  checkpoint_cv_.notify_all();
  if (checkpointer_.joinable()) checkpointer_.join();
}

void SqliteBuffer::take_reserve() {
  next_reserve_try_ = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  const std::string path = opts_.path + ".reserve";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return;
  reserve_held_ = ::posix_fallocate(fd, 0, sql::kReserveBytes) == 0;
  ::close(fd);
  if (!reserve_held_) ::unlink(path.c_str());
}

void SqliteBuffer::release_reserve() {
  if (!reserve_held_) return;
  ::unlink((opts_.path + ".reserve").c_str());
  reserve_held_ = false;
}

Status SqliteBuffer::lock() {
  const std::string lock_path = opts_.path + ".lock";
  lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd_ < 0) return Status::io_error(lock_path + ": cannot create lock file: " + std::strerror(errno));
  if (flock(lock_fd_, LOCK_EX | LOCK_NB) != 0)
    return Status::busy(opts_.path + ": buffer is in use by another vane process");
  return Status::ok();
}

Status SqliteBuffer::init(bool& unusable) {
  unusable = false;
  // Errors that say the file's content is bad, as opposed to the place it is
  // in (permissions, missing directory, I/O, a full disk).
  auto classify = [&](Status s) {
    const int rc = db_ ? sqlite3_extended_errcode(db_.get()) : SQLITE_OK;
    switch (rc & 0xff) {
      case SQLITE_CORRUPT:
      case SQLITE_NOTADB:
      case SQLITE_ERROR:  // e.g. "no such column": somebody else's tables
      case SQLITE_SCHEMA:
      case SQLITE_FORMAT:
      case SQLITE_MISMATCH:
      case SQLITE_RANGE: unusable = true; break;
      default: unusable = rc == SQLITE_IOERR_SHORT_READ;
    }
    return s;
  };
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(opts_.path.c_str(), &raw,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  db_.reset(raw);
  if (rc != SQLITE_OK) {
    std::string msg = opts_.path + ": cannot open buffer: " + (raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc));
    if (errno != 0) msg += std::string(" (") + std::strerror(errno) + ")";
    return Status::io_error(msg);
  }
  sqlite3_extended_result_codes(db_.get(), 1);
  sqlite3_busy_timeout(db_.get(), 5000);
  if (Status s = exec(sql::kPragmas); !s) return classify(s);
  const char* sync = opts_.sync == SyncLevel::kOff ? sql::kSyncOff
                     : opts_.sync == SyncLevel::kFull ? sql::kSyncFull
                                                      : sql::kSyncNormal;
  if (Status s = exec(sync); !s) return classify(s);
  if (opts_.max_pages > 0) {
    const std::string limit = "PRAGMA max_page_count=" + std::to_string(opts_.max_pages) + ";";
    if (Status s = exec(limit.c_str()); !s) return classify(s);
  }
  {
    sqlite3_stmt* s = nullptr;
    rc = sqlite3_prepare_v2(db_.get(), sql::kQuickCheck, -1, &s, nullptr);
    Stmt check(s);
    if (rc != SQLITE_OK) return classify(error("quick_check", rc));
    rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) return classify(error("quick_check", rc));
    const std::string verdict = column_text(s, 0);
    if (verdict != "ok") {
      unusable = true;
      return Status::io_error(opts_.path + ": quick_check: " + verdict);
    }
  }
  if (Status s = exec(sql::kCreate); !s) return classify(s);

  struct Prep {
    Stmt* stmt;
    const char* sql;
  };
  const Prep preps[] = {{&insert_, sql::kInsert},          {&delete_, sql::kDelete}, {&delete_range_, sql::kDeleteRange},
                        {&select_after_, sql::kSelectAfter}, {&select_one_, sql::kSelectOne},
                        {&oldest_after_, sql::kOldestAfter}, {&update_next_seq_, sql::kUpdateNextSeq},
                        {&begin_, sql::kBegin},              {&commit_, sql::kCommit},
                        {&rollback_, sql::kRollback},        {&oldest_, sql::kOldest},
                        {&dead_letter_, sql::kDeadLetter},   {&park_, sql::kPark},
                        {&unpark_one_, sql::kUnparkOne},     {&update_value_, sql::kUpdateValue},
                        {&data_version_, sql::kDataVersion}};
  for (const Prep& p : preps) {
    sqlite3_stmt* s = nullptr;
    rc = sqlite3_prepare_v3(db_.get(), p.sql, -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr);
    if (rc != SQLITE_OK) return classify(error("prepare", rc));
    p.stmt->reset(s);
  }

  // Schema version and the sequence high-water mark.
  Stmt meta;
  {
    sqlite3_stmt* s = nullptr;
    rc = sqlite3_prepare_v2(db_.get(), sql::kSelectMeta, -1, &s, nullptr);
    if (rc != SQLITE_OK) return classify(error("prepare", rc));
    meta.reset(s);
  }
  auto read_meta = [&](const char* key, std::uint64_t& out) -> Status {
    sqlite3_reset(meta.get());
    sqlite3_bind_text(meta.get(), 1, key, -1, SQLITE_STATIC);
    const int r = sqlite3_step(meta.get());
    if (r != SQLITE_ROW) return classify(error("read meta", r));
    out = static_cast<std::uint64_t>(sqlite3_column_int64(meta.get(), 0));
    return Status::ok();
  };
  std::uint64_t version = 0;
  if (Status s = read_meta("schema_version", version); !s) return s;
  if (version != static_cast<std::uint64_t>(sql::kSchemaVersion)) {
    unusable = true;
    return Status::io_error(opts_.path + ": buffer format version " + std::to_string(version) +
                            ", this vane reads version " + std::to_string(sql::kSchemaVersion));
  }
  if (Status s = read_meta("next_seq", next_seq_); !s) return s;

  Stmt q;
  auto one_row = [&](const char* text) -> Status {
    sqlite3_stmt* s = nullptr;
    const int r = sqlite3_prepare_v2(db_.get(), text, -1, &s, nullptr);
    if (r != SQLITE_OK) return classify(error("prepare", r));
    q.reset(s);
    const int st = sqlite3_step(s);
    if (st != SQLITE_ROW) return classify(error("query", st));
    return Status::ok();
  };
  if (Status s = one_row(sql::kTotals); !s) return s;
  rows_ = static_cast<std::uint64_t>(sqlite3_column_int64(q.get(), 0));
  bytes_ = static_cast<std::uint64_t>(sqlite3_column_int64(q.get(), 1));
  // Defends the never-reused promise against a meta row older than the data
  // (e.g. a file edited by hand).
  if (Status s = one_row(sql::kMaxSeq); !s) return s;
  next_seq_ = std::max(next_seq_, static_cast<std::uint64_t>(sqlite3_column_int64(q.get(), 0)) + 1);
  q.reset();
  {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db_.get(), sql::kEventSeqs, -1, &s, nullptr) != SQLITE_OK) return classify(error("prepare", rc));
    Stmt events(s);
    event_rows_.clear();
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) event_rows_.insert(static_cast<std::uint64_t>(sqlite3_column_int64(s, 0)));
    if (rc != SQLITE_DONE) return classify(error("read event rows", rc));
  }
  if (Status s = exec(sql::kPruneParked); !s) return classify(s);
  return classify(load_parked());
}

Status SqliteBuffer::load_parked() {
  sqlite3_stmt* s = nullptr;
  int rc = sqlite3_prepare_v2(db_.get(), sql::kParkedSeqs, -1, &s, nullptr);
  Stmt owner(s);
  if (rc != SQLITE_OK) return error("prepare", rc);
  std::set<std::uint64_t> now;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) now.insert(static_cast<std::uint64_t>(sqlite3_column_int64(s, 0)));
  if (rc != SQLITE_DONE) return error("read parked rows", rc);
  // Those no longer parked are claimable again: behind the cursor, as released rows.
  for (std::uint64_t seq : parked_)
    if (!now.contains(seq) && seq <= claimed_hwm_) released_.insert(seq);
  parked_ = std::move(now);
  return Status::ok();
}

Status SqliteBuffer::reload_parked() {
  const auto now = std::chrono::steady_clock::now();
  if (parked_.empty() || now < next_parked_check_) return Status::ok();
  next_parked_check_ = now + std::chrono::seconds(1);
  sqlite3_stmt* s = data_version_.get();
  Reset reset{s};
  if (sqlite3_step(s) != SQLITE_ROW) return Status::ok();
  const std::int64_t v = sqlite3_column_int64(s, 0);
  if (v == std::exchange(data_version_seen_, v)) return Status::ok();
  return load_parked();
}

Status SqliteBuffer::quarantine_and_reopen(const std::string& reason) {
  close_db();
  char stamp[32];
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
  std::string aside = opts_.path + ".corrupt-" + stamp;
  for (int n = 2; ::access(aside.c_str(), F_OK) == 0; ++n) aside = opts_.path + ".corrupt-" + stamp + "-" + std::to_string(n);
  if (::rename(opts_.path.c_str(), aside.c_str()) != 0)
    return Status::io_error(opts_.path + ": unusable buffer (" + reason + ") and cannot move it aside: " +
                            std::strerror(errno));
  // The WAL belongs to the file it was written for; the -shm index is rebuilt.
  if (::rename((opts_.path + "-wal").c_str(), (aside + "-wal").c_str()) != 0 && errno != ENOENT)
    return Status::io_error(opts_.path + "-wal: cannot move it aside: " + std::strerror(errno));
  ::unlink((opts_.path + "-shm").c_str());
  quarantine_.moved_to = aside;
  quarantine_.reason = reason;
  bool unusable = false;
  if (Status s = init(unusable); !s) return s;
  salvage(aside);
  // Declared: seqs the old file held and the new one does not may be lost
  // with it. Which of them were still unsent is not known; the range is every
  // seq it may have held.
  const std::uint64_t last = next_seq_ - 1;
  nlohmann::ordered_json ev = {{"event", "quarantined"},
                               {"gateway", opts_.gateway},
                               {"reason", "buffer_corrupt"},
                               {"detail", reason},
                               {"moved_to", aside},
                               {"first_seq", last > 0 ? 1 : 0},
                               {"last_seq", last},
                               {"salvaged", quarantine_.salvaged},
                               {"timestamp", iso_utc(wall_us())}};
  if (sqlite3_step(begin_.get()) == SQLITE_DONE) {
    sqlite3_reset(begin_.get());
    const std::uint64_t saved_bytes = bytes_;
    std::uint64_t seq = 0;
    if (insert_event(ev.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), seq) == SQLITE_DONE &&
        sqlite3_step(commit_.get()) == SQLITE_DONE) {
      event_rows_.insert(seq);
      ++rows_;
    } else {
      sqlite3_step(rollback_.get());
      sqlite3_reset(rollback_.get());
      next_seq_ = last + 1;
      bytes_ = saved_bytes;
    }
    sqlite3_reset(commit_.get());
  }
  sqlite3_reset(begin_.get());
  return Status::ok();
}

int SqliteBuffer::insert_event(const std::string& value, std::uint64_t& seq, std::uint64_t* size_out) {
  const Record r = event_record(opts_.gateway, value, wall_us());
  const std::uint64_t size = row_size(r);
  if (const int rc = insert_row(next_seq_, r, size); rc != SQLITE_DONE) return rc;
  seq = next_seq_++;
  bytes_ += size;
  if (size_out) *size_out = size;
  sqlite3_stmt* u = update_next_seq_.get();
  Reset reset{u};
  sqlite3_bind_int64(u, 1, static_cast<sqlite3_int64>(next_seq_));
  return sqlite3_step(u);
}

int SqliteBuffer::insert_row(std::uint64_t seq, const Record& r, std::uint64_t size) {
  sqlite3_stmt* s = insert_.get();
  Reset reset{s};
  sqlite3_bind_int64(s, 1, static_cast<sqlite3_int64>(seq));
  sqlite3_bind_int(s, 2, static_cast<int>(r.stream));
  bind_text(s, 3, r.key);
  sqlite3_bind_int64(s, 4, r.ts_us);
  bind_text(s, 5, r.source);
  bind_text(s, 6, r.schema);
  sqlite3_bind_blob(s, 7, r.value.data(), static_cast<int>(r.value.size()), SQLITE_STATIC);
  bind_text(s, 8, r.error);
  sqlite3_bind_int64(s, 9, static_cast<sqlite3_int64>(size));
  return sqlite3_step(s);
}

bool SqliteBuffer::unclaimed(std::uint64_t seq) const {
  return seq > claimed_hwm_ && !in_flight_.contains(seq) && !live_claimed_.contains(seq);
}

int SqliteBuffer::declare(Declaration& d, const char* event, const std::string& reason, std::uint64_t first,
                          std::uint64_t last, std::uint64_t count) {
  const bool extend = d.seq != 0 && d.event == event && d.reason == reason && first > d.last && unclaimed(d.seq) &&
                      event_rows_.contains(d.seq);
  if (extend) {
    d.last = last;
    d.count += count;
  } else {
    d = Declaration{0, event, reason, first, last, count};
  }
  const std::int64_t now = wall_us();
  const nlohmann::ordered_json ev = {{"event", d.event}, {"gateway", opts_.gateway}, {"reason", d.reason},
                                     {"first_seq", d.first}, {"last_seq", d.last},   {"count", d.count},
                                     {"timestamp", iso_utc(now)}};
  std::string value = ev.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (!extend) {
    const int rc = insert_event(value, d.seq, &d.size);
    if (rc == SQLITE_DONE) {
      event_rows_.insert(d.seq);
      ++rows_;
    } else {
      d = Declaration{};
    }
    return rc;
  }
  // The row keeps its seq; its value (and accounted size) is rewritten.
  const std::uint64_t size = row_size(event_record(opts_.gateway, value, now));
  sqlite3_stmt* s = update_value_.get();
  Reset reset{s};
  sqlite3_bind_int64(s, 1, static_cast<sqlite3_int64>(d.seq));
  sqlite3_bind_blob(s, 2, value.data(), static_cast<int>(value.size()), SQLITE_STATIC);
  sqlite3_bind_int64(s, 3, static_cast<sqlite3_int64>(size));
  const int rc = sqlite3_step(s);
  if (rc == SQLITE_DONE) {
    bytes_ = bytes_ - std::min(bytes_, d.size) + size;
    d.size = size;
  }
  return rc;
}

// A truncated file whose header still claims its old length makes SQLite
// refuse every read; with the header's page count cut to what the file
// holds, the rows on the pages that remain can be read.
static void fit_header_to_length(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return;
  unsigned char h[100];
  struct stat st;
  if (::pread(fd, h, sizeof h, 0) == static_cast<ssize_t>(sizeof h) && std::memcmp(h, "SQLite format 3", 16) == 0 &&
      ::fstat(fd, &st) == 0) {
    std::uint32_t page = (std::uint32_t{h[16]} << 8) | h[17];
    if (page == 1) page = 65536;
    const std::uint32_t claimed = (std::uint32_t{h[28]} << 24) | (std::uint32_t{h[29]} << 16) |
                                  (std::uint32_t{h[30]} << 8) | h[31];
    const auto real = static_cast<std::uint32_t>(static_cast<std::uint64_t>(st.st_size) / std::max(page, 512u));
    if (page >= 512 && claimed > real) {
      const unsigned char fixed[4] = {static_cast<unsigned char>(real >> 24), static_cast<unsigned char>(real >> 16),
                                      static_cast<unsigned char>(real >> 8), static_cast<unsigned char>(real)};
      (void)!::pwrite(fd, fixed, sizeof fixed, 28);
    }
  }
  ::close(fd);
}

void SqliteBuffer::salvage(const std::string& from) {
  fit_header_to_length(from);
  sqlite3* raw = nullptr;
  const int orc = sqlite3_open_v2(from.c_str(), &raw, SQLITE_OPEN_READWRITE, nullptr);
  Db old(raw);
  if (orc != SQLITE_OK) return;
  sqlite3_busy_timeout(old.get(), 1000);
  auto prepare = [&](const char* text) {
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(old.get(), text, -1, &st, nullptr);
    return Stmt(st);
  };
  if (Stmt m = prepare(sql::kSelectMeta)) {
    sqlite3_bind_text(m.get(), 1, "next_seq", -1, SQLITE_STATIC);
    if (sqlite3_step(m.get()) == SQLITE_ROW)
      quarantine_.next_seq_from = static_cast<std::uint64_t>(sqlite3_column_int64(m.get(), 0));
  }
  Stmt rows = prepare(sql::kSalvage);
  if (rows && sqlite3_step(begin_.get()) == SQLITE_DONE) {
    sqlite3_reset(begin_.get());
    std::uint64_t after = 0, max_seq = 0;
    int skip = 0;  // after an unreadable page: how far (2^skip seqs) to jump past it
    for (int round = 0; round < 1000000; ++round) {
      sqlite3_reset(rows.get());
      sqlite3_bind_int64(rows.get(), 1, static_cast<sqlite3_int64>(after));
      int rc, got = 0;
      while ((rc = sqlite3_step(rows.get())) == SQLITE_ROW) {
        ++got;
        skip = 0;
        const auto seq = static_cast<std::uint64_t>(sqlite3_column_int64(rows.get(), 0));
        sqlite3_stmt* ins = insert_.get();
        Reset reset{ins};
        sqlite3_bind_int64(ins, 1, static_cast<sqlite3_int64>(seq));
        for (int c = 1; c <= 8; ++c) sqlite3_bind_value(ins, c + 1, sqlite3_column_value(rows.get(), c));
        if (sqlite3_step(ins) == SQLITE_DONE) {
          ++quarantine_.salvaged;
          ++rows_;
          bytes_ += static_cast<std::uint64_t>(sqlite3_column_int64(rows.get(), 8));
          max_seq = std::max(max_seq, seq);
        }
        after = seq;
      }
      if (rc == SQLITE_DONE && got == 0) break;
      if (rc != SQLITE_DONE) {
        if (++skip > 40) break;
        after += 1ULL << (skip - 1);
      }
    }
    sqlite3_reset(rows.get());
    next_seq_ = std::max({next_seq_, quarantine_.next_seq_from, max_seq + 1});
    sqlite3_stmt* u = update_next_seq_.get();
    {
      Reset reset{u};
      sqlite3_bind_int64(u, 1, static_cast<sqlite3_int64>(next_seq_));
      sqlite3_step(u);
    }
    if (sqlite3_step(commit_.get()) != SQLITE_DONE) {
      sqlite3_reset(commit_.get());
      sqlite3_step(rollback_.get());
      sqlite3_reset(rollback_.get());
      rows_ = bytes_ = 0;
      quarantine_.salvaged = 0;
    }
    sqlite3_reset(commit_.get());
  } else {
    sqlite3_reset(begin_.get());
  }
}

int SqliteBuffer::delete_range(std::uint64_t first, std::uint64_t last) {
  sqlite3_stmt* d = delete_range_.get();
  Reset reset{d};
  sqlite3_bind_int64(d, 1, static_cast<sqlite3_int64>(first));
  sqlite3_bind_int64(d, 2, static_cast<sqlite3_int64>(last));
  return sqlite3_step(d);
}

int SqliteBuffer::delete_row(std::uint64_t seq, std::uint64_t& size) {
  sqlite3_stmt* d = delete_.get();
  Reset reset{d};
  sqlite3_bind_int64(d, 1, static_cast<sqlite3_int64>(seq));
  int rc = sqlite3_step(d);
  size = 0;
  if (rc == SQLITE_ROW) {
    size = static_cast<std::uint64_t>(sqlite3_column_int64(d, 0));
    rc = sqlite3_step(d);
  }
  return rc;
}

bool SqliteBuffer::droppable(std::uint64_t seq) const {
  return seq > claimed_hwm_ && !in_flight_.contains(seq) && !released_.contains(seq) &&
         (event_rows_.empty() || !event_rows_.contains(seq));
}

Result<std::size_t> SqliteBuffer::delete_oldest(std::uint64_t need, const char* reason) {
  std::size_t dropped = 0;
  std::uint64_t first = 0, last = 0;
  auto done = [&](std::uint64_t freed) { return bytes_ - std::min(bytes_, freed) + need <= cap_; };
  // The declaration of the drops takes room too: a new event row, or a few
  // more digits in the one it extends.
  if (!done(0)) {
    const bool extends = pending_drop_.seq != 0 && pending_drop_.reason == reason && unclaimed(pending_drop_.seq);
    need += extends ? 16 : kEventReserve + 2 * opts_.gateway.size();
  }
  std::uint64_t after = claimed_hwm_;
  while (!done(0)) {
    sqlite3_stmt* s = oldest_after_.get();
    Reset reset{s};
    sqlite3_bind_int64(s, 1, static_cast<sqlite3_int64>(after));
    sqlite3_bind_int64(s, 2, 256);
    std::vector<std::uint64_t> victims;
    std::uint64_t freed = 0;
    int rc, seen = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      ++seen;
      if (done(freed)) break;
      const auto seq = static_cast<std::uint64_t>(sqlite3_column_int64(s, 0));
      after = seq;
      if (!droppable(seq)) continue;  // with the uplink (live-first claims)
      victims.push_back(seq);
      freed += static_cast<std::uint64_t>(sqlite3_column_int64(s, 1));
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return error("select oldest rows", rc);
    sqlite3_reset(s);
    if (seen == 0) break;  // only in-flight rows left: nothing droppable
    for (std::uint64_t seq : victims) {
      std::uint64_t size = 0;
      rc = delete_row(seq, size);
      if (rc != SQLITE_DONE) return error("drop oldest row", rc);
      if (!parked_.empty() && parked_.erase(seq)) {
        txn_unparked_.push_back(seq);
        sqlite3_stmt* u = unpark_one_.get();
        Reset reset{u};
        sqlite3_bind_int64(u, 1, static_cast<sqlite3_int64>(seq));
        if ((rc = sqlite3_step(u)) != SQLITE_DONE) return error("drop a parked row", rc);
      }
      bytes_ -= std::min(bytes_, size);
      --rows_;
      ++dropped;
      if (first == 0) first = seq;
      last = seq;
    }
  }
  if (dropped > 0) {
    const int rc = declare(pending_drop_, "dropped", reason, first, last, dropped);
    if (rc != SQLITE_DONE) return error("declare dropped rows", rc);
  }
  return dropped;
}

void SqliteBuffer::undo_declarations(std::uint64_t first_new_seq, const Declaration& saved) {
  // Event rows this transaction wrote are gone with it, and parked rows it
  // dropped are still there.
  event_rows_.erase(event_rows_.lower_bound(first_new_seq), event_rows_.end());
  pending_drop_ = saved;
  parked_.insert(txn_unparked_.begin(), txn_unparked_.end());
  txn_unparked_.clear();
}

Result<std::size_t> SqliteBuffer::drop_to_cap() {
  const std::uint64_t saved_rows = rows_, saved_bytes = bytes_, saved_seq = next_seq_;
  const Declaration saved_drop = pending_drop_;
  txn_unparked_.clear();
  int rc = sqlite3_step(begin_.get());
  sqlite3_reset(begin_.get());
  if (rc != SQLITE_DONE) return error("begin", rc);
  auto dropped = delete_oldest(0, "disk_full");
  if (dropped) {
    rc = sqlite3_step(commit_.get());
    sqlite3_reset(commit_.get());
    if (rc == SQLITE_DONE) {
      txn_unparked_.clear();
      return dropped;
    }
    dropped = error("commit", rc);
  }
  sqlite3_step(rollback_.get());
  sqlite3_reset(rollback_.get());
  rows_ = saved_rows;
  bytes_ = saved_bytes;
  next_seq_ = saved_seq;
  undo_declarations(saved_seq, saved_drop);
  return dropped.status();
}

Result<AppendResult> SqliteBuffer::append(std::span<Record> records) {
  // The forwarder first: its claims and acks are short, appends are long,
  // and a mutex without fairness lets the writer, which always has the next
  // batch ready, take it back again and again. Bounded: the writer never
  // waits here longer than kYieldToForwarder.
  const auto give_up = std::chrono::steady_clock::now() + kYieldToForwarder;
  while (forwarder_waiting_.load(std::memory_order_acquire) > 0 && std::chrono::steady_clock::now() < give_up)
    std::this_thread::yield();
  std::lock_guard<std::timed_mutex> lock(mu_);
  const PublishRows publish{*this};
  auto res = append_locked(records);
  if (res || res.status().code() != Status::Code::kFull) {
    if (res && cap_ < opts_.max_bytes) maybe_lift_cap();
    return res;
  }
  // The filesystem is full. Deleting rows frees pages inside the file, not
  // on the filesystem, and every write (deletes too) needs WAL space. So:
  // give back the reserve (it pays for the deletes and the checkpoint), and
  // from now on keep the rows under 90 % of what fitted, so new rows reuse
  // the pages old ones leave and neither file has to grow. The overflow
  // policy decides which rows make way, as for the cap.
  release_reserve();
  // Never below 1 MiB (the smallest max_bytes): a full disk with few rows
  // buffered is the WAL's or another file's doing, not the rows'.
  cap_ = std::min(cap_, std::max<std::uint64_t>(bytes_ - bytes_ / 10, kMinLearnedCap));
  std::size_t dropped_oldest = 0;
  if (opts_.overflow == Overflow::kDropOldest) {
    if (auto dropped = drop_to_cap()) {
      dropped_oldest = *dropped;
      dropped_oldest_total_ += dropped_oldest;
      dropped_disk_full_total_ += dropped_oldest;
    }
  }
  (void)exec(sql::kCheckpointRestart);
  res = append_locked(records);
  if (res) {
    res->dropped_oldest += dropped_oldest;
    res->dropped_disk_full += dropped_oldest;
    return res;
  }
  if (res.status().code() != Status::Code::kFull) {
    // Not a full disk any more: the caller retries the batch; the rows
    // already dropped are reported with the next append.
    unreported_oldest_ += dropped_oldest;
    return res;
  }
  // No room at all: the batch is refused, counted, never given a seq.
  AppendResult refused;
  refused.dropped_newest = records.size();
  refused.dropped_oldest = dropped_oldest;
  refused.dropped_disk_full = records.size() + dropped_oldest;
  dropped_newest_total_ += records.size();
  dropped_disk_full_total_ += records.size();
  return refused;
}

void SqliteBuffer::maybe_lift_cap() {
  // Space is back when the reserve can be taken again: then the configured
  // cap applies again (and a full filesystem is learnt anew).
  if (std::chrono::steady_clock::now() < next_reserve_try_) return;
  next_reserve_try_ = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  // Only with as much again left free after it, or taking it would be what
  // fills the disk next.
  const std::string dir = std::filesystem::path(opts_.path).parent_path().string();
  struct statvfs fs;
  if (::statvfs(dir.empty() ? "." : dir.c_str(), &fs) != 0 ||
      static_cast<std::uint64_t>(fs.f_bavail) * fs.f_frsize < 2 * static_cast<std::uint64_t>(sql::kReserveBytes))
    return;
  take_reserve();
  if (reserve_held_) cap_ = opts_.max_bytes;
}

Result<AppendResult> SqliteBuffer::append_locked(std::span<Record> records) {
  AppendResult res;
  res.dropped_oldest = res.dropped_disk_full = std::exchange(unreported_oldest_, 0);
  if (records.empty()) return res;
  const std::uint64_t saved_seq = next_seq_, saved_rows = rows_, saved_bytes = bytes_;
  const std::size_t unreported = res.dropped_oldest;
  const Declaration saved_drop = pending_drop_;
  txn_unparked_.clear();
  auto fail = [&](Status s) -> Result<AppendResult> {
    sqlite3_step(rollback_.get());
    sqlite3_reset(rollback_.get());
    next_seq_ = saved_seq;
    rows_ = saved_rows;
    bytes_ = saved_bytes;
    unreported_oldest_ = unreported;
    undo_declarations(saved_seq, saved_drop);
    return s;
  };
  int rc = sqlite3_step(begin_.get());
  sqlite3_reset(begin_.get());
  if (rc != SQLITE_DONE) return fail(error("begin", rc));

  std::uint64_t incoming = 0;
  // A record larger than the whole cap is refused below; it must not make
  // the buffer drop everything else first.
  for (const Record& r : records) {
    const std::uint64_t size = row_size(r);
    if (size <= cap_) incoming += size;
  }
  incoming = std::min(incoming, cap_);
  std::size_t cap_dropped = 0;
  if (bytes_ + incoming > cap_ && opts_.overflow == Overflow::kDropOldest) {
    auto dropped = delete_oldest(incoming, cap_ < opts_.max_bytes ? "disk_full" : "buffer_cap");
    if (!dropped) return fail(dropped.status());
    cap_dropped = *dropped;
  }
  for (const Record& r : records) {
    const std::uint64_t size = row_size(r);
    if (bytes_ + size > cap_) {
      // drop_newest, or drop_oldest with nothing left to drop: refuse it. It
      // never gets a seq, so the sequence stays gap-free.
      ++res.dropped_newest;
      continue;
    }
    rc = insert_row(next_seq_, r, size);
    if (rc != SQLITE_DONE) return fail(error("insert", rc));
    if (res.first_seq == 0) res.first_seq = next_seq_;
    res.last_seq = next_seq_;
    ++next_seq_;
    ++res.appended;
    ++rows_;
    bytes_ += size;
  }
  {
    sqlite3_stmt* s = update_next_seq_.get();
    Reset reset{s};
    sqlite3_bind_int64(s, 1, static_cast<sqlite3_int64>(next_seq_));
    rc = sqlite3_step(s);
    if (rc != SQLITE_DONE) return fail(error("update next_seq", rc));
  }
  rc = sqlite3_step(commit_.get());
  sqlite3_reset(commit_.get());
  if (rc != SQLITE_DONE) return fail(error("commit", rc));
  txn_unparked_.clear();
  res.dropped_oldest += cap_dropped;
  dropped_oldest_total_ += cap_dropped;
  dropped_newest_total_ += res.dropped_newest;
  if (cap_ < opts_.max_bytes) {
    // Under a cap learned from a full filesystem: these drops are its.
    res.dropped_disk_full += cap_dropped + res.dropped_newest;
    dropped_disk_full_total_ += cap_dropped + res.dropped_newest;
  }
  return res;
}

Status SqliteBuffer::read_row(sqlite3_stmt* s, StoredRecord& out) {
  out.seq = static_cast<std::uint64_t>(sqlite3_column_int64(s, 0));
  out.rec.stream = static_cast<Stream>(sqlite3_column_int(s, 1));
  assign_text(out.rec.key, s, 2);
  out.rec.ts_us = sqlite3_column_int64(s, 3);
  assign_text(out.rec.source, s, 4);
  assign_text(out.rec.schema, s, 5);
  assign_text(out.rec.value, s, 6);
  assign_text(out.rec.error, s, 7);
  return Status::ok();
}

Status SqliteBuffer::claim_after(std::uint64_t after, std::size_t max_rows, Claimed& out, std::uint64_t& hwm,
                                 bool live, std::uint64_t upto) {
  if (max_rows == 0) return Status::ok();
  sqlite3_stmt* s = select_after_.get();
  Reset reset{s};
  sqlite3_bind_int64(s, 1, static_cast<sqlite3_int64>(after));
  // The backlog cursor passes over rows the live side took: ask for as many
  // more as there may be.
  const std::size_t ask = (live ? max_rows : max_rows + live_claimed_.size()) + parked_.size();
  sqlite3_bind_int64(s, 2, static_cast<sqlite3_int64>(ask));
  std::size_t got = 0;
  int rc;
  while (got < max_rows && (rc = sqlite3_step(s)) == SQLITE_ROW) {
    const auto seq = static_cast<std::uint64_t>(sqlite3_column_int64(s, 0));
    if (seq > upto) break;
    hwm = seq;
    if (!live && live_claimed_.erase(seq)) continue;
    if (!parked_.empty() && parked_.contains(seq)) continue;
    StoredRecord& r = out.next();
    (void)read_row(s, r);
    in_flight_.emplace(seq, row_size(r.rec));
    if (live) live_claimed_.insert(seq);
    ++got;
  }
  if (got < max_rows && rc != SQLITE_DONE && rc != SQLITE_ROW) return error("read rows", rc);
  if (!live) live_claimed_.erase(live_claimed_.begin(), live_claimed_.upper_bound(hwm));
  return Status::ok();
}

Status SqliteBuffer::claim_released(std::size_t max_rows, Claimed& out, std::uint64_t mark, std::size_t* backlog) {
  while (out.size() < max_rows && !released_.empty()) {
    const std::uint64_t seq = *released_.begin();
    released_.erase(released_.begin());
    sqlite3_stmt* s = select_one_.get();
    Reset reset{s};
    sqlite3_bind_int64(s, 1, static_cast<sqlite3_int64>(seq));
    const int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) continue;  // acked or dropped meanwhile
    if (rc != SQLITE_ROW) {
      released_.insert(seq);
      return error("read released row", rc);
    }
    StoredRecord& r = out.next();
    (void)read_row(s, r);
    in_flight_.emplace(seq, row_size(r.rec));
    if (backlog && seq <= mark) ++*backlog;
  }
  return Status::ok();
}

Status SqliteBuffer::claim(std::size_t max_rows, std::vector<StoredRecord>& records) {
  const ForwarderTurn turn{*this};
  const PublishRows publish{*this};
  if (Status s = reload_parked(); !s) return s;
  Claimed out{records};
  // Released rows first, oldest first.
  if (Status s = claim_released(max_rows, out); !s) return s;
  if (out.size() >= max_rows) return Status::ok();
  const std::size_t room = max_rows - out.size();
  if (opts_.replay == Replay::kLiveFirst) {
    // A backlog: more unclaimed rows than a few claims take. Then the newest
    // rows (up to half a claim) go first, in seq order; the backlog cursor
    // takes the rest of the claim and later passes over what live took.
    const std::uint64_t unclaimed = rows_ - std::min<std::uint64_t>(rows_, in_flight_.size() + released_.size());
    if (unclaimed > 4 * max_rows) {
      const std::size_t k = std::max<std::size_t>(1, room / 2);
      const std::uint64_t newest_from = next_seq_ > k + 1 ? next_seq_ - 1 - k : 0;
      if (Status s = claim_after(std::max({live_hwm_, claimed_hwm_, newest_from}), k, out, live_hwm_, true); !s)
        return s;
    }
  }
  return claim_after(claimed_hwm_, max_rows - out.size(), out, claimed_hwm_, false);
}

Status SqliteBuffer::claim_paced(std::uint64_t mark, std::size_t max_rows, std::size_t backlog_rows,
                                 std::vector<StoredRecord>& records, PacedClaim& paced) {
  const ForwarderTurn turn{*this};
  const PublishRows publish{*this};
  if (Status s = reload_parked(); !s) return s;
  Claimed out{records};
  paced = PacedClaim{};
  if (Status s = claim_released(max_rows, out, mark, &paced.backlog); !s) return s;
  // Live rows: the live side of Replay::kLiveFirst, from the mark on; the
  // backlog cursor passes over them once it gets past the mark.
  if (out.size() < max_rows) {
    if (Status s = claim_after(std::max({live_hwm_, claimed_hwm_, mark}), max_rows - out.size(), out, live_hwm_, true);
        !s)
      return s;
  }
  if (paced.backlog >= backlog_rows || out.size() >= max_rows) return Status::ok();
  const std::size_t before = out.size();
  const std::size_t ask = std::min(backlog_rows - paced.backlog, max_rows - out.size());
  if (Status s = claim_after(claimed_hwm_, ask, out, claimed_hwm_, false, mark); !s) return s;
  const std::size_t got = out.size() - before;
  paced.backlog += got;
  paced.backlog_empty = got < ask;
  return Status::ok();
}

Status SqliteBuffer::ack(std::span<const std::uint64_t> seqs) {
  const ForwarderTurn turn{*this};
  if (seqs.empty()) return Status::ok();
  const PublishRows publish{*this};
  Status s = ack_locked(seqs);
  if (s.code() == Status::Code::kFull) {
    release_reserve();
    (void)exec(sql::kCheckpointRestart);
    s = ack_locked(seqs);
  }
  return s;
}

Status SqliteBuffer::ack_locked(std::span<const std::uint64_t> seqs) {
  int rc = sqlite3_step(begin_.get());
  sqlite3_reset(begin_.get());
  if (rc != SQLITE_DONE) return error("begin", rc);
  std::uint64_t freed = 0, deleted = 0;
  // In-flight rows exist (only an ack deletes them) and their sizes were
  // noted at claim: runs of consecutive in-flight seqs go in one range
  // delete each, without reading anything back. Any other seq (acked after
  // a release, say) is deleted on its own and reports its size.
  sorted_acks_.assign(seqs.begin(), seqs.end());
  std::sort(sorted_acks_.begin(), sorted_acks_.end());
  sorted_acks_.erase(std::unique(sorted_acks_.begin(), sorted_acks_.end()), sorted_acks_.end());
  for (std::size_t i = 0; i < sorted_acks_.size();) {
    auto it = in_flight_.find(sorted_acks_[i]);
    if (it == in_flight_.end()) {
      std::uint64_t size = 0;
      rc = delete_row(sorted_acks_[i], size);
      if (rc == SQLITE_DONE && size > 0) {
        freed += size;
        ++deleted;
      }
      ++i;
    } else {
      std::size_t j = i;
      // std::map iterates in seq order: a run continues while the next
      // acked seq is also the next in-flight one and consecutive.
      while (j < sorted_acks_.size() && it != in_flight_.end() && it->first == sorted_acks_[j] &&
             (j == i || sorted_acks_[j] == sorted_acks_[j - 1] + 1)) {
        freed += it->second;
        ++deleted;
        ++it;
        ++j;
      }
      rc = delete_range(sorted_acks_[i], sorted_acks_[j - 1]);
      i = j;
    }
    if (rc != SQLITE_DONE) {
      Status s = error("delete acknowledged row", rc);
      sqlite3_step(rollback_.get());
      sqlite3_reset(rollback_.get());
      return s;
    }
  }
  rc = sqlite3_step(commit_.get());
  sqlite3_reset(commit_.get());
  if (rc != SQLITE_DONE) {
    Status s = error("commit", rc);
    sqlite3_step(rollback_.get());
    sqlite3_reset(rollback_.get());
    return s;
  }
  bytes_ -= std::min(bytes_, freed);
  rows_ -= std::min(rows_, deleted);
  for (std::uint64_t seq : seqs) {
    in_flight_.erase(seq);
    released_.erase(seq);
  }
  if (!event_rows_.empty())
    for (std::uint64_t seq : seqs) event_rows_.erase(seq);
  return Status::ok();
}

Status SqliteBuffer::park(std::uint64_t seq, const std::string& code, const std::string& reason) {
  const ForwarderTurn turn{*this};
  const PublishRows publish{*this};
  auto it = in_flight_.find(seq);
  if (it == in_flight_.end()) return Status::not_found("seq " + std::to_string(seq) + " is not in flight");
  const std::uint64_t saved_rows = rows_, saved_bytes = bytes_, saved_seq = next_seq_;
  const Declaration saved_park = pending_park_;
  int rc = sqlite3_step(begin_.get());
  sqlite3_reset(begin_.get());
  if (rc != SQLITE_DONE) return error("begin", rc);
  {
    sqlite3_stmt* s = park_.get();
    Reset reset{s};
    sqlite3_bind_int64(s, 1, static_cast<sqlite3_int64>(seq));
    bind_text(s, 2, reason);
    sqlite3_bind_int64(s, 3, wall_us());
    rc = sqlite3_step(s);
  }
  if (rc == SQLITE_DONE) rc = declare(pending_park_, "parked", code, seq, seq, 1);
  if (rc == SQLITE_DONE) rc = sqlite3_step(commit_.get());
  sqlite3_reset(commit_.get());
  if (rc != SQLITE_DONE) {
    Status s = error("park a row", rc);
    sqlite3_step(rollback_.get());
    sqlite3_reset(rollback_.get());
    rows_ = saved_rows;
    bytes_ = saved_bytes;
    next_seq_ = saved_seq;
    event_rows_.erase(event_rows_.lower_bound(saved_seq), event_rows_.end());
    pending_park_ = saved_park;
    return s;
  }
  in_flight_.erase(it);
  parked_.insert(seq);
  return Status::ok();
}

Status SqliteBuffer::unpark_locked(std::span<const std::uint64_t> seqs, std::size_t& n) {
  n = 0;
  std::vector<std::uint64_t> which(seqs.begin(), seqs.end());
  if (which.empty()) which.assign(parked_.begin(), parked_.end());
  std::erase_if(which, [&](std::uint64_t seq) { return !parked_.contains(seq); });
  if (which.empty()) return Status::ok();
  int rc = sqlite3_step(begin_.get());
  sqlite3_reset(begin_.get());
  if (rc != SQLITE_DONE) return error("begin", rc);
  for (std::uint64_t seq : which) {
    sqlite3_stmt* u = unpark_one_.get();
    Reset reset{u};
    sqlite3_bind_int64(u, 1, static_cast<sqlite3_int64>(seq));
    if ((rc = sqlite3_step(u)) != SQLITE_DONE) break;
  }
  if (rc == SQLITE_DONE) rc = sqlite3_step(commit_.get());
  sqlite3_reset(commit_.get());
  if (rc != SQLITE_DONE) {
    Status s = error("unpark rows", rc);
    sqlite3_step(rollback_.get());
    sqlite3_reset(rollback_.get());
    return s;
  }
  for (std::uint64_t seq : which) {
    parked_.erase(seq);
    if (seq <= claimed_hwm_) released_.insert(seq);
  }
  n = which.size();
  return Status::ok();
}

Result<std::size_t> SqliteBuffer::unpark(std::span<const std::uint64_t> seqs) {
  const ForwarderTurn turn{*this};
  const PublishRows publish{*this};
  std::size_t n = 0;
  if (Status s = unpark_locked(seqs, n); !s) return s;
  return n;
}

namespace {

// A buffer file opened by another process than the vane that may hold it.
Result<SqliteBuffer::Db> open_file(const std::string& path, int flags) {
  struct stat sb;
  if (::stat(path.c_str(), &sb) != 0)
    return Status::not_found(path + ": cannot read buffer: " + std::strerror(errno));
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  SqliteBuffer::Db db(raw);
  if (rc != SQLITE_OK)
    return Status::io_error(path + ": cannot open buffer: " + (raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
  sqlite3_busy_timeout(db.get(), 5000);
  return db;
}

// Whether the file is a vane buffer (its rows and meta tables), and whether
// it has the parked table (older buffers do not).
Result<bool> has_parked_table(sqlite3* db, const std::string& path) {
  sqlite3_stmt* s = nullptr;
  int rc = sqlite3_prepare_v2(db, "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('rows', 'meta', 'parked');",
                              -1, &s, nullptr);
  SqliteBuffer::Stmt owner(s);
  if (rc != SQLITE_OK) return Status::io_error(path + ": not a vane buffer: " + sqlite3_errmsg(db));
  int found = 0;
  bool parked = false;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    const std::string name = column_text(s, 0);
    parked |= name == "parked";
    ++found;
  }
  if (rc != SQLITE_DONE) return Status::io_error(path + ": not a vane buffer: " + sqlite3_errmsg(db));
  if (found - (parked ? 1 : 0) < 2) return Status::io_error(path + ": not a vane buffer (no rows and meta tables)");
  return parked;
}

}  // namespace

Result<std::size_t> SqliteBuffer::unpark_file(const std::string& path, std::span<const std::uint64_t> seqs) {
  auto db = open_file(path, SQLITE_OPEN_READWRITE);
  if (!db) return db.status();
  sqlite3* d = db.value().get();
  auto parked = has_parked_table(d, path);
  if (!parked) return parked.status();
  if (!*parked) return std::size_t{0};
  std::string sql = "DELETE FROM parked";
  if (!seqs.empty()) {
    sql += " WHERE seq IN (";
    for (std::size_t i = 0; i < seqs.size(); ++i) sql += (i ? "," : "") + std::to_string(seqs[i]);
    sql += ")";
  }
  sql += ";";
  char* err = nullptr;
  if (sqlite3_exec(d, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = path + ": cannot unpark rows: " + (err ? err : sqlite3_errmsg(d));
    sqlite3_free(err);
    return Status::io_error(msg);
  }
  return static_cast<std::size_t>(sqlite3_changes(d));
}

Result<std::vector<ParkedRow>> SqliteBuffer::parked_rows(const std::string& path, std::size_t limit) {
  auto db = open_file(path, SQLITE_OPEN_READONLY);
  if (!db) return db.status();
  sqlite3* d = db.value().get();
  std::vector<ParkedRow> out;
  auto parked = has_parked_table(d, path);
  if (!parked) return parked.status();
  if (!*parked) return out;
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(d, sql::kParkedRows, -1, &s, nullptr) != SQLITE_OK)
    return Status::io_error(path + ": " + sqlite3_errmsg(d));
  Stmt owner(s);
  sqlite3_bind_int64(s, 1, static_cast<sqlite3_int64>(limit));
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW)
    out.push_back({static_cast<std::uint64_t>(sqlite3_column_int64(s, 0)), column_text(s, 1), sqlite3_column_int64(s, 2)});
  if (rc != SQLITE_DONE) return Status::io_error(path + ": " + sqlite3_errmsg(d));
  return out;
}

Status SqliteBuffer::dead_letter(std::uint64_t seq, const std::string& error, std::size_t max_value) {
  const ForwarderTurn turn{*this};
  auto it = in_flight_.find(seq);
  if (it == in_flight_.end()) return Status::not_found("seq " + std::to_string(seq) + " is not in flight");
  sqlite3_stmt* s = dead_letter_.get();
  Reset reset{s};
  sqlite3_bind_int64(s, 1, static_cast<sqlite3_int64>(seq));
  sqlite3_bind_text(s, 2, error.data(), static_cast<int>(error.size()), SQLITE_TRANSIENT);
  sqlite3_bind_int64(s, 3, static_cast<sqlite3_int64>(max_value));
  const int rc = sqlite3_step(s);
  if (rc == SQLITE_DONE) return Status::not_found("seq " + std::to_string(seq) + " is no telemetry row");
  if (rc != SQLITE_ROW) return this->error("re-route a row to the dead-letter topic", rc);
  const auto size = static_cast<std::uint64_t>(sqlite3_column_int64(s, 0));
  bytes_ = bytes_ - std::min(bytes_, it->second) + size;  // an UPDATE outside BEGIN commits by itself
  it->second = size;
  return Status::ok();
}

void SqliteBuffer::release(std::span<const std::uint64_t> seqs) {
  std::lock_guard<std::timed_mutex> lock(mu_);
  for (std::uint64_t seq : seqs) {
    if (in_flight_.erase(seq)) released_.insert(seq);  // its size is read again when re-claimed
  }
}

BufferStats SqliteBuffer::stats() {
  std::lock_guard<std::timed_mutex> lock(mu_);
  return stats_locked();
}

std::optional<BufferStats> SqliteBuffer::try_stats(std::chrono::milliseconds wait) {
  std::unique_lock<std::timed_mutex> lock(mu_, std::defer_lock);
  if (!lock.try_lock_for(wait)) return std::nullopt;
  return stats_locked();
}

BufferStats SqliteBuffer::stats_locked() {
  BufferStats st;
  st.rows = rows_;
  st.bytes = bytes_;
  st.in_flight = in_flight_.size();
  st.next_seq = next_seq_;
  st.dropped_oldest_total = dropped_oldest_total_;
  st.dropped_newest_total = dropped_newest_total_;
  st.dropped_disk_full_total = dropped_disk_full_total_;
  st.parked = parked_.size();
  st.file_bytes = file_size(opts_.path) + file_size(opts_.path + "-wal");
  if (rows_ > 0) {
    sqlite3_stmt* s = oldest_.get();
    Reset reset{s};
    if (sqlite3_step(s) == SQLITE_ROW) {
      st.oldest_seq = static_cast<std::uint64_t>(sqlite3_column_int64(s, 0));
      st.oldest_ts_us = sqlite3_column_int64(s, 1);
    }
  }
  return st;
}

Result<BufferStats> SqliteBuffer::inspect(const std::string& path) {
  struct stat sb;
  if (::stat(path.c_str(), &sb) != 0)
    return Status::not_found(path + ": cannot read buffer: " + std::strerror(errno));
  sqlite3* raw = nullptr;
  // Read-write without CREATE: a reader of a WAL database may need to create
  // the -shm index; it never creates the database itself.
  int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE, nullptr);
  if (rc != SQLITE_OK) {
    sqlite3_close_v2(raw);
    raw = nullptr;
    rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READONLY, nullptr);
  }
  Db db(raw);
  if (rc != SQLITE_OK)
    return Status::io_error(path + ": cannot open buffer: " + (raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
  sqlite3_busy_timeout(db.get(), 5000);
  BufferStats st;
  auto query = [&](const char* text, auto&& on_row) -> Status {
    sqlite3_stmt* s = nullptr;
    int r = sqlite3_prepare_v2(db.get(), text, -1, &s, nullptr);
    Stmt owner(s);
    if (r != SQLITE_OK)
      return Status::io_error(path + ": not a vane buffer: " + sqlite3_errmsg(db.get()));
    while ((r = sqlite3_step(s)) == SQLITE_ROW) on_row(s);
    if (r != SQLITE_DONE) return Status::io_error(path + ": " + sqlite3_errmsg(db.get()));
    return Status::ok();
  };
  Status s = query(sql::kTotals, [&](sqlite3_stmt* q) {
    st.rows = static_cast<std::uint64_t>(sqlite3_column_int64(q, 0));
    st.bytes = static_cast<std::uint64_t>(sqlite3_column_int64(q, 1));
  });
  if (!s) return s;
  s = query(sql::kOldest, [&](sqlite3_stmt* q) {
    st.oldest_seq = static_cast<std::uint64_t>(sqlite3_column_int64(q, 0));
    st.oldest_ts_us = sqlite3_column_int64(q, 1);
  });
  if (!s) return s;
  s = query("SELECT value FROM meta WHERE key = 'next_seq';", [&](sqlite3_stmt* q) {
    st.next_seq = static_cast<std::uint64_t>(sqlite3_column_int64(q, 0));
  });
  if (!s) return s;
  if (auto parked = has_parked_table(db.get(), path); parked && *parked)
    (void)query(sql::kParkedCount, [&](sqlite3_stmt* q) { st.parked = static_cast<std::uint64_t>(sqlite3_column_int64(q, 0)); });
  st.file_bytes = file_size(path) + file_size(path + "-wal");
  return st;
}

}  // namespace vane
