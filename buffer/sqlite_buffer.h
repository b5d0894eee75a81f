// The Buffer on SQLite: one database file in WAL mode, one connection
// serialised by a mutex, prepared statements cached, one transaction per
// append / ack batch. See buffer.h for the contract.
#pragma once

#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <condition_variable>

#include "buffer/buffer.h"

namespace vane {

struct SqliteBufferOptions {
  std::string path;
  std::uint64_t max_bytes = 1ULL << 30;
  Overflow overflow = Overflow::kDropOldest;
  SyncLevel sync = SyncLevel::kNormal;
  Replay replay = Replay::kFifo;
  // Limits the database file to this many pages (PRAGMA max_page_count); a
  // write past it fails as on a full disk. 0: no limit. For tests.
  std::uint64_t max_pages = 0;
  // Names the gateway in the event rows the buffer writes (declared drops,
  // quarantines, parked rows): their key and their "gateway" field.
  std::string gateway;
};

// What open() did with a buffer file it could not use (corrupt, truncated,
// not a vane buffer, another format version): moved aside, not deleted.
struct Quarantine {
  std::string moved_to;       // the file's new name; empty: nothing was quarantined
  std::string reason;         // why the file was unusable
  std::uint64_t salvaged = 0;  // rows read back from it into the fresh buffer
  std::uint64_t next_seq_from = 0;  // where its sequence stopped, when its meta was readable
};

class SqliteBuffer final : public Buffer {
 public:
  // Opens or creates the buffer. A file that cannot be used as a buffer (bad
  // header, corrupt pages failing PRAGMA quick_check, another format) is
  // renamed PATH.corrupt-<UTC time> with its WAL, a fresh buffer is created,
  // and every row still readable from the old file is copied in with its seq
  // (see quarantine()). An unwritable path gives a Status naming it. One
  // process at a time: a second open of the same path fails while the first
  // holds its lock file (PATH.lock), since two writers would hand out the
  // same seqs.
  static Result<std::unique_ptr<SqliteBuffer>> open(const SqliteBufferOptions& opts);
  // Read-only inspection of a buffer file (e.g. while vane runs); never
  // creates the file.
  static Result<BufferStats> inspect(const std::string& path);

  ~SqliteBuffer() override;

