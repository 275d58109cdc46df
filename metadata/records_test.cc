// Record framing and encoding: every record type round-trips through
// RecordReader and the field layout docs/format.md gives; damaged framing
// is reported, never read past.
#include "metadata/records.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "base/crc32c.h"
#include "base/encoding.h"

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

TEST(Records, PoolRoundTrip) {
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

TEST(Records, VolumeRoundTrip) {
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

TEST(Records, SnapshotRoundTrip) {
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

TEST(Records, DeleteRoundTrip) {
  std::string framed;
  AppendDelete(&framed, 12);
  std::string payload = OnlyPayload(framed);
  Reader r(payload);
  EXPECT_EQ(r.U8(), static_cast<uint8_t>(RecordType::kDelete));
  EXPECT_EQ(r.U64(), 12u);
  EXPECT_TRUE(r.done());
}

TEST(Records, ChunkRoundTrip) {
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

TEST(Records, ShareChunkRoundTrip) {
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

TEST(Records, RefcountsRoundTrip) {
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
