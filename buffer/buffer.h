// The store-and-forward queue between ingestion and the uplink.
//
// Contract:
//  * append() assigns each record the next per-gateway sequence number when it
//    commits: strictly increasing, never reused (survives reopen, also after
//    every row was deleted), gap-free except for rows the overflow policy
//    dropped, which are counted.
//  * A record leaves the buffer only through ack() (the uplink confirmed it) or
//    the overflow policy (counted by reason).
//  * claim() hands out rows not yet claimed, oldest first, and remembers them
//    as in flight; release() makes in-flight rows claimable again (a failed
//    send). Claims are memory-only: after reopen every row is claimable again.
//  * drop_oldest never drops an in-flight row: those are with the uplink.
//  * A full filesystem (SQLITE_FULL) applies the overflow policy like the cap
//    does: drop_oldest deletes old unclaimed rows and retries, and whatever
//    still does not fit is refused; the drops are counted as disk-full drops.
//  * Every gap the buffer makes in the seq space is declared: the transaction
//    that drops rows also writes (or extends, while it is not yet claimed) an
//    event row (Stream::kEvent) naming the dropped seq range, its count and
//    reason; a quarantined file is declared the same way. Event rows are
//    never dropped themselves, so no declaration is lost to the cap.
//  * park() takes an in-flight row out of the queue for good (the uplink can
//    deliver it nowhere): it stays buffered and counted, is never claimed,
//    survives reopen, and goes back to the queue only when unparked.
//
// Thread-safety: all methods may be called from any thread; an implementation
// serialises them internally. The buffer knows nothing of Kafka.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"

namespace vane {

// Which topic a row goes to: readings, dead letters, or what the gateway
// declares about its own seq space (drops, quarantines, parked rows).
enum class Stream : std::uint8_t { kTelemetry = 0, kDeadLetter = 1, kEvent = 2 };
inline constexpr std::size_t kStreams = 3;
const char* stream_name(Stream s);  // "telemetry", "dead_letter", "event"

enum class Overflow { kDropOldest, kDropNewest };
enum class SyncLevel { kOff, kNormal, kFull };
// Which rows claim() hands out first while a backlog waits (more unclaimed
// rows than four claims take): kFifo: strictly oldest first. kLiveFirst: up
// to half of each claim are the newest unclaimed rows (in seq order), the
// rest continues the backlog in seq order; see docs/RELIABILITY.md for what
// stays ordered.
enum class Replay { kFifo, kLiveFirst };

// A record as it will be sent: the serialized Kafka value plus what the
// headers and key need.
struct Record {
  Stream stream = Stream::kTelemetry;
  std::string key;      // device id
  std::int64_t ts_us = 0;  // reading time, µs since epoch (UTC)
  std::string source;
  std::string schema;
  std::string value;    // serialized message value
  std::string error;    // dead letters: why it was rejected
};

struct StoredRecord {
  std::uint64_t seq = 0;
  Record rec;
};

struct AppendResult {
  std::uint64_t first_seq = 0;  // 0 when nothing was appended
  std::uint64_t last_seq = 0;
  std::size_t appended = 0;
  std::size_t dropped_newest = 0;  // incoming records refused (never got a seq)
  std::size_t dropped_oldest = 0;  // stored records deleted to make room
  // How many of the drops above were for a full filesystem (SQLITE_FULL)
  // rather than buffer.max_bytes.
  std::size_t dropped_disk_full = 0;
};

// What a claim_paced() took of the backlog.
struct PacedClaim {
  std::size_t backlog = 0;     // rows at or below the mark
  bool backlog_empty = false;  // the backlog cursor reached the mark: no unclaimed backlog rows are left
};

struct BufferStats {
  std::uint64_t rows = 0;
  std::uint64_t bytes = 0;          // logical size of buffered rows (what max_bytes caps)
  std::uint64_t in_flight = 0;
  std::uint64_t next_seq = 1;
  std::int64_t oldest_ts_us = 0;    // 0 when empty
  std::uint64_t oldest_seq = 0;     // 0 when empty
  std::uint64_t dropped_oldest_total = 0;  // since open
  std::uint64_t dropped_newest_total = 0;  // since open
  std::uint64_t dropped_disk_full_total = 0;  // since open; part of the two above
  std::uint64_t file_bytes = 0;     // database + WAL on disk
  std::uint64_t parked = 0;         // rows kept back by park(); part of rows
};

// One parked row, for the operator.
struct ParkedRow {
  std::uint64_t seq = 0;
  std::string reason;
  std::int64_t since_us = 0;  // when it was parked, µs since epoch
};

class Buffer {
 public:
  virtual ~Buffer() = default;
  Buffer() = default;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  // Appends all records in one transaction, applying the overflow policy.
  virtual Result<AppendResult> append(std::span<Record> records) = 0;
  // Up to max_rows claimable rows, oldest first (released rows before new
  // ones), in place of what `out` held; its elements' storage is reused.
  virtual Status claim(std::size_t max_rows, std::vector<StoredRecord>& out) = 0;
  // Paced replay (see docs/RELIABILITY.md): rows above `mark` are live,
  // rows at or below it the backlog. Released rows first (those of the
  // backlog count against backlog_rows), then up to max_rows live rows in
  // seq order, whatever buffer.replay says, then up to backlog_rows backlog
  // rows, oldest first, never past `mark`. A buffer that cannot pace claims
  // as claim() does and says the backlog is empty.
  virtual Status claim_paced(std::uint64_t mark, std::size_t max_rows, std::size_t backlog_rows,
                             std::vector<StoredRecord>& out, PacedClaim& paced) {
    (void)mark, (void)backlog_rows;
    paced = PacedClaim{0, true};
    return claim(max_rows, out);
  }
  // Deletes acknowledged rows; unknown seqs are ignored.
  virtual Status ack(std::span<const std::uint64_t> seqs) = 0;
  // Returns in-flight rows to the claimable set.
  virtual void release(std::span<const std::uint64_t> seqs) = 0;
  // Turns the in-flight telemetry row `seq` into a dead letter in place
  // (same seq, key, source, timestamp): `error` becomes its reason and its
  // value keeps the first max_value bytes. It stays in flight; release() it
  // to have it claimed again. Unknown or not in flight: kNotFound.
  virtual Status dead_letter(std::uint64_t seq, const std::string& error, std::size_t max_value) {
    (void)seq, (void)error, (void)max_value;
    return Status::not_found("this buffer cannot re-route rows");
  }
  // Takes the in-flight row `seq` out of the queue until unparked (see the
  // contract above); `code` names the refusal in the event that declares it,
  // `reason` is kept with the row for the operator. Not in flight: kNotFound.
  virtual Status park(std::uint64_t seq, const std::string& code, const std::string& reason) {
    (void)seq, (void)code, (void)reason;
    return Status::not_found("this buffer cannot park rows");
  }
  // Rows parked now, without waiting for a running operation.
  virtual std::uint64_t parked_now() const { return 0; }
  virtual BufferStats stats() = 0;
  // stats() if it can be had within `wait` (a commit may hold the buffer
  // while the disk hangs); nothing otherwise. For readers that must answer
  // in time: /health, /metrics.
  virtual std::optional<BufferStats> try_stats(std::chrono::milliseconds wait) = 0;
  // Rows buffered as of the last finished operation, without waiting for a
  // running one (stats() may wait on a commit that waits on the disk).
  virtual std::uint64_t rows_now() const = 0;
};

}  // namespace vane
