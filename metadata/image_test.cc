// Image::Apply for every record type, its errors, Encode and
// DerivedRefcounts.
#include "metadata/image.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "base/encoding.h"
#include "metadata/records.h"
#include "metadata/test_util.h"

namespace thinsim::metadata {
namespace {

using test::AddVolume;
using test::Encoded;
using test::MakeChunk;
using test::MakePool;

// The payload of the one record `append` writes.
template <typename Fn>
std::string Payload(Fn append) {
  std::string framed;
  append(&framed);
  return framed.substr(8);
}

VolumeRecord Vol(uint64_t id, const std::string& name, uint64_t size = 64ull << 20) {
  return VolumeRecord{id, name, size, 0, false, 0, id, false};
}

Status ApplyVolume(Image* image, const VolumeRecord& v) {
  return image->Apply(Payload([&](std::string* o) { AppendVolume(o, v); }));
}

Status ApplyChunk(Image* image, const ChunkRecord& c) {
  return image->Apply(Payload([&](std::string* o) { AppendChunk(o, c); }));
}

Status ApplyBitmap(Image* image, const BitmapRecord& b) {
  return image->Apply(Payload([&](std::string* o) { AppendBitmap(o, b); }));
}

Status ApplyDirty(Image* image, const BitmapDirtyRecord& d) {
  std::string framed;
  AppendBitmapDirty(&framed, d);
  RecordReader reader(framed);
  std::string_view payload;
  while (reader.Next(&payload)) THINSIM_RETURN_IF_ERROR(image->Apply(payload));
  return Status::OK();
}

// The dirty granules of bitmap `id` of volume 1, as (first, count).
std::vector<std::pair<uint64_t, uint64_t>> Dirty(const Image& image, uint64_t id) {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  for (const auto& r : image.volumes.at(1).bitmaps.at(id).dirty) {
    out.emplace_back(boost::icl::first(r), boost::icl::length(r));
  }
  return out;
}

using Runs = std::vector<std::pair<uint64_t, uint64_t>>;

class ImageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(image_.Apply(Payload([](std::string* o) { AppendPool(o, 65536, 1024, 0); })).ok());
    ASSERT_TRUE(ApplyVolume(&image_, Vol(1, "vol")).ok());
  }
  Image image_;
};

TEST_F(ImageTest, PoolRecordSetsPoolAttributes) {
  ASSERT_TRUE(image_.Apply(Payload([](std::string* o) { AppendPool(o, 4096, 77, 1); })).ok());
  EXPECT_EQ(image_.block_size, 4096u);
  EXPECT_EQ(image_.nr_blocks, 77u);
  EXPECT_EQ(image_.mode, 1u);
}

TEST_F(ImageTest, VolumeRecordCreatesAVolume) {
  ASSERT_EQ(image_.volumes.size(), 1u);
  const VolumeRecord& a = image_.volumes.at(1).attrs;
  EXPECT_EQ(a.name, "vol");
  EXPECT_EQ(a.size, 64ull << 20);
  EXPECT_EQ(a.family, 1u);
}

TEST_F(ImageTest, VolumeRecordUpdatesAndAShrinkDropsChunksPastTheEnd) {
  ASSERT_TRUE(ApplyChunk(&image_, ChunkRecord{1, 0, 0, 1, 0, {5}}).ok());
  ASSERT_TRUE(ApplyChunk(&image_, ChunkRecord{1, 3, 0, 1, 0, {6}}).ok());
  VolumeRecord smaller = Vol(1, "renamed", 2 * 64 * 65536);  // two chunks
  smaller.strategy = 2;
  ASSERT_TRUE(ApplyVolume(&image_, smaller).ok());
  const VolumeImage& v = image_.volumes.at(1);
  EXPECT_EQ(v.attrs.name, "renamed");
  EXPECT_EQ(v.attrs.strategy, 2u);
  EXPECT_EQ(v.chunks.size(), 1u);
  EXPECT_EQ(v.chunks.count(0), 1u);
}

TEST_F(ImageTest, ChunkRecordSetsAndAnEmptyOneClearsMappings) {
  ASSERT_TRUE(ApplyChunk(&image_, ChunkRecord{1, 2, 0, 0b101, 0b100, {10, 11}}).ok());
  const auto& c = image_.volumes.at(1).chunks.at(2);
  EXPECT_EQ(c->mapped, 0b101u);
  EXPECT_EQ(c->provisioned, 0b100u);
  EXPECT_EQ(c->dblocks, (std::vector<uint32_t>{10, 11}));
  ASSERT_TRUE(ApplyChunk(&image_, ChunkRecord{1, 2, 0, 0, 0, {}}).ok());
  EXPECT_TRUE(image_.volumes.at(1).chunks.empty());
}

