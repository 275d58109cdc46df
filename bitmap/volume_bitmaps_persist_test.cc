// Tests of persistent bitmaps in VolumeBitmaps: the write-intent rule (a
// request's granules are durable-dirty before BeforeChange returns, for one
// sync per clean granule per epoch), the records a cut and a clear log, and
// Restore. The journal applies every record to a metadata::VolumeImage with
// the pool's own checks (metadata::ApplyBitmapRecord); what a Sync has made
// durable is a second image, the one a crash would leave.
#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <thread>
#include <vector>

#include "base/status_test_util.h"
#include "bitmap/volume_bitmaps.h"
#include "metadata/image.h"
#include "metadata/records.h"

namespace thinsim {
namespace {

using Kind = ChangeRequest::Kind;
constexpr uint64_t k4K = 4096;
constexpr uint64_t kSize = 16 << 20;  // 4096 granules of 4K
// Granules per intent chunk: an intent covers the whole chunk around a write.
constexpr uint64_t kChunk = VolumeBitmaps::kIntentBytes / k4K;

class ImageJournal final : public BitmapJournal {
 public:
  ImageJournal() {
    logged_.attrs.id = 7;
    logged_.attrs.name = "vol";
    logged_.attrs.size = kSize;
    durable_ = logged_;
  }
  uint64_t volume_id() const override { return 7; }
  Status Append(const std::string& records) override {
    std::lock_guard lock(mu_);
    metadata::VolumeImage next = logged_;
    metadata::RecordReader reader(records);
    std::string_view payload;
    while (reader.Next(&payload)) THINSIM_RETURN_IF_ERROR(metadata::ApplyBitmapRecord(payload, &next));
    logged_ = std::move(next);
    return Status::OK();
  }
  Status Sync() override {
    std::lock_guard lock(mu_);
    durable_ = logged_;
    ++syncs_;
    return Status::OK();
  }
  // The durable dirty granules of the bitmap named `name`.
  boost::icl::interval_set<uint64_t> Durable(const std::string& name) {
    std::lock_guard lock(mu_);
    for (const auto& [id, b] : durable_.bitmaps) {
      if (b.name == name) return b.dirty;
    }
    ADD_FAILURE() << "no durable bitmap " << name;
    return {};
  }
  std::map<uint64_t, metadata::BitmapImage> DurableBitmaps() {
    std::lock_guard lock(mu_);
    return durable_.bitmaps;
  }
  int syncs() {
    std::lock_guard lock(mu_);
    return syncs_;
  }
  // The pool resizes the volume: its record, logged, reshapes the bitmaps as
  // replay will (durable at the next Sync, like any record).
  void LogResize(uint64_t size) {
    std::lock_guard lock(mu_);
    metadata::ResizeBitmapImages(&logged_.bitmaps, logged_.attrs.size, size);
    logged_.attrs.size = size;
  }

 private:
  std::mutex mu_;
  metadata::VolumeImage logged_, durable_;
  int syncs_ = 0;
};

boost::icl::interval_set<uint64_t> Granules(std::initializer_list<std::pair<uint64_t, uint64_t>> r) {
  boost::icl::interval_set<uint64_t> out;
  for (auto [first, end] : r) out.add(boost::icl::interval<uint64_t>::right_open(first, end));
  return out;
}

class PersistentBitmapsTest : public ::testing::Test {
 protected:
  PersistentBitmapsTest() {
    auto j = std::make_unique<ImageJournal>();
    journal_ = j.get();
    b_ = std::make_unique<VolumeBitmaps>("vol", kSize, std::move(j));
  }
  void Change(uint64_t offset, uint64_t length) {
    ChangeRequest r{Kind::kWrite, offset, length, nullptr};
    ASSERT_OK(b_->BeforeChange(r));
    ASSERT_OK(b_->AfterChange(r, Status::OK()));
  }

