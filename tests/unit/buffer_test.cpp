// The SQLite buffer: sequence numbers, delete-on-ack, claims, the cap and
// both overflow policies, and bad files on disk.
#include <gtest/gtest.h>

#include <sqlite3.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "buffer/sqlite_buffer.h"
#include "support/temp_dir.h"
#include "support/wait.h"

namespace vane {
namespace {

using test::TempDir;

Record rec(const std::string& key, std::size_t value_bytes = 100) {
  Record r;
  r.key = key;
  r.ts_us = 1764000000000000;
  r.source = "sim";
  r.schema = "turbine";
  r.value = std::string(value_bytes, 'v');
  return r;
}

// Row size as the buffer accounts it: payload strings + 32 bytes overhead.
constexpr std::uint64_t kRow100 = 100 + 5 + 3 + 7 + 32;  // key "T-001"

std::unique_ptr<SqliteBuffer> open_buffer(const std::string& path, std::uint64_t max_bytes = 1 << 30,
                                          Overflow o = Overflow::kDropOldest, SyncLevel s = SyncLevel::kNormal) {
  SqliteBufferOptions opts{path, max_bytes, o, s};
  opts.gateway = "gw-test";
  auto b = SqliteBuffer::open(opts);
  EXPECT_TRUE(b.is_ok()) << b.status().message();
  return b ? std::move(b.value()) : nullptr;
}

AppendResult append_n(Buffer& b, int n, std::size_t value_bytes = 100) {
  std::vector<Record> v;
  for (int i = 0; i < n; ++i) v.push_back(rec("T-001", value_bytes));
  auto r = b.append(v);
  EXPECT_TRUE(r.is_ok()) << r.status().message();
  return r ? r.value() : AppendResult{};
}

std::vector<std::uint64_t> claim_seqs(Buffer& b, std::size_t n) {
  std::vector<StoredRecord> out;
  EXPECT_TRUE(b.claim(n, out).is_ok());
  std::vector<std::uint64_t> seqs;
  for (auto& r : out) seqs.push_back(r.seq);
  return seqs;
}

// The event rows among `out`, their values parsed.
std::vector<std::pair<std::uint64_t, nlohmann::json>> events_in(const std::vector<StoredRecord>& out) {
  std::vector<std::pair<std::uint64_t, nlohmann::json>> ev;
  for (const auto& r : out)
    if (r.rec.stream == Stream::kEvent) ev.emplace_back(r.seq, nlohmann::json::parse(r.rec.value));
  return ev;
}

TEST(Buffer, SequenceIsMonotonicAndSurvivesReopenEvenWhenEmpty) {
  TempDir d;
  const std::string path = d.path() + "/b.db";
  {
    auto b = open_buffer(path);
    auto r = append_n(*b, 3);
    EXPECT_EQ(r.first_seq, 1u);
    EXPECT_EQ(r.last_seq, 3u);
    auto seqs = claim_seqs(*b, 10);
    ASSERT_EQ(seqs, (std::vector<std::uint64_t>{1, 2, 3}));
    ASSERT_TRUE(b->ack(seqs).is_ok());
    EXPECT_EQ(b->stats().rows, 0u);
  }
  auto b = open_buffer(path);
  EXPECT_EQ(b->stats().next_seq, 4u);
  auto r = append_n(*b, 2);
  EXPECT_EQ(r.first_seq, 4u) << "a seq was reused after the table emptied";
  EXPECT_EQ(r.last_seq, 5u);
}

TEST(Buffer, RowsStayUntilAcknowledged) {
  TempDir d;
  auto b = open_buffer(d.path() + "/b.db");
  append_n(*b, 5);
  auto seqs = claim_seqs(*b, 5);
  EXPECT_EQ(b->stats().rows, 5u);
  EXPECT_EQ(b->stats().in_flight, 5u);
  ASSERT_TRUE(b->ack(std::vector<std::uint64_t>{2, 4}).is_ok());
  EXPECT_EQ(b->stats().rows, 3u);
  EXPECT_EQ(b->stats().oldest_seq, 1u);
  ASSERT_TRUE(b->ack(std::vector<std::uint64_t>{1, 99}).is_ok());  // unknown seq ignored
  EXPECT_EQ(b->stats().rows, 2u);
  EXPECT_EQ(b->stats().oldest_seq, 3u);
}

TEST(Buffer, ClaimNeverHandsOutARowTwiceAndReleaseReturnsIt) {
  TempDir d;
  auto b = open_buffer(d.path() + "/b.db");
  append_n(*b, 6);
  EXPECT_EQ(claim_seqs(*b, 4), (std::vector<std::uint64_t>{1, 2, 3, 4}));
  EXPECT_EQ(claim_seqs(*b, 4), (std::vector<std::uint64_t>{5, 6}));
  EXPECT_TRUE(claim_seqs(*b, 4).empty());
  b->release(std::vector<std::uint64_t>{3, 1});
  EXPECT_EQ(claim_seqs(*b, 4), (std::vector<std::uint64_t>{1, 3}));
  append_n(*b, 1);
  EXPECT_EQ(claim_seqs(*b, 4), (std::vector<std::uint64_t>{7}));
}

TEST(Buffer, ClaimedRowsCarryTheirRecord) {
  TempDir d;
  auto b = open_buffer(d.path() + "/b.db");
  std::vector<Record> v{rec("T-009", 10)};
  v[0].stream = Stream::kDeadLetter;
  v[0].error = "/wind_speed: 41.2 > maximum 30";
  ASSERT_TRUE(b->append(v).is_ok());
  std::vector<StoredRecord> out;
  ASSERT_TRUE(b->claim(1, out).is_ok());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].rec.key, "T-009");
  EXPECT_EQ(out[0].rec.stream, Stream::kDeadLetter);
  EXPECT_EQ(out[0].rec.error, "/wind_speed: 41.2 > maximum 30");
  EXPECT_EQ(out[0].rec.value, std::string(10, 'v'));
  EXPECT_EQ(out[0].rec.ts_us, 1764000000000000);
}

