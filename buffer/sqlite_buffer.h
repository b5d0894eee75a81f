// The Buffer on SQLite: one database file in WAL mode, one connection
// serialised by a mutex, prepared statements cached, one transaction per
// append / ack batch. See buffer.h for the contract.
#pragma once

#include <sqlite3.h>

#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "buffer/buffer.h"

namespace vane {

struct SqliteBufferOptions {
  std::string path;
  std::uint64_t max_bytes = 1ULL << 30;
  Overflow overflow = Overflow::kDropOldest;
  SyncLevel sync = SyncLevel::kNormal;
};

class SqliteBuffer final : public Buffer {
 public:
  // Opens or creates the buffer. An unwritable path, a file that is not a
  // vane buffer or a corrupt one gives a Status naming the path. One process
  // at a time: a second open of the same path fails while the first holds
  // its lock file (PATH.lock), since two writers would hand out the same seqs.
  static Result<std::unique_ptr<SqliteBuffer>> open(const SqliteBufferOptions& opts);
  // Read-only inspection of a buffer file (e.g. while vane runs); never
  // creates the file.
  static Result<BufferStats> inspect(const std::string& path);

  ~SqliteBuffer() override;

  Result<AppendResult> append(std::span<Record> records) override;
  Status claim(std::size_t max_rows, std::vector<StoredRecord>& out) override;
  Status ack(std::span<const std::uint64_t> seqs) override;
  void release(std::span<const std::uint64_t> seqs) override;
  BufferStats stats() override;

  struct DbCloser {
    void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
  };
  struct StmtFinalizer {
    void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
  };
  using Db = std::unique_ptr<sqlite3, DbCloser>;
  using Stmt = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

 private:
  explicit SqliteBuffer(SqliteBufferOptions opts) : opts_(std::move(opts)) {}
  Status init();
  Status exec(const char* sql);
  Status error(const char* what, int rc) const;
  Status read_row(sqlite3_stmt* s, StoredRecord& out);
  // Deletes one row; `size` is its accounted size, 0 when it was not there.
  // Returns the SQLite result code (SQLITE_DONE on success).
  int delete_row(std::uint64_t seq, std::uint64_t& size);
  // Deletes oldest droppable rows until `need` bytes fit; returns rows dropped.
  Result<std::size_t> make_room(std::uint64_t need);

  SqliteBufferOptions opts_;
  int lock_fd_ = -1;  // flock'ed PATH.lock, held for the buffer's lifetime
  std::mutex mu_;
  // Everything below is guarded by mu_.
  Db db_;
  Stmt insert_, delete_, select_after_, select_one_, oldest_after_, update_next_seq_, begin_, commit_,
      rollback_, oldest_;
  std::uint64_t next_seq_ = 1;
  std::uint64_t rows_ = 0;
  std::uint64_t bytes_ = 0;
  std::uint64_t claimed_hwm_ = 0;      // every row <= this was claimed at some point since open
  std::set<std::uint64_t> in_flight_;  // claimed, not acked or released
  std::set<std::uint64_t> released_;   // <= claimed_hwm_, claimable again
  std::uint64_t dropped_oldest_total_ = 0;
  std::uint64_t dropped_newest_total_ = 0;
};

}  // namespace vane
