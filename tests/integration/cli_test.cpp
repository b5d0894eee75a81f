// The command line as an operator meets it: exit codes and error text.
#include <signal.h>

#include <sstream>

#include "agent_test_util.h"

namespace vane::test {
namespace {

using namespace std::chrono_literals;

using Outcome = CommandOutcome;
Outcome run(std::vector<std::string> args, const TempDir& dir) { return run_vane(std::move(args), dir, 30s); }

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

// kafka.sasl with a password file; `tls` spliced into the kafka object too.
std::string secure_config(const TempDir& dir, const std::string& password_file, const std::string& tls = ", \"tls\": {}") {
  return sim_config(dir.file("b.db"), "127.0.0.1:1", R"("devices": 1)", "",
                    tls + ", \"sasl\": { \"mechanism\": \"SCRAM-SHA-512\", \"username\": \"gw-test\", "
                          "\"password_file\": \"" + password_file + "\" }");
}

TEST(Cli, MissingPasswordFileIsAConfigErrorNamingFileAndPointer) {
  TempDir dir;
  write_file(dir.file("c.jsonc"), secure_config(dir, "kafka-password"));  // relative: next to the config
  for (const char* cmd : {"check-config", "run"}) {
    Outcome o = run({cmd, "-c", dir.file("c.jsonc")}, dir);
    EXPECT_EQ(o.rc, 2) << cmd << ": " << o.err;
    EXPECT_NE(o.err.find(dir.file("c.jsonc") + ":6: /kafka/sasl/password_file: cannot read " +
                         dir.file("kafka-password") + ": No such file or directory"),
              std::string::npos)
        << cmd << ": " << o.err;
  }
}

TEST(Cli, ThePasswordIsInNoCheckConfigOutput) {
  TempDir dir;
  const std::string password = "pw-Never-Shown-7f3a";
  write_file(dir.file("kafka-password"), password + "\n");
  // Valid: OK, with the security it derived.
  write_file(dir.file("c.jsonc"), secure_config(dir, dir.file("kafka-password")));
  Outcome o = run({"check-config", "-c", dir.file("c.jsonc")}, dir);
  EXPECT_EQ(o.rc, 0) << o.err;
  EXPECT_NE(o.out.find("kafka: SASL_SSL, SCRAM-SHA-512 as user gw-test"), std::string::npos) << o.out;
  EXPECT_EQ((o.out + o.err).find(password), std::string::npos) << o.out << o.err;
  // SASL without TLS: a warning, still no password.
  write_file(dir.file("c.jsonc"), secure_config(dir, dir.file("kafka-password"), ""));
  o = run({"check-config", "-c", dir.file("c.jsonc")}, dir);
  EXPECT_EQ(o.rc, 0) << o.err;
  EXPECT_NE(o.err.find("/kafka/sasl: warning: without kafka.tls the uplink is SASL_PLAINTEXT"), std::string::npos)
      << o.err;
  EXPECT_EQ((o.out + o.err).find(password), std::string::npos) << o.out << o.err;
  // Errors all around it, and the password inline as well: named, never echoed.
  std::string text = secure_config(dir, dir.file("kafka-password"), ", \"tls\": { \"ca_file\": \"none.pem\" }");
  text.replace(text.find("\"shutdown_timeout_ms\""), 0,
               "\"properties\": { \"sasl.password\": \"" + password + "\", \"security.protocol\": \"" + password +
                   "\" }, ");
  write_file(dir.file("c.jsonc"), text);
  o = run({"check-config", "-c", dir.file("c.jsonc")}, dir);
  EXPECT_EQ(o.rc, 2);
  EXPECT_NE(o.err.find("/kafka/properties/sasl.password: a secret inline; put it in a file and set "
                       "kafka.sasl.password_file"),
            std::string::npos)
      << o.err;
  EXPECT_NE(o.err.find("/kafka/tls/ca_file: cannot read " + dir.file("none.pem")), std::string::npos) << o.err;
  EXPECT_EQ((o.out + o.err).find(password), std::string::npos) << o.out << o.err;
}

// The example's shape is valid: on a machine without its files, every error
// is a missing file, and the credentials are warnings (they exist only while
// the unit runs).
TEST(Cli, SecureClusterExampleFailsOnlyForItsAbsentFiles) {
  TempDir dir;
  Outcome o = run({"check-config", "-c", source_dir() + "/examples/secure-cluster.jsonc"}, dir);
  std::istringstream lines(o.err);
  int credential_warnings = 0;
  for (std::string line; std::getline(lines, line);) {
    if (line.find(": warning: /run/credentials/vane.service/") != std::string::npos &&
        line.find("exists only while the unit runs (LoadCredential=)") != std::string::npos) {
      ++credential_warnings;
      continue;
    }
    EXPECT_TRUE(line.find(": cannot read ") != std::string::npos || line.find(" does not exist") != std::string::npos)
        << line;
  }
  EXPECT_EQ(credential_warnings, 2) << o.err;
}

// vane run with SASL against a cluster that is not there: librdkafka's
// complaints are logged, the password is not.
TEST(Cli, ThePasswordIsInNoRunLog) {
  TempDir dir;
  const std::string password = "pw-Never-Logged-91c2";
  write_file(dir.file("kafka-password"), password + "\n");
  write_file(dir.file("c.jsonc"), secure_config(dir, dir.file("kafka-password")));
  ChildProcess p({vane_bin(), "run", "-c", dir.file("c.jsonc")}, dir.file("run.txt"));
  EXPECT_TRUE(wait_until([&] { return p.captured_stderr().find("127.0.0.1:1") != std::string::npos &&
                                      p.captured_stderr().find("kafka: ") != std::string::npos; },
                         std::chrono::seconds(30)))
      << p.captured_stderr();
  ASSERT_TRUE(p.send_signal(SIGTERM));
  EXPECT_EQ(p.wait_exit(deadline_in(std::chrono::seconds(15))), std::optional<int>(0)) << p.captured_stderr();
  EXPECT_EQ(p.captured_stderr().find(password), std::string::npos) << p.captured_stderr();
}

TEST(Cli, BufferStatsOfMissingFileFails) {
  TempDir dir;
  Outcome o = run({"buffer", "stats", dir.path() + "/none.db"}, dir);
  EXPECT_EQ(o.rc, 1);
  EXPECT_NE(o.err.find(dir.path() + "/none.db"), std::string::npos) << o.err;
  EXPECT_FALSE(std::ifstream(dir.path() + "/none.db").good()) << "stats must not create the file";
}

TEST(Cli, BufferUnparkNamesAMissingFileOrABadSeq) {
  TempDir dir;
  Outcome o = run({"buffer", "unpark", dir.path() + "/none.db"}, dir);
  EXPECT_EQ(o.rc, 1);
  EXPECT_NE(o.err.find(dir.path() + "/none.db"), std::string::npos) << o.err;
  EXPECT_FALSE(std::ifstream(dir.path() + "/none.db").good()) << "unpark must not create the file";
  o = run({"buffer", "unpark", dir.path() + "/none.db", "--seq", "x"}, dir);
  EXPECT_EQ(o.rc, 2) << o.err;
  std::ofstream(dir.path() + "/junk.db") << std::string(4096, 'j');
  o = run({"buffer", "unpark", dir.path() + "/junk.db"}, dir);
  EXPECT_EQ(o.rc, 1) << o.out;
  EXPECT_NE(o.err.find("junk.db"), std::string::npos) << o.err;
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
