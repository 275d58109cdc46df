// The journal over a FaultEnv: failed writes and syncs, and power cuts with
// a volatile write cache, leave the metadata at its last completed commit.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "env/fault_env.h"
#include "metadata/journal.h"
#include "metadata/test_util.h"

namespace thinsim::metadata {
namespace {

using test::InitialCheckpoint;
using test::MapTransaction;
using test::TempDir;

class JournalFaultTest : public ::testing::Test {
 protected:
  JournalFaultTest() : env_(Env::Default(), VolatileOptions()) {}

  static FaultEnv::Options VolatileOptions() {
    FaultEnv::Options o;
    o.volatile_cache = true;
    return o;
  }

  // Loads through the real file system, as a restarted server would.
  uint64_t LoadedCommit(bool* clean) {
    Image image;
    LoadReport report;
    Status s = Journal::Load(dir_.path(), &image, &report);
    *clean = s.ok() && report.fatal.empty();
    return image.commit_seq;
  }

  TempDir dir_;
  FaultEnv env_;
};

TEST_F(JournalFaultTest, CommitsAndCheckpointsSurviveAPowerCut) {
  std::unique_ptr<Journal> j;
  ASSERT_TRUE(Journal::Create(dir_.path(), InitialCheckpoint(), &j, &env_).ok());
  ASSERT_TRUE(j->Commit(MapTransaction(0)).ok());
  ASSERT_TRUE(j->Checkpoint(InitialCheckpoint()).ok());
  ASSERT_TRUE(j->Commit(MapTransaction(1)).ok());
  ASSERT_TRUE(env_.PowerCut().ok());
  bool clean = false;
  EXPECT_EQ(LoadedCommit(&clean), 2u);
  EXPECT_TRUE(clean);
}

TEST_F(JournalFaultTest, AFailedLogSyncThenAPowerCutLeavesTheLastCommit) {
  std::unique_ptr<Journal> j;
  ASSERT_TRUE(Journal::Create(dir_.path(), InitialCheckpoint(), &j, &env_).ok());
  ASSERT_TRUE(j->Commit(MapTransaction(0)).ok());
  FaultRule rule;
  rule.layer = FaultLayer::kMetadata;
  rule.op = FaultOp::kFlush;
  rule.count = 1;
  env_.AddFault(rule);
  EXPECT_FALSE(j->Commit(MapTransaction(1)).ok());
  ASSERT_TRUE(env_.PowerCut().ok());
  bool clean = false;
  EXPECT_EQ(LoadedCommit(&clean), 1u);
  EXPECT_TRUE(clean);
  // The restarted pool commits again.
  std::unique_ptr<Journal> again;
  ASSERT_TRUE(Journal::OpenForAppend(dir_.path(), &again, &env_).ok());
  ASSERT_TRUE(again->Commit(MapTransaction(1)).ok());
  EXPECT_EQ(LoadedCommit(&clean), 2u);
  EXPECT_TRUE(clean);
}

TEST_F(JournalFaultTest, AFailedLogWriteKeepsTheLastCommit) {
  FaultEnv env(Env::Default(), {});
  std::unique_ptr<Journal> j;
  ASSERT_TRUE(Journal::Create(dir_.path(), InitialCheckpoint(), &j, &env).ok());
  FaultRule rule;
  rule.layer = FaultLayer::kMetadata;
  rule.op = FaultOp::kWrite;
  rule.error = ENOSPC;
  rule.offset = 24;  // past the log's file header
  rule.length = 1 << 20;
  env.AddFault(rule);
  EXPECT_EQ(j->Commit(MapTransaction(0)).code(), ErrorCode::kNoSpace);
  bool clean = false;
  EXPECT_EQ(LoadedCommit(&clean), 0u);
  EXPECT_TRUE(clean);
}

}  // namespace
}  // namespace thinsim::metadata
