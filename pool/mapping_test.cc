#include "pool/mapping.h"

#include <algorithm>
#include <map>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "pool/space_map.h"

namespace thinsim {
namespace {

// Checks every slot of `c` against a reference map of slot -> (dblock, provisioned).
void ExpectChunk(const Chunk& c, const std::map<uint32_t, std::pair<dblock_t, bool>>& want) {
  EXPECT_EQ(c.nr_mapped(), want.size());
  uint32_t prov = 0;
  for (uint32_t i = 0; i < kChunkSize; ++i) {
    auto it = want.find(i);
    ASSERT_EQ(c.mapped(i), it != want.end()) << "slot " << i;
    if (it == want.end()) {
      EXPECT_FALSE(c.provisioned(i)) << "slot " << i;
      continue;
    }
    EXPECT_EQ(c.dblock(i), it->second.first) << "slot " << i;
    EXPECT_EQ(c.provisioned(i), it->second.second) << "slot " << i;
    prov += it->second.second;
  }
  EXPECT_EQ(c.nr_provisioned(), prov);
  EXPECT_EQ(c.empty(), want.empty());
  // ForEach visits in slot order with the right values.
  auto it = want.begin();
  c.ForEach([&](uint32_t i, dblock_t b, bool p) {
    ASSERT_NE(it, want.end());
    EXPECT_EQ(i, it->first);
    EXPECT_EQ(b, it->second.first);
    EXPECT_EQ(p, it->second.second);
    ++it;
  });
  EXPECT_EQ(it, want.end());
}

TEST(ChunkTest, EmptyChunk) {
  Chunk c;
  EXPECT_TRUE(c.empty());
  EXPECT_EQ(c.nr_mapped(), 0u);
  EXPECT_EQ(c.refs(), 1u);
  for (uint32_t i = 0; i < kChunkSize; ++i) EXPECT_FALSE(c.mapped(i));
}

TEST(ChunkTest, SetAllSlotsAscendingDescendingAndInterleaved) {
  for (int order = 0; order < 3; ++order) {
    SCOPED_TRACE(order);
    Chunk c;
    std::map<uint32_t, std::pair<dblock_t, bool>> want;
    std::vector<uint32_t> slots;
    for (uint32_t i = 0; i < kChunkSize; ++i) slots.push_back(i);
    if (order == 1) std::reverse(slots.begin(), slots.end());
    if (order == 2) {  // evens then odds: every insert lands mid-array
      slots.clear();
      for (uint32_t i = 0; i < kChunkSize; i += 2) slots.push_back(i);
      for (uint32_t i = 1; i < kChunkSize; i += 2) slots.push_back(i);
    }
    for (uint32_t i : slots) {
      dblock_t b = 1000 + i * 7;
      bool prov = i % 3 == 0;
      c.Set(i, b, prov);
      want[i] = {b, prov};
      ExpectChunk(c, want);
    }
    EXPECT_EQ(c.nr_mapped(), kChunkSize);
  }
}

TEST(ChunkTest, RemapKeepsRankAndCount) {
  Chunk c;
  c.Set(5, 50, false);
  c.Set(63, 630, true);
  c.Set(0, 1, false);
  c.Set(5, 51, true);  // remap in place
  ExpectChunk(c, {{0, {1, false}}, {5, {51, true}}, {63, {630, true}}});
  c.SetProvisioned(63, false);
  c.SetProvisioned(0, true);
  ExpectChunk(c, {{0, {1, true}}, {5, {51, true}}, {63, {630, false}}});
}

TEST(ChunkTest, ClearEverySlotInRandomOrder) {
  std::mt19937 rng(7);
  Chunk c;
  std::map<uint32_t, std::pair<dblock_t, bool>> want;
  for (uint32_t i = 0; i < kChunkSize; ++i) {
    c.Set(i, i + 100, i % 2 == 1);
    want[i] = {i + 100, i % 2 == 1};
  }
  std::vector<uint32_t> order;
  for (uint32_t i = 0; i < kChunkSize; ++i) order.push_back(i);
  std::shuffle(order.begin(), order.end(), rng);
  for (uint32_t i : order) {
    c.Clear(i);
    want.erase(i);
    ExpectChunk(c, want);
  }
  EXPECT_TRUE(c.empty());
  // Clearing drops the provisioned bit too; remapping starts clean.
  c.Set(9, 3, false);
  EXPECT_FALSE(c.provisioned(9));
}

TEST(ChunkTest, RandomSetClearAgainstReference) {
  std::mt19937 rng(99);
  Chunk c;
  std::map<uint32_t, std::pair<dblock_t, bool>> want;
  for (int step = 0; step < 3000; ++step) {
    uint32_t i = rng() % kChunkSize;
    if (want.count(i) && rng() % 2) {
      c.Clear(i);
      want.erase(i);
    } else {
      dblock_t b = rng() % 100000;
      bool p = rng() % 2;
      c.Set(i, b, p);
      want[i] = {b, p};
    }
    if (step % 97 == 0) ExpectChunk(c, want);
  }
  ExpectChunk(c, want);
}

TEST(ChunkTest, CopyIsPrivateAndIndependent) {
  Chunk c;
  c.Set(1, 11, true);
  c.Set(40, 44, false);
  c.Ref();
  c.Ref();
  EXPECT_EQ(c.refs(), 3u);
  std::unique_ptr<Chunk> copy = c.Copy();
  EXPECT_EQ(copy->refs(), 1u);
  ExpectChunk(*copy, {{1, {11, true}}, {40, {44, false}}});
  copy->Set(2, 22, false);
  copy->Clear(1);
  ExpectChunk(c, {{1, {11, true}}, {40, {44, false}}});
  ExpectChunk(*copy, {{2, {22, false}}, {40, {44, false}}});
  EXPECT_FALSE(c.Unref());
  EXPECT_FALSE(c.Unref());
  EXPECT_TRUE(c.Unref());

  Chunk empty;
  EXPECT_TRUE(empty.Copy()->empty());
  Chunk full;
  for (uint32_t i = 0; i < kChunkSize; ++i) full.Set(i, i, false);
  std::unique_ptr<Chunk> full_copy = full.Copy();
  for (uint32_t i = 0; i < kChunkSize; ++i) EXPECT_EQ(full_copy->dblock(i), i);
}

TEST(ChunkTest, MemoryUsageGrowsWithEntries) {
  Chunk c;
  size_t empty = c.MemoryUsage();
  for (uint32_t i = 0; i < kChunkSize; ++i) c.Set(i, i, false);
  EXPECT_GE(c.MemoryUsage(), empty + kChunkSize * sizeof(dblock_t));
}

// ---- MappingTable -------------------------------------------------------------

TEST(MappingTableTest, LookupOfEmptyTable) {
  MappingTable t(130);
  EXPECT_EQ(t.nr_vblocks(), 130u);
  EXPECT_EQ(t.nr_chunks(), 3u);
  for (vblock_t vb = 0; vb < 130; ++vb) {
    MappingTable::Entry e = t.Lookup(vb);
    EXPECT_EQ(e.dblock, kNoDblock);
    EXPECT_FALSE(e.provisioned);
    EXPECT_FALSE(e.chunk_shared);
  }
  EXPECT_EQ(MappingTable(64).nr_chunks(), 1u);
  EXPECT_EQ(MappingTable(65).nr_chunks(), 2u);
  EXPECT_EQ(MappingTable(1).nr_chunks(), 1u);
}

TEST(MappingTableTest, MutableChunkCreatesAndLookupSees) {
  SpaceMap sm(10);
  MappingTable t(200);
  dblock_t b = sm.Allocate();
  t.MutableChunk(130, &sm).Set(130 & (kChunkSize - 1), b, true);
  MappingTable::Entry e = t.Lookup(130);
  EXPECT_EQ(e.dblock, b);
  EXPECT_TRUE(e.provisioned);
  EXPECT_FALSE(e.chunk_shared);
  EXPECT_EQ(t.Lookup(129).dblock, kNoDblock);
  EXPECT_EQ(t.Lookup(131).dblock, kNoDblock);
  EXPECT_EQ(t.chunk(0), nullptr);
  EXPECT_NE(t.chunk(2), nullptr);
  EXPECT_EQ(sm.RefCount(b), 1u);  // MutableChunk of a private chunk adds no reference
}

TEST(MappingTableTest, CloneSharesChunks) {
  SpaceMap sm(10);
  MappingTable t(128);
  dblock_t a = sm.Allocate(), b = sm.Allocate();
  t.MutableChunk(3, &sm).Set(3, a, false);
  t.MutableChunk(70, &sm).Set(70 - 64, b, true);
  std::unique_ptr<MappingTable> clone = t.Clone();
  EXPECT_EQ(clone->nr_vblocks(), 128u);
  for (size_t i = 0; i < t.nr_chunks(); ++i) EXPECT_EQ(clone->chunk(i), t.chunk(i));
  EXPECT_EQ(t.chunk(0)->refs(), 2u);
  EXPECT_EQ(t.chunk(1)->refs(), 2u);
  EXPECT_TRUE(t.Lookup(3).chunk_shared);
  EXPECT_TRUE(clone->Lookup(70).chunk_shared);
  EXPECT_TRUE(clone->Lookup(70).provisioned);
  EXPECT_EQ(clone->Lookup(3).dblock, a);
  // Cloning touches no dblock counts.
  EXPECT_EQ(sm.RefCount(a), 1u);
  EXPECT_EQ(sm.RefCount(b), 1u);
  // A clone of an absent chunk stays absent.
  MappingTable sparse(300);
  std::unique_ptr<MappingTable> sparse_clone = sparse.Clone();
  for (size_t i = 0; i < sparse.nr_chunks(); ++i) EXPECT_EQ(sparse_clone->chunk(i), nullptr);
}

TEST(MappingTableTest, MutableChunkUnsharesAndIncrementsDblocks) {
  SpaceMap sm(10);
  MappingTable t(64);
  dblock_t a = sm.Allocate(), b = sm.Allocate(), c = sm.Allocate();
  Chunk& ch = t.MutableChunk(0, &sm);
  ch.Set(0, a, false);
  ch.Set(10, b, true);
  std::unique_ptr<MappingTable> clone = t.Clone();
  const Chunk* original = t.chunk(0);

  Chunk& mine = clone->MutableChunk(10, &sm);
  EXPECT_NE(&mine, original);
  EXPECT_EQ(clone->chunk(0), &mine);
  EXPECT_EQ(t.chunk(0), original);
  EXPECT_EQ(original->refs(), 1u);
  EXPECT_EQ(mine.refs(), 1u);
  // Each dblock the copy maps gets one more reference: now two chunks map it.
  EXPECT_EQ(sm.RefCount(a), 2u);
  EXPECT_EQ(sm.RefCount(b), 2u);
  EXPECT_EQ(sm.RefCount(c), 1u);
  EXPECT_FALSE(t.Lookup(0).chunk_shared);
  EXPECT_FALSE(clone->Lookup(0).chunk_shared);

  // Changing the copy leaves the original alone.
  mine.Set(10, c, false);
  EXPECT_EQ(t.Lookup(10).dblock, b);
  EXPECT_TRUE(t.Lookup(10).provisioned);
  EXPECT_EQ(clone->Lookup(10).dblock, c);

  // A second MutableChunk of the now-private chunk does not copy again.
  Chunk& again = clone->MutableChunk(20, &sm);
  EXPECT_EQ(&again, &mine);
  EXPECT_EQ(sm.RefCount(a), 2u);
}

TEST(MappingTableTest, ThreeWayShareUnsharesOneAtATime) {
  SpaceMap sm(4);
  MappingTable t(64);
  dblock_t a = sm.Allocate();
  t.MutableChunk(0, &sm).Set(0, a, false);
  auto c1 = t.Clone();
  auto c2 = c1->Clone();
  EXPECT_EQ(t.chunk(0)->refs(), 3u);
  c2->MutableChunk(0, &sm);
  EXPECT_EQ(t.chunk(0)->refs(), 2u);
  EXPECT_EQ(sm.RefCount(a), 2u);
  EXPECT_TRUE(t.Lookup(0).chunk_shared);
  EXPECT_FALSE(c2->Lookup(0).chunk_shared);
  c1.reset();  // destructor drops its reference
  EXPECT_EQ(t.chunk(0)->refs(), 1u);
  EXPECT_FALSE(t.Lookup(0).chunk_shared);
}

TEST(MappingTableTest, DetachChunk) {
  SpaceMap sm(4);
  MappingTable t(64);
  t.MutableChunk(0, &sm).Set(0, sm.Allocate(), false);
  auto clone = t.Clone();
  const Chunk* shared = t.chunk(0);
  EXPECT_EQ(t.DetachChunk(0), nullptr);  // clone still holds it
  EXPECT_EQ(t.chunk(0), nullptr);
  EXPECT_EQ(shared->refs(), 1u);
  std::unique_ptr<Chunk> last = clone->DetachChunk(0);
  EXPECT_EQ(last.get(), shared);
  EXPECT_EQ(clone->chunk(0), nullptr);
  EXPECT_EQ(clone->DetachChunk(0), nullptr);  // empty slot
}

TEST(MappingTableTest, DropIfEmpty) {
  SpaceMap sm(4);
  MappingTable t(128);
  Chunk& c = t.MutableChunk(65, &sm);
  c.Set(1, sm.Allocate(), false);
  t.DropIfEmpty(65);
  EXPECT_NE(t.chunk(1), nullptr);  // not empty
  c.Clear(1);
  auto clone = t.Clone();
  t.DropIfEmpty(65);
  EXPECT_NE(t.chunk(1), nullptr);  // empty but shared
  clone.reset();
  t.DropIfEmpty(64);
  EXPECT_EQ(t.chunk(1), nullptr);
  t.DropIfEmpty(0);  // absent chunk: no-op
}

TEST(MappingTableTest, ResizeGrowAndShrink) {
  SpaceMap sm(4);
  MappingTable t(10);
  dblock_t a = sm.Allocate();
  t.MutableChunk(5, &sm).Set(5, a, false);
  t.Resize(200);
  EXPECT_EQ(t.nr_vblocks(), 200u);
  EXPECT_EQ(t.nr_chunks(), 4u);
  EXPECT_EQ(t.Lookup(5).dblock, a);
  EXPECT_EQ(t.Lookup(199).dblock, kNoDblock);
  // Shrinking drops empty chunks past the end, shared or not.
  t.MutableChunk(150, &sm);  // an empty private chunk
  auto clone = t.Clone();
  t.Resize(64);
  EXPECT_EQ(t.nr_chunks(), 1u);
  EXPECT_EQ(t.Lookup(5).dblock, a);
  EXPECT_EQ(clone->chunk(2)->refs(), 1u);
  t.Resize(6);
  EXPECT_EQ(t.nr_vblocks(), 6u);
  EXPECT_EQ(t.Lookup(5).dblock, a);
}

TEST(MappingTableTest, MemoryUsageCountsSharedChunksInFull) {
  SpaceMap sm(100);
  MappingTable t(64 * 4);
  for (vblock_t vb = 0; vb < 64 * 4; vb += 3) {
    t.MutableChunk(vb, &sm).Set(vb & (kChunkSize - 1), sm.Allocate(), false);
  }
  auto clone = t.Clone();
  EXPECT_EQ(t.MemoryUsage(), clone->MemoryUsage());
  EXPECT_GT(t.MemoryUsage(), 86 * sizeof(dblock_t));
}

}  // namespace
}  // namespace thinsim