  Result<AppendResult> append(std::span<Record> records) override;
  Status claim(std::size_t max_rows, std::vector<StoredRecord>& out) override;
  Status claim_paced(std::uint64_t mark, std::size_t max_rows, std::size_t backlog_rows, std::vector<StoredRecord>& out,
                     PacedClaim& paced) override;
  Status ack(std::span<const std::uint64_t> seqs) override;
  void release(std::span<const std::uint64_t> seqs) override;
  Status dead_letter(std::uint64_t seq, const std::string& error, std::size_t max_value) override;
  Status park(std::uint64_t seq, const std::string& code, const std::string& reason) override;
  std::uint64_t parked_now() const override { return parked_published_.load(std::memory_order_relaxed); }
  // Returns parked rows to the queue: those in `seqs`, or all when empty.
  // How many were parked.
  Result<std::size_t> unpark(std::span<const std::uint64_t> seqs);
  // The same on a buffer file, also while a vane holds it: that vane sees the
  // change within a second (it watches the file's data_version) and claims
  // the rows again.
  static Result<std::size_t> unpark_file(const std::string& path, std::span<const std::uint64_t> seqs);
  // Up to `limit` parked rows of a buffer file, oldest first (read-only).
  static Result<std::vector<ParkedRow>> parked_rows(const std::string& path, std::size_t limit);
  BufferStats stats() override;
  std::optional<BufferStats> try_stats(std::chrono::milliseconds wait) override;
  std::uint64_t rows_now() const override { return rows_published_.load(std::memory_order_relaxed); }
  const Quarantine& quarantine() const { return quarantine_; }

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
  Status lock();
  // Opens the database; `unusable` tells a bad file from a bad environment.
  Status init(bool& unusable);
  void close_db();
  void start_checkpointer();
  void stop_checkpointer();
  Status quarantine_and_reopen(const std::string& reason);
  void salvage(const std::string& from);
  Result<AppendResult> append_locked(std::span<Record> records);
  Status ack_locked(std::span<const std::uint64_t> seqs);
  // Deletes oldest droppable rows, in a transaction of its own, until the
  // rows fit under cap_.
  Result<std::size_t> drop_to_cap();
  void maybe_lift_cap();
  bool droppable(std::uint64_t seq) const;
  // PATH.reserve (sql::kReserveBytes): taken while the filesystem has room,
  // given back when it is full so rows can still be deleted.
  void take_reserve();
  // A write failed with SQLITE_FULL: gives the reserve back (once).
  void release_reserve();
  BufferStats stats_locked();
  // Publishes rows_ for rows_now() when a public operation ends.
  struct PublishRows {
    SqliteBuffer& b;
    ~PublishRows() {
      b.rows_published_.store(b.rows_, std::memory_order_relaxed);
      b.parked_published_.store(b.parked_.size(), std::memory_order_relaxed);
    }
  };
  // Claims up to max_rows rows after `after` in seq order, moving `hwm`.
  // live: the live side of Replay::kLiveFirst (remembers what it took);
  // else the backlog cursor (passes over what the live side took).
  // A claim's output: fills the caller's records from the first, reusing
  // their strings' storage, and cuts the vector to what was filled.
  struct Claimed {
    std::vector<StoredRecord>& records;
    std::size_t n = 0;
    explicit Claimed(std::vector<StoredRecord>& r) : records(r) {}
    ~Claimed() { records.resize(n); }
    Claimed(const Claimed&) = delete;
    Claimed& operator=(const Claimed&) = delete;
    StoredRecord& next() {
      if (n == records.size()) records.emplace_back();
      return records[n++];
    }
    std::size_t size() const { return n; }
  };
  // Stops before rows above `upto` (the paced backlog's mark).
  Status claim_after(std::uint64_t after, std::size_t max_rows, Claimed& out, std::uint64_t& hwm, bool live,
                     std::uint64_t upto = UINT64_MAX);
  // Released rows, oldest first, up to max_rows; `backlog` counts those at or below `mark`.
  Status claim_released(std::size_t max_rows, Claimed& out, std::uint64_t mark = 0, std::size_t* backlog = nullptr);
  Status exec(const char* sql);
  Status error(const char* what, int rc) const;
  Status read_row(sqlite3_stmt* s, StoredRecord& out);
  // Deletes one row; `size` is its accounted size, 0 when it was not there.
  // Returns the SQLite result code (SQLITE_DONE on success).
  int delete_row(std::uint64_t seq, std::uint64_t& size);
  // Deletes seqs first..last (rows whose sizes are known).
  int delete_range(std::uint64_t first, std::uint64_t last);
  // Deletes the oldest droppable rows, inside the caller's transaction, until
  // `need` more bytes fit under cap_ (or nothing droppable is left); returns
  // how many.
  // The drops are declared (declare()) with `reason`.
  Result<std::size_t> delete_oldest(std::uint64_t need, const char* reason);
  // An event row declaring something about the seq space, written inside
  // the caller's transaction. While the last declaration of the same kind
  // and reason is not claimed yet and `first` follows it, it is extended in
  // place (a long outage at the cap is one event, not one per append).
  struct Declaration {
    std::uint64_t seq = 0;  // its row; 0: none pending
    std::string event, reason;
    std::uint64_t first = 0, last = 0, count = 0;
    std::uint64_t size = 0;  // its row's accounted size
  };
  int declare(Declaration& d, const char* event, const std::string& reason, std::uint64_t first, std::uint64_t last,
              std::uint64_t count);
  // Writes an event row with the next seq (and the new next_seq meta).
  int insert_event(const std::string& value, std::uint64_t& seq, std::uint64_t* size_out = nullptr);
  // One INSERT of `r` under `seq` (the caller's transaction); SQLite's code.
  int insert_row(std::uint64_t seq, const Record& r, std::uint64_t size);
  bool unclaimed(std::uint64_t seq) const;
  // After a rollback: forgets event rows with seqs from first_new_seq on,
  // restores the drop declaration and the parked rows the transaction dropped.
  void undo_declarations(std::uint64_t first_new_seq, const Declaration& saved);
  static constexpr std::uint64_t kEventReserve = 256;  // room a declaration's row takes, besides the gateway id
  // Parked rows somebody unparked from another connection go back to the
  // queue (checked at most once a second, only while rows are parked).
  Status reload_parked();
  Status load_parked();
  Status unpark_locked(std::span<const std::uint64_t> seqs, std::size_t& n);

