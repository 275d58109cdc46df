// Tests for the thinsim CLI: formatting, argument -> request translation, and
// the control client against a tiny in-process control socket peer.

#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <functional>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tools/cli.h"
#include "tools/cli_mirror.h"
#include "tools/control_client.h"
#include "tools/format.h"

namespace thinsim::cli {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

// ---------------------------------------------------------------------------
// A control socket peer for tests. For each request line it receives it calls
// the handler, sends back the lines the handler returns, and closes the
// connection when asked to. Serves connections one after another.
//
// Thread safety: requests() may be called while the server runs.
class FakeServer {
 public:
  struct Response {
    std::vector<std::string> lines;
    bool close_after = false;
  };
  using Handler = std::function<Response(const json& request)>;

  explicit FakeServer(Handler handler) : handler_(std::move(handler)) {
    char dir_template[] = "/tmp/thinsim-cli-test-XXXXXX";
    EXPECT_NE(mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
    path_ = dir_ + "/control.sock";
    listen_fd_ = BindSocket(path_);
    EXPECT_EQ(::listen(listen_fd_, 4), 0);
    thread_ = std::thread([this] { AcceptLoop(); });
  }

  ~FakeServer() {
    stopping_ = true;
    ::shutdown(listen_fd_, SHUT_RDWR);
    int conn = conn_fd_.load();
    if (conn >= 0) ::shutdown(conn, SHUT_RDWR);
    thread_.join();
    ::close(listen_fd_);
    ::unlink(path_.c_str());
    ::rmdir(dir_.c_str());
  }

  const std::string& path() const { return path_; }
  const std::string& dir() const { return dir_; }

  std::vector<std::string> requests() {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }

  // A socket bound at `path` (not listening).
  static int BindSocket(const std::string& path) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0)
        << std::strerror(errno);
    return fd;
  }

 private:
  void AcceptLoop() {
    while (!stopping_) {
      int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) return;
      conn_fd_ = fd;
      Serve(fd);
      conn_fd_ = -1;
      ::close(fd);
    }
  }

  void Serve(int fd) {
    std::string buffer;
    char chunk[4096];
    for (;;) {
      ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
      if (n <= 0) return;
      buffer.append(chunk, static_cast<std::size_t>(n));
      std::size_t newline;
      while ((newline = buffer.find('\n')) != std::string::npos) {
        std::string line = buffer.substr(0, newline);
        buffer.erase(0, newline + 1);
        {
          std::lock_guard<std::mutex> lock(mu_);
          requests_.push_back(line);
        }
        Response response = handler_(json::parse(line));
        for (const std::string& out : response.lines) {
          std::string data = out + "\n";
          if (::send(fd, data.data(), data.size(), MSG_NOSIGNAL) < 0) return;
        }
        if (response.close_after) return;
      }
    }
  }

  Handler handler_;
  std::string dir_;
  std::string path_;
  int listen_fd_ = -1;
  std::atomic<int> conn_fd_{-1};
  std::atomic<bool> stopping_{false};
  std::mutex mu_;
  std::vector<std::string> requests_;
  std::thread thread_;
};

std::string ReturnLine(const json& request, const json& value) {
  return json{{"return", value}, {"id", request["id"]}}.dump();
}

std::string ErrorLine(const json& request, const std::string& cls, const std::string& desc) {
  json error = {{"class", cls}, {"errno", "ENOENT"}, {"desc", desc}};
  return json{{"error", error}, {"id", request["id"]}}.dump();
}

json SamplePool() {
  return {{"block_size", 65536},  {"total_blocks", 16384},     {"used_blocks", 1024},
          {"reserved_blocks", 512}, {"free_blocks", 15360},      {"mode", "write"},
          {"size", 1073741824},    {"when_full", "error"},       {"low_water_percent", 10},
          {"volumes", 2},          {"persistent", true}};
}

