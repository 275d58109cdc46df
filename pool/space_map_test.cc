#include "pool/space_map.h"

#include <algorithm>
#include <set>
#include <vector>

#include <gtest/gtest.h>

namespace thinsim {
namespace {

TEST(SpaceMapTest, StartsAllFree) {
  SpaceMap sm(10);
  EXPECT_EQ(sm.nr_blocks(), 10u);
  EXPECT_EQ(sm.nr_free(), 10u);
  EXPECT_EQ(sm.nr_used(), 0u);
  for (dblock_t b = 0; b < 10; ++b) EXPECT_EQ(sm.RefCount(b), 0u);
}

TEST(SpaceMapTest, AllocatesLinearlyFrontToBack) {
  SpaceMap sm(5);
  for (dblock_t want = 0; want < 5; ++want) {
    dblock_t b = sm.Allocate();
    EXPECT_EQ(b, want);
    EXPECT_EQ(sm.RefCount(b), 1u);
  }
  EXPECT_EQ(sm.nr_free(), 0u);
  EXPECT_EQ(sm.nr_used(), 5u);
  EXPECT_EQ(sm.Allocate(), kNoDblock);
}

TEST(SpaceMapTest, IncDecAndRelease) {
  SpaceMap sm(4);
  dblock_t b = sm.Allocate();
  sm.Inc(b);
  sm.Inc(b);
  EXPECT_EQ(sm.RefCount(b), 3u);
  EXPECT_EQ(sm.Dec(b), 2u);
  EXPECT_EQ(sm.Dec(b), 1u);
  EXPECT_TRUE(sm.TakeReleased().empty());
  EXPECT_EQ(sm.Dec(b), 0u);
  EXPECT_EQ(sm.RefCount(b), 0u);
  // Released but not recycled: still used, not allocatable.
  EXPECT_EQ(sm.nr_used(), 1u);
  EXPECT_EQ(sm.nr_free(), 3u);
  std::vector<dblock_t> released = sm.TakeReleased();
  ASSERT_EQ(released, std::vector<dblock_t>{b});
  EXPECT_TRUE(sm.TakeReleased().empty());
  sm.Recycle(released);
  EXPECT_EQ(sm.nr_used(), 0u);
  EXPECT_EQ(sm.nr_free(), 4u);
}

TEST(SpaceMapTest, ReleasedBlockIsNotReusedBeforeRecycle) {
  SpaceMap sm(2);
  dblock_t a = sm.Allocate();
  dblock_t b = sm.Allocate();
  EXPECT_NE(a, b);
  sm.Dec(a);
  // The only block with count 0 is released; Allocate must not hand it out.
  EXPECT_EQ(sm.nr_free(), 0u);
  EXPECT_EQ(sm.Allocate(), kNoDblock);
  sm.Recycle(sm.TakeReleased());
  EXPECT_EQ(sm.Allocate(), a);
  EXPECT_EQ(sm.Allocate(), kNoDblock);
}

TEST(SpaceMapTest, NextFitWrapsAround) {
  SpaceMap sm(4);
  for (int i = 0; i < 4; ++i) sm.Allocate();
  sm.Dec(1);
  sm.Dec(3);
  sm.Recycle(sm.TakeReleased());
  // The cursor is at the end; the search wraps to the first free block.
  EXPECT_EQ(sm.Allocate(), 1u);
  EXPECT_EQ(sm.Allocate(), 3u);
  EXPECT_EQ(sm.Allocate(), kNoDblock);
}

TEST(SpaceMapTest, NextFitContinuesFromCursor) {
  SpaceMap sm(6);
  EXPECT_EQ(sm.Allocate(), 0u);
  EXPECT_EQ(sm.Allocate(), 1u);
  sm.Dec(0);
  sm.Recycle(sm.TakeReleased());
  // Block 0 is free again but the cursor is past it.
  EXPECT_EQ(sm.Allocate(), 2u);
}

TEST(SpaceMapTest, GrowAddsFreeBlocks) {
  SpaceMap sm(2);
  sm.Allocate();
  sm.Allocate();
  EXPECT_EQ(sm.Allocate(), kNoDblock);
  sm.Grow(5);
  EXPECT_EQ(sm.nr_blocks(), 5u);
  EXPECT_EQ(sm.nr_free(), 3u);
  EXPECT_EQ(sm.nr_used(), 2u);
  std::set<dblock_t> got;
  for (int i = 0; i < 3; ++i) got.insert(sm.Allocate());
  EXPECT_EQ(got, (std::set<dblock_t>{2, 3, 4}));
  EXPECT_EQ(sm.Allocate(), kNoDblock);
  sm.Grow(5);  // same size: no change
  EXPECT_EQ(sm.nr_free(), 0u);
}

TEST(SpaceMapTest, ManyAllocateFreeCyclesKeepCountsExact) {
  SpaceMap sm(37);
  std::vector<dblock_t> held;
  unsigned seed = 12345;
  auto rnd = [&seed] {
    seed = seed * 1103515245 + 12345;
    return (seed >> 16) & 0x7fff;
  };
  for (int step = 0; step < 2000; ++step) {
    if (sm.nr_free() == 0 && held.empty()) sm.Recycle(sm.TakeReleased());
    if (held.empty() || (rnd() % 3 != 0 && sm.nr_free() > 0)) {
      dblock_t b = sm.Allocate();
      ASSERT_NE(b, kNoDblock);
      ASSERT_TRUE(std::find(held.begin(), held.end(), b) == held.end()) << "double allocation of " << b;
      held.push_back(b);
    } else {
      size_t i = rnd() % held.size();
      EXPECT_EQ(sm.Dec(held[i]), 0u);
      held.erase(held.begin() + static_cast<long>(i));
      if (rnd() % 2) sm.Recycle(sm.TakeReleased());
    }
    ASSERT_EQ(sm.nr_free() + sm.nr_used(), sm.nr_blocks());
  }
  sm.Recycle(sm.TakeReleased());
  EXPECT_EQ(sm.nr_used(), held.size());
}

}  // namespace
}  // namespace thinsim