  SqliteBufferOptions opts_;
  int lock_fd_ = -1;  // flock'ed PATH.lock, held for the buffer's lifetime
  std::timed_mutex mu_;
  // Claims and acks (the forwarder) waiting for mu_: append() lets them go
  // first, for at most kYieldToForwarder.
  std::atomic<int> forwarder_waiting_{0};
  static constexpr std::chrono::milliseconds kYieldToForwarder{20};
  struct ForwarderTurn {
    SqliteBuffer& b;
    std::unique_lock<std::timed_mutex> lock;
    explicit ForwarderTurn(SqliteBuffer& buf) : b(buf), lock(buf.mu_, std::defer_lock) {
      b.forwarder_waiting_.fetch_add(1, std::memory_order_acq_rel);
      lock.lock();
      b.forwarder_waiting_.fetch_sub(1, std::memory_order_acq_rel);
    }
  };
  // Everything below is guarded by mu_.
  Db db_;
  Stmt insert_, delete_, delete_range_, select_after_, select_one_, oldest_after_, update_next_seq_, begin_, commit_,
      rollback_, oldest_, dead_letter_, park_, unpark_one_, update_value_, data_version_;
  std::uint64_t next_seq_ = 1;
  std::uint64_t rows_ = 0;
  std::atomic<std::uint64_t> rows_published_{0};  // rows_ after the last operation
  std::uint64_t bytes_ = 0;
  std::uint64_t claimed_hwm_ = 0;      // every row <= this was claimed at some point since open
  std::vector<std::uint64_t> sorted_acks_;  // ack_locked's scratch
  std::map<std::uint64_t, std::uint64_t> in_flight_;  // claimed, not acked or released: seq -> row size  // claimed, not acked or released
  std::set<std::uint64_t> released_;   // <= claimed_hwm_, claimable again
  std::uint64_t dropped_oldest_total_ = 0;
  std::uint64_t dropped_newest_total_ = 0;
  std::uint64_t dropped_disk_full_total_ = 0;
  bool reserve_held_ = false;
  // max_bytes, or lower once a full filesystem showed how much fits.
  std::uint64_t cap_ = 0;
  static constexpr std::uint64_t kMinLearnedCap = 1 << 20;
  std::chrono::steady_clock::time_point next_reserve_try_{};
  std::size_t unreported_oldest_ = 0;  // disk-full drops not yet in an AppendResult
  // Replay::kLiveFirst: the newest row the live side claimed, and the rows
  // it claimed above claimed_hwm_ (the backlog cursor passes over them).
  std::uint64_t live_hwm_ = 0;
  std::set<std::uint64_t> live_claimed_;
  Quarantine quarantine_;
  // The background checkpointer (start_checkpointer) and its own connection.
  std::thread checkpointer_;
  std::mutex checkpoint_mu_;
  std::condition_variable checkpoint_cv_;
  bool checkpoint_stop_ = false;
  static constexpr std::chrono::milliseconds kCheckpointEvery{100};
  Declaration pending_drop_, pending_park_;
  std::set<std::uint64_t> event_rows_;  // seqs of buffered event rows (never dropped)
  std::set<std::uint64_t> parked_;      // kept out of claims; mirrors the parked table
  std::vector<std::uint64_t> txn_unparked_;  // parked rows the running transaction dropped
  std::atomic<std::uint64_t> parked_published_{0};
  std::int64_t data_version_seen_ = -1;
  std::chrono::steady_clock::time_point next_parked_check_{};
};

}  // namespace vane
