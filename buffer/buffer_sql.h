// All SQL of the buffer, in one place. Pragmas are explicit; statements are
// prepared once at open.
#pragma once

namespace vane::sql {

inline constexpr int kSchemaVersion = 1;

// journal_mode=WAL: readers (vane buffer stats) never block the writer, and a
// commit is one append to the WAL. synchronous is set from buffer.sync.
inline constexpr const char* kPragmas =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA temp_store=MEMORY;"
    "PRAGMA foreign_keys=OFF;"
    // A WAL of at most ~4 MiB between checkpoints: what a checkpoint may
    // need on disk is bounded by it (see kReserveBytes).
    "PRAGMA wal_autocheckpoint=1024;"
    // After a checkpoint the WAL file is cut back to this size, so a burst
    // does not keep its disk space.
    "PRAGMA journal_size_limit=4194304;";

// Disk space held back in PATH.reserve while the filesystem has room. On a
// full filesystem every write of a WAL database, deletes included, needs
// WAL space; releasing the reserve lets the buffer delete rows and
// checkpoint, which is how it gets room back. Twice the WAL's bound.
inline constexpr long kReserveBytes = 8L << 20;

// One row of output: "ok" or the first problem found. Checks every b-tree
// page but not index consistency: what decides whether the file is usable.
inline constexpr const char* kQuickCheck = "PRAGMA quick_check(1);";
// Copies the WAL into the database and makes the next writer start the WAL
// from its beginning, reusing the file's space instead of growing it.
inline constexpr const char* kCheckpointRestart = "PRAGMA wal_checkpoint(RESTART);";

inline constexpr const char* kSyncOff = "PRAGMA synchronous=OFF;";
inline constexpr const char* kSyncNormal = "PRAGMA synchronous=NORMAL;";
inline constexpr const char* kSyncFull = "PRAGMA synchronous=FULL;";

// seq is the rowid: rows are stored in seq order, the oldest is the first
// b-tree entry, and deletes by seq are point lookups.
inline constexpr const char* kCreate =
    "CREATE TABLE IF NOT EXISTS meta ("
    "  key TEXT PRIMARY KEY,"
    "  value INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS rows ("
    "  seq INTEGER PRIMARY KEY,"
    "  stream INTEGER NOT NULL,"
    "  key TEXT NOT NULL,"
    "  ts_us INTEGER NOT NULL,"
    "  source TEXT NOT NULL,"
    "  schema TEXT NOT NULL,"
    "  value BLOB NOT NULL,"
    "  error TEXT NOT NULL,"
    "  size INTEGER NOT NULL);"
    // Rows the uplink could deliver nowhere, kept out of the queue until an
    // operator unparks them (vane buffer unpark deletes from this table, also
    // while vane runs). A buffer file without it (an older vane's) is read
    // as having none; an older vane ignores it and retries those rows.
    "CREATE TABLE IF NOT EXISTS parked ("
    "  seq INTEGER PRIMARY KEY,"
    "  reason TEXT NOT NULL,"
    "  since_us INTEGER NOT NULL);"
    "INSERT OR IGNORE INTO meta(key, value) VALUES ('next_seq', 1), ('schema_version', 1);";

inline constexpr const char* kSelectMeta = "SELECT value FROM meta WHERE key = ?1;";
inline constexpr const char* kUpdateNextSeq = "UPDATE meta SET value = ?1 WHERE key = 'next_seq';";
inline constexpr const char* kTotals = "SELECT count(*), coalesce(sum(size), 0) FROM rows;";
inline constexpr const char* kOldest = "SELECT seq, ts_us FROM rows ORDER BY seq LIMIT 1;";
inline constexpr const char* kMaxSeq = "SELECT coalesce(max(seq), 0) FROM rows;";

inline constexpr const char* kInsert =
    "INSERT INTO rows(seq, stream, key, ts_us, source, schema, value, error, size)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9);";
inline constexpr const char* kDelete = "DELETE FROM rows WHERE seq = ?1 RETURNING size;";
// Acks come in runs of consecutive seqs: one statement per run.
inline constexpr const char* kDeleteRange = "DELETE FROM rows WHERE seq BETWEEN ?1 AND ?2;";
// Claimable rows in seq order after a high-water mark.
inline constexpr const char* kSelectAfter =
    "SELECT seq, stream, key, ts_us, source, schema, value, error FROM rows"
    " WHERE seq > ?1 ORDER BY seq LIMIT ?2;";
// Salvage from a quarantined file: everything, with the accounted size.
inline constexpr const char* kSalvage =
    "SELECT seq, stream, key, ts_us, source, schema, value, error, size FROM rows"
    " WHERE seq > ?1 ORDER BY seq LIMIT 1024;";
// A row turned into a dead letter in place; its accounted size follows.
// Lengths in bytes (length() of TEXT counts characters); the right-hand
// sides see the row as it was.
inline constexpr const char* kDeadLetter =
    "UPDATE rows SET stream = 1, error = ?2, value = substr(CAST(value AS BLOB), 1, ?3),"
    " size = size - length(CAST(value AS BLOB)) - length(CAST(error AS BLOB))"
    " + min(length(CAST(value AS BLOB)), ?3) + length(CAST(?2 AS BLOB))"
    " WHERE seq = ?1 AND stream = 0 RETURNING size;";
inline constexpr const char* kSelectOne =
    "SELECT seq, stream, key, ts_us, source, schema, value, error FROM rows WHERE seq = ?1;";
// The oldest rows that may be dropped: past the claimed high-water mark.
inline constexpr const char* kOldestAfter =
    "SELECT seq, size FROM rows WHERE seq > ?1 ORDER BY seq LIMIT ?2;";

// Parked rows: the set, kept at open (entries whose row is gone are dropped).
inline constexpr const char* kPark = "INSERT OR REPLACE INTO parked(seq, reason, since_us) VALUES (?1, ?2, ?3);";
inline constexpr const char* kUnparkOne = "DELETE FROM parked WHERE seq = ?1;";
inline constexpr const char* kParkedSeqs = "SELECT seq FROM parked ORDER BY seq;";
inline constexpr const char* kParkedRows = "SELECT seq, reason, since_us FROM parked ORDER BY seq LIMIT ?1;";
inline constexpr const char* kParkedCount = "SELECT count(*) FROM parked;";
inline constexpr const char* kPruneParked = "DELETE FROM parked WHERE seq NOT IN (SELECT seq FROM rows);";
// Another connection (vane buffer unpark) committed since the last look.
inline constexpr const char* kDataVersion = "PRAGMA data_version;";
// Event rows (declarations) are never dropped by the overflow policy.
inline constexpr const char* kEventSeqs = "SELECT seq FROM rows WHERE stream = 2;";
// A declaration extended in place while it is not yet claimed.
inline constexpr const char* kUpdateValue = "UPDATE rows SET value = ?2, size = ?3 WHERE seq = ?1;";

inline constexpr const char* kBegin = "BEGIN IMMEDIATE;";
inline constexpr const char* kCommit = "COMMIT;";
inline constexpr const char* kRollback = "ROLLBACK;";

}  // namespace vane::sql