json SampleVolume(const std::string& name, std::uint64_t size, const json& origin) {
  return {{"name", name},          {"size", size},          {"strategy", "none"},
          {"active", false},       {"read_only", false},    {"origin", origin},
          {"mapped_blocks", 3},    {"exclusive_blocks", 1}, {"shared_blocks", 2},
          {"provisioned_blocks", 0}, {"reserved_blocks", 0}, {"connections", 0},
          {"writable_connections", 0}, {"pinned", false}};
}

// Runs the whole CLI and captures what it prints.
struct CliRun {
  int exit_code;
  std::string out;
  std::string err;
};

CliRun RunThinsim(const std::vector<std::string>& args, const Environment& env = {}) {
  std::ostringstream out, err;
  int code = RunCli(args, env, out, err);
  return {code, out.str(), err.str()};
}

// Parses a command line that must produce an invocation.
Invocation MustParse(const std::vector<std::string>& args, const Environment& env = {}) {
  std::ostringstream out, err;
  ParseResult result = ParseCommandLine(args, env, out, err);
  EXPECT_TRUE(result.invocation.has_value()) << err.str();
  return result.invocation.value_or(Invocation{});
}

// ---------------------------------------------------------------------------
// Formatting.

TEST(HumanSizeTest, WholeUnits) {
  EXPECT_EQ(HumanSize(0), "0");
  EXPECT_EQ(HumanSize(512), "512");
  EXPECT_EQ(HumanSize(1023), "1023");
  EXPECT_EQ(HumanSize(1024), "1K");
  EXPECT_EQ(HumanSize(65536), "64K");
  EXPECT_EQ(HumanSize(std::uint64_t{1} << 20), "1M");
  EXPECT_EQ(HumanSize(std::uint64_t{1} << 30), "1G");
  EXPECT_EQ(HumanSize(std::uint64_t{3} << 40), "3T");
  EXPECT_EQ(HumanSize(std::uint64_t{1} << 60), "1E");
}

TEST(HumanSizeTest, FractionalUnits) {
  EXPECT_EQ(HumanSize(1536), "1.5K");
  EXPECT_EQ(HumanSize((std::uint64_t{3} << 30) / 2), "1.5G");
  EXPECT_EQ(HumanSize((std::uint64_t{1} << 20) - 1), "1.0M");  // not "1024.0K"
  EXPECT_EQ(HumanSize(UINT64_MAX), "16.0E");
}

TEST(PercentTest, OneDecimal) {
  EXPECT_EQ(Percent(1, 8), "12.5%");
  EXPECT_EQ(Percent(15360, 16384), "93.8%");
  EXPECT_EQ(Percent(0, 0), "0.0%");
  EXPECT_EQ(Percent(5, 5), "100.0%");
}

TEST(FormatStatusTest, KeyValueBlock) {
  EXPECT_EQ(FormatStatus(SamplePool()),
            "block size: 64K\n"
            "total:      16384 blocks (1G)\n"
            "used:       1024 blocks (64M, 6.2%)\n"
            "reserved:   512 blocks (32M, 3.1%)\n"
            "free:       15360 blocks (960M, 93.8%)\n"
            "mode:       write\n"
            "when full:  error\n"
            "low water:  10%\n"
            "volumes:    2\n"
            "persistent: yes\n");
}

TEST(FormatStatusTest, OptionalKeysMayBeAbsent) {
  json pool = {{"block_size", 4096}, {"total_blocks", 0},  {"used_blocks", 0},
               {"reserved_blocks", 0}, {"free_blocks", 0}, {"mode", "fail"}};
  EXPECT_EQ(FormatStatus(pool),
            "block size: 4K\n"
            "total:      0 blocks (0)\n"
            "used:       0 blocks (0, 0.0%)\n"
            "reserved:   0 blocks (0, 0.0%)\n"
            "free:       0 blocks (0, 0.0%)\n"
            "mode:       fail\n");
}