// A reading Kafka refused for itself becomes a dead letter in place: same
// seq, key and timestamp, the reason as its error, the value cut; the
// accounted size follows, and it survives a reopen.
TEST(Buffer, ARefusedReadingBecomesADeadLetterInPlace) {
  TempDir d;
  const std::string path = d.path() + "/b.db";
  {
    auto b = open_buffer(path);
    append_n(*b, 2, 5000);
    std::vector<StoredRecord> out;
    ASSERT_TRUE(b->claim(2, out).is_ok());
    EXPECT_EQ(b->dead_letter(7, "x", 10).code(), Status::Code::kNotFound) << "not in flight";
    const std::string why = "kafka refused the reading: MSG_SIZE_TOO_LARGE";
    ASSERT_TRUE(b->dead_letter(1, why, 1024).is_ok());
    EXPECT_EQ(b->dead_letter(1, why, 1024).code(), Status::Code::kNotFound) << "a dead letter already";
    EXPECT_EQ(b->stats().bytes, 2 * (5000 + 5 + 3 + 7 + 32) - 5000 + 1024 + why.size());
    const std::uint64_t one = 1;
    b->release(std::span<const std::uint64_t>(&one, 1));
    ASSERT_TRUE(b->claim(1, out).is_ok());
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].seq, 1u);
    EXPECT_EQ(out[0].rec.stream, Stream::kDeadLetter);
    EXPECT_EQ(out[0].rec.error, why);
    EXPECT_EQ(out[0].rec.value, std::string(1024, 'v'));
    EXPECT_EQ(out[0].rec.key, "T-001");
    EXPECT_EQ(out[0].rec.ts_us, 1764000000000000);
  }
  auto b = open_buffer(path);
  std::vector<StoredRecord> out;
  ASSERT_TRUE(b->claim(2, out).is_ok());
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].rec.stream, Stream::kDeadLetter);
  EXPECT_EQ(out[1].rec.stream, Stream::kTelemetry);
  EXPECT_EQ(out[1].rec.value.size(), 5000u);
  EXPECT_EQ(b->stats().bytes, 2 * (5000 + 5 + 3 + 7 + 32) - 5000 + 1024 + 45u);  // 45: the reason's length
}

TEST(Buffer, InFlightRowsAreClaimableAgainAfterReopen) {
  TempDir d;
  const std::string path = d.path() + "/b.db";
  {
    auto b = open_buffer(path);
    append_n(*b, 3);
    claim_seqs(*b, 3);  // in flight when the process "dies"
  }
  auto b = open_buffer(path);
  EXPECT_EQ(claim_seqs(*b, 10), (std::vector<std::uint64_t>{1, 2, 3}));
}