TEST_F(ImageTest, ChunkOfUnknownVolumeIsCorruption) {
  Status s = ApplyChunk(&image_, ChunkRecord{9, 0, 0, 1, 0, {1}});
  EXPECT_EQ(s.code(), ErrorCode::kCorruption);
  EXPECT_NE(s.message().find("unknown volume"), std::string::npos) << s.message();
}

TEST_F(ImageTest, ChunkWithProvisionedButUnmappedEntryIsCorruption) {
  EXPECT_EQ(ApplyChunk(&image_, ChunkRecord{1, 0, 0, 0b1, 0b10, {1}}).code(), ErrorCode::kCorruption);
}

TEST_F(ImageTest, ChunkWithWrongNumberOfBlocksIsCorruption) {
  // Two mapped bits, three dblocks: the record is longer than its bitmap says.
  EXPECT_EQ(ApplyChunk(&image_, ChunkRecord{1, 0, 0, 0b11, 0, {1, 2, 3}}).code(), ErrorCode::kCorruption);
  // Two mapped bits, one dblock: cut short.
  EXPECT_EQ(ApplyChunk(&image_, ChunkRecord{1, 0, 0, 0b11, 0, {1}}).code(), ErrorCode::kCorruption);
}

TEST_F(ImageTest, SnapshotSharesItsOriginsChunkObjects) {
  ASSERT_TRUE(ApplyChunk(&image_, ChunkRecord{1, 0, 0, 1, 0, {5}}).ok());
  ASSERT_TRUE(image_.Apply(Payload([](std::string* o) { AppendSnapshot(o, SnapshotRecord{2, 1, "snap", true}); })).ok());
  const VolumeImage& s = image_.volumes.at(2);
  EXPECT_EQ(s.attrs.name, "snap");
  EXPECT_TRUE(s.attrs.read_only);
  EXPECT_EQ(s.attrs.origin_id, 1u);
  EXPECT_EQ(s.attrs.family, 1u);
  EXPECT_EQ(s.attrs.size, image_.volumes.at(1).attrs.size);
  EXPECT_EQ(s.chunks.at(0).get(), image_.volumes.at(1).chunks.at(0).get());
  EXPECT_EQ(image_.DerivedRefcounts().at(5), 1u);  // one chunk object
  // A write through the origin replaces only its slot.
  ASSERT_TRUE(ApplyChunk(&image_, ChunkRecord{1, 0, 0, 0b11, 0, {5, 6}}).ok());
  EXPECT_NE(s.chunks.at(0).get(), image_.volumes.at(1).chunks.at(0).get());
  EXPECT_EQ(image_.DerivedRefcounts().at(5), 2u);
}

TEST_F(ImageTest, SnapshotOfUnknownVolumeIsCorruption) {
  Status s = image_.Apply(Payload([](std::string* o) { AppendSnapshot(o, SnapshotRecord{2, 8, "snap", false}); }));
  EXPECT_EQ(s.code(), ErrorCode::kCorruption);
}

TEST_F(ImageTest, DeleteRemovesTheVolumeAndItsSnapshotsLoseTheirOrigin) {
  ASSERT_TRUE(image_.Apply(Payload([](std::string* o) { AppendSnapshot(o, SnapshotRecord{2, 1, "snap", false}); })).ok());
  ASSERT_TRUE(image_.Apply(Payload([](std::string* o) { AppendDelete(o, 1); })).ok());
  EXPECT_EQ(image_.volumes.count(1), 0u);
  EXPECT_EQ(image_.volumes.at(2).attrs.origin_id, 0u);
}

TEST_F(ImageTest, DeleteOfUnknownVolumeIsCorruption) {
  EXPECT_EQ(image_.Apply(Payload([](std::string* o) { AppendDelete(o, 42); })).code(), ErrorCode::kCorruption);
}

TEST_F(ImageTest, ShareChunkPointsAtACheckpointChunk) {
  ASSERT_TRUE(ApplyVolume(&image_, Vol(2, "other")).ok());
  ASSERT_TRUE(ApplyChunk(&image_, ChunkRecord{1, 4, 7, 1, 0, {9}}).ok());
  ASSERT_TRUE(image_.Apply(Payload([](std::string* o) { AppendShareChunk(o, ShareChunkRecord{2, 4, 7}); })).ok());
  EXPECT_EQ(image_.volumes.at(2).chunks.at(4).get(), image_.volumes.at(1).chunks.at(4).get());
}

