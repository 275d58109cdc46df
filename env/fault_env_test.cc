#include "env/fault_env.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <semaphore>
#include <thread>
#include <vector>

namespace thinsim {
namespace {

FaultEnv::Options Volatile() {
  FaultEnv::Options o;
  o.volatile_cache = true;
  return o;
}

FaultRule Rule(FaultLayer layer, FaultOp op, int error = EIO, uint64_t offset = 0, uint64_t length = 0) {
  FaultRule r;
  r.layer = layer;
  r.op = op;
  r.error = error;
  r.offset = offset;
  r.length = length;
  return r;
}


class FaultEnvTest : public ::testing::Test {
 protected:
  FaultEnvTest() {
    char tmpl[] = "/tmp/thinsim_env_XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  ~FaultEnvTest() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<File> Open(Env* env, const std::string& name, OpenMode mode = OpenMode::kCreate) {
    std::unique_ptr<File> f;
    Status s = env->OpenFile(dir_ + "/" + name, mode, &f);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return f;
  }
  std::string Contents(const std::string& name) {
    std::string out;
    EXPECT_TRUE(ReadWholeFile(Env::Default(), dir_ + "/" + name, &out).ok());
    return out;
  }

  std::string dir_;
};

TEST_F(FaultEnvTest, RangedWriteFaultHitsOnlyOverlappingBytesOfItsLayer) {
  FaultEnv env(Env::Default(), {});
  env.AddFault(Rule(FaultLayer::kData, FaultOp::kWrite, EIO, 4096, 4096));
  auto data = Open(&env, "data");
  auto meta = Open(&env, "metadata");
  EXPECT_TRUE(data->Write(0, "x", 1).ok());
  EXPECT_TRUE(data->Write(8192, "x", 1).ok());
  Status s = data->Write(4095, "xy", 2);  // overlaps the range's first byte
  EXPECT_EQ(s.code(), ErrorCode::kIO);
  EXPECT_NE(s.message().find("injected fault 1"), std::string::npos) << s.message();
  EXPECT_TRUE(meta->Write(4096, "x", 1).ok());
  EXPECT_TRUE(data->Sync().ok());  // a ranged rule needs bytes
  size_t got = 0;
  char c;
  EXPECT_TRUE(data->Read(4096, 1, &c, &got).ok());  // reads are another op
}

TEST_F(FaultEnvTest, CountedRuleIsSpentAndNoSpaceMapsToNoSpace) {
  FaultEnv env(Env::Default(), {});
  FaultRule rule = Rule(FaultLayer::kMetadata, FaultOp::kAny, ENOSPC);
  rule.count = 2;
  uint64_t id = env.AddFault(rule);
  std::unique_ptr<File> f;
  EXPECT_EQ(env.OpenFile(dir_ + "/metadata.log.1", OpenMode::kCreate, &f).code(), ErrorCode::kNoSpace);
  EXPECT_FALSE(env.OpenFile(dir_ + "/metadata.log.1", OpenMode::kCreate, &f).ok());
  ASSERT_TRUE(env.Faults().empty());
  EXPECT_FALSE(env.RemoveFault(id));
  f = Open(&env, "metadata.log.1");
  ASSERT_NE(f, nullptr);
  EXPECT_TRUE(f->Write(0, "x", 1).ok());

  env.AddFault(rule);
  EXPECT_EQ(f->Write(0, "x", 1).code(), ErrorCode::kNoSpace);
  ASSERT_EQ(env.Faults().size(), 1u);
  EXPECT_EQ(env.Faults()[0].fired, 1u);
}

TEST_F(FaultEnvTest, SyncCoversDirectoriesFlushOnlyFiles) {
  FaultEnv env(Env::Default(), {});
  auto f = Open(&env, "metadata");
  uint64_t flush = env.AddFault(Rule(FaultLayer::kMetadata, FaultOp::kFlush));
  EXPECT_FALSE(f->Sync().ok());
  EXPECT_TRUE(env.SyncDir(dir_).ok());
  EXPECT_TRUE(env.RemoveFault(flush));
  EXPECT_TRUE(f->Sync().ok());
  env.AddFault(Rule(FaultLayer::kMetadata, FaultOp::kSync));
  EXPECT_FALSE(f->Sync().ok());
  EXPECT_FALSE(env.SyncDir(dir_).ok());
}

TEST_F(FaultEnvTest, ProbabilityZeroNeverFiresAndOneHalfFiresAboutHalfTheTime) {
  FaultEnv env(Env::Default(), {});
  auto f = Open(&env, "data");
  FaultRule never = Rule(FaultLayer::kData, FaultOp::kRead);
  never.probability = 0;
  env.AddFault(never);
  char buf[1];
  size_t got;
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(f->Read(0, 1, buf, &got).ok());
  FaultRule half = never;
  half.probability = 0.5;
  env.AddFault(half);
  int failed = 0;
  for (int i = 0; i < 1000; ++i) failed += !f->Read(0, 1, buf, &got).ok();
  EXPECT_GT(failed, 350);
  EXPECT_LT(failed, 650);
}

TEST_F(FaultEnvTest, ConcurrentOperationsFireACountedRuleExactlyCountTimes) {
  FaultEnv env(Env::Default(), {});
  auto f = Open(&env, "data");
  FaultRule rule = Rule(FaultLayer::kData, FaultOp::kWrite);
  rule.count = 50;
  env.AddFault(rule);
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 100; ++i) failed += !f->Write(uint64_t(t) * 4096 + i, "x", 1).ok();
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failed.load(), 50);
}