TEST(Buffer, CapWithDropOldestDropsOldestUnclaimedAndCounts) {
  TempDir d;
  auto b = open_buffer(d.path() + "/b.db", 10 * kRow100, Overflow::kDropOldest);
  append_n(*b, 10);
  EXPECT_EQ(b->stats().bytes, 10 * kRow100);
  claim_seqs(*b, 2);  // 1 and 2 are with the uplink: never dropped
  auto r = append_n(*b, 3);
  EXPECT_EQ(r.appended, 3u);
  // Room for three rows and for the event row that declares the drops.
  EXPECT_EQ(r.dropped_oldest, 5u);
  EXPECT_EQ(r.dropped_newest, 0u);
  EXPECT_EQ(r.first_seq, 12u);  // 11 is the declaration
  auto st = b->stats();
  EXPECT_EQ(st.rows, 9u);
  EXPECT_LE(st.bytes, 10 * kRow100);
  EXPECT_EQ(st.dropped_oldest_total, 5u);
  EXPECT_EQ(st.oldest_seq, 1u);
  b->release(std::vector<std::uint64_t>{1, 2});
  // 3..7 are gone: the gap is exactly the counted drops, and declared.
  std::vector<StoredRecord> out;
  ASSERT_TRUE(b->claim(20, out).is_ok());
  std::vector<std::uint64_t> seqs;
  for (const auto& x : out) seqs.push_back(x.seq);
  EXPECT_EQ(seqs, (std::vector<std::uint64_t>{1, 2, 8, 9, 10, 11, 12, 13, 14}));
  const auto ev = events_in(out);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].first, 11u);
  EXPECT_EQ(ev[0].second["event"], "dropped");
  EXPECT_EQ(ev[0].second["reason"], "buffer_cap");
  EXPECT_EQ(ev[0].second["first_seq"], 3);
  EXPECT_EQ(ev[0].second["last_seq"], 7);
  EXPECT_EQ(ev[0].second["count"], 5);
  EXPECT_EQ(ev[0].second["gateway"], "gw-test");
}

TEST(Buffer, ALongOutageAtTheCapIsOneDeclarationAndItIsNeverDropped) {
  TempDir d;
  auto b = open_buffer(d.path() + "/b.db", 10 * kRow100, Overflow::kDropOldest);
  std::uint64_t dropped = 0;
  for (int i = 0; i < 200; ++i) dropped += append_n(*b, 1).dropped_oldest;
  EXPECT_GT(dropped, 180u);
  std::vector<StoredRecord> out;
  ASSERT_TRUE(b->claim(100, out).is_ok());
  const auto ev = events_in(out);
  ASSERT_EQ(ev.size(), 1u) << "one event, extended in place while unclaimed";
  EXPECT_EQ(ev[0].second["count"], dropped);
  EXPECT_EQ(ev[0].second["first_seq"], 1);
  // Every seq below the newest is buffered or inside the declared range.
  std::set<std::uint64_t> have;
  for (const auto& x : out) have.insert(x.seq);
  const std::uint64_t last = ev[0].second["last_seq"];
  std::uint64_t missing = 0;
  for (std::uint64_t seq = 1; seq <= out.back().seq; ++seq) {
    if (have.contains(seq)) continue;
    ++missing;
    EXPECT_LE(seq, last) << "seq " << seq << " missing and not declared";
  }
  EXPECT_EQ(missing, dropped);
  // Once the event went out, later drops start a new one.
  std::vector<std::uint64_t> sent;
  for (const auto& x : out) sent.push_back(x.seq);
  ASSERT_TRUE(b->ack(sent).is_ok());
  dropped = 0;
  for (int i = 0; i < 20; ++i) dropped += append_n(*b, 1).dropped_oldest;
  EXPECT_GT(dropped, 5u);
  std::vector<StoredRecord> more;
  ASSERT_TRUE(b->claim(100, more).is_ok());
  const auto ev2 = events_in(more);
  ASSERT_EQ(ev2.size(), 1u);
  EXPECT_EQ(ev2[0].second["count"], dropped);
  EXPECT_GT(ev2[0].second["first_seq"].get<std::uint64_t>(), last);
}

