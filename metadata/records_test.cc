// Records: each type's encoding has the field layout docs/format.md gives
// (the *Layout tests) and decodes back into an equal struct (RecordDecode);
// a cut-short, garbled or mistyped payload is refused as Corruption and
// damaged framing is reported, never read past.
#include "metadata/records.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "base/crc32c.h"
#include "base/encoding.h"
#include "base/status_test_util.h"

namespace thinsim::metadata {
namespace {

// The single record in `framed`, checked for framing.
std::string OnlyPayload(const std::string& framed) {
  RecordReader reader(framed);
  std::string_view payload;
  EXPECT_TRUE(reader.Next(&payload)) << reader.error();
  std::string out(payload);
  EXPECT_FALSE(reader.Next(&payload));
  EXPECT_TRUE(reader.error().empty()) << reader.error();
  return out;
}

TEST(Records, FrameIsLengthChecksumPayload) {
  std::string framed;
  AppendCommit(&framed, 42);
  ASSERT_EQ(framed.size(), 8u + 9u);
  Reader header(std::string_view(framed).substr(0, 8));
  EXPECT_EQ(header.U32(), 9u);
  EXPECT_EQ(header.U32(), Crc32c(0, framed.data() + 8, 9));
  Reader body(std::string_view(framed).substr(8));
  EXPECT_EQ(body.U8(), static_cast<uint8_t>(RecordType::kCommit));
  EXPECT_EQ(body.U64(), 42u);
  EXPECT_TRUE(body.done());
}

TEST(Records, PoolLayout) {
  std::string framed;
  AppendPool(&framed, 65536, 1ull << 33, 2);
  std::string payload = OnlyPayload(framed);
  Reader r(payload);
  EXPECT_EQ(r.U8(), static_cast<uint8_t>(RecordType::kPool));
  EXPECT_EQ(r.U32(), 65536u);
  EXPECT_EQ(r.U64(), 1ull << 33);
  EXPECT_EQ(r.U8(), 2u);
  EXPECT_TRUE(r.done());
}

TEST(Records, VolumeLayout) {
  VolumeRecord v{7, "vol-7.a", 1ull << 40, 3, true, 5, 2, true};
  std::string framed;
  AppendVolume(&framed, v);
  std::string payload = OnlyPayload(framed);
  Reader r(payload);
  EXPECT_EQ(r.U8(), static_cast<uint8_t>(RecordType::kVolume));
  EXPECT_EQ(r.U64(), 7u);
  EXPECT_EQ(r.String(), "vol-7.a");
  EXPECT_EQ(r.U64(), 1ull << 40);
  EXPECT_EQ(r.U8(), 3u);
  EXPECT_EQ(r.U8(), 1u);
  EXPECT_EQ(r.U64(), 5u);
  EXPECT_EQ(r.U64(), 2u);
  EXPECT_EQ(r.U8(), 1u);
  EXPECT_TRUE(r.done());
  EXPECT_FALSE(r.failed());
}

TEST(Records, SnapshotLayout) {
  std::string framed;
  AppendSnapshot(&framed, SnapshotRecord{9, 4, "snap", true});
  std::string payload = OnlyPayload(framed);
  Reader r(payload);
  EXPECT_EQ(r.U8(), static_cast<uint8_t>(RecordType::kSnapshot));
  EXPECT_EQ(r.U64(), 9u);
  EXPECT_EQ(r.U64(), 4u);
  EXPECT_EQ(r.String(), "snap");
  EXPECT_EQ(r.U8(), 1u);
  EXPECT_TRUE(r.done());
}

TEST(Records, DeleteLayout) {
  std::string framed;
  AppendDelete(&framed, 12);
  std::string payload = OnlyPayload(framed);
  Reader r(payload);
  EXPECT_EQ(r.U8(), static_cast<uint8_t>(RecordType::kDelete));
  EXPECT_EQ(r.U64(), 12u);
  EXPECT_TRUE(r.done());
}

TEST(Records, ChunkLayout) {
  ChunkRecord c{3, 17, 5, 0b1011, 0b0010, {100, 200, 300}};
  std::string framed;
  AppendChunk(&framed, c);
  std::string payload = OnlyPayload(framed);
  Reader r(payload);
  EXPECT_EQ(r.U8(), static_cast<uint8_t>(RecordType::kChunk));
  EXPECT_EQ(r.U64(), 3u);
  EXPECT_EQ(r.U64(), 17u);
  EXPECT_EQ(r.U64(), 5u);
  EXPECT_EQ(r.U64(), 0b1011u);
  EXPECT_EQ(r.U64(), 0b0010u);
  EXPECT_EQ(r.U32(), 100u);
  EXPECT_EQ(r.U32(), 200u);
  EXPECT_EQ(r.U32(), 300u);
  EXPECT_TRUE(r.done());
}

TEST(Records, ShareChunkLayout) {
  std::string framed;
  AppendShareChunk(&framed, ShareChunkRecord{2, 6, 9});
  std::string payload = OnlyPayload(framed);
  Reader r(payload);
  EXPECT_EQ(r.U8(), static_cast<uint8_t>(RecordType::kShareChunk));
  EXPECT_EQ(r.U64(), 2u);
  EXPECT_EQ(r.U64(), 6u);
  EXPECT_EQ(r.U64(), 9u);
  EXPECT_TRUE(r.done());
}

TEST(Records, RefcountsLayout) {
  std::string framed;
  AppendRefcounts(&framed, {{1, 2}, {5, 1}, {4000000000u, 7}});
  std::string payload = OnlyPayload(framed);
  Reader r(payload);
  EXPECT_EQ(r.U8(), static_cast<uint8_t>(RecordType::kRefcount));
  EXPECT_EQ(r.U32(), 3u);
  EXPECT_EQ(r.U32(), 1u);
  EXPECT_EQ(r.U32(), 2u);
  EXPECT_EQ(r.U32(), 5u);
  EXPECT_EQ(r.U32(), 1u);
  EXPECT_EQ(r.U32(), 4000000000u);
  EXPECT_EQ(r.U32(), 7u);
  EXPECT_TRUE(r.done());
}

TEST(Records, NoRefcountsWritesNoRecord) {
  std::string framed;
  AppendRefcounts(&framed, {});
  EXPECT_TRUE(framed.empty());
}

TEST(Records, ManyRefcountsAreSplitIntoBoundedRecords) {
  std::vector<std::pair<uint32_t, uint32_t>> counts;
  for (uint32_t b = 0; b < 70000; ++b) counts.emplace_back(b, 1);
  std::string framed;
  AppendRefcounts(&framed, counts);
  RecordReader reader(framed);
  std::string_view payload;
  std::vector<uint32_t> sizes;
  while (reader.Next(&payload)) {
    Reader r(payload);
    r.U8();
    sizes.push_back(r.U32());
  }
  EXPECT_TRUE(reader.error().empty());
  EXPECT_EQ(sizes, (std::vector<uint32_t>{65536, 70000 - 65536}));
}

TEST(Records, ReaderWalksSeveralRecords) {
  std::string framed;
  AppendDelete(&framed, 1);
  size_t first = framed.size();
  AppendCommit(&framed, 2);
  RecordReader reader(framed);
  std::string_view payload;
  ASSERT_TRUE(reader.Next(&payload));
  EXPECT_EQ(reader.offset(), first);
  ASSERT_TRUE(reader.Next(&payload));
  EXPECT_EQ(reader.offset(), framed.size());
  EXPECT_FALSE(reader.Next(&payload));
  EXPECT_TRUE(reader.error().empty());
}

TEST(Records, CutShortHeaderIsAnError) {
  std::string framed;
  AppendCommit(&framed, 1);
  RecordReader reader(std::string_view(framed).substr(0, 5));
  std::string_view payload;
  EXPECT_FALSE(reader.Next(&payload));
  EXPECT_NE(reader.error().find("cut short"), std::string::npos) << reader.error();
}

TEST(Records, CutShortPayloadIsAnError) {
  std::string framed;
  AppendCommit(&framed, 1);
  RecordReader reader(std::string_view(framed).substr(0, framed.size() - 1));
  std::string_view payload;
  EXPECT_FALSE(reader.Next(&payload));
  EXPECT_NE(reader.error().find("cut short"), std::string::npos) << reader.error();
}

TEST(Records, ZeroLengthIsAnError) {
  std::string framed(8, '\0');
  RecordReader reader(framed);
  std::string_view payload;
  EXPECT_FALSE(reader.Next(&payload));
  EXPECT_FALSE(reader.error().empty());
}

TEST(Records, EveryPayloadBitFlipFailsTheChecksum) {
  std::string framed;
  AppendVolume(&framed, VolumeRecord{1, "v", 4096, 0, false, 0, 1, false});
  for (size_t i = 8; i < framed.size(); ++i) {
    std::string bad = framed;
    bad[i] = static_cast<char>(bad[i] ^ 0x10);
    RecordReader reader(bad);
    std::string_view payload;
    EXPECT_FALSE(reader.Next(&payload)) << "byte " << i;
    EXPECT_NE(reader.error().find("bad checksum"), std::string::npos) << reader.error();
  }
}

TEST(Records, ErrorNamesTheOffsetOfTheBadRecord) {
  std::string framed;
  AppendCommit(&framed, 1);
  size_t second = framed.size();
  AppendCommit(&framed, 2);
  framed.back() = static_cast<char>(framed.back() ^ 1);
  RecordReader reader(framed);
  std::string_view payload;
  EXPECT_TRUE(reader.Next(&payload));
  EXPECT_FALSE(reader.Next(&payload));
  EXPECT_NE(reader.error().find("offset " + std::to_string(second)), std::string::npos) << reader.error();
}

// ---- Decoders ----------------------------------------------------------------

// The payload of the single record `append` writes.
template <typename Fn>
std::string PayloadOf(Fn append) {
  std::string framed;
  append(&framed);
  return OnlyPayload(framed);
}

template <typename R>
using Decoder = Status (*)(std::string_view, R*);

// What `decode` makes of `payload`, which must be a whole record.
template <typename R>
R Decoded(Decoder<R> decode, std::string_view payload) {
  R out;
  Status s = decode(payload, &out);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

// `decode` refuses `payload` as Corruption with `message` and leaves its
// output as it was (`payload` is damaged; `whole` is the record it came from).
template <typename R>
void ExpectRefused(Decoder<R> decode, const std::string& whole, std::string_view payload,
                   const std::string& message) {
  const R before = Decoded(decode, whole);
  R out = before;
  Status s = decode(payload, &out);
  EXPECT_EQ(s.code(), ErrorCode::kCorruption) << payload.size() << " bytes: " << s.ToString();
  EXPECT_EQ(s.message(), "metadata record: " + message) << payload.size() << " bytes";
  EXPECT_EQ(out, before) << "a refused record changed the output";
}

// The damage every decoder must refuse, given a whole record `payload`:
// each cut-short prefix (with `cut_message`), the empty payload and another
// record type; and a garbled byte anywhere yields a record or Corruption.
template <typename R>
void ExpectDamageRefused(Decoder<R> decode, const std::string& payload, const std::string& cut_message) {
  for (size_t len = 1; len < payload.size(); ++len) {
    ExpectRefused(decode, payload, std::string_view(payload).substr(0, len), cut_message);
  }
  R out;
  EXPECT_CODE(decode("", &out), kCorruption);
  std::string other = payload;
  other[0] = static_cast<char>(payload[0] == 1 ? 2 : 1);
  ExpectRefused(decode, payload, other,
                "record type " + std::to_string(int(other[0])) + " where type " + std::to_string(int(payload[0])) +
                    " was expected");
  for (size_t i = 1; i < payload.size(); ++i) {
    std::string garbled = payload;
    garbled[i] = static_cast<char>(garbled[i] ^ 0xff);
    Status s = decode(garbled, &out);
    EXPECT_TRUE(s.ok() || s.code() == ErrorCode::kCorruption) << "byte " << i << ": " << s.ToString();
  }
}

TEST(RecordDecode, Pool) {
  std::string p = PayloadOf([](std::string* o) { AppendPool(o, 65536, 1ull << 33, 2); });
  EXPECT_EQ(Decoded(DecodePool, p), (PoolRecord{65536, 1ull << 33, 2}));
  ExpectDamageRefused(DecodePool, p, "record cut short");
}

TEST(RecordDecode, Volume) {
  VolumeRecord v{7, "vol-7.a", 1ull << 40, 3, true, 5, 2, true};
  std::string p = PayloadOf([&](std::string* o) { AppendVolume(o, v); });
  EXPECT_EQ(Decoded(DecodeVolume, p), v);
  ExpectDamageRefused(DecodeVolume, p, "volume record cut short");
}

TEST(RecordDecode, VolumeNameLongerThanTheRecordIsRefused) {
  std::string p = PayloadOf([](std::string* o) { AppendVolume(o, VolumeRecord{7, "v", 4096, 0, false, 0, 7, true}); });
  std::string garbled = p;
  garbled.replace(1 + 8, 4, "\xff\xff\xff\x7f");  // the name's length, after type and id
  ExpectRefused(DecodeVolume, p, garbled, "volume record cut short");
}

TEST(RecordDecode, Snapshot) {
  SnapshotRecord s{9, 4, "snap", true};
  std::string p = PayloadOf([&](std::string* o) { AppendSnapshot(o, s); });
  EXPECT_EQ(Decoded(DecodeSnapshot, p), s);
  ExpectDamageRefused(DecodeSnapshot, p, "snapshot record cut short");
}

TEST(RecordDecode, Delete) {
  std::string p = PayloadOf([](std::string* o) { AppendDelete(o, 12); });
  EXPECT_EQ(Decoded(DecodeDelete, p), DeleteRecord{12});
  // The wording Image::Apply has always given a cut-short delete.
  ExpectDamageRefused(DecodeDelete, p, "delete of unknown volume id 0");
}

TEST(RecordDecode, Chunk) {
  ChunkRecord c{3, 17, 5, 0b1011, 0b0010, {100, 200, 300}};
  std::string p = PayloadOf([&](std::string* o) { AppendChunk(o, c); });
  EXPECT_EQ(Decoded(DecodeChunk, p), c);
  ExpectDamageRefused(DecodeChunk, p, "chunk record has a bad length");
}

TEST(RecordDecode, ChunkLengthMustMatchItsBitmap) {
  std::string p = PayloadOf([](std::string* o) { AppendChunk(o, ChunkRecord{3, 17, 0, 0b11, 0, {100, 200}}); });
  ExpectRefused(DecodeChunk, p, p + std::string(4, '\0'), "chunk record has a bad length");
  ExpectRefused(DecodeChunk, p, p + '\0', "chunk record has a bad length");
  std::string more_bits = p;
  more_bits[1 + 3 * 8] = 0b111;  // the low byte of `mapped`: three bits, two dblocks
  ExpectRefused(DecodeChunk, p, more_bits, "chunk record has a bad length");
}

TEST(RecordDecode, ChunkDoesNotJudgeProvisioningAgainstTheVolume) {
  // Provisioned but unmapped is Image::Apply's to refuse, after the volume.
  ChunkRecord c{3, 0, 0, 0b01, 0b10, {100}};
  std::string p = PayloadOf([&](std::string* o) { AppendChunk(o, c); });
  EXPECT_EQ(Decoded(DecodeChunk, p), c);
}

TEST(RecordDecode, ShareChunk) {
  ShareChunkRecord s{2, 6, 9};
  std::string p = PayloadOf([&](std::string* o) { AppendShareChunk(o, s); });
  EXPECT_EQ(Decoded(DecodeShareChunk, p), s);
  ExpectDamageRefused(DecodeShareChunk, p, "shared chunk refers to an unknown volume or chunk");
}

TEST(RecordDecode, Refcounts) {
  RefcountRecord rc{{{1, 2}, {5, 0}, {4000000000u, 7}}};
  std::string p = PayloadOf([&](std::string* o) { AppendRefcounts(o, rc.counts); });
  EXPECT_EQ(Decoded(DecodeRefcounts, p), rc);
  ExpectDamageRefused(DecodeRefcounts, p, "refcount record has a bad length");
  ExpectRefused(DecodeRefcounts, p, p + '\0', "refcount record has a bad length");
}

TEST(RecordDecode, RefcountsWithAHugeCountAreRefusedBeforeAllocating) {
  std::string p = PayloadOf([](std::string* o) { AppendRefcounts(o, {{1, 2}}); });
  std::string garbled = p;
  garbled.replace(1, 4, "\xff\xff\xff\xff");  // 2^32-1 pairs in 8 bytes
  ExpectRefused(DecodeRefcounts, p, garbled, "refcount record has a bad length");
}

TEST(RecordDecode, Commit) {
  std::string p = PayloadOf([](std::string* o) { AppendCommit(o, 42); });
  EXPECT_EQ(Decoded(DecodeCommit, p), CommitRecord{42});
  ExpectDamageRefused(DecodeCommit, p, "record cut short");
}

TEST(RecordDecode, Bitmap) {
  BitmapRecord b{4, 7, "backup-1", 4096, BitmapRecord::kRecording};
  std::string p = PayloadOf([&](std::string* o) { AppendBitmap(o, b); });
  EXPECT_EQ(Decoded(DecodeBitmap, p), b);
  ExpectDamageRefused(DecodeBitmap, p, "bitmap record cut short");
}

TEST(RecordDecode, BitmapRemove) {
  BitmapRemoveRecord b{4, 7};
  std::string p = PayloadOf([&](std::string* o) { AppendBitmapRemove(o, b); });
  EXPECT_EQ(Decoded(DecodeBitmapRemove, p), b);
  ExpectDamageRefused(DecodeBitmapRemove, p, "bitmap record cut short");
}

TEST(RecordDecode, BitmapDirty) {
  BitmapDirtyRecord d{4, 7, true, {{0, 3}, {1ull << 40, 1}}};
  std::string p = PayloadOf([&](std::string* o) { AppendBitmapDirty(o, d); });
  EXPECT_EQ(Decoded(DecodeBitmapDirty, p), d);
  ExpectDamageRefused(DecodeBitmapDirty, p, "bitmap dirty record has a bad length");
  ExpectRefused(DecodeBitmapDirty, p, p + '\0', "bitmap dirty record has a bad length");
}

TEST(RecordDecode, BitmapDirtyReplaceByNothingIsOneRecordAddOfNothingNone) {
  std::string framed;
  AppendBitmapDirty(&framed, BitmapDirtyRecord{1, 2, false, {}});
  EXPECT_TRUE(framed.empty());
  AppendBitmapDirty(&framed, BitmapDirtyRecord{1, 2, true, {}});
  EXPECT_EQ(Decoded(DecodeBitmapDirty, OnlyPayload(framed)), (BitmapDirtyRecord{1, 2, true, {}}));
}

TEST(RecordDecode, ManyBitmapRangesSplitAndOnlyTheFirstReplaces) {
  BitmapDirtyRecord d{1, 2, true, {}};
  for (uint64_t i = 0; i < (1 << 16) + 5; ++i) d.ranges.emplace_back(2 * i, 1);
  std::string framed;
  AppendBitmapDirty(&framed, d);
  RecordReader reader(framed);
  std::string_view payload;
  std::vector<BitmapDirtyRecord> got;
  while (reader.Next(&payload)) got.push_back(Decoded(DecodeBitmapDirty, payload));
  ASSERT_EQ(got.size(), 2u);
  EXPECT_TRUE(got[0].replace);
  EXPECT_FALSE(got[1].replace);
  EXPECT_EQ(got[0].ranges.size() + got[1].ranges.size(), d.ranges.size());
  EXPECT_EQ(got[1].ranges.back(), d.ranges.back());
}

TEST(RecordDecode, BitmapDirtyWithAHugeCountIsRefusedBeforeAllocating) {
  std::string p = PayloadOf([](std::string* o) { AppendBitmapDirty(o, BitmapDirtyRecord{1, 2, false, {{0, 1}}}); });
  std::string garbled = p;
  garbled.replace(1 + 8 + 8 + 1, 4, "\xff\xff\xff\xff");  // type, volume, id, replace: the count
  ExpectRefused(DecodeBitmapDirty, p, garbled, "bitmap dirty record has a bad length");
}

TEST(RecordDecode, BitmapCopy) {
  BitmapCopyRecord c{4, 7, 8};
  std::string p = PayloadOf([&](std::string* o) { AppendBitmapCopy(o, c); });
  EXPECT_EQ(Decoded(DecodeBitmapCopy, p), c);
  ExpectDamageRefused(DecodeBitmapCopy, p, "bitmap record cut short");
}

TEST(RecordDecode, TypeOfIsTheFirstByte) {
  EXPECT_EQ(TypeOf(PayloadOf([](std::string* o) { AppendCommit(o, 1); })), RecordType::kCommit);
  EXPECT_EQ(TypeOf(""), RecordType{0});
}

TEST(Encoding, ReaderFailsPastTheEnd) {
  Reader r(std::string_view("\x01\x02", 2));
  EXPECT_EQ(r.U8(), 1u);
  EXPECT_EQ(r.U32(), 0u);
  EXPECT_TRUE(r.failed());
}

TEST(Encoding, StringLongerThanTheDataFails) {
  std::string data;
  PutU32(&data, 100);
  data += "abc";
  Reader r(data);
  EXPECT_EQ(r.String(), "");
  EXPECT_TRUE(r.failed());
}

}  // namespace
}  // namespace thinsim::metadata
