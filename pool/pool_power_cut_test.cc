// A persistent pool over a FaultEnv with a volatile write cache: a power cut
// keeps what FLUSH made durable and drops the rest, data and metadata.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "env/fault_env.h"
#include "pool/pool.h"

namespace thinsim {
namespace {

constexpr uint32_t kBS = 65536;

class PoolPowerCutTest : public ::testing::Test {
 protected:
  PoolPowerCutTest() : env_(Env::Default(), VolatileOptions()) {
    char tmpl[] = "/tmp/thinsim-power-cut-XXXXXX";
    root_ = mkdtemp(tmpl);
  }
  ~PoolPowerCutTest() override { std::filesystem::remove_all(root_); }

  static FaultEnv::Options VolatileOptions() {
    FaultEnv::Options o;
    o.volatile_cache = true;
    return o;
  }

  std::unique_ptr<Pool> OpenPool(Env* env) {
    PoolOptions o;
    o.dir = root_ + "/pool";
    o.block_size = kBS;
    o.size = 16 * kBS;
    o.env = env;
    std::unique_ptr<Pool> pool;
    Status s = Pool::Open(o, &pool);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return pool;
  }

  std::string root_;
  FaultEnv env_;
};

TEST_F(PoolPowerCutTest, FlushedWritesSurviveUnflushedOnesAreLost) {
  std::vector<char> durable(kBS, 'D'), lost(kBS, 'L');
  {
    std::unique_ptr<Pool> pool = OpenPool(&env_);
    ASSERT_TRUE(pool->CreateVolume("v", 8 * kBS, std::nullopt).ok());
    std::shared_ptr<Volume> v;
    ASSERT_TRUE(pool->OpenVolume("v", true, &v).ok());
    ASSERT_TRUE(pool->Write(*v, durable.data(), kBS, 0).ok());
    ASSERT_TRUE(pool->Flush().ok());
    ASSERT_TRUE(pool->Write(*v, lost.data(), kBS, 0).ok());       // over durable data
    ASSERT_TRUE(pool->Write(*v, lost.data(), kBS, 3 * kBS).ok());  // a new mapping
    ASSERT_TRUE(pool->CreateVolume("unflushed", kBS, std::nullopt).ok());
    ASSERT_TRUE(env_.PowerCut().ok());
    pool->CloseVolume(v, true);
  }  // the pool's last commit fails: its files are gone with the power
  std::unique_ptr<Pool> pool = OpenPool(Env::Default());
  ASSERT_NE(pool, nullptr);
  std::shared_ptr<Volume> v;
  ASSERT_TRUE(pool->OpenVolume("v", false, &v).ok());
  std::vector<char> back(4 * kBS);
  ASSERT_TRUE(pool->Read(*v, back.data(), back.size(), 0).ok());
  EXPECT_TRUE(std::equal(durable.begin(), durable.end(), back.begin()));
  EXPECT_EQ(std::count(back.begin() + kBS, back.end(), 0), 3 * kBS);
  pool->CloseVolume(v, false);
  std::shared_ptr<Volume> gone;
  EXPECT_EQ(pool->OpenVolume("unflushed", false, &gone).code(), ErrorCode::kNotFound);
  EXPECT_TRUE(pool->TEST_CheckCounters().ok());
}

// What the power-cut command does after the cut: whatever the files would
// still take, the pool serves nothing more; a reopen serves the durable state.
TEST_F(PoolPowerCutTest, FailRefusesEverythingUntilReopened) {
  std::vector<char> durable(kBS, 'D');
  {
    std::unique_ptr<Pool> pool = OpenPool(&env_);
    ASSERT_TRUE(pool->CreateVolume("v", 8 * kBS, std::nullopt).ok());
    std::shared_ptr<Volume> v;
    ASSERT_TRUE(pool->OpenVolume("v", true, &v).ok());
    ASSERT_TRUE(pool->Write(*v, durable.data(), kBS, 0).ok());
    ASSERT_TRUE(pool->Flush().ok());
    ASSERT_TRUE(env_.PowerCut().ok());
    pool->Fail("power cut");
    EXPECT_EQ(pool->QueryPool().mode, PoolMode::kFail);
    EXPECT_EQ(pool->Write(*v, durable.data(), kBS, kBS).code(), ErrorCode::kIO);
    EXPECT_FALSE(pool->CreateVolume("w", kBS, std::nullopt).ok());
    EXPECT_FALSE(pool->Flush().ok());
    pool->CloseVolume(v, true);
  }
  std::unique_ptr<Pool> pool = OpenPool(Env::Default());
  ASSERT_NE(pool, nullptr);
  EXPECT_EQ(pool->QueryPool().mode, PoolMode::kWrite);
  std::shared_ptr<Volume> v;
  ASSERT_TRUE(pool->OpenVolume("v", false, &v).ok());
  std::vector<char> back(2 * kBS);
  ASSERT_TRUE(pool->Read(*v, back.data(), back.size(), 0).ok());
  EXPECT_TRUE(std::equal(durable.begin(), durable.end(), back.begin()));
  EXPECT_EQ(std::count(back.begin() + kBS, back.end(), 0), kBS);
  pool->CloseVolume(v, false);
}

// A reopened pool discards its unused blocks (unsynced). A block allocated
// from them, written and flushed must survive a power cut.
TEST_F(PoolPowerCutTest, FlushedWriteIntoABlockDiscardedAtOpenSurvives) {
  {
    std::unique_ptr<Pool> pool = OpenPool(Env::Default());
    ASSERT_TRUE(pool->CreateVolume("v", 8 * kBS, std::nullopt).ok());
    ASSERT_TRUE(pool->Flush().ok());
  }
  {  // stale bytes in every block, as a crash before a discard leaves them
    std::unique_ptr<File> f;
    ASSERT_TRUE(Env::Default()->OpenFile(root_ + "/pool/data", OpenMode::kReadWrite, &f).ok());
    std::vector<char> stale(16 * kBS, 'S');
    ASSERT_TRUE(f->Write(0, stale.data(), stale.size()).ok());
    ASSERT_TRUE(f->Sync().ok());
  }
  std::vector<char> w(kBS, 'W');
  {
    std::unique_ptr<Pool> pool = OpenPool(&env_);
    std::shared_ptr<Volume> v;
    ASSERT_TRUE(pool->OpenVolume("v", true, &v).ok());
    ASSERT_TRUE(pool->Write(*v, w.data(), kBS, 2 * kBS).ok());
    ASSERT_TRUE(pool->Flush().ok());
    ASSERT_TRUE(env_.PowerCut().ok());
    pool->CloseVolume(v, true);
  }
  std::unique_ptr<Pool> pool = OpenPool(Env::Default());
  ASSERT_NE(pool, nullptr);
  std::shared_ptr<Volume> v;
  ASSERT_TRUE(pool->OpenVolume("v", false, &v).ok());
  std::vector<char> back(3 * kBS);
  ASSERT_TRUE(pool->Read(*v, back.data(), back.size(), 0).ok());
  EXPECT_EQ(std::count(back.begin(), back.begin() + 2 * kBS, 0), 2 * kBS);
  EXPECT_TRUE(std::equal(w.begin(), w.end(), back.begin() + 2 * kBS));
  pool->CloseVolume(v, false);
}

}  // namespace
}  // namespace thinsim