TEST(FormatStatusTest, MissingRequiredKeyThrows) {
  json pool = SamplePool();
  pool.erase("free_blocks");
  EXPECT_THROW(FormatStatus(pool), json::exception);
}

TEST(FormatVolumeTableTest, AlignedWithNullOrigin) {
  json snap = SampleVolume("snap1", std::uint64_t{1} << 30, "vol0");
  snap["read_only"] = true;
  snap["mapped_blocks"] = 12345;
  json volumes = {SampleVolume("vol0", std::uint64_t{1} << 30, nullptr), snap};
  EXPECT_EQ(FormatVolumeTable(volumes),
            "NAME   SIZE  STRATEGY  ACTIVE  RO   MAPPED  EXCL  SHARED  PROV  RESERVED  ORIGIN\n"
            "vol0     1G  none      no      no        3     1       2     0         0  -\n"
            "snap1    1G  none      no      yes   12345     1       2     0         0  vol0\n");
}

TEST(FormatVolumeTableTest, EmptyListIsHeaderOnly) {
  EXPECT_EQ(FormatVolumeTable(json::array()),
            "NAME  SIZE  STRATEGY  ACTIVE  RO  MAPPED  EXCL  SHARED  PROV  RESERVED  ORIGIN\n");
}

TEST(FormatEventTest, TimestampNameData) {
  json event = {{"event", "LOW_WATER"},
                {"data", {{"free_blocks", 10}}},
                {"timestamp", {{"seconds", 1714564800}, {"microseconds", 123}}}};
  EXPECT_EQ(FormatEvent(event), "2024-05-01T12:00:00.000123Z LOW_WATER {\"free_blocks\":10}");
  EXPECT_EQ(FormatEvent({{"event", "POOL_FULL"}}), "POOL_FULL");
}

TEST(FormatConfirmationTest, OneLinePerCommand) {
  Request create{"volume-create", {{"name", "vol1"}, {"size", "1073741824"}}};
  EXPECT_EQ(FormatConfirmation(create, SampleVolume("vol1", std::uint64_t{1} << 30, nullptr)),
            "created vol1 (1G)");
  Request snapshot{"snapshot-create", {{"origin", "vol0"}, {"name", "snap1"}, {"read-only", true}}};
  EXPECT_EQ(FormatConfirmation(snapshot, json::array()), "snapshot vol0 -> snap1 (read-only)");
  Request multi{"snapshot-create",
                {{"snapshots", {{{"origin", "A"}, {"name", "A1"}}, {{"origin", "B"}, {"name", "B1"}}}}}};
  EXPECT_EQ(FormatConfirmation(multi, json::array()), "snapshot A -> A1, B -> B1");
  EXPECT_EQ(FormatConfirmation(Request{"volume-delete", {{"name", "v"}}}, json::object()),
            "deleted v");
  EXPECT_EQ(FormatConfirmation(Request{"pool-grow", {{"size", "2G"}}}, SamplePool()),
            "grew pool to 1G (16384 blocks)");
  EXPECT_EQ(FormatConfirmation(Request{"commit"}, json::object()), "committed");
}

TEST(FormatServerErrorTest, DescAndClass) {
  EXPECT_EQ(FormatServerError({{"class", "NoSpace"}, {"errno", "ENOSPC"}, {"desc", "need 3, free 1"}}),
            "need 3, free 1 (NoSpace)");
  EXPECT_EQ(FormatServerError({{"class", "IO"}}), "IO");
}

// ---------------------------------------------------------------------------
// Argument -> request translation.

