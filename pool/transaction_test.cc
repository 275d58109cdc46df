#include "pool/transaction.h"

#include <string>

#include <gtest/gtest.h>

#include "metadata/records.h"

namespace thinsim {
namespace {

// Encodes a chunk as readable text, so that the order shows; volume 9's
// chunks no longer exist.
void EncodeText(uint64_t volume_id, size_t index, std::string* out) {
  if (volume_id == 9) return;
  out->append("C").append(std::to_string(volume_id)).append(":");
  out->append(std::to_string(index)).append(";");
}

void EncodePool(std::string* out) { *out += "P;"; }

metadata::VolumeRecord Volume(uint64_t id) {
  metadata::VolumeRecord r;
  r.id = id;
  r.name = std::string("v").append(std::to_string(id));
  r.size = 4096;
  r.family = id;
  return r;
}

std::string VolumeBytes(uint64_t id) {
  std::string s;
  metadata::AppendVolume(&s, Volume(id));
  return s;
}

TEST(TransactionTest, StartsEmpty) {
  Transaction t(EncodeText);
  EXPECT_TRUE(t.empty());
  std::string out;
  t.TakeRecords(&out, EncodePool);
  EXPECT_EQ(out, "");
}

TEST(TransactionTest, ChunksAreEncodedOnceBeforeTheNextVolumeRecord) {
  Transaction t(EncodeText);
  t.NoteChunk(1, 0);
  t.NoteChunk(1, 3);
  t.NoteChunk(1, 0);  // noted twice, encoded once
  EXPECT_FALSE(t.empty());
  t.AppendVolume(Volume(1));
  t.NoteChunk(2, 1);
  t.MaterializeChunks();
  std::string out;
  t.TakeRecords(&out, EncodePool);
  EXPECT_EQ(out, "C1:0;C1:3;" + VolumeBytes(1) + "C2:1;");
  EXPECT_TRUE(t.empty());
}

TEST(TransactionTest, SnapshotAndDeleteFollowTheChunksNotedBeforeThem) {
  Transaction t(EncodeText);
  t.NoteChunk(3, 0);
  metadata::SnapshotRecord s{4, 3, "snap", true};
  t.AppendSnapshot(s);
  t.NoteChunk(1, 2);  // a chunk of a volume deleted later: before the delete
  t.AppendDelete(1);
  std::string want = "C3:0;";
  metadata::AppendSnapshot(&want, s);
  want += "C1:2;";
  metadata::AppendDelete(&want, 1);
  std::string out;
  t.TakeRecords(&out, EncodePool);
  EXPECT_EQ(out, want);
}

TEST(TransactionTest, AChunkThatNoLongerExistsIsLeftOut) {
  Transaction t(EncodeText);
  t.NoteChunk(9, 0);
  t.MaterializeChunks();
  EXPECT_TRUE(t.empty());
}

TEST(TransactionTest, PoolRecordGoesFirstAndOnlyWhenChanged) {
  Transaction t(EncodeText);
  t.AppendVolume(Volume(1));
  t.NotePool();
  std::string out = "X;";  // appended to, not replaced
  t.TakeRecords(&out, EncodePool);
  EXPECT_EQ(out, "X;P;" + VolumeBytes(1));
  t.AppendVolume(Volume(2));
  out.clear();
  t.TakeRecords(&out, EncodePool);
  EXPECT_EQ(out, VolumeBytes(2));  // the pool did not change again
}

TEST(TransactionTest, OnlyThePoolChanged) {
  Transaction t(EncodeText);
  t.NotePool();
  EXPECT_FALSE(t.empty());
  std::string out;
  t.TakeRecords(&out, EncodePool);
  EXPECT_EQ(out, "P;");
  EXPECT_TRUE(t.empty());
}

}  // namespace
}  // namespace thinsim