TEST(Buffer, ParkedRowsAreNeverClaimedSurviveReopenAndUnparkWhileOpen) {
  TempDir d;
  const std::string path = d.path() + "/b.db";
  {
    auto b = open_buffer(path);
    append_n(*b, 5);
    EXPECT_EQ(claim_seqs(*b, 5), (std::vector<std::uint64_t>{1, 2, 3, 4, 5}));
    EXPECT_FALSE(b->park(9, "X", "not in flight").is_ok());
    ASSERT_TRUE(b->park(2, "MSG_SIZE_TOO_LARGE", "dead_letter row refused for itself").is_ok());
    ASSERT_TRUE(b->park(3, "MSG_SIZE_TOO_LARGE", "dead_letter row refused for itself").is_ok());
    EXPECT_EQ(b->parked_now(), 2u);
    b->release(std::vector<std::uint64_t>{1, 4, 5});
    // The parks are declared in one event row (seq 6).
    std::vector<StoredRecord> out;
    ASSERT_TRUE(b->claim(10, out).is_ok());
    std::vector<std::uint64_t> seqs;
    for (const auto& x : out) seqs.push_back(x.seq);
    EXPECT_EQ(seqs, (std::vector<std::uint64_t>{1, 4, 5, 6}));
    const auto ev = events_in(out);
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_EQ(ev[0].second["event"], "parked");
    EXPECT_EQ(ev[0].second["reason"], "MSG_SIZE_TOO_LARGE");
    EXPECT_EQ(ev[0].second["first_seq"], 2);
    EXPECT_EQ(ev[0].second["last_seq"], 3);
    EXPECT_EQ(ev[0].second["count"], 2);
    ASSERT_TRUE(b->ack(std::vector<std::uint64_t>{1, 4, 5, 6}).is_ok());
    EXPECT_EQ(b->stats().rows, 2u);  // the parked rows stay, counted
    EXPECT_EQ(b->stats().parked, 2u);
  }
  auto st = SqliteBuffer::inspect(path);
  ASSERT_TRUE(st.is_ok());
  EXPECT_EQ(st->parked, 2u);
  auto rows = SqliteBuffer::parked_rows(path, 10);
  ASSERT_TRUE(rows.is_ok());
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0].seq, 2u);
  EXPECT_EQ((*rows)[0].reason, "dead_letter row refused for itself");
  auto b = open_buffer(path);
  EXPECT_EQ(b->parked_now(), 2u);
  EXPECT_TRUE(claim_seqs(*b, 10).empty()) << "parked rows are not claimed after a restart either";
  // Unparked from another process while this one holds the buffer.
  auto n = SqliteBuffer::unpark_file(path, std::vector<std::uint64_t>{3});
  ASSERT_TRUE(n.is_ok()) << n.status().message();
  EXPECT_EQ(*n, 1u);
  std::vector<std::uint64_t> got;
  EXPECT_TRUE(test::wait_until(
      [&] {
        got = claim_seqs(*b, 10);
        return !got.empty();
      },
      std::chrono::seconds(5)));
  EXPECT_EQ(got, (std::vector<std::uint64_t>{3}));
  EXPECT_EQ(b->parked_now(), 1u);
  auto all = b->unpark({});
  ASSERT_TRUE(all.is_ok());
  EXPECT_EQ(*all, 1u);
  EXPECT_EQ(claim_seqs(*b, 10), (std::vector<std::uint64_t>{2}));
  EXPECT_EQ(b->stats().parked, 0u);
}