TEST(ParseCommandLineTest, MirrorBuildsMirrorStartAndWaitKeepsTheJobUntilRead) {
  Invocation inv = MustParse({"--socket", "/s", "mirror", "v", "nbd://host/x", "--sync", "top", "--speed", "10M",
                              "--copy-mode", "write-blocking", "--target-is-zero", "--wait"});
  EXPECT_EQ(inv.request.execute, "mirror-start");
  EXPECT_EQ(inv.request.arguments, json({{"volume", "v"}, {"target", "nbd://host/x"}, {"sync", "top"},
                                         {"speed", "10M"}, {"copy-mode", "write-blocking"},
                                         {"target-is-zero", true}, {"auto-dismiss", false}}));
  EXPECT_TRUE(inv.wait_for_job);
  inv = MustParse({"--socket", "/s", "mirror", "v", "nbd://host/x"});
  EXPECT_EQ(inv.request.arguments, json({{"volume", "v"}, {"target", "nbd://host/x"}, {"sync", "full"}}));
  EXPECT_FALSE(inv.wait_for_job);
}

TEST(MirrorProgressTest, LineForATerminalAndForJson) {
  json job = {{"id", "job0"}, {"status", "running"}, {"current-progress", 1 << 20}, {"total-progress", 4 << 20}};
  EXPECT_EQ(ProgressLine(job, 1 << 20, false), "job0: running  1M/4M (25.0%)  1M/s  ETA 3s");
  EXPECT_EQ(ProgressLine(job, -1, false), "job0: running  1M/4M (25.0%)  -  ETA -");
  json line = json::parse(ProgressLine(job, 1 << 20, true));
  EXPECT_EQ(line["eta-seconds"], 3.0);
  EXPECT_EQ(line["current-progress"], 1 << 20);
}

TEST(ParseTest, MultiSnapshotReadOnly) {
  Invocation inv = MustParse({"--socket", "/s", "snapshot", "A:A1", "B:B1", "--read-only"});
  EXPECT_EQ(inv.request.ToJson(7), json::parse(R"({"execute":"snapshot-create","arguments":{
      "snapshots":[{"origin":"A","name":"A1"},{"origin":"B","name":"B1"}],"read-only":true},
      "id":7})"));
}

TEST(ParseTest, SingleSnapshot) {
  Invocation inv = MustParse({"--socket", "/s", "snapshot", "vol0", "snap1"});
  EXPECT_EQ(inv.request.ToJson(1),
            json::parse(R"({"execute":"snapshot-create",
                            "arguments":{"origin":"vol0","name":"snap1"},"id":1})"));
  inv = MustParse({"--socket", "/s", "snapshot", "vol0:snap1"});
  EXPECT_EQ(inv.request.arguments,
            json::parse(R"({"snapshots":[{"origin":"vol0","name":"snap1"}]})"));
}

TEST(ParseTest, BadSnapshotArgumentsAreUsageErrors) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"A:A1", "B"}, {"A"}, {"A", "B", "C"}, {":A1"}, {"A:"},
        {"A:B:C"}}) {
    std::vector<std::string> line = {"--socket", "/s", "snapshot"};
    line.insert(line.end(), args.begin(), args.end());
    CliRun run = RunThinsim(line);
    EXPECT_EQ(run.exit_code, kExitUsage) << args[0];
    EXPECT_EQ(run.err.rfind("thinsim: ", 0), 0u) << run.err;
  }
}

TEST(ParseTest, SetReserve) {
  Invocation inv = MustParse({"--socket", "/s", "set", "vol1", "reserve=full"});
  EXPECT_EQ(inv.request.ToJson(1),
            json::parse(R"({"execute":"volume-set",
                            "arguments":{"name":"vol1","reserve":"full"},"id":1})"));
  CliRun run = RunThinsim({"--socket", "/s", "set", "vol1", "colour=blue"});
  EXPECT_EQ(run.exit_code, kExitUsage);
  EXPECT_EQ(run.err, "thinsim: unknown setting 'colour': the only setting is reserve\n");
  EXPECT_EQ(RunThinsim({"--socket", "/s", "set", "vol1", "reserve"}).exit_code, kExitUsage);
  EXPECT_EQ(RunThinsim({"--socket", "/s", "set", "vol1", "reserve="}).exit_code, kExitUsage);
}

