// Slow work an operation does for itself - discarding the blocks a delete
// frees, syncing a commit - must not hold up other requests (issue 6:
// "deletes and trims of other volumes do not stall unrelated I/O"). A data
// store wrapper holds Discard or Flush at a gate; while it is held, other
// requests must complete. These are liveness checks with generous timeouts,
// not timings: before the change, each request below waited for the gate.
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <future>
#include <mutex>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "pool/data_store.h"
#include "pool/pool.h"
#include "pool/volume.h"

namespace thinsim {
namespace {

using namespace std::chrono_literals;
using Bytes = std::vector<uint8_t>;

constexpr uint32_t kBS = 4096;
// Long enough that only a real deadlock or stall reaches it.
constexpr auto kPatience = 20s;

// Holds one kind of call until opened.
class Gate {
 public:
  void Pass() {
    std::unique_lock<std::mutex> lock(mu_);
    ++entered_;
    entered_cv_.notify_all();
    open_cv_.wait(lock, [&] { return open_; });
  }
  bool WaitEntered() {
    std::unique_lock<std::mutex> lock(mu_);
    return entered_cv_.wait_for(lock, kPatience, [&] { return entered_ > 0; });
  }
  void Open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    open_cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable entered_cv_, open_cv_;
  int entered_ = 0;
  bool open_ = false;
};

// Forwards to the real store; Discard and/or Flush pass through a gate.
class GatedStore : public DataStore {
 public:
  GatedStore(std::unique_ptr<DataStore> base, Gate* discard_gate, Gate* flush_gate)
      : DataStore(base->block_size()), base_(std::move(base)), discard_gate_(discard_gate),
        flush_gate_(flush_gate) {}
  Status Read(dblock_t b, uint32_t off, void* buf, uint32_t len) override { return base_->Read(b, off, buf, len); }
  Status Write(dblock_t b, uint32_t off, const void* buf, uint32_t len) override {
    return base_->Write(b, off, buf, len);
  }
  Status Zero(dblock_t b, uint32_t off, uint32_t len) override { return base_->Zero(b, off, len); }
  Status Copy(dblock_t from, dblock_t to) override { return base_->Copy(from, to); }
  Status Discard(dblock_t first, uint64_t count) override {
    if (discard_gate_ != nullptr) discard_gate_->Pass();
    return base_->Discard(first, count);
  }
  Status Grow(uint64_t nr_blocks) override { return base_->Grow(nr_blocks); }
  Status Flush() override {
    ++flushes;
    if (flush_gate_ != nullptr) flush_gate_->Pass();
    if (fail_flush) return Status::IOError("injected data sync failure");
    return base_->Flush();
  }

  std::atomic<int> flushes{0};
  std::atomic<bool> fail_flush{false};