TEST(Buffer, AFileWithoutTheParkedTableReadsAsNoneParked) {
  TempDir d;
  const std::string path = d.path() + "/b.db";
  {
    auto b = open_buffer(path);
    append_n(*b, 2);
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "DROP TABLE parked;", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  auto st = SqliteBuffer::inspect(path);
  ASSERT_TRUE(st.is_ok());
  EXPECT_EQ(st->parked, 0u);
  auto n = SqliteBuffer::unpark_file(path, {});
  ASSERT_TRUE(n.is_ok());
  EXPECT_EQ(*n, 0u);
  auto b = open_buffer(path);
  EXPECT_EQ(claim_seqs(*b, 10), (std::vector<std::uint64_t>{1, 2}));
}

TEST(Buffer, CapWithDropNewestRefusesIncomingWithoutConsumingSeqs) {
  TempDir d;
  auto b = open_buffer(d.path() + "/b.db", 10 * kRow100, Overflow::kDropNewest);
  append_n(*b, 8);
  auto r = append_n(*b, 5);
  EXPECT_EQ(r.appended, 2u);
  EXPECT_EQ(r.dropped_newest, 3u);
  EXPECT_EQ(r.dropped_oldest, 0u);
  EXPECT_EQ(r.last_seq, 10u);
  EXPECT_EQ(b->stats().dropped_newest_total, 3u);
  auto seqs = claim_seqs(*b, 20);
  ASSERT_TRUE(b->ack(seqs).is_ok());
  EXPECT_EQ(append_n(*b, 1).first_seq, 11u) << "refused rows must not leave a gap";
}

TEST(Buffer, DropOldestWithOnlyInFlightRowsRefusesTheNewest) {
  TempDir d;
  auto b = open_buffer(d.path() + "/b.db", 4 * kRow100, Overflow::kDropOldest);
  append_n(*b, 4);
  claim_seqs(*b, 4);
  auto r = append_n(*b, 2);
  EXPECT_EQ(r.appended, 0u);
  EXPECT_EQ(r.dropped_newest, 2u);
  EXPECT_EQ(b->stats().rows, 4u);
}

TEST(Buffer, OversizeRecordIsRefused) {
  TempDir d;
  auto b = open_buffer(d.path() + "/b.db", 1000, Overflow::kDropOldest);
  append_n(*b, 2);
  auto r = append_n(*b, 1, 5000);
  EXPECT_EQ(r.appended, 0u);
  EXPECT_EQ(r.dropped_newest, 1u);
  EXPECT_EQ(b->stats().rows, 2u) << "an oversize record must not flush the buffer";
}

TEST(Buffer, ByteAccountingSurvivesReopen) {
  TempDir d;
  const std::string path = d.path() + "/b.db";
  std::uint64_t bytes;
  {
    auto b = open_buffer(path);
    append_n(*b, 7, 333);
    ASSERT_TRUE(b->ack(std::vector<std::uint64_t>{2}).is_ok());
    bytes = b->stats().bytes;
    EXPECT_EQ(bytes, 6 * (333 + 5 + 3 + 7 + 32u));
  }
  auto b = open_buffer(path);
  EXPECT_EQ(b->stats().bytes, bytes);
  EXPECT_EQ(b->stats().rows, 6u);
  auto st = SqliteBuffer::inspect(path);
  ASSERT_TRUE(st.is_ok()) << st.status().message();
  EXPECT_EQ(st->rows, 6u);
  EXPECT_EQ(st->bytes, bytes);
  EXPECT_EQ(st->next_seq, 8u);
  EXPECT_EQ(st->oldest_seq, 1u);
}

TEST(Buffer, UnwritablePathNamesThePath) {
  auto b = SqliteBuffer::open({"/proc/vane-no/b.db", 1 << 20, Overflow::kDropOldest, SyncLevel::kNormal});
  ASSERT_FALSE(b.is_ok());
  EXPECT_NE(b.status().message().find("/proc/vane-no/b.db"), std::string::npos) << b.status().message();
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(Buffer, GarbageFileIsMovedAsideAndAFreshBufferStarts) {
  TempDir d;
  const std::string path = d.path() + "/b.db";
  std::ofstream(path) << std::string(8192, 'x');
  auto b = open_buffer(path);
  ASSERT_NE(b, nullptr);
  const Quarantine& q = b->quarantine();
  EXPECT_EQ(q.moved_to.rfind(path + ".corrupt-", 0), 0u) << q.moved_to;
  EXPECT_NE(q.reason.find("not a database"), std::string::npos) << q.reason;
  EXPECT_EQ(q.salvaged, 0u);
  EXPECT_EQ(read_all(q.moved_to), std::string(8192, 'x'));  // kept as it was
  // Declared, though nothing is known of its seqs.
  std::vector<StoredRecord> out;
  ASSERT_TRUE(b->claim(10, out).is_ok());
  const auto ev = events_in(out);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].second["event"], "quarantined");
  EXPECT_EQ(ev[0].second["moved_to"], q.moved_to);
  EXPECT_EQ(ev[0].second["salvaged"], 0);
  EXPECT_EQ(append_n(*b, 3).first_seq, 2u);
}

// Writes `rows` rows and acks the first `acked`; returns the file size.
std::uint64_t fill(const std::string& path, int rows, int acked) {
  auto b = open_buffer(path);
  append_n(*b, rows, 300);
  std::vector<std::uint64_t> seqs;
  for (int i = 1; i <= acked; ++i) seqs.push_back(static_cast<std::uint64_t>(i));
  EXPECT_TRUE(b->ack(seqs).is_ok());
  b.reset();  // the last close checkpoints the WAL into the file
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  return static_cast<std::uint64_t>(in.tellg());
}

TEST(Buffer, ScribbledPagesAreQuarantinedAndReadableRowsSalvagedWithTheirSeqs) {
  TempDir d;
  const std::string path = d.path() + "/b.db";
  const std::uint64_t size = fill(path, 3000, 100);
  {
    // Overwrite 3 pages in the middle of the rows' b-tree.
    std::fstream f(path, std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(static_cast<std::streamoff>(size / 2 / 4096 * 4096));
    const std::string junk(3 * 4096, '\x5a');
    f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
  }
  auto b = open_buffer(path);
  ASSERT_NE(b, nullptr);
  const Quarantine& q = b->quarantine();
  ASSERT_FALSE(q.moved_to.empty());
  EXPECT_EQ(q.next_seq_from, 3001u);
  EXPECT_GT(q.salvaged, 2000u);
  EXPECT_LT(q.salvaged, 2900u);
  const BufferStats st = b->stats();
  EXPECT_EQ(st.rows, q.salvaged + 1);  // and the event that declares the quarantine
  EXPECT_EQ(st.next_seq, 3002u);  // never reuses a seq; 3001 is the declaration
  std::vector<StoredRecord> out;
  ASSERT_TRUE(b->claim(5000, out).is_ok());
  ASSERT_EQ(out.size(), q.salvaged + 1);
  EXPECT_EQ(out.front().seq, 101u);
  const auto ev = events_in(out);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].first, 3001u);
  EXPECT_EQ(ev[0].second["event"], "quarantined");
  EXPECT_EQ(ev[0].second["first_seq"], 1);
  EXPECT_EQ(ev[0].second["last_seq"], 3000);
  EXPECT_EQ(ev[0].second["salvaged"], q.salvaged);
  for (const auto& r : out) {
    if (r.rec.stream == Stream::kEvent) continue;
    EXPECT_EQ(r.rec.value, std::string(300, 'v')) << r.seq;
    EXPECT_EQ(r.rec.key, "T-001");
  }
  EXPECT_EQ(append_n(*b, 1).first_seq, 3002u);
}

