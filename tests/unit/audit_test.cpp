// vane audit's reconciliation: every seq received, declared or unexplained.
#include <gtest/gtest.h>

#include <chrono>

#include "audit.h"

namespace vane {
namespace {

std::string dropped(std::uint64_t first, std::uint64_t last, std::uint64_t count, const char* reason = "buffer_cap") {
  return R"({"event":"dropped","gateway":"gw","reason":")" + std::string(reason) + R"(","first_seq":)" +
         std::to_string(first) + R"(,"last_seq":)" + std::to_string(last) + R"(,"count":)" + std::to_string(count) + "}";
}

TEST(Audit, ContiguousSeqsAreAllReceived) {
  Ledger l;
  for (std::uint64_t s = 1; s <= 1000; ++s) l.received("gw", s);
  const GatewayAudit a = l.report("gw");
  EXPECT_EQ(a.max_seq, 1000u);
  EXPECT_EQ(a.received, 1000u);
  EXPECT_EQ(a.duplicates, 0u);
  EXPECT_EQ(a.unexplained, 0u);
  EXPECT_TRUE(a.ok());
}

TEST(Audit, DuplicatesAreCountedNotMistakenForMore) {
  Ledger l;
  for (std::uint64_t s = 1; s <= 10; ++s) l.received("gw", s);
  l.received("gw", 3);
  l.received("gw", 3);
  l.received("gw", 10);
  const GatewayAudit a = l.report("gw");
  EXPECT_EQ(a.received, 10u);
  EXPECT_EQ(a.duplicates, 3u);
  EXPECT_TRUE(a.ok());
}

TEST(Audit, AGapIsUnexplainedUnlessADeclarationCoversIt) {
  Ledger l;
  for (std::uint64_t s = 1; s <= 100; ++s)
    if (s < 20 || s > 40) l.received("gw", s);
  GatewayAudit a = l.report("gw");
  EXPECT_FALSE(a.ok());
  EXPECT_EQ(a.unexplained, 21u);
  ASSERT_EQ(a.unexplained_ranges.size(), 1u);
  EXPECT_EQ(a.unexplained_ranges[0].first, 20u);
  EXPECT_EQ(a.unexplained_ranges[0].last, 40u);
  // The event is itself a seq (41 here, received); it declares 20..35 only.
  l.event("gw", dropped(20, 35, 16));
  a = l.report("gw");
  EXPECT_EQ(a.dropped, 16u);
  EXPECT_EQ(a.dropped_by_reason.at("buffer_cap"), 16u);
  EXPECT_EQ(a.unexplained, 5u) << "36..40 stay unexplained";
  ASSERT_EQ(a.unexplained_ranges.size(), 1u);
  EXPECT_EQ(a.unexplained_ranges[0].first, 36u);
  l.event("gw", dropped(36, 40, 5, "disk_full"));
  a = l.report("gw");
  EXPECT_TRUE(a.ok());
  EXPECT_EQ(a.dropped, 21u);
  EXPECT_EQ(a.dropped_by_reason.at("disk_full"), 5u);
  EXPECT_EQ(a.received, 79u);
}

TEST(Audit, ParkedAndQuarantinedAreDeclaredAndReceivedSeqsInsideARangeStayReceived) {
  Ledger l;
  for (std::uint64_t s : {1, 2, 5, 8, 9, 10}) l.received("gw", s);
  l.event("gw", R"({"event":"parked","reason":"MSG_SIZE_TOO_LARGE","first_seq":3,"last_seq":4,"count":2})");
  l.event("gw", R"({"event":"quarantined","reason":"buffer_corrupt","first_seq":5,"last_seq":7,"salvaged":0})");
  GatewayAudit a = l.report("gw");
  EXPECT_EQ(a.parked, 2u);
  EXPECT_EQ(a.quarantined, 2u);  // 6 and 7; 5 was received
  EXPECT_EQ(a.received, 6u);
  EXPECT_TRUE(a.ok());
  // A parked row dropped later (the cap, after a restart) is dropped: final.
  l.event("gw", dropped(4, 4, 1));
  a = l.report("gw");
  EXPECT_EQ(a.parked, 1u);
  EXPECT_EQ(a.dropped, 1u);
}

TEST(Audit, FromSeqLeavesOutWhatRetentionDeleted) {
  Ledger l;
  for (std::uint64_t s = 500; s <= 600; ++s) l.received("gw", s);
  EXPECT_EQ(l.report("gw").unexplained, 499u);
  EXPECT_EQ(l.report("gw").unexplained_ranges.front().first, 1u);
  EXPECT_TRUE(l.report("gw", 500).ok());
}

TEST(Audit, GatewaysAreAccountedApart) {
  Ledger l;
  for (std::uint64_t s = 1; s <= 5; ++s) l.received("a", s);
  for (std::uint64_t s : {1, 3}) l.received("b", s);
  EXPECT_EQ(l.gateways(), (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(l.report("a").ok());
  EXPECT_EQ(l.report("b").unexplained, 1u);
  const GatewayAudit none = l.report("c");
  EXPECT_FALSE(none.ok()) << "a gateway with no records is not a clean audit";
  EXPECT_EQ(none.max_seq, 0u);
}

TEST(Audit, MalformedEventsAreCountedAndDeclareNothing) {
  Ledger l;
  for (std::uint64_t s : {1, 3}) l.received("gw", s);
  for (const char* bad : {"", "not json", "[]", R"({"event":"dropped"})", R"({"event":"dropped","first_seq":5,"last_seq":2})",
                          R"({"event":"dropped","first_seq":-1,"last_seq":2})", R"({"event":"something","first_seq":2,"last_seq":2})",
                          R"({"event":"dropped","first_seq":"2","last_seq":2})"})
    l.event("gw", bad);
  const GatewayAudit a = l.report("gw");
  EXPECT_EQ(a.events, 8u);
  EXPECT_EQ(a.events_not_understood, 8u);
  EXPECT_EQ(a.unexplained, 1u);
}

TEST(Audit, TwentyMillionSeqsWithAFewGapsStayFastAndSmall) {
  Ledger l;
  constexpr std::uint64_t kN = 20'000'000;
  const auto t0 = std::chrono::steady_clock::now();
  // Three partitions' worth, interleaved as a consumer reads them.
  for (std::uint64_t p = 0; p < 3; ++p)
    for (std::uint64_t s = 1 + p; s <= kN; s += 3)
      if (s % 5'000'000 != 0) l.received("gw", s);
  const GatewayAudit a = l.report("gw");
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(a.unexplained, 3u);  // 5M, 10M, 15M (20M is the max seen: the range ends below it)
  ASSERT_EQ(a.unexplained_ranges.size(), 3u);
  EXPECT_EQ(a.unexplained_ranges[1].first, 10'000'000u);
  EXPECT_EQ(a.max_seq, kN - 1);
  EXPECT_LT(secs, 60.0) << "under qemu for ARM too";  // 0.5 s natively on the 2-core machine
}

}  // namespace
}  // namespace vane