TEST_F(FaultEnvTest, ParsesSpecNames) {
  FaultLayer layer;
  FaultOp op;
  EXPECT_TRUE(ParseFaultLayer("metadata", &layer));
  EXPECT_EQ(layer, FaultLayer::kMetadata);
  EXPECT_FALSE(ParseFaultLayer("disk", &layer));
  for (const char* name : {"read", "write", "flush", "discard", "sync", "any"}) {
    ASSERT_TRUE(ParseFaultOp(name, &op)) << name;
    EXPECT_STREQ(FaultOpName(op), name);
  }
  EXPECT_FALSE(ParseFaultOp("trim", &op));
}

// ---- Volatile cache and power cuts -----------------------------------------

TEST_F(FaultEnvTest, SyncedWriteSurvivesAPowerCutAnUnsyncedOneIsLost) {
  FaultEnv env(Env::Default(), Volatile());
  auto f = Open(&env, "data");
  ASSERT_TRUE(env.SyncDir(dir_).ok());
  ASSERT_TRUE(f->Write(0, "durable", 7).ok());
  ASSERT_TRUE(f->Sync().ok());
  ASSERT_TRUE(f->Write(2, "XX", 2).ok());       // over durable bytes
  ASSERT_TRUE(f->Write(7, "-lost", 5).ok());    // past the durable size
  EXPECT_EQ(Contents("data"), "duXXble-lost");  // the cache serves reads
  ASSERT_TRUE(env.PowerCut().ok());
  EXPECT_EQ(Contents("data"), "durable");
  // The pool that had the file is gone; a reopened one works.
  EXPECT_FALSE(f->Write(0, "x", 1).ok());
  auto again = Open(&env, "data", OpenMode::kReadWrite);
  EXPECT_TRUE(again->Write(0, "D", 1).ok());
}

