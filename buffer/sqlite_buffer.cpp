#include "buffer/sqlite_buffer.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

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

std::string column_text(sqlite3_stmt* s, int i) {
  const auto* p = static_cast<const char*>(sqlite3_column_blob(s, i));
  return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(s, i))) : std::string();
}

}  // namespace

SqliteBuffer::~SqliteBuffer() {
  std::lock_guard<std::mutex> lock(mu_);
  // Statements first: sqlite3_close_v2 would otherwise defer the close.
  insert_.reset();
  delete_.reset();
  select_after_.reset();
  select_one_.reset();
  oldest_after_.reset();
  update_next_seq_.reset();
  begin_.reset();
  commit_.reset();
  rollback_.reset();
  oldest_.reset();
  db_.reset();
  if (lock_fd_ >= 0) close(lock_fd_);
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
  Status s = b->init();
  if (!s) return s;
  return b;
}

Status SqliteBuffer::init() {
  const std::string lock_path = opts_.path + ".lock";
  lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd_ < 0) return Status::io_error(lock_path + ": cannot create lock file: " + std::strerror(errno));
  if (flock(lock_fd_, LOCK_EX | LOCK_NB) != 0)
    return Status::busy(opts_.path + ": buffer is in use by another vane process");
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
  if (Status s = exec(sql::kPragmas); !s) return Status::io_error(s.message() + " (is this a vane buffer?)");
  const char* sync = opts_.sync == SyncLevel::kOff ? sql::kSyncOff
                     : opts_.sync == SyncLevel::kFull ? sql::kSyncFull
                                                      : sql::kSyncNormal;
  if (Status s = exec(sync); !s) return s;
  if (Status s = exec(sql::kCreate); !s) return s;

  struct Prep {
    Stmt* stmt;
    const char* sql;
  };
  const Prep preps[] = {{&insert_, sql::kInsert},          {&delete_, sql::kDelete},
                        {&select_after_, sql::kSelectAfter}, {&select_one_, sql::kSelectOne},
                        {&oldest_after_, sql::kOldestAfter}, {&update_next_seq_, sql::kUpdateNextSeq},
                        {&begin_, sql::kBegin},              {&commit_, sql::kCommit},
                        {&rollback_, sql::kRollback},        {&oldest_, sql::kOldest}};
  for (const Prep& p : preps) {
    sqlite3_stmt* s = nullptr;
    rc = sqlite3_prepare_v3(db_.get(), p.sql, -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr);
    if (rc != SQLITE_OK) return error("prepare", rc);
    p.stmt->reset(s);
  }

  // Schema version and the sequence high-water mark.
  Stmt meta;
  {
    sqlite3_stmt* s = nullptr;
    rc = sqlite3_prepare_v2(db_.get(), sql::kSelectMeta, -1, &s, nullptr);
    if (rc != SQLITE_OK) return error("prepare", rc);
    meta.reset(s);
  }
  auto read_meta = [&](const char* key, std::uint64_t& out) -> Status {
    sqlite3_reset(meta.get());
    sqlite3_bind_text(meta.get(), 1, key, -1, SQLITE_STATIC);
    const int r = sqlite3_step(meta.get());
    if (r != SQLITE_ROW) return error("read meta", r);
    out = static_cast<std::uint64_t>(sqlite3_column_int64(meta.get(), 0));
    return Status::ok();
  };
  std::uint64_t version = 0;
  if (Status s = read_meta("schema_version", version); !s) return s;
  if (version != static_cast<std::uint64_t>(sql::kSchemaVersion))
    return Status::io_error(opts_.path + ": buffer format version " + std::to_string(version) +
                            ", this vane reads version " + std::to_string(sql::kSchemaVersion));
  if (Status s = read_meta("next_seq", next_seq_); !s) return s;

  Stmt q;
  auto one_row = [&](const char* text) -> Status {
    sqlite3_stmt* s = nullptr;
    const int r = sqlite3_prepare_v2(db_.get(), text, -1, &s, nullptr);
    if (r != SQLITE_OK) return error("prepare", r);
    q.reset(s);
    const int st = sqlite3_step(s);
    if (st != SQLITE_ROW) return error("query", st);
    return Status::ok();
  };
  if (Status s = one_row(sql::kTotals); !s) return s;
  rows_ = static_cast<std::uint64_t>(sqlite3_column_int64(q.get(), 0));
  bytes_ = static_cast<std::uint64_t>(sqlite3_column_int64(q.get(), 1));
  // Defends the never-reused promise against a meta row older than the data
  // (e.g. a file edited by hand).
  if (Status s = one_row(sql::kMaxSeq); !s) return s;
  next_seq_ = std::max(next_seq_, static_cast<std::uint64_t>(sqlite3_column_int64(q.get(), 0)) + 1);
  return Status::ok();
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

Result<std::size_t> SqliteBuffer::make_room(std::uint64_t need) {
  std::size_t dropped = 0;
  while (bytes_ + need > opts_.max_bytes) {
    sqlite3_stmt* s = oldest_after_.get();
    Reset reset{s};
    sqlite3_bind_int64(s, 1, static_cast<sqlite3_int64>(claimed_hwm_));
    sqlite3_bind_int64(s, 2, 256);
    std::vector<std::uint64_t> victims;
    std::uint64_t freed = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      if (bytes_ - freed + need <= opts_.max_bytes) break;
      victims.push_back(static_cast<std::uint64_t>(sqlite3_column_int64(s, 0)));
      freed += static_cast<std::uint64_t>(sqlite3_column_int64(s, 1));
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return error("select oldest rows", rc);
    sqlite3_reset(s);
    if (victims.empty()) break;  // only in-flight rows left: nothing droppable
    for (std::uint64_t seq : victims) {
      std::uint64_t size = 0;
      rc = delete_row(seq, size);
      if (rc != SQLITE_DONE) return error("drop oldest row", rc);
      bytes_ -= std::min(bytes_, size);
      --rows_;
      ++dropped;
    }
  }
  return dropped;
}