TEST(ParseTest, EveryCommandBuildsItsRequest) {
  struct Case {
    std::vector<std::string> args;
    std::string expected;  // the request with id 1
  };
  const std::vector<Case> cases = {
      {{"status"}, R"({"execute":"query-pool","id":1})"},
      {{"ls"}, R"({"execute":"query-volumes","id":1})"},
      {{"ls", "vol1"}, R"({"execute":"query-volumes","arguments":{"name":"vol1"},"id":1})"},
      {{"create", "vol1", "1G"},
       R"({"execute":"volume-create","arguments":{"name":"vol1","size":"1G"},"id":1})"},
      {{"create", "vol1", "1G", "--reserve", "full"},
       R"({"execute":"volume-create","arguments":{"name":"vol1","size":"1G","reserve":"full"},"id":1})"},
      {{"delete", "vol1"}, R"({"execute":"volume-delete","arguments":{"name":"vol1"},"id":1})"},
      {{"resize", "vol1", "2G"},
       R"({"execute":"volume-resize","arguments":{"name":"vol1","size":"2G"},"id":1})"},
      {{"activate", "vol1"}, R"({"execute":"volume-activate","arguments":{"name":"vol1"},"id":1})"},
      {{"deactivate", "vol1"},
       R"({"execute":"volume-deactivate","arguments":{"name":"vol1"},"id":1})"},
      {{"provision", "vol1", "1M", "64K"},
       R"({"execute":"provision","arguments":{"name":"vol1","offset":"1M","length":"64K"},"id":1})"},
      {{"grow", "4G"}, R"({"execute":"pool-grow","arguments":{"size":"4G"},"id":1})"},
      {{"commit"}, R"({"execute":"commit","id":1})"},
      {{"events"}, R"({"execute":"events-subscribe","id":1})"},
      {{"fault", "add", "--layer", "data", "--op", "write", "--errno", "EIO", "--offset", "1M",
        "--length", "64K", "--probability", "0.5", "--count", "2"},
       R"({"execute":"fault-add","arguments":{"layer":"data","op":"write","errno":"EIO",)"
       R"("offset":"1M","length":"64K","probability":0.5,"count":2},"id":1})"},
      {{"fault", "remove", "3"}, R"({"execute":"fault-remove","arguments":{"id":3},"id":1})"},
      {{"fault", "ls"}, R"({"execute":"query-faults","id":1})"},
      {{"power-cut"}, R"({"execute":"power-cut","id":1})"},
      {{"bitmap", "add", "v", "b", "--granularity", "4K", "--disabled"},
       R"({"execute":"bitmap-add","arguments":{"volume":"v","name":"b","granularity":"4K","disabled":true},"id":1})"},
      {{"bitmap", "remove", "v", "b"}, R"({"execute":"bitmap-remove","arguments":{"volume":"v","name":"b"},"id":1})"},
      {{"bitmap", "clear", "v", "b"}, R"({"execute":"bitmap-clear","arguments":{"volume":"v","name":"b"},"id":1})"},
      {{"bitmap", "enable", "v", "b"}, R"({"execute":"bitmap-enable","arguments":{"volume":"v","name":"b"},"id":1})"},
      {{"bitmap", "disable", "v", "b"},
       R"({"execute":"bitmap-disable","arguments":{"volume":"v","name":"b"},"id":1})"},
      {{"bitmap", "merge", "v", "b", "c", "d"},
       R"({"execute":"bitmap-merge","arguments":{"volume":"v","target":"b","sources":["c","d"]},"id":1})"},
      {{"bitmap", "ls"}, R"({"execute":"query-bitmaps","id":1})"},
      {{"bitmap", "ls", "v"}, R"({"execute":"query-bitmaps","arguments":{"volume":"v"},"id":1})"},
      {{"bitmap", "extents", "v", "b", "--offset", "1M", "--length", "64K"},
       R"({"execute":"bitmap-extents","arguments":{"volume":"v","name":"b","offset":"1M","length":"64K"},"id":1})"},
      {{"bitmap", "cut", "v", "b", "frozen"},
       R"({"execute":"bitmap-cut","arguments":{"volume":"v","name":"b","into":"frozen"},"id":1})"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> line = {"--socket", "/s"};
    line.insert(line.end(), c.args.begin(), c.args.end());
    EXPECT_EQ(MustParse(line).request.ToJson(1).dump(), json::parse(c.expected).dump())
        << c.args[0];
  }
}

TEST(ParseTest, SocketFromFlagPoolOrEnvironment) {
  EXPECT_EQ(MustParse({"--socket", "/run/x.sock", "status"}).socket_path, "/run/x.sock");
  EXPECT_EQ(MustParse({"--pool", "/var/pool", "status"}).socket_path, "/var/pool/control.sock");
  EXPECT_EQ(MustParse({"--pool", "/var/pool/", "status"}).socket_path, "/var/pool/control.sock");
  Environment env{"/env.sock"};
  EXPECT_EQ(MustParse({"status"}, env).socket_path, "/env.sock");
  EXPECT_EQ(MustParse({"--pool", "/p", "status"}, env).socket_path, "/p/control.sock");
}

TEST(ParseTest, NoSocketIsAUsageError) {
  CliRun run = RunThinsim({"status"});
  EXPECT_EQ(run.exit_code, kExitUsage);
  EXPECT_EQ(run.err, "thinsim: no control socket: use --socket PATH, --pool DIR or THINSIM_SOCKET\n");
}

TEST(ParseTest, GlobalOptionsMayFollowTheCommand) {
  Invocation inv = MustParse({"ls", "--json", "--socket", "/s", "--timeout", "2.5"});
  EXPECT_TRUE(inv.json);
  EXPECT_EQ(inv.socket_path, "/s");
  EXPECT_EQ(inv.timeout, 2500ms);
}

TEST(ParseTest, UsageErrorsExitTwo) {
  EXPECT_EQ(RunThinsim({}).exit_code, kExitUsage);
  EXPECT_EQ(RunThinsim({"--socket", "/s", "frobnicate"}).exit_code, kExitUsage);
  EXPECT_EQ(RunThinsim({"--socket", "/s", "create", "vol1"}).exit_code, kExitUsage);
  EXPECT_EQ(RunThinsim({"--socket", "/s", "delete", "a", "b"}).exit_code, kExitUsage);
  EXPECT_EQ(RunThinsim({"--socket", "/s", "--pool", "/p", "status"}).exit_code, kExitUsage);
  EXPECT_EQ(RunThinsim({"--socket", "/s", "--timeout", "-1", "status"}).exit_code, kExitUsage);
  CliRun run = RunThinsim({"--socket", "/s", "create", "vol1"});
  EXPECT_NE(run.err.find("SIZE"), std::string::npos) << run.err;
}

TEST(ParseTest, HelpExitsZero) {
  CliRun run = RunThinsim({"--help"});
  EXPECT_EQ(run.exit_code, kExitOk);
  EXPECT_NE(run.out.find("snapshot"), std::string::npos);
  EXPECT_EQ(RunThinsim({"create", "--help"}).exit_code, kExitOk);
}

// ---------------------------------------------------------------------------
// The client against a real socket.

TEST(ControlClientTest, MatchesReplyByIdSkippingEventsAndOtherIds) {
  FakeServer server([](const json& request) {
    return FakeServer::Response{{
        R"({"event":"LOW_WATER","data":{"free_blocks":1},"timestamp":{"seconds":1,"microseconds":2}})",
        json{{"return", "not yours"}, {"id", 999}}.dump(),
        ReturnLine(request, SamplePool()),
    }};
  });
  ControlClient client;
  ASSERT_TRUE(client.Connect(server.path()).ok());
  Reply reply;
  Status status = client.Call(Request{"query-pool"}, &reply);
  ASSERT_TRUE(status.ok()) << status.message();
  EXPECT_TRUE(reply.ok);
  EXPECT_EQ(reply.value, SamplePool());
  // The event that came first is kept for ReadEvent.
  Event event;
  ASSERT_TRUE(client.ReadEvent(&event).ok());
  EXPECT_EQ(event.json["event"], "LOW_WATER");
  EXPECT_EQ(event.line.front(), '{');
  // Ids increase per request.
  ASSERT_TRUE(client.Call(Request{"commit"}, &reply).ok());
  std::vector<std::string> sent = server.requests();
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[0], R"({"execute":"query-pool","id":1})");
  EXPECT_EQ(sent[1], R"({"execute":"commit","id":2})");
}

