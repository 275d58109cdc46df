// Tests for the offline commands: dump/restore canonical JSON, delta,
// locking, command-line parsing and the commands on real pool directories
// built with metadata::Journal.
#include "tools/offline.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <sstream>
#include <string>

#include "metadata/check.h"
#include "metadata/journal.h"
#include "metadata/test_util.h"
#include "tools/cli.h"

namespace thinsim::offline {
namespace {

using metadata::Image;
using metadata::test::AddVolume;
using metadata::test::DeriveRefcounts;
using metadata::test::Encoded;
using metadata::test::MakeChunk;
using metadata::test::MakePool;
using metadata::test::TempDir;
using nlohmann::json;

constexpr uint64_t kBlock = 64 * 1024;

// vol (id 1) with a provisioned run, snap (id 2) sharing vol's chunk 0 and
// with a chunk of its own, refcounts derived.
Image SampleImage() {
  Image image = MakePool(64);
  image.commit_seq = 17;
  AddVolume(&image, 1, "vol", 8ull << 20);
  AddVolume(&image, 2, "snap", 8ull << 20, /*origin_id=*/1, /*family=*/1);
  image.volumes[2].attrs.read_only = true;
  image.volumes[1].attrs.strategy = 1;
  auto shared = MakeChunk({{0, 4}, {1, 5}, {2, 6}, {9, 20}}, {1, 2});
  image.volumes[1].chunks[0] = shared;
  image.volumes[2].chunks[0] = shared;
  image.volumes[1].chunks[1] = MakeChunk({{0, 30}});
  DeriveRefcounts(&image);
  metadata::BitmapImage& b = image.volumes[1].bitmaps[3];  // 128 granules of 64K
  b.name = "inc";
  b.granularity = 65536;
  b.flags = metadata::BitmapRecord::kRecording;
  b.dirty += boost::icl::interval<uint64_t>::right_open(3, 5);
  b.dirty += boost::icl::interval<uint64_t>::right_open(127, 128);
  return image;
}

// Writes `image` as a pool in `dir` (metadata and a sparse data file).
void WritePool(const std::string& dir, const Image& image) {
  std::string records;
  image.Encode(&records);
  ASSERT_TRUE(metadata::Journal::Rewrite(dir, records, image.commit_seq).ok());
  int fd = open((dir + "/data").c_str(), O_RDWR | O_CREAT, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, static_cast<off_t>(image.nr_blocks * image.block_size)), 0);
  close(fd);
}

struct CommandResult {
  int code;
  std::string out, err;
};

CommandResult RunCommand(const std::vector<std::string>& args) {
  std::ostringstream out, err;
  int code = cli::RunCli(args, cli::Environment(), out, err);
  return {code, out.str(), err.str()};
}

TEST(DumpJson, IsCanonicalWithSharedChunksListedOnce) {
  json dump = json::parse(FormatDumpJson(SampleImage()));
  EXPECT_EQ(dump["format"], "thinsim-metadata-dump");
  EXPECT_EQ(dump["pool"]["commit_seq"], 17);
  EXPECT_EQ(dump["pool"]["mode"], "write");
  ASSERT_EQ(dump["chunks"].size(), 2u);
  EXPECT_EQ(dump["volumes"][0]["chunks"], json::parse(R"([{"index":0,"chunk":1},{"index":1,"chunk":2}])"));
  EXPECT_EQ(dump["volumes"][1]["chunks"], json::parse(R"([{"index":0,"chunk":1}])"));
  EXPECT_EQ(dump["volumes"][1]["origin_id"], 1);
  EXPECT_TRUE(dump["volumes"][0]["origin_id"].is_null());
  EXPECT_EQ(dump["volumes"][0]["strategy"], "provision");
  EXPECT_EQ(dump["volumes"][0]["bitmaps"], json::parse(R"([{"id":3,"name":"inc","granularity":65536,"recording":true,
      "inconsistent":false,"dirty":[{"first":3,"count":2},{"first":127,"count":1}]}])"));
  EXPECT_EQ(dump["volumes"][1]["bitmaps"], json::array());
  EXPECT_EQ(dump["chunks"][0]["runs"], json::parse(R"([
      {"entry":0,"dblock":4,"length":1,"provisioned":false},
      {"entry":1,"dblock":5,"length":2,"provisioned":true},
      {"entry":9,"dblock":20,"length":1,"provisioned":false}])"));
  EXPECT_EQ(dump["refcounts"], json::parse(R"([
      {"dblock":4,"length":3,"count":1},{"dblock":20,"length":1,"count":1},{"dblock":30,"length":1,"count":1}])"));
}