TEST_F(ImageTest, ShareOfUnknownChunkIsCorruption) {
  Status s = image_.Apply(Payload([](std::string* o) { AppendShareChunk(o, ShareChunkRecord{1, 0, 99}); }));
  EXPECT_EQ(s.code(), ErrorCode::kCorruption);
}

TEST_F(ImageTest, RefcountRecordSetsAndZeroErases) {
  ASSERT_TRUE(image_.Apply(Payload([](std::string* o) { AppendRefcounts(o, {{3, 2}, {4, 1}}); })).ok());
  EXPECT_EQ(image_.refcounts, (std::map<uint32_t, uint32_t>{{3, 2}, {4, 1}}));
  ASSERT_TRUE(image_.Apply(Payload([](std::string* o) { AppendRefcounts(o, {{3, 0}}); })).ok());
  EXPECT_EQ(image_.refcounts, (std::map<uint32_t, uint32_t>{{4, 1}}));
}

TEST_F(ImageTest, RefcountRecordWithBadLengthIsCorruption) {
  std::string p = Payload([](std::string* o) { AppendRefcounts(o, {{3, 2}}); });
  EXPECT_EQ(image_.Apply(p.substr(0, p.size() - 1)).code(), ErrorCode::kCorruption);
}

TEST_F(ImageTest, CommitRecordSetsTheSequence) {
  ASSERT_TRUE(image_.Apply(Payload([](std::string* o) { AppendCommit(o, 99); })).ok());
  EXPECT_EQ(image_.commit_seq, 99u);
}

TEST_F(ImageTest, UnknownRecordTypeIsCorruption) {
  Status s = image_.Apply(std::string("\x63", 1));
  EXPECT_EQ(s.code(), ErrorCode::kCorruption);
  EXPECT_NE(s.message().find("unknown record type 99"), std::string::npos) << s.message();
}

TEST_F(ImageTest, CutShortRecordsAreCorruption) {
  std::vector<std::string> payloads = {
      Payload([](std::string* o) { AppendPool(o, 65536, 10, 0); }),
      Payload([](std::string* o) { AppendVolume(o, Vol(3, "x")); }),
      Payload([](std::string* o) { AppendSnapshot(o, SnapshotRecord{3, 1, "s", false}); }),
      Payload([](std::string* o) { AppendDelete(o, 1); }),
      Payload([](std::string* o) { AppendShareChunk(o, ShareChunkRecord{1, 0, 1}); }),
      Payload([](std::string* o) { AppendCommit(o, 1); }),
  };
  for (const std::string& p : payloads) {
    Image copy = image_;
    EXPECT_EQ(copy.Apply(p.substr(0, p.size() - 1)).code(), ErrorCode::kCorruption) << "type " << int(p[0]);
  }
}