 private:
  std::unique_ptr<DataStore> base_;
  Gate* discard_gate_;
  Gate* flush_gate_;
};

// A pool whose store is a GatedStore; `store`, if given, receives it.
PoolOptions GatedOptions(uint64_t blocks, Gate* discard_gate, Gate* flush_gate,
                         GatedStore** store = nullptr) {
  PoolOptions o;
  o.block_size = kBS;
  o.size = blocks * kBS;
  o.wrap_store = [=](std::unique_ptr<DataStore> base) -> std::unique_ptr<DataStore> {
    auto gated = std::make_unique<GatedStore>(std::move(base), discard_gate, flush_gate);
    if (store != nullptr) *store = gated.get();
    return gated;
  };
  return o;
}

template <typename T>
bool Done(std::future<T>& f) {
  return f.wait_for(kPatience) == std::future_status::ready;
}

Status WriteBlocks(Pool* pool, const std::string& name, uint64_t first, uint64_t n, uint8_t fill) {
  std::shared_ptr<Volume> v;
  THINSIM_RETURN_IF_ERROR(pool->OpenVolume(name, true, &v));
  Bytes data(n * kBS, fill);
  Status s = pool->Write(*v, data.data(), data.size(), first * kBS);
  pool->CloseVolume(v, true);
  return s;
}

Bytes ReadBlocks(Pool* pool, const std::string& name, uint64_t first, uint64_t n) {
  std::shared_ptr<Volume> v;
  EXPECT_TRUE(pool->OpenVolume(name, false, &v).ok());
  Bytes data(n * kBS, 0xEE);
  EXPECT_TRUE(pool->Read(*v, data.data(), data.size(), first * kBS).ok());
  pool->CloseVolume(v, false);
  return data;
}

TEST(PoolStallTest, DeleteDiscardsWithoutStallingOtherVolumes) {
  Gate discard;
  std::unique_ptr<Pool> pool;
  ASSERT_TRUE(Pool::Open(GatedOptions(128, &discard, nullptr), &pool).ok());
  ASSERT_TRUE(pool->CreateVolume("big", 64 * kBS, std::nullopt).ok());
  ASSERT_TRUE(pool->CreateVolume("other", 64 * kBS, std::nullopt).ok());
  ASSERT_TRUE(WriteBlocks(pool.get(), "big", 0, 64, 0xB1).ok());
  ASSERT_TRUE(WriteBlocks(pool.get(), "other", 0, 8, 0x0A).ok());

  auto deleted = std::async(std::launch::async, [&] { return pool->DeleteVolume("big"); });
  ASSERT_TRUE(discard.WaitEntered());
  // The delete is discarding big's 64 blocks. Freed space counts already.
  EXPECT_EQ(pool->QueryPool().free_blocks, 128u - 8);
  auto others = std::async(std::launch::async, [&] {
    Status s = WriteBlocks(pool.get(), "other", 8, 16, 0x0B);  // allocates
    if (s.ok()) s = pool->CreateSnapshots({{"other", "snap"}}, false);
    if (s.ok()) s = WriteBlocks(pool.get(), "other", 0, 4, 0x0C);  // copy-on-write
    return s;
  });
  ASSERT_TRUE(Done(others)) << "requests to another volume waited for the delete's discards";
  EXPECT_TRUE(others.get().ok());
  EXPECT_EQ(ReadBlocks(pool.get(), "other", 8, 16), Bytes(16 * kBS, 0x0B));

  discard.Open();
  ASSERT_TRUE(Done(deleted));
  EXPECT_TRUE(deleted.get().ok());
  EXPECT_TRUE(pool->TEST_CheckCounters().ok()) << pool->TEST_CheckCounters().ToString();
  EXPECT_EQ(pool->QueryPool().used_blocks, 8u + 16 + 4);
}

TEST(PoolStallTest, AllocationWaitsForBlocksBeingDiscardedInsteadOfFailing) {
  Gate discard;
  std::unique_ptr<Pool> pool;
  ASSERT_TRUE(Pool::Open(GatedOptions(32, &discard, nullptr), &pool).ok());
  ASSERT_TRUE(pool->CreateVolume("big", 32 * kBS, std::nullopt).ok());
  ASSERT_TRUE(pool->CreateVolume("next", 32 * kBS, std::nullopt).ok());
  ASSERT_TRUE(WriteBlocks(pool.get(), "big", 0, 32, 0xB1).ok());

  auto deleted = std::async(std::launch::async, [&] { return pool->DeleteVolume("big"); });
  ASSERT_TRUE(discard.WaitEntered());
  // Every block of the pool is on its way back: the write must get them,
  // not ENOSPC, and must see them discarded (a partial write reads zeroes
  // around its data, not big's bytes).
  auto written = std::async(std::launch::async, [&] {
    std::shared_ptr<Volume> v;
    THINSIM_RETURN_IF_ERROR(pool->OpenVolume("next", true, &v));
    Bytes data(kBS / 2, 0x5A);
    Status s;
    for (uint64_t b = 0; b < 32 && s.ok(); ++b) s = pool->Write(*v, data.data(), data.size(), b * kBS);
    pool->CloseVolume(v, true);
    return s;
  });
  discard.Open();
  ASSERT_TRUE(Done(deleted));
  EXPECT_TRUE(deleted.get().ok());
  ASSERT_TRUE(Done(written));
  Status s = written.get();
  ASSERT_TRUE(s.ok()) << s.ToString();
  Bytes want(kBS, 0);
  std::fill(want.begin(), want.begin() + kBS / 2, 0x5A);
  Bytes got = ReadBlocks(pool.get(), "next", 0, 32);
  for (uint64_t b = 0; b < 32; ++b) {
    ASSERT_TRUE(std::equal(want.begin(), want.end(), got.begin() + b * kBS)) << "block " << b;
  }
  EXPECT_TRUE(pool->TEST_CheckCounters().ok());
}

class PoolCommitStallTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "thinsim-stall-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(PoolCommitStallTest, RequestsAndSnapshotsRunWhileACommitSyncs) {
  Gate flush;
  PoolOptions o = GatedOptions(256, nullptr, &flush);
  o.dir = dir_;
  {
    std::unique_ptr<Pool> pool;
    ASSERT_TRUE(Pool::Open(o, &pool).ok());
    ASSERT_TRUE(pool->CreateVolume("vol", 64 * kBS, std::nullopt).ok());
    ASSERT_TRUE(WriteBlocks(pool.get(), "vol", 0, 8, 0x11).ok());

    auto committed = std::async(std::launch::async, [&] { return pool->Flush(); });
    ASSERT_TRUE(flush.WaitEntered());
    // The commit is syncing the data file: the pool must go on serving.
    auto others = std::async(std::launch::async, [&] {
      Status s = WriteBlocks(pool.get(), "vol", 8, 8, 0x22);
      if (s.ok()) s = pool->CreateSnapshots({{"vol", "snap"}}, true);
      if (s.ok()) s = WriteBlocks(pool.get(), "vol", 0, 2, 0x33);
      return s;
    });
    ASSERT_TRUE(Done(others)) << "requests waited for a commit's sync";
    EXPECT_TRUE(others.get().ok());
    EXPECT_EQ(ReadBlocks(pool.get(), "snap", 0, 1), Bytes(kBS, 0x11));

    flush.Open();
    ASSERT_TRUE(Done(committed));
    EXPECT_TRUE(committed.get().ok());
    // What happened during the sync belongs to the next commit.
    EXPECT_TRUE(pool->Flush().ok());
    EXPECT_TRUE(pool->TEST_CheckCounters().ok());
  }
  o.wrap_store = nullptr;  // reopen with the plain store
  std::unique_ptr<Pool> pool;
  ASSERT_TRUE(Pool::Open(o, &pool).ok());
  EXPECT_EQ(ReadBlocks(pool.get(), "vol", 0, 2), Bytes(2 * kBS, 0x33));
  EXPECT_EQ(ReadBlocks(pool.get(), "vol", 2, 6), Bytes(6 * kBS, 0x11));
  EXPECT_EQ(ReadBlocks(pool.get(), "vol", 8, 8), Bytes(8 * kBS, 0x22));
  EXPECT_EQ(ReadBlocks(pool.get(), "snap", 0, 8), Bytes(8 * kBS, 0x11));
  EXPECT_TRUE(pool->TEST_CheckCounters().ok());
}

TEST_F(PoolCommitStallTest, BlocksFreedDuringACommitWaitForTheNextOne) {
  // A block freed after a commit captured its transaction is still mapped
  // by the state that commit writes: it must not be reused before the next
  // commit, or a crash could show another volume's data through it.
  Gate flush;
  PoolOptions o = GatedOptions(16, nullptr, &flush);
  o.dir = dir_;
  std::unique_ptr<Pool> pool;
  ASSERT_TRUE(Pool::Open(o, &pool).ok());
  ASSERT_TRUE(pool->CreateVolume("a", 16 * kBS, std::nullopt).ok());
  ASSERT_TRUE(pool->CreateVolume("b", 16 * kBS, std::nullopt).ok());
  ASSERT_TRUE(WriteBlocks(pool.get(), "a", 0, 16, 0xA1).ok());

  auto committed = std::async(std::launch::async, [&] { return pool->Flush(); });
  ASSERT_TRUE(flush.WaitEntered());
  ASSERT_TRUE(pool->DeleteVolume("a").ok());
  EXPECT_EQ(pool->QueryPool().free_blocks, 16u);
  // Needs a's blocks: it must wait for the running commit and then commit
  // the delete itself before taking them.
  auto written = std::async(std::launch::async, [&] { return WriteBlocks(pool.get(), "b", 0, 4, 0xB2); });
  EXPECT_EQ(written.wait_for(100ms), std::future_status::timeout);
  flush.Open();
  ASSERT_TRUE(Done(committed));
  EXPECT_TRUE(committed.get().ok());
  ASSERT_TRUE(Done(written));
  EXPECT_TRUE(written.get().ok());
  EXPECT_EQ(ReadBlocks(pool.get(), "b", 0, 4), Bytes(4 * kBS, 0xB2));
  EXPECT_TRUE(pool->TEST_CheckCounters().ok());
}

TEST_F(PoolCommitStallTest, AFailedCommitFailsWaitingWritesAndThePoolStaysFailed) {
  Gate flush;
  GatedStore* store = nullptr;
  PoolOptions o = GatedOptions(16, nullptr, &flush, &store);
  o.dir = dir_;
  std::unique_ptr<Pool> pool;
  ASSERT_TRUE(Pool::Open(o, &pool).ok());
  ASSERT_TRUE(pool->CreateVolume("a", 16 * kBS, std::nullopt).ok());
  ASSERT_TRUE(pool->CreateVolume("b", 16 * kBS, std::nullopt).ok());
  ASSERT_TRUE(WriteBlocks(pool.get(), "a", 0, 16, 0xA1).ok());
  ASSERT_TRUE(pool->DeleteVolume("a").ok());
  // This commit carries the delete: the pool's every free block waits on it.
  store->fail_flush = true;
  auto committed = std::async(std::launch::async, [&] { return pool->Flush(); });
  ASSERT_TRUE(flush.WaitEntered());
  auto written = std::async(std::launch::async, [&] { return WriteBlocks(pool.get(), "b", 0, 4, 0xB2); });
  EXPECT_EQ(written.wait_for(100ms), std::future_status::timeout);
  flush.Open();
  ASSERT_TRUE(Done(committed));
  EXPECT_EQ(committed.get().code(), ErrorCode::kIO);
  ASSERT_TRUE(Done(written)) << "a write waiting for the failed commit's blocks hung";
  EXPECT_FALSE(written.get().ok());
  // Fail mode is final, even once the store works again.
  store->fail_flush = false;
  EXPECT_EQ(pool->QueryPool().mode, PoolMode::kFail);
  EXPECT_FALSE(WriteBlocks(pool.get(), "b", 8, 1, 0xB3).ok());
  EXPECT_FALSE(pool->Flush().ok());
  EXPECT_EQ(pool->QueryPool().mode, PoolMode::kFail);
}

// Copies the pool directory as a crash at this instant would leave it (the
// data file's page cache included) and opens the copy.
std::unique_ptr<Pool> CrashCopy(const std::string& dir, const std::string& copy) {
  std::filesystem::copy(dir, copy, std::filesystem::copy_options::recursive);
  std::filesystem::remove(copy + "/lock");
  PoolOptions o;
  o.dir = copy;
  std::unique_ptr<Pool> pool;
  Status s = Pool::Open(o, &pool);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return pool;
}

TEST_F(PoolCommitStallTest, InPlaceOverwriteOfABlockUnsharedSinceTheLastCommitCommitsFirst) {
  GatedStore* store = nullptr;
  PoolOptions o = GatedOptions(16, nullptr, nullptr, &store);
  o.dir = dir_ + "/pool";
  std::filesystem::create_directory(o.dir);
  std::unique_ptr<Pool> pool;
  ASSERT_TRUE(Pool::Open(o, &pool).ok());
  ASSERT_TRUE(pool->CreateVolume("origin", 4 * kBS, std::nullopt).ok());
  ASSERT_TRUE(WriteBlocks(pool.get(), "origin", 0, 1, 0x01).ok());
  ASSERT_TRUE(pool->CreateSnapshots({{"origin", "snap"}}, false).ok());
  ASSERT_TRUE(pool->Commit().ok());
  // The origin's write copies block 0 away: snap's block is its own now,
  // but the committed state still has the origin mapping it too.
  ASSERT_TRUE(WriteBlocks(pool.get(), "origin", 0, 1, 0x02).ok());
  int before = store->flushes;
  ASSERT_TRUE(WriteBlocks(pool.get(), "snap", 0, 1, 0x5A).ok());
  EXPECT_GT(store->flushes, before) << "the in-place write did not commit first";
  // A crash now: the origin reads its old or its new data, never snap's.
  std::unique_ptr<Pool> crashed = CrashCopy(o.dir, dir_ + "/crashed");
  ASSERT_NE(crashed, nullptr);
  Bytes origin = ReadBlocks(crashed.get(), "origin", 0, 1);
  EXPECT_TRUE(origin == Bytes(kBS, 0x01) || origin == Bytes(kBS, 0x02))
      << "origin shows byte " << int(origin[0]);
  // Later in-place writes to snap need no commit: the block is exclusive on disk.
  before = store->flushes;
  ASSERT_TRUE(WriteBlocks(pool.get(), "snap", 0, 1, 0x5B).ok());
  EXPECT_EQ(store->flushes, before);
}

}  // namespace
}  // namespace thinsim