Result<AppendResult> SqliteBuffer::append(std::span<Record> records) {
  std::lock_guard<std::mutex> lock(mu_);
  AppendResult res;
  if (records.empty()) return res;
  const std::uint64_t saved_seq = next_seq_, saved_rows = rows_, saved_bytes = bytes_;
  auto fail = [&](Status s) -> Result<AppendResult> {
    sqlite3_step(rollback_.get());
    sqlite3_reset(rollback_.get());
    next_seq_ = saved_seq;
    rows_ = saved_rows;
    bytes_ = saved_bytes;
    return s;
  };
  int rc = sqlite3_step(begin_.get());
  sqlite3_reset(begin_.get());
  if (rc != SQLITE_DONE) return error("begin", rc);

  std::uint64_t incoming = 0;
  // A record larger than the whole cap is refused below; it must not make
  // the buffer drop everything else first.
  for (const Record& r : records) {
    const std::uint64_t size = row_size(r);
    if (size <= opts_.max_bytes) incoming += size;
  }
  incoming = std::min(incoming, opts_.max_bytes);
  if (bytes_ + incoming > opts_.max_bytes && opts_.overflow == Overflow::kDropOldest) {
    auto dropped = make_room(incoming);
    if (!dropped) return fail(dropped.status());
    res.dropped_oldest = *dropped;
  }
  for (const Record& r : records) {
    const std::uint64_t size = row_size(r);
    if (bytes_ + size > opts_.max_bytes) {
      // drop_newest, or drop_oldest with nothing left to drop: refuse it. It
      // never gets a seq, so the sequence stays gap-free.
      ++res.dropped_newest;
      continue;
    }
    sqlite3_stmt* s = insert_.get();
    Reset reset{s};
    sqlite3_bind_int64(s, 1, static_cast<sqlite3_int64>(next_seq_));
    sqlite3_bind_int(s, 2, static_cast<int>(r.stream));
    bind_text(s, 3, r.key);
    sqlite3_bind_int64(s, 4, r.ts_us);
    bind_text(s, 5, r.source);
    bind_text(s, 6, r.schema);
    sqlite3_bind_blob(s, 7, r.value.data(), static_cast<int>(r.value.size()), SQLITE_STATIC);
    bind_text(s, 8, r.error);
    sqlite3_bind_int64(s, 9, static_cast<sqlite3_int64>(size));
    rc = sqlite3_step(s);
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
  dropped_oldest_total_ += res.dropped_oldest;
  dropped_newest_total_ += res.dropped_newest;
  return res;
}

Status SqliteBuffer::read_row(sqlite3_stmt* s, StoredRecord& out) {
  out.seq = static_cast<std::uint64_t>(sqlite3_column_int64(s, 0));
  out.rec.stream = static_cast<Stream>(sqlite3_column_int(s, 1));
  out.rec.key = column_text(s, 2);
  out.rec.ts_us = sqlite3_column_int64(s, 3);
  out.rec.source = column_text(s, 4);
  out.rec.schema = column_text(s, 5);
  out.rec.value = column_text(s, 6);
  out.rec.error = column_text(s, 7);
  return Status::ok();
}

Status SqliteBuffer::claim(std::size_t max_rows, std::vector<StoredRecord>& out) {
  std::lock_guard<std::mutex> lock(mu_);
  // Released rows first, oldest first.
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
    out.emplace_back();
    (void)read_row(s, out.back());
    in_flight_.insert(seq);
  }
  if (out.size() >= max_rows) return Status::ok();
  sqlite3_stmt* s = select_after_.get();
  Reset reset{s};
  sqlite3_bind_int64(s, 1, static_cast<sqlite3_int64>(claimed_hwm_));
  sqlite3_bind_int64(s, 2, static_cast<sqlite3_int64>(max_rows - out.size()));
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    out.emplace_back();
    (void)read_row(s, out.back());
    in_flight_.insert(out.back().seq);
    claimed_hwm_ = out.back().seq;
  }
  if (rc != SQLITE_DONE) return error("read rows", rc);
  return Status::ok();
}

Status SqliteBuffer::ack(std::span<const std::uint64_t> seqs) {
  std::lock_guard<std::mutex> lock(mu_);
  if (seqs.empty()) return Status::ok();
  int rc = sqlite3_step(begin_.get());
  sqlite3_reset(begin_.get());
  if (rc != SQLITE_DONE) return error("begin", rc);
  std::uint64_t freed = 0, deleted = 0;
  for (std::uint64_t seq : seqs) {
    std::uint64_t size = 0;
    rc = delete_row(seq, size);
    if (rc == SQLITE_DONE && size > 0) {
      freed += size;
      ++deleted;
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
  return Status::ok();
}

void SqliteBuffer::release(std::span<const std::uint64_t> seqs) {
  std::lock_guard<std::mutex> lock(mu_);
  for (std::uint64_t seq : seqs) {
    if (in_flight_.erase(seq)) released_.insert(seq);
  }
}

BufferStats SqliteBuffer::stats() {
  std::lock_guard<std::mutex> lock(mu_);
  BufferStats st;
  st.rows = rows_;
  st.bytes = bytes_;
  st.in_flight = in_flight_.size();
  st.next_seq = next_seq_;
  st.dropped_oldest_total = dropped_oldest_total_;
  st.dropped_newest_total = dropped_newest_total_;
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
  st.file_bytes = file_size(path) + file_size(path + "-wal");
  return st;
}

}  // namespace vane