// The exact messages of damaged records: check and repair print them, and
// the crash tests and users read them, so they are part of the behaviour.
TEST_F(ImageTest, DamagedRecordsHaveStableMessages) {
  auto cut = [](std::string p) { return p.substr(0, p.size() - 1); };
  auto longer = [](std::string p) { return p + '\0'; };
  struct Case {
    std::string payload;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"", "unknown record type 0"},
      {"\x63", "unknown record type 99"},
      {cut(Payload([](std::string* o) { AppendPool(o, 65536, 10, 0); })), "record cut short"},
      {cut(Payload([](std::string* o) { AppendVolume(o, Vol(3, "x")); })), "volume record cut short"},
      {cut(Payload([](std::string* o) { AppendSnapshot(o, SnapshotRecord{3, 1, "s", false}); })),
       "snapshot record cut short"},
      {Payload([](std::string* o) { AppendSnapshot(o, SnapshotRecord{3, 8, "s", false}); }),
       "snapshot s of unknown volume id 8"},
      {cut(Payload([](std::string* o) { AppendDelete(o, 1); })), "delete of unknown volume id 0"},
      {Payload([](std::string* o) { AppendDelete(o, 42); }), "delete of unknown volume id 42"},
      {cut(Payload([](std::string* o) { AppendChunk(o, ChunkRecord{1, 0, 0, 1, 0, {5}}); })),
       "chunk record has a bad length"},
      {longer(Payload([](std::string* o) { AppendChunk(o, ChunkRecord{1, 0, 0, 1, 0, {5}}); })),
       "chunk record has a bad length"},
      {Payload([](std::string* o) { AppendChunk(o, ChunkRecord{9, 0, 0, 1, 0, {5}}); }),
       "chunk of unknown volume id 9"},
      {Payload([](std::string* o) { AppendChunk(o, ChunkRecord{1, 0, 0, 1, 2, {5}}); }),
       "chunk has provisioned vblocks that are not mapped"},
      // Both wrong: the unknown volume is named first.
      {Payload([](std::string* o) { AppendChunk(o, ChunkRecord{9, 0, 0, 1, 2, {5}}); }),
       "chunk of unknown volume id 9"},
      {cut(Payload([](std::string* o) { AppendShareChunk(o, ShareChunkRecord{1, 0, 1}); })),
       "shared chunk refers to an unknown volume or chunk"},
      {Payload([](std::string* o) { AppendShareChunk(o, ShareChunkRecord{1, 0, 99}); }),
       "shared chunk refers to an unknown volume or chunk"},
      {cut(Payload([](std::string* o) { AppendRefcounts(o, {{3, 2}}); })), "refcount record has a bad length"},
      {longer(Payload([](std::string* o) { AppendRefcounts(o, {{3, 2}}); })), "refcount record has a bad length"},
      {cut(Payload([](std::string* o) { AppendCommit(o, 1); })), "record cut short"},
  };
  for (const Case& c : cases) {
    Image copy = image_;
    Status s = copy.Apply(c.payload);
    EXPECT_EQ(s.code(), ErrorCode::kCorruption) << c.message;
    EXPECT_EQ(s.message(), "metadata record: " + c.message);
  }
}

// All or nothing: a load that stops at a refused record keeps exactly what
// came before it (dump and check then show that state).
// vol is 64 MiB: 16384 granules of 4K.
TEST_F(ImageTest, BitmapRecordsDefineMarkCutAndRemove) {
  ASSERT_TRUE(ApplyBitmap(&image_, BitmapRecord{1, 1, "live", 4096, BitmapRecord::kRecording}).ok());
  ASSERT_TRUE(ApplyDirty(&image_, BitmapDirtyRecord{1, 1, false, {{0, 2}, {2, 3}, {16383, 1}}}).ok());
  EXPECT_EQ(Dirty(image_, 1), (Runs{{0, 5}, {16383, 1}}));
  // A cut: instance 1 is renamed and keeps its bits; instance 2 takes the
  // name, first as a copy, then exactly the requests in flight at the cut.
  ASSERT_TRUE(ApplyBitmap(&image_, BitmapRecord{1, 1, "frozen", 4096, 0}).ok());
  ASSERT_TRUE(ApplyBitmap(&image_, BitmapRecord{1, 2, "live", 4096, BitmapRecord::kRecording}).ok());
  ASSERT_TRUE(image_.Apply(Payload([](std::string* o) { AppendBitmapCopy(o, {1, 1, 2}); })).ok());
  EXPECT_EQ(Dirty(image_, 2), Dirty(image_, 1));
  ASSERT_TRUE(ApplyDirty(&image_, BitmapDirtyRecord{1, 2, true, {{4, 1}}}).ok());
  EXPECT_EQ(Dirty(image_, 1), (Runs{{0, 5}, {16383, 1}}));
  EXPECT_EQ(Dirty(image_, 2), (Runs{{4, 1}}));
  EXPECT_EQ(image_.volumes.at(1).bitmaps.at(1).name, "frozen");
  // An update keeps the bits; a remove drops the bitmap.
  ASSERT_TRUE(ApplyBitmap(&image_, BitmapRecord{1, 1, "frozen", 4096, BitmapRecord::kInconsistent}).ok());
  EXPECT_EQ(image_.volumes.at(1).bitmaps.at(1).flags, BitmapRecord::kInconsistent);
  EXPECT_EQ(Dirty(image_, 1).size(), 2u);
  ASSERT_TRUE(image_.Apply(Payload([](std::string* o) { AppendBitmapRemove(o, {1, 1}); })).ok());
  EXPECT_EQ(image_.volumes.at(1).bitmaps.count(1), 0u);
}

