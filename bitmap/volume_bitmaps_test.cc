// Tests of VolumeBitmaps: the control verbs and their errors, what the
// request hook marks, and bitmap-cut as a grace period: a request in flight
// across a cut lands in both bitmaps, a later one never waits for it, and
// writers racing repeated cuts lose nothing.
#include "bitmap/volume_bitmaps.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "base/status_test_util.h"

namespace thinsim {
namespace {

using namespace std::chrono_literals;
using Interval = boost::icl::interval_set<uint64_t>::interval_type;
using Kind = ChangeRequest::Kind;
constexpr uint64_t k4K = 4096;
constexpr uint64_t k64K = 65536;
constexpr uint64_t kSize = 16 << 20;

// Byte ranges [lo, hi).
boost::icl::interval_set<uint64_t> Ranges(std::initializer_list<std::pair<uint64_t, uint64_t>> r) {
  boost::icl::interval_set<uint64_t> out;
  for (auto [lo, hi] : r) out.add(Interval::right_open(lo, hi));
  return out;
}

class VolumeBitmapsTest : public ::testing::Test {
 protected:
  // One whole request through the hook.
  void Change(uint64_t offset, uint64_t length, Kind kind = Kind::kWrite) {
    ChangeRequest r{kind, offset, length, nullptr};
    ASSERT_OK(b_.BeforeChange(r));
    ASSERT_OK(b_.AfterChange(r, Status::OK()));
  }
  boost::icl::interval_set<uint64_t> Dirty(std::string_view name) {
    boost::icl::interval_set<uint64_t> out;
    EXPECT_OK(b_.DirtyRanges(name, &out));
    return out;
  }
  BitmapInfo Info(std::string_view name) {
    BitmapInfo info;
    EXPECT_OK(b_.Query(name, &info));
    return info;
  }
  // Waits until a grace period that started after `epoch` is under way.
  void AwaitEpochAfter(uint64_t epoch) {
    while (b_.TEST_epoch() == epoch) std::this_thread::sleep_for(100us);
  }

