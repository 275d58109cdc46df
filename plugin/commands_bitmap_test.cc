// The bitmap-* and query-bitmaps commands (SPEC section 12) through
// ControlCommands over an in-memory pool: what writes, zeroes, trims and
// provisions mark, cut and merge, resize, errors that change nothing, and a
// volume's bitmaps going with it.
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/status_test_util.h"
#include "plugin/control_commands.h"
#include "plugin/testing/command_test.h"

namespace thinsim {
namespace {

using nlohmann::json;

constexpr uint64_t kBS = 64 << 10;

class BitmapCommandsTest : public CommandTest {
 protected:
  void SetUp() override {
    ASSERT_OK(OpenMemoryPool(64, kBS, &pool_));
    ASSERT_OK(pool_->CreateVolume("vol", 16 * kBS, std::nullopt));
    ASSERT_OK(pool_->OpenVolume("vol", /*writable=*/true, &vol_));
    commands_ = std::make_unique<ControlCommands>(pool_.get());
  }
  void TearDown() override {
    if (vol_) pool_->CloseVolume(vol_, true);
  }

  ControlCommands* commands() override { return commands_.get(); }
  void Write(uint64_t offset, uint64_t length) {
    std::vector<char> data(length, 'x');
    ASSERT_OK(pool_->Write(*vol_, data.data(), length, offset));
  }
  json Extents(const std::string& name) { return Ok("bitmap-extents", {{"volume", "vol"}, {"name", name}}); }

  std::unique_ptr<Pool> pool_;
  std::shared_ptr<Volume> vol_;
  std::unique_ptr<ControlCommands> commands_;
};

TEST_F(BitmapCommandsTest, WritesMarkGranulesAndExtentsCoalesce) {
  json added = Ok("bitmap-add", {{"volume", "vol"}, {"name", "b"}, {"granularity", "4K"}});
  EXPECT_EQ(added, json({{"volume", "vol"}, {"name", "b"}, {"granularity", 4096}, {"count", 0}, {"recording", true},
                         {"busy", false}, {"persistent", false}, {"inconsistent", false}}));
  Write(4096 + 100, 10);  // one 4K granule, not the 64K block
  ASSERT_OK(pool_->Zero(*vol_, 8192, 3 * kBS, 0));
  EXPECT_EQ(Extents("b"), json::parse(R"([{"offset":0,"length":4096,"dirty":false},
      {"offset":4096,"length":4096,"dirty":true},{"offset":8192,"length":188416,"dirty":false},
      {"offset":196608,"length":8192,"dirty":true},{"offset":204800,"length":843776,"dirty":false}])"));
  json list = Ok("query-bitmaps");
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["count"], 3 * 4096);
  // A range of the extents, and the default granularity (the block size).
  EXPECT_EQ(Ok("bitmap-extents", {{"volume", "vol"}, {"name", "b"}, {"offset", 4096}, {"length", 4096}}),
            json::parse(R"([{"offset":4096,"length":4096,"dirty":true}])"));
  EXPECT_EQ(Ok("bitmap-add", {{"volume", "vol"}, {"name", "blocks"}})["granularity"], kBS);
}

TEST_F(BitmapCommandsTest, CutFreezesIntoANewDisabledBitmapAndClearsTheLiveOne) {
  Ok("bitmap-add", {{"volume", "vol"}, {"name", "live"}});
  Write(0, 10);
  json frozen = Ok("bitmap-cut", {{"volume", "vol"}, {"name", "live"}, {"into", "backup-1"}});
  EXPECT_EQ(frozen["name"], "backup-1");
  EXPECT_EQ(frozen["count"], kBS);
  EXPECT_EQ(frozen["recording"], false);
  Write(5 * kBS, 10);
  json list = Ok("query-bitmaps", {{"volume", "vol"}});
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0]["name"], "backup-1");
  EXPECT_EQ(list[0]["count"], kBS);  // the later write is not in the frozen one
  EXPECT_EQ(list[1]["name"], "live");
  EXPECT_EQ(list[1]["count"], kBS);
  // Merge both into the live one: OR, all or nothing.
  EXPECT_NE(Refused("bitmap-merge", {{"volume", "vol"}, {"target", "live"}, {"sources", {"backup-1", "nope"}}})
                .find("NotFound"),
            std::string::npos);
  EXPECT_EQ(Ok("query-bitmaps", {{"volume", "vol"}})[1]["count"], kBS);
  Ok("bitmap-merge", {{"volume", "vol"}, {"target", "live"}, {"sources", {"backup-1"}}});
  EXPECT_EQ(Ok("query-bitmaps", {{"volume", "vol"}})[1]["count"], 2 * kBS);
  // Clear, disable (a disabled bitmap records nothing), enable, remove.
  Ok("bitmap-clear", {{"volume", "vol"}, {"name", "live"}});
  Ok("bitmap-disable", {{"volume", "vol"}, {"name", "live"}});
  Write(7 * kBS, 10);
  EXPECT_EQ(Ok("query-bitmaps", {{"volume", "vol"}})[1]["count"], 0);
  Ok("bitmap-enable", {{"volume", "vol"}, {"name", "live"}});
  Write(7 * kBS, 10);
  EXPECT_EQ(Ok("query-bitmaps", {{"volume", "vol"}})[1]["count"], kBS);
  Ok("bitmap-remove", {{"volume", "vol"}, {"name", "live"}});
  Ok("bitmap-remove", {{"volume", "vol"}, {"name", "backup-1"}});
  EXPECT_EQ(Ok("query-bitmaps"), json::array());
  EXPECT_FALSE(pool_->HasObserver("vol", nullptr));
}