TEST(ControlClientTest, TimesOut) {
  FakeServer server([](const json&) { return FakeServer::Response{}; });
  ControlClient client;
  client.set_timeout(150ms);
  ASSERT_TRUE(client.Connect(server.path()).ok());
  Reply reply;
  Status status = client.Call(Request{"query-pool"}, &reply);
  EXPECT_EQ(status.code(), ErrorCode::kTimedOut);
  EXPECT_EQ(status.message(), "timed out after 0.15s waiting for reply to query-pool on control socket " +
                                  server.path());
}

TEST(ControlClientTest, ServerClosesBeforeReplying) {
  FakeServer server([](const json&) { return FakeServer::Response{{}, true}; });
  CliRun run = RunThinsim({"--socket", server.path(), "status"});
  EXPECT_EQ(run.exit_code, kExitFailure);
  EXPECT_EQ(run.err, "thinsim: control socket " + server.path() +
                         " closed the connection while waiting for reply to query-pool\n");
}

TEST(ControlClientTest, GarbageLineIsAProtocolError) {
  FakeServer server([](const json&) { return FakeServer::Response{{"hello there"}}; });
  ControlClient client;
  ASSERT_TRUE(client.Connect(server.path()).ok());
  Reply reply;
  EXPECT_EQ(client.Call(Request{"query-pool"}, &reply).code(), ErrorCode::kProtocol);
}

