// The journal on disk: create, commit, load; crash leftovers; damage
// detection; checkpoints; rewrite and salvage for the offline tools.
#include "metadata/journal.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "base/crc32c.h"
#include "base/encoding.h"
#include "metadata/records.h"
#include "metadata/test_util.h"

namespace thinsim::metadata {
namespace {

using test::AddVolume;
using test::Encoded;
using test::FileExists;
using test::FlipBit;
using test::InitialCheckpoint;
using test::MakeChunk;
using test::MakePool;
using test::MapTransaction;
using test::ReadBytes;
using test::TempDir;

constexpr size_t kFileHeader = 24;

class JournalTest : public ::testing::Test {
 protected:
  // Creates the journal and commits `n` transactions.
  void CreateWithCommits(int n) {
    std::unique_ptr<Journal> j;
    ASSERT_TRUE(Journal::Create(dir_.path(), InitialCheckpoint(), &j).ok());
    for (int i = 0; i < n; ++i) ASSERT_TRUE(j->Commit(MapTransaction(i)).ok());
  }

  // Loads the metadata; expects the load itself to succeed.
  Image Load(LoadReport* report) {
    Image image;
    Status s = Journal::Load(dir_.path(), &image, report);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return image;
  }

  // True when loading finds fatal damage (or cannot load at all).
  bool LoadIsFatal(std::string* first = nullptr) {
    Image image;
    LoadReport report;
    Status s = Journal::Load(dir_.path(), &image, &report);
    if (first != nullptr && !report.fatal.empty()) *first = report.fatal.front();
    return !s.ok() || !report.fatal.empty();
  }

  std::string Sb() const { return dir_.file("metadata"); }
  std::string Ckpt(int gen) const { return dir_.file("metadata.ckpt." + std::to_string(gen)); }
  std::string Log(int gen) const { return dir_.file("metadata.log." + std::to_string(gen)); }