TEST_F(BitmapCommandsTest, BadRequestsAreRefusedChangingNothing) {
  Ok("bitmap-add", {{"volume", "vol"}, {"name", "b"}});
  const json before = Ok("query-bitmaps");
  EXPECT_EQ(Refused("bitmap-add", {{"volume", "nope"}, {"name", "b"}}).substr(0, 8), "NotFound");
  EXPECT_EQ(Refused("bitmap-add", {{"volume", "vol"}, {"name", "b"}}).substr(0, 6), "Exists");
  EXPECT_NE(Refused("bitmap-add", {{"volume", "vol"}, {"name", "c"}, {"granularity", 1000}}).find("power of two"),
            std::string::npos);
  EXPECT_NE(Refused("bitmap-add", {{"volume", "vol"}, {"name", "c"}, {"granularity", "128M"}}).find("64M"),
            std::string::npos);
  EXPECT_NE(Refused("bitmap-add", {{"volume", "vol"}, {"name", "c"}, {"persistent", true}}).find("need a pool=DIR"),
            std::string::npos);
  EXPECT_NE(Refused("bitmap-add", {{"volume", "vol"}, {"name", "c"}, {"bogus", 1}}).find("bogus"), std::string::npos);
  EXPECT_EQ(Refused("bitmap-remove", {{"volume", "vol"}, {"name", "c"}}).substr(0, 8), "NotFound");
  EXPECT_EQ(Refused("bitmap-cut", {{"volume", "vol"}, {"name", "b"}, {"into", "b"}}).substr(0, 6), "Exists");
  EXPECT_EQ(Refused("bitmap-extents", {{"volume", "vol"}, {"name", "b"}, {"offset", "2M"}}).substr(0, 7), "Invalid");
  EXPECT_NE(Refused("bitmap-merge", {{"volume", "vol"}, {"target", "b"}, {"sources", json::array()}}).find("sources"),
            std::string::npos);
  EXPECT_EQ(Ok("query-bitmaps"), before);
  // A volume without bitmaps: an empty list, and a clear error naming both.
  ASSERT_OK(pool_->CreateVolume("other", kBS, std::nullopt));
  EXPECT_EQ(Ok("query-bitmaps", {{"volume", "other"}}), json::array());
  EXPECT_EQ(Refused("bitmap-clear", {{"volume", "other"}, {"name", "b"}}),
            "NotFound: no bitmap 'b' on volume 'other'");
}