TEST_F(ImageTest, ShrinkDropsBitmapGranulesPastTheEndAndSnapshotsHaveNoBitmaps) {
  ASSERT_TRUE(ApplyBitmap(&image_, BitmapRecord{1, 1, "b", 65536, BitmapRecord::kRecording}).ok());
  ASSERT_TRUE(ApplyDirty(&image_, BitmapDirtyRecord{1, 1, false, {{0, 1}, {500, 24}}}).ok());
  ASSERT_TRUE(ApplyVolume(&image_, Vol(1, "vol", 510 * 65536 + 1)).ok());  // 511 granules, the last partial
  EXPECT_EQ(Dirty(image_, 1), (Runs{{0, 1}, {500, 11}}));
  ASSERT_TRUE(image_.Apply(Payload([](std::string* o) { AppendSnapshot(o, {2, 1, "snap", false}); })).ok());
  EXPECT_TRUE(image_.volumes.at(2).bitmaps.empty());
  EXPECT_EQ(image_.volumes.at(1).bitmaps.size(), 1u);
}

TEST_F(ImageTest, GrowMarksBitmapGranulesFromTheOldEndOn) {
  ASSERT_TRUE(ApplyVolume(&image_, Vol(1, "vol", 10 * 65536 + 100)).ok());  // 11 granules, the last partial
  ASSERT_TRUE(ApplyBitmap(&image_, BitmapRecord{1, 1, "b", 65536, BitmapRecord::kRecording}).ok());
  ASSERT_TRUE(ApplyDirty(&image_, BitmapDirtyRecord{1, 1, false, {{2, 1}}}).ok());
  // The old partial granule (10) and every new one are dirty: the bytes
  // from the old end on were not in the volume at the last cut.
  ASSERT_TRUE(ApplyVolume(&image_, Vol(1, "vol", 14 * 65536)).ok());
  EXPECT_EQ(Dirty(image_, 1), (Runs{{2, 1}, {10, 4}}));
  // A record that keeps the size (a strategy change, a pin) changes nothing.
  ASSERT_TRUE(ApplyDirty(&image_, BitmapDirtyRecord{1, 1, true, {{0, 1}}}).ok());
  ASSERT_TRUE(ApplyVolume(&image_, Vol(1, "vol", 14 * 65536)).ok());
  EXPECT_EQ(Dirty(image_, 1), (Runs{{0, 1}}));
}

TEST_F(ImageTest, BadBitmapRecordsAreCorruption) {
  ASSERT_TRUE(ApplyBitmap(&image_, BitmapRecord{1, 1, "b", 4096, 0}).ok());
  auto message = [](const Status& s) { return s.code() == ErrorCode::kCorruption ? s.message() : s.ToString(); };
  EXPECT_EQ(message(ApplyBitmap(&image_, BitmapRecord{9, 2, "x", 4096, 0})),
            "metadata record: bitmap of unknown volume id 9");
  EXPECT_EQ(message(ApplyBitmap(&image_, BitmapRecord{1, 2, "x", 256, 0})),
            "metadata record: bitmap 'x' has id 0, an empty name or a bad granularity 256");
  EXPECT_EQ(message(ApplyBitmap(&image_, BitmapRecord{1, 2, "x", 3 << 12, 0})),
            "metadata record: bitmap 'x' has id 0, an empty name or a bad granularity 12288");
  EXPECT_EQ(message(ApplyBitmap(&image_, BitmapRecord{1, 0, "x", 4096, 0})),
            "metadata record: bitmap 'x' has id 0, an empty name or a bad granularity 4096");
  EXPECT_EQ(message(ApplyBitmap(&image_, BitmapRecord{1, 1, "b", 8192, 0})),
            "metadata record: bitmap b changes its granularity");
  EXPECT_EQ(message(ApplyBitmap(&image_, BitmapRecord{1, 2, "b", 4096, 0})),
            "metadata record: two bitmaps named b on volume vol");
  EXPECT_EQ(message(ApplyDirty(&image_, BitmapDirtyRecord{1, 5, false, {{0, 1}}})),
            "metadata record: unknown bitmap id 5 of volume vol");
  EXPECT_EQ(message(ApplyDirty(&image_, BitmapDirtyRecord{1, 1, false, {{16383, 2}}})),
            "metadata record: bitmap b marks granules past the end of volume vol");
  EXPECT_EQ(message(ApplyDirty(&image_, BitmapDirtyRecord{1, 1, false, {{0, 0}}})),
            "metadata record: bitmap b marks granules past the end of volume vol");
  EXPECT_EQ(message(ApplyDirty(&image_, BitmapDirtyRecord{1, 1, true, {{UINT64_MAX, 2}}})),
            "metadata record: bitmap b marks granules past the end of volume vol");
  ASSERT_TRUE(ApplyBitmap(&image_, BitmapRecord{1, 3, "coarse", 65536, 0}).ok());
  EXPECT_EQ(message(image_.Apply(Payload([](std::string* o) { AppendBitmapCopy(o, {1, 1, 3}); }))),
            "metadata record: bitmap copy from b to coarse across granularities");
  EXPECT_TRUE(Dirty(image_, 1).empty());  // the refused replace changed nothing
}