  ImageJournal* journal_;
  std::unique_ptr<VolumeBitmaps> b_;
};

TEST_F(PersistentBitmapsTest, FirstWriteToACleanGranulePaysOneSyncAndLaterOnesNone) {
  ASSERT_OK(b_->Add("b", k4K, /*persistent=*/true, /*disabled=*/false));
  int syncs = journal_->syncs();
  EXPECT_TRUE(journal_->Durable("b").empty());
  ChangeRequest r{Kind::kWrite, 100, 2 * k4K, nullptr};  // granules 0..2
  ASSERT_OK(b_->BeforeChange(r));
  // Before the data may move, the granules are dirty in what a crash keeps:
  // the whole intent chunk around them.
  EXPECT_EQ(journal_->Durable("b"), Granules({{0, kChunk}}));
  EXPECT_EQ(journal_->syncs(), syncs + 1);
  ASSERT_OK(b_->AfterChange(r, Status::OK()));
  Change(0, 3 * k4K);
  Change(k4K, 1);
  Change(10 * k4K, 1);
  EXPECT_EQ(journal_->syncs(), syncs + 1);  // durable already: no sync
  Change(kChunk * k4K + 5, 1);              // the next chunk
  EXPECT_EQ(journal_->syncs(), syncs + 2);
  EXPECT_EQ(journal_->Durable("b"), Granules({{0, 2 * kChunk}}));
  // The live bits stay exact.
  BitmapInfo info;
  ASSERT_OK(b_->Query("b", &info));
  EXPECT_EQ(info.dirty_granules, 5u);  // 0, 1, 2, 10, kChunk
}

TEST_F(PersistentBitmapsTest, ResizeReshapesTheDurableSetWithoutClaimingTheGrownRange) {
  ASSERT_OK(b_->Add("b", k4K, true, false));
  Change(kSize - 1, 1);  // the last granule: its intent chunk is durable
  const uint64_t last = kSize / k4K - 1;
  ASSERT_EQ(journal_->Durable("b"), Granules({{last + 1 - kChunk, last + 1}}));
  // Grow by 10 granules and a half: the grown range is dirty live at once.
  const uint64_t grown = kSize + 10 * k4K + k4K / 2;
  journal_->LogResize(grown);
  b_->Resize(grown);
  BitmapInfo info;
  ASSERT_OK(b_->Query("b", &info));
  EXPECT_EQ(info.dirty_granules, 1u + 11u);
  // The resize's record may not be durable yet, so the durable set claims
  // nothing past the old end: the first write there logs an intent (and
  // with that Sync the resize's record is durable too).
  int syncs = journal_->syncs();
  Change(kSize + k4K, 1);
  EXPECT_EQ(journal_->syncs(), syncs + 1);
  EXPECT_EQ(journal_->Durable("b"), Granules({{last + 1 - kChunk, last + 12}}));
  Change(kSize + 2 * k4K, 1);
  EXPECT_EQ(journal_->syncs(), syncs + 1);  // durable now
  // A shrink drops the tail in both; what stays durable needs no intent.
  journal_->LogResize(kSize / 2);
  b_->Resize(kSize / 2);
  ASSERT_OK(b_->Query("b", &info));
  EXPECT_EQ(info.dirty_granules, 0u);
  Change(kSize / 2 - 1, 1);  // nothing in the first half was durable: an intent
  EXPECT_EQ(journal_->syncs(), syncs + 2);
  ASSERT_OK(journal_->Sync());
  const uint64_t half = kSize / 2 / k4K;
  EXPECT_EQ(journal_->Durable("b"), Granules({{half - kChunk, half}}));
}

TEST_F(PersistentBitmapsTest, ADisabledBitmapLogsNoIntents) {
  ASSERT_OK(b_->Add("b", k4K, true, /*disabled=*/true));
  int syncs = journal_->syncs();
  Change(0, 1);
  EXPECT_EQ(journal_->syncs(), syncs);
  ASSERT_OK(b_->Enable("b"));
  EXPECT_EQ(journal_->DurableBitmaps().begin()->second.flags & metadata::BitmapRecord::kRecording,
            metadata::BitmapRecord::kRecording);
  Change(0, 1);
  EXPECT_EQ(journal_->Durable("b"), Granules({{0, kChunk}}));
}

TEST_F(PersistentBitmapsTest, CutFreezesTheDurableSetAndTheNewInstanceShrinksToItsLiveBits) {
  ASSERT_OK(b_->Add("live", k4K, true, false));
  Change(0, 1);
  Change(5 * k4K, 1);
  ASSERT_OK(b_->Cut("live", "frozen"));
  EXPECT_EQ(journal_->Durable("frozen"), Granules({{0, kChunk}}));  // the intents it logged
  // No request was in flight across the cut: the new instance is clean, in
  // memory and on disk.
  EXPECT_TRUE(journal_->Durable("live").empty());
  Change(9 * k4K, 1);
  EXPECT_EQ(journal_->Durable("live"), Granules({{0, kChunk}}));
  EXPECT_EQ(journal_->Durable("frozen"), Granules({{0, kChunk}}));
  // Two instances, distinct ids; the frozen one no longer records.
  auto bitmaps = journal_->DurableBitmaps();
  ASSERT_EQ(bitmaps.size(), 2u);
  for (const auto& [id, b] : bitmaps) {
    EXPECT_EQ((b.flags & metadata::BitmapRecord::kRecording) != 0, b.name == "live") << b.name;
  }
  ASSERT_OK(b_->Remove("frozen"));
  EXPECT_EQ(journal_->DurableBitmaps().size(), 1u);
}

TEST_F(PersistentBitmapsTest, ClearShrinksTheDurableSetAndMergeAddsToIt) {
  ASSERT_OK(b_->Add("a", k4K, true, false));
  ASSERT_OK(b_->Add("m", k4K, false, true));  // in memory: merged from
  Change(0, 4 * k4K);
  ASSERT_OK(b_->Clear("a"));
  EXPECT_TRUE(journal_->Durable("a").empty());
  Change(2 * k4K, 1);
  EXPECT_EQ(journal_->Durable("a"), Granules({{0, kChunk}}));
  ASSERT_OK(b_->Disable("a"));
  ASSERT_OK(b_->Enable("m"));
  Change(3 * kChunk * k4K, 1);  // marks m only
  EXPECT_EQ(journal_->Durable("a"), Granules({{0, kChunk}}));
  ASSERT_OK(b_->Merge({"m"}, "a"));  // logs a's exact bits
  EXPECT_EQ(journal_->Durable("a"), Granules({{0, kChunk}, {3 * kChunk, 3 * kChunk + 1}}));
}

TEST_F(PersistentBitmapsTest, RestoreBringsBackBitsFlagsAndIds) {
  metadata::BitmapImage image;
  image.name = "back";
  image.granularity = k4K;
  image.flags = metadata::BitmapRecord::kRecording;
  image.dirty = Granules({{3, 5}});
  // The journal must know the instance for later records to fit.
  std::string records;
  metadata::AppendBitmap(&records, {7, 12, "back", static_cast<uint32_t>(k4K), image.flags});
  metadata::AppendBitmapDirty(&records, {7, 12, false, {{3, 2}}});
  ASSERT_OK(journal_->Append(records));
  ASSERT_OK(journal_->Sync());
  ASSERT_OK(b_->Restore(12, image));
  int syncs = journal_->syncs();
  Change(3 * k4K, 2 * k4K);  // durable since before the restart: no sync
  EXPECT_EQ(journal_->syncs(), syncs);
  BitmapInfo info;
  ASSERT_OK(b_->Query("back", &info));
  EXPECT_TRUE(info.persistent);
  EXPECT_TRUE(info.enabled);
  EXPECT_EQ(info.dirty_bytes, 2 * k4K);
  ASSERT_OK(b_->Add("next", k4K, true, false));  // a fresh id, above the restored one
  EXPECT_EQ(journal_->DurableBitmaps().rbegin()->first, 13u);
}

TEST_F(PersistentBitmapsTest, AnInconsistentBitmapRefusesUseButMayBeRemoved) {
  metadata::BitmapImage image;
  image.name = "bad";
  image.granularity = k4K;
  image.flags = metadata::BitmapRecord::kInconsistent;
  std::string records;
  metadata::AppendBitmap(&records, {7, 1, "bad", static_cast<uint32_t>(k4K), image.flags});
  ASSERT_OK(journal_->Append(records));
  ASSERT_OK(b_->Restore(1, image));
  BitmapInfo info;
  ASSERT_OK(b_->Query("bad", &info));
  EXPECT_TRUE(info.inconsistent);
  EXPECT_CODE(b_->Enable("bad"), kInvalid);
  EXPECT_CODE(b_->Cut("bad", "x"), kInvalid);
  EXPECT_CODE(b_->Clear("bad"), kInvalid);
  EXPECT_OK(b_->Remove("bad"));
}

// Writers on random granules race repeated cuts; each writer checks, once
// its BeforeChange returned, that its granule is durable-dirty in the live
// instance or in the one a cut froze meanwhile; at the end, every granule
// written after the last cut is durable in the live one.
TEST_F(PersistentBitmapsTest, WritersRacingCutsAreAlwaysDurableSomewhere) {
  ASSERT_OK(b_->Add("live", k4K, true, false));
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::vector<std::thread> writers;
  for (int t = 0; t < 4; ++t) {
    writers.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      while (!stop.load()) {
        uint64_t g = rng() % (kSize / k4K);
        ChangeRequest r{Kind::kWrite, g * k4K, 1, nullptr};
        if (!b_->BeforeChange(r).ok()) ++bad;
        bool found = false;
        for (const auto& [id, b] : journal_->DurableBitmaps()) found |= boost::icl::contains(b.dirty, g);
        if (!found) ++bad;
        (void)b_->AfterChange(r, Status::OK());
      }
    });
  }
  for (int cut = 0; cut < 40; ++cut) {
    ASSERT_OK(b_->Cut("live", "frozen"));
    ASSERT_OK(b_->Remove("frozen"));
  }
  stop = true;
  for (auto& w : writers) w.join();
  EXPECT_EQ(bad.load(), 0);
  // The live bits and the durable live set agree at rest (nothing lost,
  // nothing left over after the last shrink but later writes).
  boost::icl::interval_set<uint64_t> live_bytes;
  ASSERT_OK(b_->DirtyRanges("live", &live_bytes));
  boost::icl::interval_set<uint64_t> durable = journal_->Durable("live");
  for (const auto& r : live_bytes) {
    for (uint64_t g = boost::icl::first(r) / k4K; g <= boost::icl::last(r) / k4K; ++g) {
      EXPECT_TRUE(boost::icl::contains(durable, g)) << "granule " << g << " is dirty but not durable";
    }
  }
}

}  // namespace
}  // namespace thinsim