TEST_F(BitmapCommandsTest, BitsFollowResizeAndGoWithTheVolume) {
  Ok("bitmap-add", {{"volume", "vol"}, {"name", "b"}});
  Ok("volume-resize", {{"name", "vol"}, {"size", 18 * kBS}});
  EXPECT_EQ(Ok("query-bitmaps")[0]["count"], 2 * kBS);  // the grown range is dirty
  pool_->CloseVolume(vol_, true);  // a shrink needs the volume closed
  vol_.reset();
  Ok("volume-resize", {{"name", "vol"}, {"size", 17 * kBS}});
  EXPECT_EQ(Ok("query-bitmaps")[0]["count"], kBS);
  Ok("volume-delete", {{"name", "vol"}});
  EXPECT_EQ(Ok("query-bitmaps"), json::array());
  ASSERT_OK(pool_->CreateVolume("vol", kBS, std::nullopt));  // the name again: no bitmaps
  EXPECT_EQ(Ok("query-bitmaps", {{"volume", "vol"}}), json::array());
}

// transaction: a snapshot and a cut at one point in time, all or nothing.
TEST_F(BitmapCommandsTest, TransactionTakesASnapshotAndCutsTogether) {
  Ok("bitmap-add", {{"volume", "vol"}, {"name", "live"}});
  Write(0, 10);
  json actions = json::parse(R"([
      {"type":"snapshot-create","data":{"origin":"vol","name":"s1"}},
      {"type":"bitmap-cut","data":{"volume":"vol","name":"live","into":"b1"}},
      {"type":"bitmap-add","data":{"volume":"vol","name":"other","granularity":"4K"}}])");
  EXPECT_EQ(Ok("transaction", {{"actions", actions}}), json::object());
  VolumeInfo info;
  ASSERT_OK(pool_->QueryVolume("s1", &info));
  json list = Ok("query-bitmaps", {{"volume", "vol"}});
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[0]["name"], "b1");
  EXPECT_EQ(list[0]["count"], kBS);
  EXPECT_EQ(list[1]["name"], "live");
  EXPECT_EQ(list[1]["count"], 0);
  EXPECT_EQ(list[2]["name"], "other");
}

TEST_F(BitmapCommandsTest, AFailingTransactionChangesNothing) {
  Ok("bitmap-add", {{"volume", "vol"}, {"name", "live"}});
  const json before = Ok("query-bitmaps");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"([{"type":"snapshot-create","data":{"origin":"vol","name":"s1"}},
           {"type":"bitmap-cut","data":{"volume":"vol","name":"nope","into":"b1"}}])", "NotFound"},
      {R"([{"type":"snapshot-create","data":{"origin":"vol","name":"s1"}},
           {"type":"bitmap-cut","data":{"volume":"vol","name":"live","into":"live"}}])", "Exists"},
      {R"([{"type":"bitmap-add","data":{"volume":"vol","name":"x"}},
           {"type":"bitmap-cut","data":{"volume":"vol","name":"live","into":"x"}}])", "Invalid"},
      {R"([{"type":"snapshot-create","data":{"origin":"vol","name":"vol"}},
           {"type":"bitmap-cut","data":{"volume":"vol","name":"live","into":"b1"}}])", "Exists"},
      {R"([{"type":"volume-delete","data":{"name":"vol"}}])", "Invalid"},
      {R"([{"type":"bitmap-add","data":{"volume":"vol","name":"y","granularity":100}}])", "Invalid"},
      {R"([])", "Invalid"},
  };
  for (const auto& [text, cls] : cases) {
    std::string error = Refused("transaction", {{"actions", json::parse(text)}});
    EXPECT_EQ(error.substr(0, cls.size()), cls) << text << " -> " << error;
    VolumeInfo info;
    EXPECT_EQ(pool_->QueryVolume("s1", &info).code(), ErrorCode::kNotFound) << text;
    EXPECT_EQ(Ok("query-bitmaps"), before) << text;
  }
}

}  // namespace
}  // namespace thinsim