TEST_F(FaultEnvTest, PowerCutUndoesTruncateDiscardAndUnsyncedCreation) {
  FaultEnv env(Env::Default(), Volatile());
  auto f = Open(&env, "metadata");
  ASSERT_TRUE(f->Write(0, "abcdef", 6).ok());
  ASSERT_TRUE(f->Sync().ok());
  ASSERT_TRUE(env.SyncDir(dir_).ok());
  ASSERT_TRUE(f->Truncate(2).ok());
  ASSERT_TRUE(f->Write(4, "zz", 2).ok());
  Status punched = f->ZeroRange(0, 1);
  ASSERT_TRUE(punched.ok() || punched.code() == ErrorCode::kUnsupported) << punched.ToString();
  auto fresh = Open(&env, "metadata.log.2", OpenMode::kTruncate);
  ASSERT_TRUE(fresh->Write(0, "new", 3).ok());
  ASSERT_TRUE(fresh->Sync().ok());  // its name is not durable yet
  ASSERT_TRUE(env.PowerCut().ok());
  EXPECT_EQ(Contents("metadata"), "abcdef");
  EXPECT_FALSE(Env::Default()->FileExists(dir_ + "/metadata.log.2"));
}

TEST_F(FaultEnvTest, TruncatingOpenOfADurableFileIsUndone) {
  FaultEnv env(Env::Default(), Volatile());
  auto f = Open(&env, "metadata.ckpt.1");
  ASSERT_TRUE(f->Write(0, "checkpoint", 10).ok());
  ASSERT_TRUE(f->Sync().ok());
  ASSERT_TRUE(env.SyncDir(dir_).ok());
  auto g = Open(&env, "metadata.ckpt.1", OpenMode::kTruncate);
  ASSERT_TRUE(g->Write(0, "x", 1).ok());
  ASSERT_TRUE(env.PowerCut().ok());
  EXPECT_EQ(Contents("metadata.ckpt.1"), "checkpoint");
}

TEST_F(FaultEnvTest, PowerCutWithoutVolatileCacheIsRefused) {
  FaultEnv env(Env::Default(), {});
  EXPECT_EQ(env.PowerCut().code(), ErrorCode::kInvalid);
}

// A power cut is one point in time: a sync or a change that passed its
// checks before the cut but reaches the file after it must fail. The racing
// call is held inside its fault check (the layer_of hook runs there) while
// the whole cut runs, then released.
class PowerCutRaceTest : public FaultEnvTest {
 protected:
  // "A" durable at offset 0 and an unsynced "B" over it; then `racer` runs
  // on another thread, is held in its check across the cut, and finishes.
  // Returns what `racer` returned; *after is the file once it is done.
  template <typename Racer>
  Status RaceTheCut(Racer racer, std::string* after) {
    std::atomic<bool> armed{false};
    std::binary_semaphore entered{0}, released{0};
    FaultEnv::Options o = Volatile();
    o.layer_of = [&](const std::string&) {
      if (armed.exchange(false)) {
        entered.release();
        released.acquire();
      }
      return FaultLayer::kData;
    };
    FaultEnv env(Env::Default(), o);
    auto f = Open(&env, "data");
    EXPECT_TRUE(f->Write(0, "A", 1).ok());
    EXPECT_TRUE(f->Sync().ok());
    EXPECT_TRUE(env.SyncDir(dir_).ok());
    EXPECT_TRUE(f->Write(0, "B", 1).ok());
    armed = true;
    Status raced;
    std::thread t([&] { raced = racer(f.get()); });
    entered.acquire();
    EXPECT_TRUE(env.PowerCut().ok());
    released.release();
    t.join();
    *after = Contents("data");
    return raced;
  }
};

TEST_F(PowerCutRaceTest, ASyncThatReachesTheFileAfterTheCutFails) {
  std::string after;
  Status s = RaceTheCut([](File* f) { return f->Sync(); }, &after);
  // Had it succeeded, a FLUSH would be acknowledged for "B", which the
  // cut dropped.
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(after, "A");
}

TEST_F(PowerCutRaceTest, AWriteThatReachesTheFileAfterTheCutNeverLands) {
  std::string after;
  Status s = RaceTheCut([](File* f) { return f->Write(1, "C", 1); }, &after);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(after, "A");
}

}  // namespace
}  // namespace thinsim