TEST(DumpJson, RestoreGivesTheSameImageAndTheSameText) {
  Image image = SampleImage();
  std::string text = FormatDumpJson(image);
  Image restored;
  ASSERT_TRUE(ImageFromJson(json::parse(text), &restored).ok());
  EXPECT_EQ(Encoded(restored), Encoded(image));
  EXPECT_EQ(restored.volumes[1].chunks[0].get(), restored.volumes[2].chunks[0].get());
  EXPECT_EQ(FormatDumpJson(restored), text);
  EXPECT_EQ(FormatDumpText(restored), FormatDumpText(image));
}

TEST(DumpJson, DamageSurvivesARoundTrip) {
  Image image = SampleImage();
  image.refcounts[4] = 9;
  image.volumes[2].attrs.origin_id = 99;
  image.volumes[1].chunks[1] = MakeChunk({{0, 1000}});
  image.mode = 200;
  image.volumes[1].attrs.strategy = 77;
  Image restored;
  ASSERT_TRUE(ImageFromJson(json::parse(FormatDumpJson(image)), &restored).ok());
  EXPECT_EQ(Encoded(restored), Encoded(image));
}

TEST(ImageFromJson, RejectsMalformedDumpsNamingTheProblem) {
  std::string good = FormatDumpJson(SampleImage());
  struct Case {
    std::string from, to, error;
  };
  std::vector<Case> cases = {
      {"\"thinsim-metadata-dump\"", "\"other\"", "not a thinsim-metadata-dump"},
      {"\"block_size\":65536", "\"block_size\":\"64K\"", "block_size"},
      {"\"chunk\":2", "\"chunk\":9", "refers to chunk 9"},
      {"{\"id\":2,\"name\":\"snap\"", "{\"id\":1,\"name\":\"snap\"", "listed twice"},
      {"{\"index\":1,\"chunk\":2}", "{\"index\":0,\"chunk\":2}", "slot 0 twice"},
      {"\"entry\":9,", "\"entry\":64,", "entry"},
      {"\"entry\":9,\"dblock\":20,\"length\":1", "\"entry\":9,\"dblock\":20,\"length\":56", "does not fit"},
      {"\"entry\":9,", "\"entry\":2,", "twice"},
      {"\"dblock\":30,\"length\":1,\"count\":1", "\"dblock\":30,\"length\":1,\"count\":0", "count >= 1"},
      {"\"dblock\":20,\"length\":1,\"count\":1", "\"dblock\":5,\"length\":1,\"count\":1", "twice"},
      {"\"mode\":\"write\"", "\"mode\":\"sideways\"", "unknown value"},
      {",\"pinned\":false,\"chunks\":[{\"index\":0,\"chunk\":1}],", ",\"chunks\":[{\"index\":0,\"chunk\":1}],", "pinned"},
      {"\"granularity\":65536", "\"granularity\":65537", "granularity must be a power of two"},
      {"\"first\":127,\"count\":1", "\"first\":127,\"count\":2", "granules below 128"},
      {"\"first\":3,\"count\":2", "\"first\":3,\"count\":0", "count >= 1"},
      {"\"name\":\"inc\"", "\"name\":\"\"", "empty name"},
      {"\"id\":3,\"name\":\"inc\"", "\"id\":0,\"name\":\"inc\"", "id 0"},
      {"\"bitmaps\":[]", "\"bitmaps\":{}", "\"bitmaps\" must be a list"},
  };
  for (const Case& c : cases) {
    std::string text = good;
    size_t at = text.find(c.from);
    ASSERT_NE(at, std::string::npos) << c.from;
    text.replace(at, c.from.size(), c.to);
    Image image;
    Status s = ImageFromJson(json::parse(text), &image);
    EXPECT_EQ(s.code(), ErrorCode::kInvalid) << c.to;
    EXPECT_NE(s.message().find(c.error), std::string::npos) << c.to << ": " << s.message();
  }
}

TEST(ImageFromJson, RejectsAnUnusedChunk) {
  json dump = json::parse(FormatDumpJson(SampleImage()));
  dump["chunks"].push_back(json::parse(R"({"id":3,"runs":[{"entry":0,"dblock":40,"length":1,"provisioned":false}]})"));
  Image image;
  EXPECT_NE(ImageFromJson(dump, &image).message().find("not used"), std::string::npos);
}

