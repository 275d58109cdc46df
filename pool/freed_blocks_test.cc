#include "pool/freed_blocks.h"

#include <algorithm>
#include <memory>
#include <set>
#include <vector>

#include <gtest/gtest.h>

#include "pool/data_store.h"

namespace thinsim {
namespace {

// Records each discard call; fails those that touch a block in `bad`.
class RecordingStore : public DataStore {
 public:
  RecordingStore() : DataStore(4096) {}
  Status Read(dblock_t, uint32_t, void*, uint32_t) override { return Status::OK(); }
  Status Write(dblock_t, uint32_t, const void*, uint32_t) override { return Status::OK(); }
  Status Zero(dblock_t, uint32_t, uint32_t) override { return Status::OK(); }
  Status Copy(dblock_t, dblock_t) override { return Status::OK(); }
  Status Discard(dblock_t first, uint64_t count) override {
    calls.emplace_back(first, count);
    for (uint64_t b = first; b < first + count; ++b) {
      if (bad.count(static_cast<dblock_t>(b)) != 0) return Status::IOError("discard failed");
    }
    return Status::OK();
  }
  Status Grow(uint64_t) override { return Status::OK(); }
  Status Flush() override { return Status::OK(); }

  std::vector<std::pair<dblock_t, uint64_t>> calls;
  std::set<dblock_t> bad;
};

std::vector<dblock_t> Sorted(std::vector<dblock_t> v) {
  std::sort(v.begin(), v.end());
  return v;
}

TEST(FreedBlocksTest, StartsEmpty) {
  FreedBlocks f;
  EXPECT_EQ(f.pending(), 0u);
  EXPECT_FALSE(f.discards_pending());
  EXPECT_FALSE(f.has_discards());
  EXPECT_FALSE(f.has_uncommitted());
  EXPECT_TRUE(f.TakeDiscards().empty());
}

TEST(FreedBlocksTest, InMemoryBlocksGoStraightToDiscard) {
  FreedBlocks f;
  f.AddReleased({3, 1, 2}, /*hold_until_commit=*/false);
  EXPECT_EQ(f.pending(), 3u);
  EXPECT_TRUE(f.discards_pending());
  EXPECT_FALSE(f.has_uncommitted());
  std::vector<dblock_t> batch = f.TakeDiscards();
  EXPECT_EQ(Sorted(batch), (std::vector<dblock_t>{1, 2, 3}));
  EXPECT_FALSE(f.discards_pending());
  EXPECT_EQ(f.pending(), 3u);  // still pending while being discarded
  f.DoneDiscarding(batch.size());
  EXPECT_EQ(f.pending(), 0u);
}

TEST(FreedBlocksTest, PersistentBlocksWaitForTheirCommit) {
  FreedBlocks f;
  f.AddReleased({5, 6}, /*hold_until_commit=*/true);
  EXPECT_TRUE(f.has_uncommitted());
  EXPECT_FALSE(f.discards_pending());
  EXPECT_TRUE(f.TakeDiscards().empty());  // not before the commit
  EXPECT_EQ(f.pending(), 2u);

  f.CaptureForCommit();
  EXPECT_FALSE(f.has_uncommitted());
  // Freed while the commit syncs: belongs to the next transaction.
  f.AddReleased({7}, /*hold_until_commit=*/true);
  EXPECT_FALSE(f.has_discards());
  EXPECT_EQ(f.pending(), 3u);

  f.FinishCommit(/*ok=*/true);
  EXPECT_TRUE(f.discards_pending());
  EXPECT_EQ(Sorted(f.TakeDiscards()), (std::vector<dblock_t>{5, 6}));
  EXPECT_TRUE(f.has_uncommitted());  // 7 waits for the next commit
  f.DoneDiscarding(2);
  EXPECT_EQ(f.pending(), 1u);
}

TEST(FreedBlocksTest, FailedCommitKeepsItsBlocksOutOfUse) {
  FreedBlocks f;
  f.AddReleased({1, 2}, /*hold_until_commit=*/true);
  f.CaptureForCommit();
  f.FinishCommit(/*ok=*/false);
  EXPECT_EQ(f.pending(), 0u);  // no longer counted as free
  EXPECT_FALSE(f.discards_pending());
  EXPECT_TRUE(f.TakeDiscards().empty());
}

TEST(FreedBlocksTest, EmptyCommitChangesNothing) {
  FreedBlocks f;
  f.CaptureForCommit();
  f.FinishCommit(/*ok=*/true);
  EXPECT_FALSE(f.discards_pending());
  EXPECT_EQ(f.pending(), 0u);
}

TEST(FreedBlocksTest, DiscardsInRuns) {
  RecordingStore store;
  std::vector<dblock_t> done = FreedBlocks::Discard(&store, {9, 2, 3, 4, 7, 8});
  EXPECT_EQ(done, (std::vector<dblock_t>{2, 3, 4, 7, 8, 9}));
  using Call = std::pair<dblock_t, uint64_t>;
  EXPECT_EQ(store.calls, (std::vector<Call>{{2, 3}, {7, 3}}));
}

TEST(FreedBlocksTest, BlockWhoseDiscardFailsIsLeftOut) {
  RecordingStore store;
  store.bad = {3};
  std::vector<dblock_t> done = FreedBlocks::Discard(&store, {2, 3, 4, 6});
  EXPECT_EQ(done, (std::vector<dblock_t>{2, 4, 6}));
}

}  // namespace
}  // namespace thinsim
