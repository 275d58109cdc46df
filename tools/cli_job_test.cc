// `thinsim jobs` and `thinsim job VERB ID ...` (tools/cli_job.h): the
// request each builds, usage errors, the jobs table and the confirmations.
#include "tools/cli_job.h"

#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tools/cli.h"

namespace thinsim::cli {
namespace {

using nlohmann::json;

// The request `args` (after --socket /s) parse into, as sent with id 1; or
// "exit N" for a command line that does not parse.
std::string RequestOf(std::vector<std::string> args) {
  args.insert(args.begin(), {"--socket", "/s"});
  std::ostringstream out, err;
  ParseResult parsed = ParseCommandLine(args, Environment{}, out, err);
  if (!parsed.invocation) return "exit " + std::to_string(parsed.exit_code);
  return parsed.invocation->request.ToJson(1).dump();
}

TEST(JobCliTest, EveryCommandBuildsItsRequest) {
  const std::pair<std::vector<std::string>, const char*> cases[] = {
      {{"jobs"}, R"({"execute":"query-jobs","id":1})"},
      {{"job", "pause", "m0"}, R"({"execute":"job-pause","arguments":{"id":"m0"},"id":1})"},
      {{"job", "resume", "m0"}, R"({"execute":"job-resume","arguments":{"id":"m0"},"id":1})"},
      {{"job", "cancel", "m0"}, R"({"execute":"job-cancel","arguments":{"id":"m0"},"id":1})"},
      {{"job", "cancel", "m0", "--force"}, R"({"execute":"job-cancel","arguments":{"id":"m0","force":true},"id":1})"},
      {{"job", "complete", "m0"}, R"({"execute":"job-complete","arguments":{"id":"m0"},"id":1})"},
      {{"job", "finalize", "m0"}, R"({"execute":"job-finalize","arguments":{"id":"m0"},"id":1})"},
      {{"job", "dismiss", "m0"}, R"({"execute":"job-dismiss","arguments":{"id":"m0"},"id":1})"},
      {{"job", "set-speed", "m0", "10M"}, R"({"execute":"job-set-speed","arguments":{"id":"m0","speed":"10M"},"id":1})"},
      {{"job", "change", "m0", "copy-mode=write-blocking"},
       R"({"execute":"job-change","arguments":{"id":"m0","copy-mode":"write-blocking"},"id":1})"},
  };
  for (const auto& [args, expected] : cases) {
    EXPECT_EQ(RequestOf(args), json::parse(expected).dump()) << args.back();
  }
}

TEST(JobCliTest, UsageErrorsExitTwo) {
  EXPECT_EQ(RequestOf({"job"}), "exit 2");
  EXPECT_EQ(RequestOf({"job", "pause"}), "exit 2");
  EXPECT_EQ(RequestOf({"job", "frobnicate", "m0"}), "exit 2");
  EXPECT_EQ(RequestOf({"job", "set-speed", "m0"}), "exit 2");
  EXPECT_EQ(RequestOf({"job", "change", "m0"}), "exit 2");
  EXPECT_EQ(RequestOf({"job", "change", "m0", "copy-mode"}), "exit 2");
  EXPECT_EQ(RequestOf({"job", "change", "m0", "id=m1"}), "exit 2");
  EXPECT_EQ(RequestOf({"job", "pause", "m0", "--force"}), "exit 2");
}

TEST(JobCliTest, JobsTable) {
  const json jobs = json::parse(R"([
      {"id":"m0","type":"mirror","status":"running","current-progress":524288,"total-progress":1073741824,
       "speed":10485760,"actively-synced":false},
      {"id":"mirror-long-name","type":"mirror","status":"concluded","current-progress":0,"total-progress":0,
       "speed":0,"error":"target went away"}])");
  EXPECT_EQ(FormatJobReply(Request{"query-jobs", json::object()}, jobs),
            "ID                TYPE    STATUS           PROGRESS  SPEED  ERROR\n"
            "m0                mirror  running    512K/1G (0.0%)  10M/s  -\n"
            "mirror-long-name  mirror  concluded               -      -  target went away\n");
  EXPECT_EQ(FormatJobReply(Request{"query-jobs", json::object()}, json::array()),
            "ID  TYPE  STATUS  PROGRESS  SPEED  ERROR\n");
}

TEST(JobCliTest, VerbsConfirmInOneLine) {
  auto said = [](const std::string& execute, json args) { return FormatJobReply(Request{execute, args}, json::object()); };
  EXPECT_EQ(said("job-pause", {{"id", "m0"}}), "pausing job m0\n");
  EXPECT_EQ(said("job-resume", {{"id", "m0"}}), "resumed job m0\n");
  EXPECT_EQ(said("job-cancel", {{"id", "m0"}}), "cancelling job m0\n");
  EXPECT_EQ(said("job-cancel", {{"id", "m0"}, {"force", true}}), "cancelling job m0 (force)\n");
  EXPECT_EQ(said("job-complete", {{"id", "m0"}}), "completing job m0\n");
  EXPECT_EQ(said("job-finalize", {{"id", "m0"}}), "finalized job m0\n");
  EXPECT_EQ(said("job-dismiss", {{"id", "m0"}}), "dismissed job m0\n");
  EXPECT_EQ(said("job-set-speed", {{"id", "m0"}, {"speed", "10M"}}), "job m0: speed 10M/s\n");
  EXPECT_EQ(said("job-set-speed", {{"id", "m0"}, {"speed", "0"}}), "job m0: speed unlimited\n");
  EXPECT_EQ(said("job-change", {{"id", "m0"}, {"copy-mode", "write-blocking"}}), "changed job m0\n");
  EXPECT_EQ(said("query-volumes", json::object()), "");  // not ours
  EXPECT_EQ(said("fault-remove", {{"id", 1}}), "");       // another command's numeric id
}

}  // namespace
}  // namespace thinsim::cli