TEST_F(ImageTest, RefusedRecordsChangeNothing) {
  ASSERT_TRUE(ApplyChunk(&image_, ChunkRecord{1, 0, 3, 1, 0, {5}}).ok());
  ASSERT_TRUE(image_.Apply(Payload([](std::string* o) { AppendCommit(o, 7); })).ok());
  auto cut = [](std::string p) { return p.substr(0, p.size() - 1); };
  const std::vector<std::string> refused = {
      cut(Payload([](std::string* o) { AppendPool(o, 4096, 10, 1); })),
      cut(Payload([](std::string* o) { AppendVolume(o, Vol(1, "renamed", 4096)); })),
      Payload([](std::string* o) { AppendChunk(o, ChunkRecord{1, 1, 4, 1, 2, {6}}); }),
      cut(Payload([](std::string* o) { AppendRefcounts(o, {{5, 3}}); })),
      cut(Payload([](std::string* o) { AppendCommit(o, 8); })),
  };
  for (const std::string& p : refused) {
    Image copy = image_;
    ASSERT_EQ(copy.Apply(p).code(), ErrorCode::kCorruption) << "type " << int(p[0]);
    EXPECT_EQ(Encoded(copy), Encoded(image_)) << "type " << int(p[0]);
    EXPECT_EQ(copy.commit_seq, 7u) << "type " << int(p[0]);
    EXPECT_EQ(copy.checkpoint_chunks, image_.checkpoint_chunks) << "type " << int(p[0]);
  }
}

TEST(ImageEncode, ReplayingTheEncodingGivesTheSameImage) {
  Image image = MakePool(100);
  image.mode = 1;
  AddVolume(&image, 1, "a");
  AddVolume(&image, 2, "b", 64ull << 20, 1, 1);
  auto shared = MakeChunk({{0, 1}, {1, 2}}, {1});
  image.volumes[1].chunks[0] = shared;
  image.volumes[2].chunks[0] = shared;
  image.volumes[2].chunks[5] = MakeChunk({{63, 3}});
  test::DeriveRefcounts(&image);
  BitmapImage& b = image.volumes[2].bitmaps[1];
  b.name = "inc";
  b.granularity = 4096;
  b.flags = BitmapRecord::kRecording;
  b.dirty += boost::icl::interval<uint64_t>::right_open(3, 9);
  b.dirty += boost::icl::interval<uint64_t>::right_open(100, 101);
  image.volumes[2].bitmaps[4].name = "empty";
  image.volumes[2].bitmaps[4].granularity = 512;

  std::string encoded;
  image.Encode(&encoded);
  Image replayed;
  RecordReader reader(encoded);
  std::string_view payload;
  while (reader.Next(&payload)) ASSERT_TRUE(replayed.Apply(payload).ok());
  ASSERT_TRUE(reader.error().empty());
  EXPECT_EQ(Encoded(replayed), Encoded(image));
  EXPECT_EQ(replayed.volumes.at(1).chunks.at(0).get(), replayed.volumes.at(2).chunks.at(0).get());
  EXPECT_EQ(replayed.refcounts, image.refcounts);
  EXPECT_EQ(replayed.mode, 1u);
  EXPECT_EQ(replayed.volumes.at(2).bitmaps, image.volumes.at(2).bitmaps);
}

TEST(ImageEncode, DerivedRefcountsCountDistinctChunkObjects) {
  Image image = MakePool();
  AddVolume(&image, 1, "a");
  AddVolume(&image, 2, "b");
  AddVolume(&image, 3, "c");
  auto shared = MakeChunk({{0, 7}});
  image.volumes[1].chunks[0] = shared;
  image.volumes[2].chunks[0] = shared;
  image.volumes[3].chunks[0] = MakeChunk({{0, 7}, {1, 8}});
  EXPECT_EQ(image.DerivedRefcounts(), (std::map<uint32_t, uint32_t>{{7, 2}, {8, 1}}));
}

}  // namespace
}  // namespace thinsim::metadata