TEST(Buffer, TruncatedFileIsQuarantinedAndWhatIsLeftSalvaged) {
  TempDir d;
  const std::string path = d.path() + "/b.db";
  const std::uint64_t size = fill(path, 3000, 0);
  ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(size / 2)), 0);
  auto b = open_buffer(path);
  ASSERT_NE(b, nullptr);
  const Quarantine& q = b->quarantine();
  ASSERT_FALSE(q.moved_to.empty());
  EXPECT_GT(q.salvaged, 0u);
  EXPECT_LT(q.salvaged, 3000u);
  EXPECT_EQ(b->stats().next_seq, 3002u);  // 3001 declares the quarantine
}

TEST(Buffer, AnotherFormatVersionIsMovedAsideNotOverwritten) {
  TempDir d;
  const std::string path = d.path() + "/b.db";
  fill(path, 10, 0);
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    sqlite3_exec(db, "UPDATE meta SET value = 99 WHERE key = 'schema_version';", nullptr, nullptr, nullptr);
    sqlite3_close(db);
  }
  auto b = open_buffer(path);
  ASSERT_NE(b, nullptr);
  EXPECT_NE(b->quarantine().reason.find("format version 99"), std::string::npos) << b->quarantine().reason;
  EXPECT_EQ(b->quarantine().salvaged, 10u);
}

TEST(Buffer, HealthyFileIsNotQuarantined) {
  TempDir d;
  const std::string path = d.path() + "/b.db";
  fill(path, 50, 10);
  auto b = open_buffer(path);
  ASSERT_NE(b, nullptr);
  EXPECT_TRUE(b->quarantine().moved_to.empty());
  EXPECT_EQ(b->stats().rows, 40u);
}

std::unique_ptr<SqliteBuffer> small_disk(const std::string& path, Overflow o) {
  SqliteBufferOptions opts{path, 1ULL << 30, o, SyncLevel::kNormal};
  opts.max_pages = 640;  // 2.5 MiB of database: a full disk without a full cap (and above the
                         // 1 MiB floor of the cap the buffer learns from it)
  auto b = SqliteBuffer::open(opts);
  EXPECT_TRUE(b.is_ok()) << b.status().message();
  return b ? std::move(b.value()) : nullptr;
}

TEST(Buffer, FullDiskWithDropOldestDropsOldRowsAndKeepsTakingNewOnes) {
  TempDir d;
  auto b = small_disk(d.path() + "/b.db", Overflow::kDropOldest);
  ASSERT_NE(b, nullptr);
  std::uint64_t appended = 0, dropped = 0, full = 0;
  for (int i = 0; i < 1200; ++i) {
    const AppendResult r = append_n(*b, 10, 300);
    appended += r.appended;
    dropped += r.dropped_oldest + r.dropped_newest;
    full += r.dropped_disk_full;
    EXPECT_EQ(r.dropped_newest, 0u) << "batch " << i;
  }
  EXPECT_EQ(appended, 12000u);
  EXPECT_GT(dropped, 0u);
  EXPECT_EQ(full, dropped);
  const BufferStats st = b->stats();
  std::vector<StoredRecord> out;
  ASSERT_TRUE(b->claim(100000, out).is_ok());
  const auto ev = events_in(out);
  ASSERT_FALSE(ev.empty());
  std::uint64_t declared = 0;
  for (const auto& [seq, e] : ev) {
    EXPECT_EQ(e["reason"], "disk_full") << e.dump();
    declared += e["count"].get<std::uint64_t>();
  }
  EXPECT_EQ(declared, dropped);
  EXPECT_EQ(st.rows, appended - dropped + ev.size());  // every row is buffered or counted (and declared)
  EXPECT_EQ(st.dropped_disk_full_total, dropped);
  EXPECT_EQ(st.oldest_seq, dropped + 1);  // the oldest went
}