  TempDir dir_;
};

TEST_F(JournalTest, ExistsOnlyAfterCreate) {
  EXPECT_FALSE(Journal::Exists(dir_.path()));
  CreateWithCommits(0);
  EXPECT_TRUE(Journal::Exists(dir_.path()));
  EXPECT_TRUE(FileExists(Ckpt(1)));
  EXPECT_TRUE(FileExists(Log(1)));
}

TEST_F(JournalTest, CreateCommitLoadRoundTrip) {
  CreateWithCommits(3);
  LoadReport report;
  Image image = Load(&report);
  EXPECT_TRUE(report.fatal.empty());
  EXPECT_TRUE(report.warnings.empty());
  EXPECT_EQ(report.generation, 1u);
  EXPECT_EQ(report.transactions, 3u);
  EXPECT_EQ(image.commit_seq, 3u);
  EXPECT_EQ(image.block_size, 65536u);
  EXPECT_EQ(image.nr_blocks, 256u);
  const auto& c = image.volumes.at(1).chunks.at(0);
  EXPECT_EQ(c->mapped, 0b111u);
  EXPECT_EQ(c->dblocks, (std::vector<uint32_t>{0, 1, 2}));
  EXPECT_EQ(image.refcounts, image.DerivedRefcounts());
}

TEST_F(JournalTest, ReopenedJournalAppendsAfterTheLastCommit) {
  CreateWithCommits(2);
  std::unique_ptr<Journal> j;
  ASSERT_TRUE(Journal::OpenForAppend(dir_.path(), &j).ok());
  EXPECT_EQ(j->commit_seq(), 2u);
  ASSERT_TRUE(j->Commit(MapTransaction(2)).ok());
  LoadReport report;
  Image image = Load(&report);
  EXPECT_TRUE(report.fatal.empty());
  EXPECT_EQ(image.commit_seq, 3u);
  EXPECT_EQ(report.transactions, 3u);
}

TEST_F(JournalTest, InterruptedCommitTailIsIgnored) {
  CreateWithCommits(2);
  LoadReport before_report;
  std::string before = Encoded(Load(&before_report));
  // A commit that wrote its records but crashed before the superblock.
  std::string tail = MapTransaction(2);
  AppendCommit(&tail, 3);
  test::AppendBytes(Log(1), tail + "garbage");
  LoadReport report;
  Image image = Load(&report);
  EXPECT_TRUE(report.fatal.empty());
  ASSERT_EQ(report.warnings.size(), 1u);
  EXPECT_NE(report.warnings[0].find("interrupted commit"), std::string::npos) << report.warnings[0];
  EXPECT_EQ(Encoded(image), before);
  // Reopening drops the tail; the next commit follows the last good one.
  std::unique_ptr<Journal> j;
  ASSERT_TRUE(Journal::OpenForAppend(dir_.path(), &j).ok());
  ASSERT_TRUE(j->Commit(MapTransaction(2)).ok());
  LoadReport after;
  Image reloaded = Load(&after);
  EXPECT_TRUE(after.fatal.empty());
  EXPECT_TRUE(after.warnings.empty());
  EXPECT_EQ(reloaded.commit_seq, 3u);
}

TEST_F(JournalTest, TruncatedLogIsFatal) {
  CreateWithCommits(3);
  std::string log = ReadBytes(Log(1));
  test::Truncate(Log(1), log.size() - 5);
  std::string first;
  EXPECT_TRUE(LoadIsFatal(&first));
  EXPECT_NE(first.find("truncated"), std::string::npos) << first;
  // What remains is still replayed, for repair.
  LoadReport report;
  Image image;
  Journal::Load(dir_.path(), &image, &report);
  EXPECT_EQ(report.transactions, 2u);
}

TEST_F(JournalTest, MissingLogIsFatal) {
  CreateWithCommits(1);
  unlink(Log(1).c_str());
  EXPECT_TRUE(LoadIsFatal());
}

TEST_F(JournalTest, MissingCheckpointIsFatal) {
  CreateWithCommits(1);
  unlink(Ckpt(1).c_str());
  EXPECT_TRUE(LoadIsFatal());
}

TEST_F(JournalTest, EveryBitFlipInTheCheckpointIsFatal) {
  CreateWithCommits(1);
  size_t size = ReadBytes(Ckpt(1)).size();
  std::string good = ReadBytes(Ckpt(1));
  for (size_t i = 0; i < size; ++i) {
    FlipBit(Ckpt(1), i, static_cast<int>(i % 8));
    EXPECT_TRUE(LoadIsFatal()) << "checkpoint byte " << i;
    test::WriteBytes(Ckpt(1), good);
  }
  EXPECT_FALSE(LoadIsFatal());
}

TEST_F(JournalTest, EveryBitFlipInTheCommittedLogIsFatal) {
  CreateWithCommits(2);
  std::string good = ReadBytes(Log(1));
  for (size_t i = 0; i < good.size(); ++i) {
    FlipBit(Log(1), i, static_cast<int>(i % 8));
    EXPECT_TRUE(LoadIsFatal()) << "log byte " << i;
    test::WriteBytes(Log(1), good);
  }
  EXPECT_FALSE(LoadIsFatal());
}

TEST_F(JournalTest, EveryBitFlipInTheSuperblockIsFatal) {
  CreateWithCommits(1);
  std::string good = ReadBytes(Sb());
  ASSERT_EQ(good.size(), 64u);
  for (size_t i = 0; i < good.size(); ++i) {
    FlipBit(Sb(), i, static_cast<int>(i % 8));
    EXPECT_TRUE(LoadIsFatal()) << "superblock byte " << i;
    test::WriteBytes(Sb(), good);
  }
  EXPECT_FALSE(LoadIsFatal());
}

TEST_F(JournalTest, ShortSuperblockIsFatal) {
  CreateWithCommits(1);
  test::Truncate(Sb(), 40);
  EXPECT_TRUE(LoadIsFatal());
}

TEST_F(JournalTest, OtherFormatVersionIsRefusedByName) {
  CreateWithCommits(1);
  std::string sb = ReadBytes(Sb());
  std::string patched = sb.substr(0, 8);
  PutU32(&patched, 2);  // version
  patched += sb.substr(12, 28);
  PutU32(&patched, Crc32c(0, patched.data(), 40));
  patched.resize(64, '\0');
  test::WriteBytes(Sb(), patched);
  std::string first;
  EXPECT_TRUE(LoadIsFatal(&first));
  EXPECT_NE(first.find("version 2"), std::string::npos) << first;
}

TEST_F(JournalTest, CheckpointSwitchesGenerationAndRemovesOldFiles) {
  std::unique_ptr<Journal> j;
  ASSERT_TRUE(Journal::Create(dir_.path(), InitialCheckpoint(), &j).ok());
  ASSERT_TRUE(j->Commit(MapTransaction(0)).ok());
  ASSERT_TRUE(j->Commit(MapTransaction(1)).ok());
  LoadReport report;
  Image image = Load(&report);
  std::string state;
  image.Encode(&state);
  ASSERT_TRUE(j->Checkpoint(state).ok());
  EXPECT_FALSE(FileExists(Ckpt(1)));
  EXPECT_FALSE(FileExists(Log(1)));
  EXPECT_TRUE(FileExists(Ckpt(2)));
  EXPECT_TRUE(FileExists(Log(2)));
  EXPECT_EQ(j->log_bytes(), kFileHeader);

  LoadReport after;
  Image reloaded = Load(&after);
  EXPECT_TRUE(after.fatal.empty());
  EXPECT_EQ(after.generation, 2u);
  EXPECT_EQ(after.transactions, 0u);
  EXPECT_EQ(Encoded(reloaded), Encoded(image));

  // Commits go on in the new generation's log.
  ASSERT_TRUE(j->Commit(MapTransaction(2)).ok());
  LoadReport last;
  Image third = Load(&last);
  EXPECT_TRUE(last.fatal.empty());
  EXPECT_EQ(last.transactions, 1u);
  EXPECT_EQ(third.commit_seq, 3u);
  EXPECT_EQ(third.volumes.at(1).chunks.at(0)->dblocks.size(), 3u);
}

TEST_F(JournalTest, RewritePicksANewerGenerationAndRemovesTheOthers) {
  CreateWithCommits(2);
  test::WriteBytes(Ckpt(7), "stale");  // left over from an old crash
  Image image = MakePool(512);
  AddVolume(&image, 4, "restored");
  image.volumes[4].chunks[0] = MakeChunk({{0, 9}});
  test::DeriveRefcounts(&image);
  std::string records;
  image.Encode(&records);
  uint64_t gen = 0;
  ASSERT_TRUE(Journal::Rewrite(dir_.path(), records, 41, &gen).ok());
  EXPECT_EQ(gen, 8u);
  EXPECT_FALSE(FileExists(Ckpt(1)));
  EXPECT_FALSE(FileExists(Log(1)));
  EXPECT_FALSE(FileExists(Ckpt(7)));
  LoadReport report;
  Image loaded = Load(&report);
  EXPECT_TRUE(report.fatal.empty());
  EXPECT_EQ(report.generation, 8u);
  EXPECT_EQ(loaded.commit_seq, 41u);
  image.commit_seq = 41;
  EXPECT_EQ(Encoded(loaded), Encoded(image));
  // And it is a journal like any other.
  std::unique_ptr<Journal> j;
  ASSERT_TRUE(Journal::OpenForAppend(dir_.path(), &j).ok());
  ASSERT_TRUE(j->Commit("").ok());
  LoadReport again;
  EXPECT_EQ(Load(&again).commit_seq, 42u);
}

TEST_F(JournalTest, RewriteIntoAnEmptyDirectoryStartsAtGenerationOne) {
  uint64_t gen = 0;
  ASSERT_TRUE(Journal::Rewrite(dir_.path(), InitialCheckpoint(), 5, &gen).ok());
  EXPECT_EQ(gen, 1u);
  LoadReport report;
  Image image = Load(&report);
  EXPECT_TRUE(report.fatal.empty());
  EXPECT_EQ(image.commit_seq, 5u);
}

TEST_F(JournalTest, RewriteReplacesADamagedSuperblock) {
  CreateWithCommits(1);
  FlipBit(Sb(), 20);
  ASSERT_TRUE(Journal::Rewrite(dir_.path(), InitialCheckpoint(), 1).ok());
  EXPECT_FALSE(LoadIsFatal());
}

TEST_F(JournalTest, SalvageReplaysEveryCompleteTransactionWithoutASuperblock) {
  CreateWithCommits(3);
  std::string tail = MapTransaction(3);  // an interrupted commit: no kCommit
  test::AppendBytes(Log(1), tail);
  unlink(Sb().c_str());
  Image image;
  LoadReport report;
  ASSERT_TRUE(Journal::Salvage(dir_.path(), &image, &report).ok());
  EXPECT_TRUE(report.fatal.empty());
  EXPECT_EQ(report.generation, 1u);
  EXPECT_EQ(report.transactions, 3u);
  EXPECT_EQ(image.commit_seq, 3u);
  EXPECT_EQ(image.volumes.at(1).chunks.at(0)->dblocks.size(), 3u);
}

TEST_F(JournalTest, SalvageFindsNothingInAnEmptyDirectory) {
  Image image;
  LoadReport report;
  EXPECT_EQ(Journal::Salvage(dir_.path(), &image, &report).code(), ErrorCode::kNotFound);
}

}  // namespace
}  // namespace thinsim::metadata
