// The command line as an operator meets it: exit codes and error text.
#include <sstream>

#include "agent_test_util.h"

namespace vane::test {
namespace {

using namespace std::chrono_literals;

struct Outcome {
  int rc = -1;
  std::string out, err;
};

Outcome run(std::vector<std::string> args, const TempDir& dir) {
  args.insert(args.begin(), vane_bin());
  ChildProcess p(args, dir.path() + "/stderr.txt");
  Outcome o;
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (auto line = p.read_line(deadline)) o.out += *line + "\n";
  auto rc = p.wait_exit(deadline);
  o.rc = rc ? *rc : -1;
  o.err = p.captured_stderr();
  return o;
}

TEST(Cli, Version) {
  TempDir dir;
  Outcome o = run({"--version"}, dir);
  EXPECT_EQ(o.rc, 0);
  EXPECT_EQ(o.out.rfind("vane ", 0), 0u) << o.out;
}

TEST(Cli, UsageErrorExits2) {
  TempDir dir;
  EXPECT_EQ(run({"frobnicate"}, dir).rc, 2);
  EXPECT_EQ(run({"run", "--no-such-flag"}, dir).rc, 2);
}

TEST(Cli, CheckConfigAcceptsTheLaptopExample) {
  TempDir dir;
  Outcome o = run({"check-config", "-c", source_dir() + "/examples/laptop.jsonc"}, dir);
  EXPECT_EQ(o.rc, 0) << o.err;
  EXPECT_NE(o.out.find("OK"), std::string::npos);
}

TEST(Cli, MissingConfigFileExits2NamingIt) {
  TempDir dir;
  Outcome o = run({"check-config", "-c", dir.path() + "/nope.jsonc"}, dir);
  EXPECT_EQ(o.rc, 2);
  EXPECT_NE(o.err.find(dir.path() + "/nope.jsonc"), std::string::npos) << o.err;
  o = run({"run", "-c", dir.path() + "/nope.jsonc"}, dir);
  EXPECT_EQ(o.rc, 2);
}

TEST(Cli, BadJsonReportsFileAndLine) {
  TempDir dir;
  const std::string cfg = dir.path() + "/bad.jsonc";
  write_file(cfg, "{\n  \"gateway\": { \"id\": \"gw\" },\n  \"buffer\": { \"path\": \"b.db\" ,, }\n}\n");
  Outcome o = run({"run", "-c", cfg}, dir);
  EXPECT_EQ(o.rc, 2);
  EXPECT_NE(o.err.find(cfg + ":3"), std::string::npos) << o.err;
}

TEST(Cli, UnsupportedSchemaKeywordExits2) {
  TempDir dir;
  write_file(dir.path() + "/s.json", R"({"type":"object","properties":{"x":{"type":"number","frob":1}}})");
  std::string cfg_text = sim_config(dir.path() + "/b.db", "127.0.0.1:1", R"("devices": 1)");
  const std::string turbine = source_dir() + "/examples/schemas/turbine.schema.json";
  cfg_text.replace(cfg_text.find(turbine), turbine.size(), dir.path() + "/s.json");
  write_file(dir.path() + "/c.jsonc", cfg_text);
  Outcome o = run({"check-config", "-c", dir.path() + "/c.jsonc"}, dir);
  EXPECT_EQ(o.rc, 2);
  EXPECT_NE(o.err.find("/properties/x/frob: unsupported keyword \"frob\""), std::string::npos) << o.err;
}

TEST(Cli, UnwritableBufferPathExits2) {
  TempDir dir;
  write_file(dir.path() + "/c.jsonc", sim_config("/proc/vane-buffer.db", "127.0.0.1:1", R"("devices": 1)"));
  Outcome o = run({"run", "-c", dir.path() + "/c.jsonc"}, dir);
  EXPECT_EQ(o.rc, 2);
  EXPECT_NE(o.err.find("/buffer/path"), std::string::npos) << o.err;
  EXPECT_NE(o.err.find("/proc/vane-buffer.db"), std::string::npos) << o.err;
}

TEST(Cli, BufferStatsOfMissingFileFails) {
  TempDir dir;
  Outcome o = run({"buffer", "stats", dir.path() + "/none.db"}, dir);
  EXPECT_EQ(o.rc, 1);
  EXPECT_NE(o.err.find(dir.path() + "/none.db"), std::string::npos) << o.err;
  EXPECT_FALSE(std::ifstream(dir.path() + "/none.db").good()) << "stats must not create the file";
}

}  // namespace
}  // namespace vane::test

namespace vane::test {
namespace {

TEST(Cli, ConfigReferenceDocIsUpToDate) {
  TempDir dir;
  Outcome o = run({"config-reference"}, dir);
  ASSERT_EQ(o.rc, 0);
  std::ifstream in(source_dir() + "/docs/CONFIG.md");
  std::stringstream doc;
  doc << in.rdbuf();
  EXPECT_EQ(o.out, doc.str()) << "docs/CONFIG.md is stale: regenerate it with `vane config-reference > docs/CONFIG.md`";
}

}  // namespace
}  // namespace vane::test
