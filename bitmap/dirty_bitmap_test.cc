// Tests of DirtyBitmap: granularity bounds, marking on arbitrary offsets,
// rounding (out for dirt, in for clearing), merge across granularities,
// resize, extents, persistence words, and concurrent marks.
#include "bitmap/dirty_bitmap.h"

#include <gtest/gtest.h>

#include <memory>
#include <ostream>
#include <thread>
#include <vector>

#include "base/status_test_util.h"

namespace thinsim {

// For readable failures.
void PrintTo(const DirtyBitmap::Extent& e, std::ostream* os) {
  *os << "{" << e.offset << ", " << e.length << ", " << (e.dirty ? "dirty" : "clean") << "}";
}

namespace {

using Extent = DirtyBitmap::Extent;
using Interval = boost::icl::interval_set<uint64_t>::interval_type;
constexpr uint64_t k4K = 4096;
constexpr uint64_t k64K = 65536;

boost::icl::interval_set<uint64_t> Ranges(std::initializer_list<std::pair<uint64_t, uint64_t>> r) {
  boost::icl::interval_set<uint64_t> out;
  for (auto [lo, hi] : r) out.add(Interval::right_open(lo, hi));
  return out;
}

TEST(DirtyBitmapTest, GranularityBounds) {
  for (uint64_t g : {uint64_t{512}, uint64_t{4096}, uint64_t{1} << 20, uint64_t{64} << 20}) {
    EXPECT_OK(DirtyBitmap::ValidateGranularity(g));
  }
  for (uint64_t g : {uint64_t{0}, uint64_t{1}, uint64_t{256}, uint64_t{511}, uint64_t{1000},
                     uint64_t{4097}, uint64_t{128} << 20, uint64_t{3} << 20}) {
    Status s = DirtyBitmap::ValidateGranularity(g);
    EXPECT_EQ(s.code(), ErrorCode::kInvalid) << g;
  }
  EXPECT_EQ(DirtyBitmap::ValidateGranularity(1000).message(),
            "bitmap granularity must be a power of two from 512 to 64M, got 1000");
  std::unique_ptr<DirtyBitmap> b;
  EXPECT_CODE(DirtyBitmap::Make(1 << 20, 256, &b), kInvalid);
  EXPECT_EQ(b, nullptr);
  ASSERT_OK(DirtyBitmap::Make(1 << 20, 512, &b));
  EXPECT_EQ(b->granules(), 2048u);
}

TEST(DirtyBitmapTest, MarksEveryGranuleTouched) {
  DirtyBitmap b(1 << 20, k4K);
  EXPECT_EQ(b.CountGranules(), 0u);
  // 100 bytes straddling the 4K boundary touch granules 0 and 1.
  EXPECT_TRUE(b.Mark(4050, 100));
  EXPECT_FALSE(b.Mark(4000, 10));  // already dirty
  EXPECT_TRUE(b.Test(0));
  EXPECT_TRUE(b.Test(4095));
  EXPECT_TRUE(b.Test(8191));
  EXPECT_FALSE(b.Test(8192));
  EXPECT_EQ(b.CountGranules(), 2u);
  EXPECT_EQ(b.DirtyBytes(), 2 * k4K);
  // One byte, and a range ending exactly on a boundary.
  EXPECT_TRUE(b.Mark(65537, 1));
  EXPECT_TRUE(b.Mark(3 * k4K, k4K));
  EXPECT_FALSE(b.Test(4 * k4K));
  EXPECT_EQ(b.DirtyRanges(), Ranges({{0, 2 * k4K}, {3 * k4K, 4 * k4K}, {16 * k4K, 17 * k4K}}));
  EXPECT_FALSE(b.Mark(0, 0));
  EXPECT_FALSE(b.Mark(1 << 20, 10));  // past the end
  EXPECT_FALSE(b.Test(1 << 20));
}

TEST(DirtyBitmapTest, MarksAcrossWords) {
  DirtyBitmap b(1 << 30, 512);
  // Granules 60 .. 200: three words, partial at both ends.
  EXPECT_TRUE(b.Mark(60 * 512 + 7, 140 * 512));
  EXPECT_EQ(b.CountGranules(), 141u);
  EXPECT_EQ(b.DirtyRanges(), Ranges({{60 * 512, 201 * 512}}));
  EXPECT_TRUE(b.Mark(0, 1 << 30));
  EXPECT_TRUE(b.AllDirty());
  EXPECT_EQ(b.DirtyBytes(), uint64_t{1} << 30);
}

TEST(DirtyBitmapTest, PartialLastGranule) {
  // 10000 bytes at 4K: granules [0,4K) [4K,8K) [8K,10000).
  DirtyBitmap b(10000, k4K);
  EXPECT_EQ(b.granules(), 3u);
  EXPECT_TRUE(b.Mark(9999, 100));  // clipped to the end
  EXPECT_EQ(b.DirtyBytes(), 10000 - 2 * k4K);
  EXPECT_EQ(b.DirtyRanges(), Ranges({{2 * k4K, 10000}}));
  EXPECT_FALSE(b.AllDirty());
  b.MarkAll();
  EXPECT_TRUE(b.AllDirty());
  EXPECT_EQ(b.DirtyBytes(), 10000u);
  EXPECT_EQ(b.Extents(0, UINT64_MAX), (std::vector<Extent>{{0, 10000, true}}));
}

TEST(DirtyBitmapTest, ClearRoundsIn) {
  DirtyBitmap b(10000, k4K);
  b.MarkAll();
  b.Clear(100, k4K);  // covers no granule wholly
  EXPECT_EQ(b.CountGranules(), 3u);
  b.Clear(100, 2 * k4K);  // covers [4K,8K) only
  EXPECT_EQ(b.DirtyRanges(), Ranges({{0, k4K}, {2 * k4K, 10000}}));
  b.Clear(2 * k4K, 10000 - 2 * k4K);  // reaches size: the partial granule goes
  EXPECT_EQ(b.DirtyRanges(), Ranges({{0, k4K}}));
  b.Clear();
  EXPECT_EQ(b.CountGranules(), 0u);
  EXPECT_TRUE(b.DirtyRanges().empty());
}

TEST(DirtyBitmapTest, MergeSameGranularity) {
  DirtyBitmap a(1 << 20, k4K), b(1 << 20, k4K);
  a.Mark(0, 1);
  b.Mark(k64K, 3 * k4K);
  a.Merge(b);
  EXPECT_EQ(a.DirtyRanges(), Ranges({{0, k4K}, {k64K, k64K + 3 * k4K}}));
  EXPECT_EQ(b.CountGranules(), 3u);  // the source is unchanged
  a.Merge(a);
  EXPECT_EQ(a.CountGranules(), 4u);
}

TEST(DirtyBitmapTest, MergeIntoCoarserRoundsOut) {
  DirtyBitmap fine(1 << 20, 512), coarse(1 << 20, k64K);
  fine.Mark(k64K - 512, 1024);  // straddles the first 64K boundary
  fine.Mark(5 * k64K + 1000, 1);
  coarse.Merge(fine);
  EXPECT_EQ(coarse.DirtyRanges(), Ranges({{0, 2 * k64K}, {5 * k64K, 6 * k64K}}));
}

TEST(DirtyBitmapTest, MergeIntoFinerKeepsExtent) {
  DirtyBitmap coarse(1 << 20, k64K), fine(1 << 20, k4K);
  coarse.Mark(3 * k64K + 5, 1);
  fine.Merge(coarse);
  EXPECT_EQ(fine.DirtyRanges(), Ranges({{3 * k64K, 4 * k64K}}));
  EXPECT_EQ(fine.CountGranules(), 16u);
}

TEST(DirtyBitmapTest, MergeDifferentSizesCoversCommonBytes) {
  DirtyBitmap small(10000, k4K), big(1 << 20, k4K), big512(1 << 20, 512);
  big.MarkAll();
  small.Merge(big);
  EXPECT_TRUE(small.AllDirty());
  EXPECT_EQ(small.Words(), std::vector<uint64_t>{0b111});  // nothing past the last granule
  big512.Mark(9000, 100000);
  small.Clear();
  small.Merge(big512);
  EXPECT_EQ(small.DirtyRanges(), Ranges({{2 * k4K, 10000}}));
  DirtyBitmap other(1 << 20, k4K);
  other.Merge(small);
  EXPECT_EQ(other.DirtyRanges(), Ranges({{2 * k4K, 3 * k4K}}));
}

TEST(DirtyBitmapTest, NextDirtyRunFindsRunsCappedAndClippedToSize) {
  DirtyBitmap b(100 * k4K + 10, k4K);  // 101 granules, the last partial
  uint64_t off = 0, len = 0;
  EXPECT_FALSE(b.NextDirtyRun(0, UINT64_MAX, &off, &len));
  b.Mark(5 * k4K, 3 * k4K);
  b.Mark(100 * k4K, 1);
  ASSERT_TRUE(b.NextDirtyRun(0, UINT64_MAX, &off, &len));
  EXPECT_EQ(off, 5 * k4K);
  EXPECT_EQ(len, 3 * k4K);
  ASSERT_TRUE(b.NextDirtyRun(6 * k4K + 7, UINT64_MAX, &off, &len));  // from inside the run: its granule on
  EXPECT_EQ(off, 6 * k4K);
  EXPECT_EQ(len, 2 * k4K);
  ASSERT_TRUE(b.NextDirtyRun(0, k4K + 1, &off, &len));  // capped at two granules
  EXPECT_EQ(len, 2 * k4K);
  ASSERT_TRUE(b.NextDirtyRun(8 * k4K, UINT64_MAX, &off, &len));
  EXPECT_EQ(off, 100 * k4K);
  EXPECT_EQ(len, 10u);  // the partial last granule, clipped to size
  EXPECT_FALSE(b.NextDirtyRun(101 * k4K, UINT64_MAX, &off, &len));
}

TEST(DirtyBitmapTest, ResizeShrinkDropsTail) {
  DirtyBitmap b(1 << 20, k4K);
  b.Mark(0, 1);
  b.Mark(100 * k4K, 1);
  b.Mark(200 * k4K, 1);
  b.Resize(150 * k4K + 10);
  EXPECT_EQ(b.size(), 150 * k4K + 10);
  EXPECT_EQ(b.granules(), 151u);
  EXPECT_EQ(b.DirtyRanges(), Ranges({{0, k4K}, {100 * k4K, 101 * k4K}}));
  EXPECT_EQ(b.word_count(), 3u);
  EXPECT_EQ(b.Words()[2] >> (151 - 128), 0u);
}

TEST(DirtyBitmapTest, ResizeGrowMarksNewBytesAndOldPartialGranule) {
  DirtyBitmap b(10000, k4K);  // last granule [8K,10000) is partial
  b.Mark(0, 1);
  b.Resize(20000);
  // [8K, 20000): the old partial granule now holds new bytes too.
  EXPECT_EQ(b.DirtyRanges(), Ranges({{0, k4K}, {2 * k4K, 20000}}));
  DirtyBitmap aligned(2 * k4K, k4K);
  aligned.Resize(4 * k4K);
  EXPECT_EQ(aligned.DirtyRanges(), Ranges({{2 * k4K, 4 * k4K}}));
  aligned.Resize(0);
  EXPECT_EQ(aligned.granules(), 0u);
  EXPECT_TRUE(aligned.AllDirty());
  EXPECT_EQ(aligned.DirtyBytes(), 0u);
}

TEST(DirtyBitmapTest, ExtentsCoalesce) {
  DirtyBitmap b(1 << 20, k4K);
  b.Mark(k4K, 3 * k4K);      // granules 1-3
  b.Mark(4 * k4K, k4K);      // 4: joins the run
  b.Mark(10 * k4K, k4K);     // 10
  EXPECT_EQ(b.Extents(0, 12 * k4K), (std::vector<Extent>{{0, k4K, false},
                                                         {k4K, 4 * k4K, true},
                                                         {5 * k4K, 5 * k4K, false},
                                                         {10 * k4K, k4K, true},
                                                         {11 * k4K, k4K, false}}));
  // Unaligned ends are clipped to the range asked for.
  EXPECT_EQ(b.Extents(2 * k4K + 7, 3 * k4K + 3 * k4K),
            (std::vector<Extent>{{2 * k4K + 7, 3 * k4K - 7, true}, {5 * k4K, 3 * k4K + 7, false}}));
  EXPECT_EQ(b.Extents(20 * k4K, UINT64_MAX), (std::vector<Extent>{{20 * k4K, (1 << 20) - 20 * k4K, false}}));
  EXPECT_TRUE(b.Extents(1 << 20, 10).empty());
  EXPECT_TRUE(b.Extents(0, 0).empty());
}

TEST(DirtyBitmapTest, WordsRoundTrip) {
  DirtyBitmap b(1 << 20, k4K);  // 256 granules, 4 words
  b.Mark(0, 1);
  b.Mark(130 * k4K, 5 * k4K);
  std::vector<uint64_t> words = b.Words();
  ASSERT_EQ(words.size(), 4u);
  DirtyBitmap c(1 << 20, k4K);
  ASSERT_OK(c.SetWords(words));
  EXPECT_EQ(c.DirtyRanges(), b.DirtyRanges());
  EXPECT_CODE(c.SetWords(std::vector<uint64_t>(3)), kInvalid);
  DirtyBitmap d(10000, k4K);  // 3 granules
  EXPECT_CODE(d.SetWords(std::vector<uint64_t>{0b1000}), kInvalid);
  EXPECT_EQ(d.CountGranules(), 0u);  // unchanged on error
  EXPECT_OK(d.SetWords(std::vector<uint64_t>{0b101}));
  EXPECT_EQ(d.DirtyRanges(), Ranges({{0, k4K}, {2 * k4K, 10000}}));
}

TEST(DirtyBitmapTest, ConcurrentMarksReportEachGranuleOnce) {
  constexpr int kThreads = 4;
  constexpr uint64_t kGranules = 4096;
  DirtyBitmap b(kGranules * 512, 512);
  std::vector<uint64_t> newly(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&b, &newly, t] {
      // Every thread marks every granule, in a different order.
      for (uint64_t i = 0; i < kGranules; ++i) {
        uint64_t g = (i * 7 + t * 1031) % kGranules;
        if (b.Mark(g * 512, 1)) ++newly[t];
      }
    });
  }
  for (auto& t : threads) t.join();
  uint64_t total = 0;
  for (uint64_t n : newly) total += n;
  EXPECT_EQ(total, kGranules);
  EXPECT_TRUE(b.AllDirty());
}

}  // namespace
}  // namespace thinsim
