// Tests of the sync modes' initial dirty sets (sync_mode.h) on an in-memory
// pool: full marks everything, none nothing, incremental the bitmap's
// granules, top exactly the blocks a snapshot no longer shares with its
// origin.
#include "mirror/sync_mode.h"

#include <gtest/gtest.h>

#include <vector>

#include "base/status_test_util.h"

namespace thinsim {
namespace {

constexpr uint32_t kBS = 4096;
constexpr uint64_t kSize = 64 * kBS;

using Ranges = boost::icl::interval_set<uint64_t>;

Ranges Blocks(std::initializer_list<uint64_t> blocks) {
  Ranges r;
  for (uint64_t b : blocks) r += boost::icl::interval<uint64_t>::right_open(b * kBS, (b + 1) * kBS);
  return r;
}

class SyncModeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    PoolOptions o;
    o.block_size = kBS;
    o.size = 256 * kBS;
    ASSERT_OK(Pool::Open(o, &pool_));
    ASSERT_OK(pool_->CreateVolume("v", kSize, std::nullopt));
  }
  void WriteBlock(const std::string& name, uint64_t block) {
    std::shared_ptr<Volume> v;
    ASSERT_OK(pool_->OpenVolume(name, true, &v));
    std::vector<uint8_t> b(kBS, 'w');
    ASSERT_OK(pool_->Write(*v, b.data(), kBS, block * kBS));
    pool_->CloseVolume(v, true);
  }
  Ranges Initial(const std::string& name, SyncMode mode, const Ranges& bitmap = {}) {
    DirtyBitmap dirty(kSize, kBS);
    EXPECT_OK(MarkInitial(*pool_, name, mode, bitmap, &dirty));
    return dirty.DirtyRanges();
  }

  std::unique_ptr<Pool> pool_;
};

TEST_F(SyncModeTest, NamesParseBackAndOthersAreRefused) {
  for (SyncMode m : {SyncMode::kFull, SyncMode::kTop, SyncMode::kNone, SyncMode::kIncremental}) {
    SyncMode parsed;
    ASSERT_OK(ParseSyncMode(SyncModeName(m), &parsed));
    EXPECT_EQ(parsed, m);
  }
  SyncMode parsed;
  Status s = ParseSyncMode("bitmap", &parsed);
  EXPECT_EQ(s.code(), ErrorCode::kInvalid);
  EXPECT_NE(s.message().find("full, top, none or incremental"), std::string::npos) << s.message();
}

TEST_F(SyncModeTest, FullMarksEverythingNoneNothingIncrementalTheBitmap) {
  WriteBlock("v", 3);
  EXPECT_EQ(Initial("v", SyncMode::kFull), Ranges(boost::icl::interval<uint64_t>::right_open(0, kSize)));
  EXPECT_TRUE(Initial("v", SyncMode::kNone).empty());
  Ranges bitmap;
  bitmap += boost::icl::interval<uint64_t>::right_open(5 * kBS + 10, 5 * kBS + 20);  // rounds out to block 5
  EXPECT_EQ(Initial("v", SyncMode::kIncremental, bitmap), Blocks({5}));
}

TEST_F(SyncModeTest, TopCopiesWhatTheVolumeNoLongerSharesWithItsOrigin) {
  WriteBlock("v", 0);
  WriteBlock("v", 5);
  ASSERT_OK(pool_->CreateSnapshots({{"v", "s"}}, /*read_only=*/false));
  EXPECT_TRUE(Initial("s", SyncMode::kTop).empty());  // shares everything
  WriteBlock("s", 5);  // copy-on-write: no longer shared
  WriteBlock("s", 9);  // a hole in the origin
  WriteBlock("v", 0);  // the origin moves on: differs too
  EXPECT_EQ(Initial("s", SyncMode::kTop), Blocks({0, 5, 9}));
  // Without an origin: the mapped blocks.
  EXPECT_EQ(Initial("v", SyncMode::kTop), Blocks({0, 5}));
}

}  // namespace
}  // namespace thinsim