TEST(Buffer, FullDiskWithDropNewestRefusesUntilSpaceReturns) {
  TempDir d;
  auto b = small_disk(d.path() + "/b.db", Overflow::kDropNewest);
  ASSERT_NE(b, nullptr);
  std::uint64_t appended = 0, refused = 0;
  for (int i = 0; i < 1200; ++i) {
    const AppendResult r = append_n(*b, 10, 300);
    appended += r.appended;
    refused += r.dropped_newest;
    EXPECT_EQ(r.dropped_oldest, 0u);
  }
  EXPECT_GT(refused, 0u);
  EXPECT_EQ(b->stats().rows, appended);
  EXPECT_EQ(b->stats().next_seq, appended + 1);  // refused rows never got a seq
  // Delivering frees pages: space returns and appends succeed again.
  std::vector<StoredRecord> out;
  ASSERT_TRUE(b->claim(100000, out).is_ok());
  std::vector<std::uint64_t> seqs;
  for (const auto& r : out) seqs.push_back(r.seq);
  ASSERT_TRUE(b->ack(seqs).is_ok());
  EXPECT_EQ(append_n(*b, 10, 300).appended, 10u);
}

std::vector<std::uint64_t> seqs_of(const std::vector<StoredRecord>& out) {
  std::vector<std::uint64_t> v;
  for (const auto& r : out) v.push_back(r.seq);
  return v;
}

std::vector<std::uint64_t> range(std::uint64_t from, std::uint64_t to) {
  std::vector<std::uint64_t> v;
  for (std::uint64_t s = from; s <= to; ++s) v.push_back(s);
  return v;
}