TEST(ControlClientTest, ConnectionRefused) {
  char dir_template[] = "/tmp/thinsim-cli-test-XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const std::string path = std::string(dir_template) + "/control.sock";
  int fd = FakeServer::BindSocket(path);  // bound, never listening
  CliRun run = RunThinsim({"--socket", path, "status"});
  ::close(fd);
  ::unlink(path.c_str());
  ::rmdir(dir_template);
  EXPECT_EQ(run.exit_code, kExitFailure);
  EXPECT_EQ(run.err, "thinsim: cannot connect to control socket " + path +
                         ": Connection refused (is nbdkit running with the thinsim plugin?)\n");
  EXPECT_EQ(run.out, "");
}

TEST(ControlClientTest, MissingSocket) {
  CliRun run = RunThinsim({"--pool", "/nonexistent/thinsim-pool", "status"});
  EXPECT_EQ(run.exit_code, kExitFailure);
  EXPECT_EQ(run.err,
            "thinsim: cannot connect to control socket /nonexistent/thinsim-pool/control.sock: "
            "No such file or directory (is nbdkit running with the thinsim plugin?)\n");
}

// ---------------------------------------------------------------------------
// Whole commands against a real socket.

TEST(RunCliTest, StatusHumanAndJson) {
  FakeServer server([](const json& request) {
    return FakeServer::Response{{ReturnLine(request, SamplePool())}};
  });
  CliRun run = RunThinsim({"--socket", server.path(), "status"});
  EXPECT_EQ(run.exit_code, kExitOk) << run.err;
  EXPECT_EQ(run.out, FormatStatus(SamplePool()));
  run = RunThinsim({"--pool", server.dir(), "--json", "status"});
  EXPECT_EQ(run.exit_code, kExitOk) << run.err;
  EXPECT_EQ(run.out, SamplePool().dump() + "\n");
}