TEST(DumpText, ShowsMappingsAsRuns) {
  std::string text = FormatDumpText(SampleImage());
  EXPECT_NE(text.find("pool: block size 65536 (64K), 64 blocks (4M), mode write, commit 17\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("volume 'snap' (id 2): size 8388608 (8M), strategy none, read-only, snapshot of 'vol' (id 1)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("  vblock 0 -> dblock 4\n  vblocks 1..2 -> dblocks 5..6 provisioned\n  vblock 9 -> dblock 20\n"
                      "  vblock 64 -> dblock 30\n"),
            std::string::npos)
      << text;
}

// ---- Delta -------------------------------------------------------------------

std::string DeltaString(const Image& image, uint64_t left, uint64_t right) {
  std::string s;
  for (const DeltaRange& d : ComputeDelta(image.block_size, image.volumes.at(left), image.volumes.at(right))) {
    s += std::string(DeltaTypeName(d.type)) + " " + std::to_string(d.vblock) + "+" + std::to_string(d.nr_vblocks) +
         " @" + std::to_string(d.offset) + "+" + std::to_string(d.length) + "\n";
  }
  return s;
}

TEST(Delta, ClassifiesAndMergesRanges) {
  Image image = MakePool(1000);
  AddVolume(&image, 1, "a", 4 * 64 * kBlock);
  AddVolume(&image, 2, "b", 4 * 64 * kBlock, 1, 1);
  // a: 0..3 -> 100..103, 4 -> 104, 10 -> 110;     64..65 -> 200..201
  // b: 0..3 -> 100..103, 4 -> 999, 11 -> 111;     (chunk 1 same object) ; 130 -> 300
  image.volumes[1].chunks[0] = MakeChunk({{0, 100}, {1, 101}, {2, 102}, {3, 103}, {4, 104}, {10, 110}});
  image.volumes[2].chunks[0] = MakeChunk({{0, 100}, {1, 101}, {2, 102}, {3, 103}, {4, 999}, {11, 111}});
  auto shared = MakeChunk({{0, 200}, {1, 201}});
  image.volumes[1].chunks[1] = shared;
  image.volumes[2].chunks[1] = shared;
  image.volumes[2].chunks[2] = MakeChunk({{2, 300}});
  EXPECT_EQ(DeltaString(image, 1, 2),
            "same 0+4 @0+262144\n"
            "different 4+1 @262144+65536\n"
            "left_only 10+1 @655360+65536\n"
            "right_only 11+1 @720896+65536\n"
            "same 64+2 @4194304+131072\n"
            "right_only 130+1 @8519680+65536\n");
  EXPECT_EQ(DeltaString(image, 2, 1),
            "same 0+4 @0+262144\n"
            "different 4+1 @262144+65536\n"
            "right_only 10+1 @655360+65536\n"
            "left_only 11+1 @720896+65536\n"
            "same 64+2 @4194304+131072\n"
            "left_only 130+1 @8519680+65536\n");
  EXPECT_EQ(DeltaString(image, 1, 1), "same 0+5 @0+327680\nsame 10+1 @655360+65536\nsame 64+2 @4194304+131072\n");
}

TEST(Delta, LastPartialBlockStopsAtTheVolumeEnd) {
  Image image = MakePool(10);
  AddVolume(&image, 1, "a", kBlock + 512);
  AddVolume(&image, 2, "b", kBlock + 512);
  image.volumes[1].chunks[0] = MakeChunk({{1, 3}});
  EXPECT_EQ(DeltaString(image, 1, 2), "left_only 1+1 @65536+512\n");
}

// ---- Locking and parsing -------------------------------------------------------

TEST(PoolDirLock, RefusesASecondHolder) {
  TempDir dir;
  std::unique_ptr<PoolDirLock> first, second;
  ASSERT_TRUE(PoolDirLock::Acquire(dir.path(), false, &first).ok());
  Status s = PoolDirLock::Acquire(dir.path(), false, &second);
  EXPECT_EQ(s.code(), ErrorCode::kBusy);
  EXPECT_EQ(s.message(), "pool " + dir.path() + " is in use (a server has it open); stop it first");
  first.reset();
  EXPECT_TRUE(PoolDirLock::Acquire(dir.path(), false, &second).ok());
}

TEST(ParseOffline, DirIsPositionalOrComesFromPool) {
  OfflineCommand c;
  std::string error;
  ASSERT_TRUE(cli::BuildOfflineCommand("delta", {"/p", "a", "b"}, "", &c, &error)) << error;
  EXPECT_EQ(c.dir, "/p");
  EXPECT_EQ(c.args, (std::vector<std::string>{"a", "b"}));
  ASSERT_TRUE(cli::BuildOfflineCommand("delta", {"a", "b"}, "/q", &c, &error)) << error;
  EXPECT_EQ(c.dir, "/q");
  ASSERT_TRUE(cli::BuildOfflineCommand("check", {}, "/q", &c, &error)) << error;
  EXPECT_EQ(c.dir, "/q");
  ASSERT_TRUE(cli::BuildOfflineCommand("restore", {"/p", "f.json"}, "/p", &c, &error)) << error;
  EXPECT_EQ(c.args, (std::vector<std::string>{"f.json"}));
  EXPECT_FALSE(cli::BuildOfflineCommand("check", {}, "", &c, &error));
  EXPECT_FALSE(cli::BuildOfflineCommand("restore", {"/p", "f"}, "/other", &c, &error));
  EXPECT_FALSE(cli::BuildOfflineCommand("delta", {"/p", "a"}, "", &c, &error));
}

TEST(ParseOffline, FlagsReachTheCommand) {
  std::ostringstream out, err;
  cli::ParseResult r =
      cli::ParseCommandLine({"restore", "/p", "f.json", "--force", "--json"}, cli::Environment(), out, err);
  ASSERT_TRUE(r.invocation.has_value()) << err.str();
  ASSERT_TRUE(r.invocation->offline.has_value());
  EXPECT_TRUE(r.invocation->offline->force);
  EXPECT_TRUE(r.invocation->offline->json);
  r = cli::ParseCommandLine({"--socket", "/s", "check", "/p"}, cli::Environment(), out, err);
  EXPECT_FALSE(r.invocation.has_value());
  EXPECT_EQ(r.exit_code, kExitUsage);
}

// ---- Commands on pool directories ------------------------------------------------

TEST(Commands, CheckCleanPool) {
  TempDir dir;
  WritePool(dir.path(), SampleImage());
  CommandResult r = RunCommand({"check", dir.path()});
  EXPECT_EQ(r.code, kExitOk) << r.out << r.err;
  EXPECT_NE(r.out.find(": clean"), std::string::npos) << r.out;
  r = RunCommand({"--json", "--pool", dir.path(), "check"});
  EXPECT_EQ(r.code, kExitOk);
  json j = json::parse(r.out);
  EXPECT_TRUE(j["clean"]);
  EXPECT_EQ(j["volumes"], 2);
}

TEST(Commands, CheckReportsDamageWithSeverity) {
  TempDir dir;
  Image image = SampleImage();
  image.refcounts[4] = 3;
  image.volumes[1].chunks[1] = MakeChunk({{0, 5000}});
  WritePool(dir.path(), image);
  CommandResult r = RunCommand({"check", dir.path()});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_NE(r.out.find("non-fatal: refcount mismatch: data block 4"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("fatal: volume 'vol' (id 1) maps data block 5000"), std::string::npos) << r.out;
}

TEST(Commands, CheckOfANonPoolIsAUsageError) {
  TempDir dir;
  EXPECT_EQ(RunCommand({"check", dir.path()}).code, kExitUsage);
  EXPECT_EQ(RunCommand({"repair", dir.path()}).code, kExitUsage);
  EXPECT_FALSE(metadata::test::FileExists(dir.file("lock")));  // nothing left behind
  EXPECT_EQ(RunCommand({"check", dir.path() + "/missing"}).code, kExitUsage);
}

TEST(Commands, ToolsRefuseALockedPool) {
  TempDir dir;
  WritePool(dir.path(), SampleImage());
  std::unique_ptr<PoolDirLock> held;
  ASSERT_TRUE(PoolDirLock::Acquire(dir.path(), false, &held).ok());
  for (std::vector<std::string> args : std::vector<std::vector<std::string>>{
           {"check", dir.path()}, {"dump", dir.path()}, {"repair", dir.path()}, {"delta", dir.path(), "vol", "snap"}}) {
    CommandResult r = RunCommand(args);
    EXPECT_EQ(r.code, kExitFailure) << args[0];
    EXPECT_NE(r.err.find("is in use (a server has it open); stop it first"), std::string::npos) << r.err;
  }
}

TEST(Commands, DumpRestoreDumpIsIdentical) {
  TempDir from, to;
  WritePool(from.path(), SampleImage());
  CommandResult json1 = RunCommand({"dump", "--json", from.path()});
  CommandResult text1 = RunCommand({"dump", from.path()});
  ASSERT_EQ(json1.code, kExitOk) << json1.err;
  std::string file = to.file("dump.json");
  metadata::test::WriteBytes(file, json1.out);
  std::string target = to.file("pool");
  CommandResult restore = RunCommand({"restore", target, file});
  ASSERT_EQ(restore.code, kExitOk) << restore.err;
  EXPECT_EQ(RunCommand({"dump", "--json", target}).out, json1.out);
  EXPECT_EQ(RunCommand({"dump", target}).out, text1.out);
  EXPECT_EQ(RunCommand({"check", target}).code, kExitOk);
  // Restoring over an existing pool works too, and keeps one generation.
  ASSERT_EQ(RunCommand({"restore", target, file}).code, kExitOk);
  EXPECT_EQ(RunCommand({"dump", "--json", target}).out, json1.out);
  EXPECT_FALSE(metadata::test::FileExists(target + "/metadata.ckpt.1"));
  EXPECT_TRUE(metadata::test::FileExists(target + "/metadata.ckpt.2"));
}

TEST(Commands, RestoreRefusesFatalDamageUnlessForced) {
  TempDir dir;
  Image image = SampleImage();
  image.volumes[1].chunks[1] = MakeChunk({{0, 5000}});
  std::string file = dir.file("dump.json");
  metadata::test::WriteBytes(file, FormatDumpJson(image));
  CommandResult r = RunCommand({"restore", dir.file("pool"), file});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_NE(r.err.find("--force"), std::string::npos) << r.err;
  EXPECT_FALSE(metadata::test::FileExists(dir.file("pool/metadata")));
  r = RunCommand({"restore", "--force", dir.file("pool"), file});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(RunCommand({"check", dir.file("pool")}).code, kExitFailure);
}

TEST(Commands, RestoreOfGarbageIsAUsageError) {
  TempDir dir;
  metadata::test::WriteBytes(dir.file("x.json"), "{not json");
  EXPECT_EQ(RunCommand({"restore", dir.file("pool"), dir.file("x.json")}).code, kExitUsage);
  EXPECT_EQ(RunCommand({"restore", dir.file("pool"), dir.file("missing.json")}).code, kExitUsage);
}

TEST(Commands, RepairFixesAndReportsThenCheckIsClean) {
  TempDir dir;
  Image image = SampleImage();
  image.refcounts[4] = 3;
  image.volumes[1].chunks[1] = MakeChunk({{0, 5000}, {1, 31}});
  WritePool(dir.path(), image);
  CommandResult r = RunCommand({"repair", dir.path()});
  EXPECT_EQ(r.code, kExitOk) << r.out << r.err;
  EXPECT_NE(r.out.find("fixed: rebuilt reference counts"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("lost: volume 'vol': vblock 64 mapped to block 5000"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("fixed: bitmap 'inc' of volume 'vol': marked all dirty and inconsistent"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("is clean now"), std::string::npos) << r.out;
  EXPECT_EQ(RunCommand({"check", dir.path()}).code, kExitOk);
  r = RunCommand({"repair", dir.path()});
  EXPECT_EQ(r.code, kExitOk);
  EXPECT_NE(r.out.find("nothing to repair"), std::string::npos) << r.out;
}

TEST(Commands, RepairSalvagesWithoutASuperblock) {
  TempDir dir;
  WritePool(dir.path(), SampleImage());
  metadata::test::FlipBit(dir.file("metadata"), 3);
  EXPECT_EQ(RunCommand({"check", dir.path()}).code, kExitFailure);
  CommandResult r = RunCommand({"repair", dir.path()});
  EXPECT_EQ(r.code, kExitOk) << r.out << r.err;
  EXPECT_EQ(RunCommand({"check", dir.path()}).code, kExitOk);
  Image expected = SampleImage();
  expected.commit_seq += 1;
  metadata::BitmapImage& b = expected.volumes[1].bitmaps[3];  // never falsely clean
  b.flags |= metadata::BitmapRecord::kInconsistent;
  b.dirty += boost::icl::interval<uint64_t>::right_open(0, 128);
  Image loaded;
  metadata::LoadReport report;
  ASSERT_TRUE(metadata::Journal::Load(dir.path(), &loaded, &report).ok());
  EXPECT_EQ(Encoded(loaded), Encoded(expected));
}

TEST(Commands, DeltaByName) {
  TempDir dir;
  Image image = SampleImage();
  WritePool(dir.path(), image);
  CommandResult r = RunCommand({"--json", "delta", dir.path(), "vol", "snap"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(json::parse(r.out), json::parse(R"([
      {"type":"same","offset":0,"length":196608},
      {"type":"same","offset":589824,"length":65536},
      {"type":"left_only","offset":4194304,"length":65536}])"));
  r = RunCommand({"delta", dir.path(), "vol", "nope"});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_NE(r.err.find("no volume named 'nope'"), std::string::npos);
}

}  // namespace
}  // namespace thinsim::offline