std::vector<std::uint64_t> concat(std::vector<std::uint64_t> a, const std::vector<std::uint64_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

TEST(Buffer, LiveFirstClaimsTheNewestRowsBeforeTheBacklogAndDrainsBoth) {
  TempDir d;
  SqliteBufferOptions opts{d.path() + "/b.db", 1ULL << 30, Overflow::kDropOldest, SyncLevel::kNormal};
  opts.replay = Replay::kLiveFirst;
  auto b = std::move(SqliteBuffer::open(opts).value());
  append_n(*b, 1000);  // a backlog: more than 4 claims' worth
  std::vector<StoredRecord> out;
  // Up to half a claim of the newest rows, in seq order, then the oldest.
  ASSERT_TRUE(b->claim(100, out).is_ok());
  EXPECT_EQ(seqs_of(out), concat(range(951, 1000), range(1, 50)));
  std::set<std::uint64_t> seen;
  for (const auto& r : out) seen.insert(r.seq);
  append_n(*b, 30);  // fresh: 1001..1030
  out.clear();
  ASSERT_TRUE(b->claim(100, out).is_ok());
  EXPECT_EQ(seqs_of(out), concat(range(1001, 1030), range(51, 120)));
  for (const auto& r : out) seen.insert(r.seq);
  // Drain the rest: every row exactly once (the backlog cursor passes over
  // what the live side took).
  for (int i = 0; i < 40; ++i) {
    out.clear();
    ASSERT_TRUE(b->claim(100, out).is_ok());
    for (const auto& r : out) EXPECT_TRUE(seen.insert(r.seq).second) << r.seq;
    if (i == 5) append_n(*b, 10);
  }
  EXPECT_EQ(seen.size(), 1040u);
  EXPECT_EQ(*seen.rbegin(), 1040u);
  // No backlog any more: plain seq order.
  append_n(*b, 5);
  out.clear();
  ASSERT_TRUE(b->claim(100, out).is_ok());
  EXPECT_EQ(seqs_of(out), range(1041, 1045));
}

TEST(Buffer, LiveFirstNeverDropsClaimedLiveRows) {
  TempDir d;
  SqliteBufferOptions opts{d.path() + "/b.db", 200 * kRow100, Overflow::kDropOldest, SyncLevel::kNormal};
  opts.replay = Replay::kLiveFirst;
  auto b = std::move(SqliteBuffer::open(opts).value());
  append_n(*b, 150);
  std::vector<StoredRecord> out;
  ASSERT_TRUE(b->claim(10, out).is_ok());
  EXPECT_EQ(seqs_of(out), concat(range(146, 150), range(1, 5)));
  append_n(*b, 20);  // 151..170
  out.clear();
  ASSERT_TRUE(b->claim(10, out).is_ok());
  EXPECT_EQ(seqs_of(out), concat(range(166, 170), range(6, 10)));
  // Over the cap: the oldest unclaimed rows go, never the live ones in flight.
  const AppendResult r = append_n(*b, 100);
  EXPECT_EQ(r.appended, 100u);
  EXPECT_GT(r.dropped_oldest, 0u);
  std::vector<StoredRecord> rest;
  ASSERT_TRUE(b->claim(1000, rest).is_ok());
  for (const auto& x : rest)
    EXPECT_FALSE((x.seq >= 146 && x.seq <= 150) || (x.seq >= 166 && x.seq <= 170) || x.seq <= 10)
        << "claimed twice: " << x.seq;
  const std::uint64_t before = b->stats().rows;
  const auto in_flight = concat(concat(range(146, 150), range(1, 10)), range(166, 170));
  ASSERT_TRUE(b->ack(in_flight).is_ok());
  EXPECT_EQ(b->stats().rows, before - 20);  // all 20 were still there
}

TEST(Buffer, PacedClaimTakesLiveRowsFirstAndTheBacklogWithinItsBudget) {
  TempDir d;
  auto b = open_buffer(d.path() + "/b.db");  // buffer.replay fifo: paced claims are live-first regardless
  append_n(*b, 100);  // the backlog: seqs 1..100, mark 100
  append_n(*b, 5);    // live: 101..105
  std::vector<StoredRecord> out;
  PacedClaim paced;
  // No tokens: live rows only.
  ASSERT_TRUE(b->claim_paced(100, 50, 0, out, paced).is_ok());
  EXPECT_EQ(seqs_of(out), range(101, 105));
  EXPECT_EQ(paced.backlog, 0u);
  EXPECT_FALSE(paced.backlog_empty);
  // 30 tokens: the oldest 30 of the backlog, and a new live row before them.
  append_n(*b, 1);  // 106
  out.clear();
  ASSERT_TRUE(b->claim_paced(100, 50, 30, out, paced).is_ok());
  EXPECT_EQ(seqs_of(out), concat({106}, range(1, 30)));
  EXPECT_EQ(paced.backlog, 30u);
  EXPECT_FALSE(paced.backlog_empty);
  // A full claim of live rows leaves no room for the backlog.
  append_n(*b, 10);  // 107..116
  out.clear();
  ASSERT_TRUE(b->claim_paced(100, 10, 30, out, paced).is_ok());
  EXPECT_EQ(seqs_of(out), range(107, 116));
  EXPECT_EQ(paced.backlog, 0u);
  EXPECT_FALSE(paced.backlog_empty) << "room, not the backlog, stopped it";
  // A released backlog row comes first and counts against the budget.
  b->release(std::vector<std::uint64_t>{2});
  out.clear();
  ASSERT_TRUE(b->claim_paced(100, 50, 5, out, paced).is_ok());
  EXPECT_EQ(seqs_of(out), concat({2}, range(31, 34)));
  EXPECT_EQ(paced.backlog, 5u);
  // The backlog cursor never passes the mark: 35..100, then it is empty.
  out.clear();
  ASSERT_TRUE(b->claim_paced(100, 500, 500, out, paced).is_ok());
  EXPECT_EQ(seqs_of(out), range(35, 100));
  EXPECT_TRUE(paced.backlog_empty);
  // Unpaced again: the cursor passes over the live rows already claimed.
  append_n(*b, 2);  // 117, 118
  out.clear();
  ASSERT_TRUE(b->claim(100, out).is_ok());
  EXPECT_EQ(seqs_of(out), range(117, 118));
}

TEST(Buffer, InspectOfMissingFileFailsAndDoesNotCreateIt) {
  TempDir d;
  const std::string path = d.path() + "/none.db";
  auto st = SqliteBuffer::inspect(path);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.status().message().find(path), std::string::npos);
  EXPECT_FALSE(std::ifstream(path).good());
}

TEST(Buffer, OneWriterAtATime) {
  TempDir d;
  const std::string path = d.path() + "/b.db";
  auto first = open_buffer(path);
  auto second = SqliteBuffer::open({path, 1 << 20, Overflow::kDropOldest, SyncLevel::kNormal});
  ASSERT_FALSE(second.is_ok());
  EXPECT_EQ(second.status().message(), path + ": buffer is in use by another vane process");
  // Readers are fine while it runs.
  EXPECT_TRUE(SqliteBuffer::inspect(path).is_ok());
  first.reset();
  EXPECT_TRUE(SqliteBuffer::open({path, 1 << 20, Overflow::kDropOldest, SyncLevel::kNormal}).is_ok());
}

TEST(Buffer, AllSyncLevelsWork) {
  for (SyncLevel s : {SyncLevel::kOff, SyncLevel::kNormal, SyncLevel::kFull}) {
    TempDir d;
    auto b = open_buffer(d.path() + "/b.db", 1 << 20, Overflow::kDropOldest, s);
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(append_n(*b, 3).appended, 3u);
  }
}

}  // namespace
}  // namespace vane
