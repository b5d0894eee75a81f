// The SQLite buffer: sequence numbers, delete-on-ack, claims, the cap and
// both overflow policies, and bad files on disk.
#include <gtest/gtest.h>

#include <fstream>

#include "buffer/sqlite_buffer.h"
#include "support/temp_dir.h"

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
  auto b = SqliteBuffer::open({path, max_bytes, o, s});
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
  EXPECT_EQ(r.dropped_oldest, 3u);
  EXPECT_EQ(r.dropped_newest, 0u);
  EXPECT_EQ(r.first_seq, 11u);
  auto st = b->stats();
  EXPECT_EQ(st.rows, 10u);
  EXPECT_EQ(st.dropped_oldest_total, 3u);
  EXPECT_EQ(st.oldest_seq, 1u);
  b->release(std::vector<std::uint64_t>{1, 2});
  // 3, 4, 5 are gone: the gap is exactly the counted drops.
  EXPECT_EQ(claim_seqs(*b, 20), (std::vector<std::uint64_t>{1, 2, 6, 7, 8, 9, 10, 11, 12, 13}));
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

TEST(Buffer, GarbageFileIsAnErrorNotACrash) {
  TempDir d;
  const std::string path = d.path() + "/b.db";
  std::ofstream(path) << std::string(8192, 'x');
  auto b = SqliteBuffer::open({path, 1 << 20, Overflow::kDropOldest, SyncLevel::kNormal});
  ASSERT_FALSE(b.is_ok());
  EXPECT_NE(b.status().message().find(path), std::string::npos) << b.status().message();
  auto st = SqliteBuffer::inspect(path);
  EXPECT_FALSE(st.is_ok());
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