  VolumeBitmaps b_{"vol", kSize};
};

TEST_F(VolumeBitmapsTest, AddValidatesNameAndGranularity) {
  EXPECT_OK(b_.Add("b0", k4K, false, false));
  EXPECT_CODE(b_.Add("b0", k4K, false, false), kExists);
  EXPECT_CODE(b_.Add("-x", k4K, false, false), kInvalid);
  EXPECT_EQ(b_.Add("a b", k4K, false, false).message(),
            "bitmap name 'a b' has a character outside [A-Za-z0-9._-]");
  EXPECT_CODE(b_.Add("b1", 1000, false, false), kInvalid);
  EXPECT_CODE(b_.Add("b1", 256, false, false), kInvalid);
  EXPECT_CODE(b_.Add("b1", uint64_t{128} << 20, false, false), kInvalid);
  EXPECT_CODE(b_.Add("b1", 512, /*persistent=*/true, true), kUnsupported);  // no journal: in memory
  EXPECT_OK(b_.Add("b1", 512, false, true));
  EXPECT_OK(b_.Add("b2", uint64_t{64} << 20, false, false));
  std::vector<BitmapInfo> all = b_.Query();
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[1].name, "b1");
  EXPECT_EQ(all[1].granularity, 512u);
  EXPECT_FALSE(all[1].persistent);
  EXPECT_FALSE(all[1].enabled);
  EXPECT_TRUE(all[0].enabled);
  EXPECT_CODE(b_.Query("nope", &all[0]), kNotFound);
  EXPECT_EQ(b_.Remove("nope").message(), "no bitmap named 'nope' on volume 'vol'");
}

TEST_F(VolumeBitmapsTest, EveryChangeKindMarksEnabledBitmaps) {
  ASSERT_OK(b_.Add("on", k4K, false, false));
  ASSERT_OK(b_.Add("off", k4K, false, true));
  Change(100, 10, Kind::kWrite);
  Change(k64K, k64K, Kind::kZero);
  Change(4 * k64K, k64K, Kind::kTrim);
  Change(8 * k64K + 1, 1, Kind::kProvision);
  EXPECT_EQ(Dirty("on"), Ranges({{0, k4K}, {k64K, 2 * k64K}, {4 * k64K, 5 * k64K},
                                 {8 * k64K, 8 * k64K + k4K}}));
  EXPECT_TRUE(Dirty("off").empty());
  BitmapInfo info = Info("on");
  EXPECT_EQ(info.dirty_granules, 1u + 16 + 16 + 1);
  EXPECT_EQ(info.dirty_bytes, 34 * k4K);
}

TEST_F(VolumeBitmapsTest, FourKGranulesOnArbitraryOffsets) {
  ASSERT_OK(b_.Add("b", k4K, false, false));
  Change(k4K - 1, 2);          // granules 0 and 1
  Change(10 * k4K + 17, 5000);  // 10 and 11
  std::vector<DirtyBitmap::Extent> ext;
  ASSERT_OK(b_.Extents("b", 0, 13 * k4K, &ext));
  EXPECT_EQ(ext, (std::vector<DirtyBitmap::Extent>{{0, 2 * k4K, true},
                                                   {2 * k4K, 8 * k4K, false},
                                                   {10 * k4K, 2 * k4K, true},
                                                   {12 * k4K, k4K, false}}));
  EXPECT_CODE(b_.Extents("nope", 0, 1, &ext), kNotFound);
}

TEST_F(VolumeBitmapsTest, EnableDisableClearRemove) {
  ASSERT_OK(b_.Add("b", k4K, false, true));
  Change(0, 1);
  EXPECT_TRUE(Dirty("b").empty());
  ASSERT_OK(b_.Enable("b"));
  EXPECT_TRUE(Info("b").enabled);
  Change(0, 1);
  EXPECT_EQ(Dirty("b"), Ranges({{0, k4K}}));
  ASSERT_OK(b_.Disable("b"));
  Change(k4K, 1);
  EXPECT_EQ(Dirty("b"), Ranges({{0, k4K}}));
  ASSERT_OK(b_.Clear("b"));
  EXPECT_TRUE(Dirty("b").empty());
  EXPECT_FALSE(Info("b").enabled);  // clear keeps the state
  ASSERT_OK(b_.Remove("b"));
  EXPECT_TRUE(b_.Query().empty());
  Change(0, 1);  // nothing to mark
  EXPECT_CODE(b_.Clear("b"), kNotFound);
}

TEST_F(VolumeBitmapsTest, MergeAcrossGranularitiesAndAllOrNothing) {
  ASSERT_OK(b_.Add("fine", 512, false, true));
  ASSERT_OK(b_.Add("fine2", 512, false, true));
  ASSERT_OK(b_.Add("coarse", k64K, false, true));
  ASSERT_OK(b_.Enable("fine"));
  Change(k64K - 512, 1024);
  ASSERT_OK(b_.Disable("fine"));
  ASSERT_OK(b_.Enable("fine2"));
  Change(10 * k64K, 1);
  ASSERT_OK(b_.Disable("fine2"));
  // A missing source: the target is untouched even though "fine" came first.
  EXPECT_CODE(b_.Merge({"fine", "nope"}, "coarse"), kNotFound);
  EXPECT_TRUE(Dirty("coarse").empty());
  EXPECT_CODE(b_.Merge({"fine"}, "nope"), kNotFound);
  ASSERT_OK(b_.Merge({"fine", "fine2"}, "coarse"));
  EXPECT_EQ(Dirty("coarse"), Ranges({{0, 2 * k64K}, {10 * k64K, 11 * k64K}}));
  EXPECT_EQ(Dirty("fine"), Ranges({{k64K - 512, k64K + 512}}));  // sources unchanged
  // A busy target refuses; a busy source may be merged from.
  ASSERT_OK(b_.SetBusy("fine2", true));
  EXPECT_CODE(b_.Merge({"fine"}, "fine2"), kBusy);
  EXPECT_EQ(Dirty("fine2"), Ranges({{10 * k64K, 10 * k64K + 512}}));
  ASSERT_OK(b_.Merge({"fine2"}, "fine"));
}

TEST_F(VolumeBitmapsTest, BusyRefusesChanges) {
  ASSERT_OK(b_.Add("b", k4K, false, false));
  Change(0, 1);
  ASSERT_OK(b_.SetBusy("b", true));
  EXPECT_TRUE(Info("b").busy);
  Status s = b_.Remove("b");
  EXPECT_EQ(s.code(), ErrorCode::kBusy);
  EXPECT_EQ(s.message(), "bitmap 'b' on volume 'vol' is busy (in use by a job)");
  EXPECT_CODE(b_.Clear("b"), kBusy);
  EXPECT_CODE(b_.Disable("b"), kBusy);
  EXPECT_CODE(b_.Enable("b"), kBusy);
  EXPECT_CODE(b_.Cut("b", "c"), kBusy);
  // Still recording and readable.
  Change(k4K, 1);
  EXPECT_EQ(Dirty("b"), Ranges({{0, 2 * k4K}}));
  EXPECT_EQ(b_.Query().size(), 1u);
  ASSERT_OK(b_.SetBusy("b", false));
  EXPECT_OK(b_.Clear("b"));
  EXPECT_OK(b_.Remove("b"));
  EXPECT_CODE(b_.SetBusy("b", true), kNotFound);
}

TEST_F(VolumeBitmapsTest, ResizeFollowsTheVolume) {
  ASSERT_OK(b_.Add("b", k64K, false, false));
  ASSERT_OK(b_.Add("d", k4K, false, true));
  Change(0, 1);
  Change(kSize - 1, 1);
  b_.Resize(kSize / 2);
  EXPECT_EQ(b_.size(), kSize / 2);
  EXPECT_EQ(Dirty("b"), Ranges({{0, k64K}}));
  EXPECT_TRUE(Dirty("d").empty());
  b_.Resize(kSize / 2 + 100);  // grows into a new partial granule
  EXPECT_EQ(Dirty("b"), Ranges({{0, k64K}, {kSize / 2, kSize / 2 + 100}}));
  EXPECT_EQ(Dirty("d"), Ranges({{kSize / 2, kSize / 2 + 100}}));
  Change(kSize / 2 + 50, 1);
  EXPECT_EQ(Info("b").dirty_bytes, k64K + 100);
}

TEST_F(VolumeBitmapsTest, CutFreezesIntoNewDisabledBitmap) {
  ASSERT_OK(b_.Add("live", k4K, false, false));
  Change(0, 1);
  ASSERT_OK(b_.Cut("live", "frozen"));
  EXPECT_CODE(b_.Cut("live", "frozen"), kExists);
  EXPECT_CODE(b_.Cut("nope", "x"), kNotFound);
  EXPECT_CODE(b_.Cut("live", "bad name"), kInvalid);
  Change(k4K, 1);
  EXPECT_EQ(Dirty("frozen"), Ranges({{0, k4K}}));
  EXPECT_EQ(Dirty("live"), Ranges({{k4K, 2 * k4K}}));
  BitmapInfo f = Info("frozen");
  EXPECT_FALSE(f.enabled);
  EXPECT_FALSE(f.persistent);  // as the bitmap cut (persistent ones: volume_bitmaps_persist_test.cc)
  EXPECT_EQ(f.granularity, k4K);
  EXPECT_TRUE(Info("live").enabled);
}

TEST_F(VolumeBitmapsTest, RequestInFlightAcrossCutLandsInBoth) {
  ASSERT_OK(b_.Add("live", k4K, false, false));
  ChangeRequest a{Kind::kWrite, 5 * k4K, 10, nullptr};
  ASSERT_OK(b_.BeforeChange(a));
  uint64_t epoch = b_.TEST_epoch();
  auto cut = std::async(std::launch::async, [this] { return b_.Cut("live", "frozen"); });
  AwaitEpochAfter(epoch);
  // The cut waits for `a`, which started before it.
  EXPECT_EQ(cut.wait_for(20ms), std::future_status::timeout);
  ASSERT_OK(b_.AfterChange(a, Status::OK()));
  ASSERT_OK(cut.get());
  EXPECT_EQ(Dirty("frozen"), Ranges({{5 * k4K, 6 * k4K}}));
  EXPECT_EQ(Dirty("live"), Ranges({{5 * k4K, 6 * k4K}}));
}

TEST_F(VolumeBitmapsTest, RequestInFlightAcrossClearIsKept) {
  ASSERT_OK(b_.Add("live", k4K, false, false));
  Change(0, 1);
  ChangeRequest a{Kind::kZero, 7 * k4K, k4K, nullptr};
  ASSERT_OK(b_.BeforeChange(a));
  uint64_t epoch = b_.TEST_epoch();
  auto clear = std::async(std::launch::async, [this] { return b_.Clear("live"); });
  AwaitEpochAfter(epoch);
  ASSERT_OK(b_.AfterChange(a, Status::IOError("failed after changing data")));
  ASSERT_OK(clear.get());
  EXPECT_EQ(Dirty("live"), Ranges({{7 * k4K, 8 * k4K}}));
}

TEST_F(VolumeBitmapsTest, ClearRangesForgetsOnlyWholeGranulesInsideAndKeepsRequestsInFlight) {
  ASSERT_OK(b_.Add("b", k4K, false, false));
  Change(0, 4 * k4K);
  Change(10 * k4K, k4K);
  ChangeRequest a{Kind::kWrite, 2 * k4K, 10, nullptr};  // in flight across the clear, inside the range
  ASSERT_OK(b_.BeforeChange(a));
  uint64_t epoch = b_.TEST_epoch();
  // [k4K + 1, 3 * k4K + 5) covers granule 2 only, wholly; 1 and 3 in part.
  auto clear = std::async(std::launch::async, [this] { return b_.ClearRanges("b", Ranges({{k4K + 1, 3 * k4K + 5}})); });
  AwaitEpochAfter(epoch);
  ASSERT_OK(b_.AfterChange(a, Status::OK()));
  ASSERT_OK(clear.get());
  EXPECT_EQ(Dirty("b"), Ranges({{0, 4 * k4K}, {10 * k4K, 11 * k4K}}));  // granule 2: the request's
  ASSERT_OK(b_.ClearRanges("b", Ranges({{k4K, 3 * k4K}})));
  EXPECT_EQ(Dirty("b"), Ranges({{0, k4K}, {3 * k4K, 4 * k4K}, {10 * k4K, 11 * k4K}}));
  ASSERT_OK(b_.SetBusy("b", true));
  EXPECT_EQ(b_.ClearRanges("b", Ranges({{0, k4K}})).code(), ErrorCode::kBusy);
}

TEST_F(VolumeBitmapsTest, RequestAfterCutDoesNotWaitForOlderOne) {
  ASSERT_OK(b_.Add("live", k4K, false, false));
  ChangeRequest old{Kind::kWrite, 0, 1, nullptr};
  ASSERT_OK(b_.BeforeChange(old));
  uint64_t epoch = b_.TEST_epoch();
  auto cut = std::async(std::launch::async, [this] { return b_.Cut("live", "frozen"); });
  AwaitEpochAfter(epoch);
  // New requests go through whole while the cut still waits for `old`.
  for (int i = 0; i < 100; ++i) Change(9 * k4K, 1);
  auto later = std::async(std::launch::async, [this] { Change(10 * k4K, 1); });
  EXPECT_EQ(later.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(cut.wait_for(0ms), std::future_status::timeout);
  ASSERT_OK(b_.AfterChange(old, Status::OK()));
  ASSERT_OK(cut.get());
  // They started after the cut: only in the live bitmap.
  EXPECT_EQ(Dirty("frozen"), Ranges({{0, k4K}}));
  EXPECT_EQ(Dirty("live"), Ranges({{0, k4K}, {9 * k4K, 11 * k4K}}));
}

TEST_F(VolumeBitmapsTest, ManyRequestsInFlightSpillOverTheSlotTable) {
  ASSERT_OK(b_.Add("live", 512, false, false));
  const size_t n = VolumeBitmaps::kSlots + 50;
  std::vector<ChangeRequest> reqs;
  for (size_t i = 0; i < n; ++i) reqs.push_back({Kind::kWrite, i * 512, 1, nullptr});
  for (const ChangeRequest& r : reqs) ASSERT_OK(b_.BeforeChange(r));
  uint64_t epoch = b_.TEST_epoch();
  auto cut = std::async(std::launch::async, [this] { return b_.Cut("live", "frozen"); });
  AwaitEpochAfter(epoch);
  for (const ChangeRequest& r : reqs) ASSERT_OK(b_.AfterChange(r, Status::OK()));
  ASSERT_OK(cut.get());
  EXPECT_EQ(Dirty("frozen"), Ranges({{0, n * 512}}));
  EXPECT_EQ(Dirty("live"), Ranges({{0, n * 512}}));
}

// Writers against repeated cuts: whatever was written is in the union of the
// cut bitmaps and the live one, and nothing else is; every request seen to
// straddle a cut (the epoch moved between its BeforeChange and AfterChange)
// is in that cut's bitmap and in the next one (or the live bitmap).
TEST_F(VolumeBitmapsTest, StressWritersAgainstCuts) {
  constexpr int kWriters = 4;
  constexpr int kCuts = 200;
  constexpr uint64_t kGran = k4K;
  ASSERT_OK(b_.Add("live", kGran, false, false));
  const uint64_t first_epoch = b_.TEST_epoch();  // cut i moves it to first_epoch + i + 1
  DirtyBitmap written(kSize, kGran);  // the reference: marked by every writer
  struct Straddler {
    uint64_t offset;
    int cut;
  };
  std::vector<std::vector<Straddler>> straddlers(kWriters);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> requests{0};
  std::vector<std::thread> writers;
  for (int t = 0; t < kWriters; ++t) {
    writers.emplace_back([&, t] {
      std::mt19937_64 rng(t + 1);
      ChangeRequest r{Kind::kWrite, 0, 0, nullptr};
      while (!stop.load(std::memory_order_relaxed)) {
        r.offset = rng() % kSize;
        r.length = 1 + rng() % (3 * kGran);
        written.Mark(r.offset, r.length);
        ASSERT_OK(b_.BeforeChange(r));
        uint64_t entered = b_.TEST_epoch();  // >= the request's epoch
        if (rng() % 8 == 0) std::this_thread::yield();
        uint64_t leaving = b_.TEST_epoch();  // <= what AfterChange sees
        ASSERT_OK(b_.AfterChange(r, Status::OK()));
        if (leaving > entered) {
          straddlers[t].push_back({r.offset, static_cast<int>(entered - first_epoch)});
        }
        requests.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  for (int i = 0; i < kCuts; ++i) {
    ASSERT_OK(b_.Cut("live", "cut" + std::to_string(i)));
    if (i % 16 == 0) std::this_thread::sleep_for(1ms);
  }
  stop = true;
  for (auto& w : writers) w.join();

  std::vector<std::unique_ptr<DirtyBitmap>> cuts;  // cut 0 .. kCuts-1, then live
  DirtyBitmap got(kSize, kGran);
  for (int i = 0; i <= kCuts; ++i) {
    std::string name = i < kCuts ? "cut" + std::to_string(i) : "live";
    cuts.push_back(std::make_unique<DirtyBitmap>(kSize, kGran));
    for (const auto& iv : Dirty(name)) cuts.back()->Mark(boost::icl::first(iv), boost::icl::length(iv));
    got.Merge(*cuts.back());
  }
  EXPECT_GT(requests.load(), 0u);
  EXPECT_EQ(got.DirtyRanges(), written.DirtyRanges());
  size_t straddling = 0;
  for (const auto& list : straddlers) {
    for (const Straddler& s : list) {
      ASSERT_GE(s.cut, 0);
      ASSERT_LT(s.cut, kCuts);
      EXPECT_TRUE(cuts[s.cut]->Test(s.offset)) << "cut " << s.cut;
      EXPECT_TRUE(cuts[s.cut + 1]->Test(s.offset)) << "after cut " << s.cut;
      ++straddling;
    }
  }
  std::cout << requests.load() << " requests, " << straddling << " seen straddling a cut\n";
}

TEST_F(VolumeBitmapsTest, RequestInFlightAcrossResizeIsKept) {
  ASSERT_OK(b_.Add("b", k4K, false, false));
  ChangeRequest a{Kind::kWrite, 3 * k4K, 1, nullptr};
  ASSERT_OK(b_.BeforeChange(a));
  uint64_t epoch = b_.TEST_epoch();
  auto resize = std::async(std::launch::async, [this] { b_.Resize(2 * kSize); });
  AwaitEpochAfter(epoch);
  ChangeRequest c{Kind::kWrite, kSize + 5, 1, nullptr};  // in the grown range
  ASSERT_OK(b_.BeforeChange(c));
  ASSERT_OK(b_.AfterChange(c, Status::OK()));
  ASSERT_OK(b_.AfterChange(a, Status::OK()));
  resize.get();
  EXPECT_EQ(Dirty("b"), Ranges({{3 * k4K, 4 * k4K}, {kSize, 2 * kSize}}));
}

// Writers against every other control call: views come and go under them.
// The bitmap left alone ends up with exactly what was written plus the
// ranges the volume grew by.
TEST_F(VolumeBitmapsTest, StressWritersAgainstControlCalls) {
  constexpr int kWriters = 3;
  ASSERT_OK(b_.Add("keep", k4K, false, false));
  DirtyBitmap written(kSize, k4K);
  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  for (int t = 0; t < kWriters; ++t) {
    writers.emplace_back([&, t] {
      std::mt19937_64 rng(t + 100);
      ChangeRequest r{Kind::kZero, 0, 0, nullptr};
      while (!stop.load(std::memory_order_relaxed)) {
        r.offset = rng() % kSize;
        r.length = 1 + rng() % k64K;
        written.Mark(r.offset, r.length);
        ASSERT_OK(b_.BeforeChange(r));
        ASSERT_OK(b_.AfterChange(r, Status::OK()));
      }
    });
  }
  uint64_t size = kSize;
  for (int i = 0; i < 100; ++i) {
    ASSERT_OK(b_.Add("tmp", 512, false, i % 2 == 0));
    ASSERT_OK(b_.Enable("tmp"));
    ASSERT_OK(b_.Merge({"keep"}, "tmp"));
    ASSERT_OK(b_.Clear("tmp"));
    ASSERT_OK(b_.Cut("tmp", "tmp-cut"));
    ASSERT_OK(b_.Disable("tmp"));
    ASSERT_OK(b_.Remove("tmp"));
    ASSERT_OK(b_.Remove("tmp-cut"));
    if (i % 10 == 0) b_.Resize(size += k4K);
  }
  stop = true;
  for (auto& w : writers) w.join();
  boost::icl::interval_set<uint64_t> want = written.DirtyRanges();
  want.add(Interval::right_open(kSize, size));
  EXPECT_EQ(Dirty("keep"), want);
  EXPECT_EQ(b_.Query().size(), 1u);
}

}  // namespace
}  // namespace thinsim