TEST(RunCliTest, LsJsonIsOneCompactLine) {
  json volumes = {SampleVolume("vol0", 1 << 20, nullptr)};
  FakeServer server([&](const json& request) {
    return FakeServer::Response{{ReturnLine(request, volumes)}};
  });
  CliRun run = RunThinsim({"ls", "--json"}, Environment{server.path()});
  EXPECT_EQ(run.exit_code, kExitOk) << run.err;
  EXPECT_EQ(run.out, volumes.dump() + "\n");
  EXPECT_EQ(std::count(run.out.begin(), run.out.end(), '\n'), 1);
}

TEST(RunCliTest, CreateSendsRequestAndConfirms) {
  FakeServer server([](const json& request) {
    return FakeServer::Response{{ReturnLine(request, SampleVolume("vol1", 1 << 30, nullptr))}};
  });
  CliRun run = RunThinsim({"--socket", server.path(), "create", "vol1", "1G"});
  EXPECT_EQ(run.exit_code, kExitOk) << run.err;
  EXPECT_EQ(run.out, "created vol1 (1G)\n");
  EXPECT_EQ(server.requests().at(0),
            R"({"arguments":{"name":"vol1","size":"1G"},"execute":"volume-create","id":1})");
}

TEST(RunCliTest, ServerErrorExitsOne) {
  FakeServer server([](const json& request) {
    return FakeServer::Response{{ErrorLine(request, "NotFound", "no volume named 'nope'")}};
  });
  CliRun run = RunThinsim({"--socket", server.path(), "delete", "nope"});
  EXPECT_EQ(run.exit_code, kExitFailure);
  EXPECT_EQ(run.out, "");
  EXPECT_EQ(run.err, "thinsim: no volume named 'nope' (NotFound)\n");
}

TEST(RunCliTest, MalformedReplyExitsOne) {
  FakeServer server([](const json& request) {
    return FakeServer::Response{{ReturnLine(request, {{"block_size", "big"}})}};
  });
  CliRun run = RunThinsim({"--socket", server.path(), "status"});
  EXPECT_EQ(run.exit_code, kExitFailure);
  EXPECT_EQ(run.err.rfind("thinsim: unexpected reply to query-pool from ", 0), 0u) << run.err;
}

const char* const kEventLines[] = {
    R"({"event":"LOW_WATER","data":{"free_blocks":5},"timestamp":{"seconds":0,"microseconds":1}})",
    R"({"event":"POOL_MODE","data":{"mode":"out-of-data-space"},"timestamp":{"seconds":60,"microseconds":0}})",
};

FakeServer::Response SubscribeThenTwoEvents(const json& request) {
  return FakeServer::Response{{ReturnLine(request, json::object()), kEventLines[0], kEventLines[1]},
                              /*close_after=*/true};
}

TEST(RunCliTest, EventsHumanUntilClose) {
  FakeServer server(SubscribeThenTwoEvents);
  CliRun run = RunThinsim({"--socket", server.path(), "events"});
  EXPECT_EQ(run.exit_code, kExitOk) << run.err;
  EXPECT_EQ(run.out,
            "1970-01-01T00:00:00.000001Z LOW_WATER {\"free_blocks\":5}\n"
            "1970-01-01T00:01:00.000000Z POOL_MODE {\"mode\":\"out-of-data-space\"}\n");
  EXPECT_EQ(server.requests().at(0), R"({"execute":"events-subscribe","id":1})");
}

TEST(RunCliTest, EventsJsonPrintsRawLines) {
  FakeServer server(SubscribeThenTwoEvents);
  CliRun run = RunThinsim({"--socket", server.path(), "--json", "events"});
  EXPECT_EQ(run.exit_code, kExitOk) << run.err;
  EXPECT_EQ(run.out, std::string(kEventLines[0]) + "\n" + kEventLines[1] + "\n");
}

}  // namespace
}  // namespace thinsim::cli
