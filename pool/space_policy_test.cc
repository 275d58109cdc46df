#include "pool/space_policy.h"

#include <gtest/gtest.h>

namespace thinsim {
namespace {

TEST(SpacePolicyTest, ModeChangesGiveOneEventEachAndFailIsFinal) {
  SpacePolicy p(WhenFull::kError, 10);
  EXPECT_FALSE(p.SetMode(PoolMode::kWrite, 5, 100));  // no change, no event
  auto e = p.SetMode(PoolMode::kOutOfDataSpace, 0, 100);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->name, "POOL_MODE");
  EXPECT_EQ(e->mode, PoolMode::kOutOfDataSpace);
  EXPECT_EQ(e->free_blocks, 0u);
  EXPECT_EQ(e->total_blocks, 100u);
  ASSERT_TRUE(p.SetMode(PoolMode::kFail, 0, 100));
  EXPECT_TRUE(p.failed());
  EXPECT_FALSE(p.SetMode(PoolMode::kWrite, 50, 100));
  EXPECT_FALSE(p.LeaveOutOfSpaceIfRoom(50, 0, 100));
  EXPECT_EQ(p.mode(), PoolMode::kFail);
}

TEST(SpacePolicyTest, LowWaterFiresOnceBelowTheThresholdAndRearmsAtIt) {
  SpacePolicy p(WhenFull::kError, 10);  // threshold 10 of 100
  EXPECT_FALSE(p.CheckLowWater(10, 100));
  auto e = p.CheckLowWater(9, 100);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->name, "LOW_WATER");
  EXPECT_EQ(e->threshold_blocks, 10u);
  EXPECT_EQ(e->free_blocks, 9u);
  EXPECT_FALSE(p.CheckLowWater(3, 100));  // still below: once only
  EXPECT_FALSE(p.CheckLowWater(10, 100));  // back at the threshold: re-armed
  EXPECT_TRUE(p.CheckLowWater(2, 100));
}

TEST(SpacePolicyTest, ZeroPercentNeverFires) {
  SpacePolicy p(WhenFull::kError, 0);
  EXPECT_FALSE(p.CheckLowWater(0, 100));
}

TEST(SpacePolicyTest, LeavesOutOfSpaceOnlyWhenSomeFreeSpaceIsUnreserved) {
  SpacePolicy p(WhenFull::kQueue, 10);
  EXPECT_FALSE(p.LeaveOutOfSpaceIfRoom(50, 0, 100));  // not out of space
  ASSERT_TRUE(p.SetMode(PoolMode::kOutOfDataSpace, 0, 100));
  EXPECT_FALSE(p.LeaveOutOfSpaceIfRoom(4, 4, 100));  // all free space reserved
  auto e = p.LeaveOutOfSpaceIfRoom(5, 4, 100);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->mode, PoolMode::kWrite);
  EXPECT_EQ(p.mode(), PoolMode::kWrite);
}

TEST(SpacePolicyTest, QueueingStopsAfterATimeoutUntilTheModeLeavesOutOfSpace) {
  SpacePolicy error(WhenFull::kError, 10);
  EXPECT_FALSE(error.MayQueue());
  SpacePolicy p(WhenFull::kQueue, 10);
  EXPECT_TRUE(p.MayQueue());
  p.SetMode(PoolMode::kOutOfDataSpace, 0, 100);
  p.NoteQueueTimedOut();
  EXPECT_FALSE(p.MayQueue());
  EXPECT_FALSE(p.LeaveOutOfSpaceIfRoom(0, 0, 100));
  EXPECT_FALSE(p.MayQueue());
  EXPECT_TRUE(p.LeaveOutOfSpaceIfRoom(1, 0, 100));
  EXPECT_TRUE(p.MayQueue());
}

TEST(SpacePolicyTest, RestoreTrustsNoStoredOutOfSpaceAndNoUnknownMode) {
  SpacePolicy p(WhenFull::kError, 10);
  p.Restore(static_cast<uint8_t>(PoolMode::kOutOfDataSpace));
  EXPECT_EQ(p.mode(), PoolMode::kWrite);
  p.Restore(200);
  EXPECT_EQ(p.mode(), PoolMode::kWrite);
  p.Restore(static_cast<uint8_t>(PoolMode::kReadOnly));
  EXPECT_EQ(p.mode(), PoolMode::kReadOnly);
}

}  // namespace
}  // namespace thinsim
