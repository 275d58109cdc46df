// Concurrency test of the engine: overlapping random I/O on two volumes while
// snapshots are taken and deleted. Run under TSan (label `concurrency`).
//
// Every write carries a unique id and fills each 512-byte sector it writes
// with a pattern derived from (id, absolute sector number). A sector read
// back must be either all zeroes or exactly one write's pattern for that
// sector: never torn, never misplaced, never stale data of another block.
//
// A generation writer owns a private range of both volumes and writes
// generation g to its blocks one at a time, alternating A[i], B[i], A[i+1],
// ... then g + 1. Any snapshot (of A alone, or of A and B taken together) is
// a point-in-time image, so the generations it shows in write order are
// non-increasing and differ by at most one.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "pool/pool.h"
#include "pool/volume.h"

namespace thinsim {
namespace {

using namespace std::chrono_literals;
using Bytes = std::vector<uint8_t>;

constexpr uint32_t kBS = 4096;
constexpr uint64_t kSector = 512;
constexpr uint64_t kSectorsPerBlock = kBS / kSector;
constexpr uint64_t kVolumeBlocks = 64;
constexpr uint64_t kSharedBlocks = 48;  // random I/O goes to [0, 48)
constexpr uint64_t kGenFirst = 48;      // the generation writer owns [48, 64)
constexpr uint64_t kGenBlocks = kVolumeBlocks - kGenFirst;
constexpr uint64_t kMagic = 0x7468696e73696d21ull;  // "thinsim!"

uint64_t Mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

// "a17" for ('a', 17). Appending, not `"a" + std::to_string(n)`: GCC 12 at
// -O3 flags that form with a false -Wrestrict.
std::string SnapshotName(char prefix, int n) {
  std::string name(1, prefix);
  name += std::to_string(n);
  return name;
}

// The 512 bytes a write with `id` puts in absolute sector `sector` (of a
// volume: the volume index is folded into the sector number).
void FillSector(uint8_t* p, uint64_t id, uint64_t sector) {
  uint64_t words[kSector / 8];
  words[0] = kMagic;
  words[1] = id;
  words[2] = sector;
  for (size_t k = 3; k < kSector / 8; ++k) words[k] = Mix(id * 1000003 + sector * 7919 + k);
  std::memcpy(p, words, kSector);
}

// Empty string if the sector is zero or one whole write's data.
std::string CheckSector(const uint8_t* p, uint64_t sector) {
  bool zero = true;
  for (size_t i = 0; i < kSector && zero; ++i) zero = p[i] == 0;
  if (zero) return "";
  uint64_t words[kSector / 8];
  std::memcpy(words, p, kSector);
  if (words[0] != kMagic) return "sector " + std::to_string(sector) + ": no write header (torn?)";
  if (words[2] != sector) {
    return "sector " + std::to_string(sector) + ": holds data of sector " + std::to_string(words[2]);
  }
  uint8_t want[kSector];
  FillSector(want, words[1], sector);
  if (std::memcmp(want, p, kSector) != 0) {
    return "sector " + std::to_string(sector) + ": torn data of write " + std::to_string(words[1]);
  }
  return "";
}

// A generation block: the generation number and block index, repeated.
void FillGen(uint8_t* p, uint64_t gen, uint64_t block) {
  for (size_t i = 0; i < kBS; i += 16) {
    std::memcpy(p + i, &gen, 8);
    std::memcpy(p + i + 8, &block, 8);
  }
}
// The generation in a generation block (0 for a never-written block), or -1
// if the block is not one whole generation write.
int64_t ReadGen(const uint8_t* p, uint64_t block) {
  uint64_t gen, blk;
  std::memcpy(&gen, p, 8);
  std::memcpy(&blk, p + 8, 8);
  if (gen == 0 && blk == 0) {
    for (size_t i = 0; i < kBS; ++i) {
      if (p[i] != 0) return -1;
    }
    return 0;
  }
  Bytes want(kBS);
  FillGen(want.data(), gen, block);
  if (blk != block || std::memcmp(want.data(), p, kBS) != 0) return -1;
  return static_cast<int64_t>(gen);
}

class PoolConcurrencyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    PoolOptions o;
    o.block_size = kBS;
    o.size = 1024 * kBS;  // room for the volumes and several snapshots' CoW
    ASSERT_TRUE(Pool::Open(o, &pool_).ok());
    for (const char* name : {"A", "B"}) {
      ASSERT_TRUE(pool_->CreateVolume(name, kVolumeBlocks * kBS, std::nullopt).ok());
    }
  }

  void Fail(const std::string& what) {
    std::lock_guard<std::mutex> lock(errors_mu_);
    if (errors_.size() < 20) errors_.push_back(what);
    failed_ = true;
  }

  // Checks every sector of `buf`, read at byte `offset` of volume `vol_index`.
  void CheckSectors(const Bytes& buf, uint64_t offset, int vol_index, const std::string& where) {
    for (uint64_t i = 0; i < buf.size(); i += kSector) {
      uint64_t sector = (offset + i) / kSector + static_cast<uint64_t>(vol_index) * (1 << 20);
      std::string err = CheckSector(buf.data() + i, sector);
      if (!err.empty()) Fail(where + ": " + err);
    }
  }

  // Checks the generation range of A (and B if given) read from one
  // point-in-time image.
  void CheckGenerations(const Bytes& a, const Bytes* b, const std::string& where) {
    std::vector<int64_t> seq;  // in write order
    for (uint64_t i = 0; i < kGenBlocks; ++i) {
      seq.push_back(ReadGen(a.data() + i * kBS, kGenFirst + i));
      if (b != nullptr) seq.push_back(ReadGen(b->data() + i * kBS, kGenFirst + i));
    }
    for (size_t i = 0; i < seq.size(); ++i) {
      if (seq[i] < 0) return Fail(where + ": generation block " + std::to_string(i) + " is torn");
      if (i > 0 && seq[i] > seq[i - 1]) {
        return Fail(where + ": generations not point-in-time: position " + std::to_string(i) +
                    " has " + std::to_string(seq[i]) + " after " + std::to_string(seq[i - 1]));
      }
    }
    if (seq.front() - seq.back() > 1) {
      Fail(where + ": generations span " + std::to_string(seq.back()) + ".." + std::to_string(seq.front()));
    }
  }

  Status ReadVolume(const std::string& name, uint64_t offset, uint64_t len, Bytes* out) {
    std::shared_ptr<Volume> v;
    THINSIM_RETURN_IF_ERROR(pool_->OpenVolume(name, false, &v));
    out->assign(len, 0);
    Status s = pool_->Read(*v, out->data(), len, offset);
    pool_->CloseVolume(v, false);
    return s;
  }

  // Random I/O on A and B inside [0, kSharedBlocks).
  void IoThread(int t, std::chrono::steady_clock::time_point deadline) {
    std::mt19937_64 rng(1000 + t);
    std::shared_ptr<Volume> vols[2];
    ASSERT_TRUE(pool_->OpenVolume("A", true, &vols[0]).ok());
    ASSERT_TRUE(pool_->OpenVolume("B", true, &vols[1]).ok());
    const uint64_t region_sectors = kSharedBlocks * kSectorsPerBlock;
    for (int iter = 0; iter < 200000 && std::chrono::steady_clock::now() < deadline && !failed_; ++iter) {
      int vi = static_cast<int>(rng() % 2);
      Volume& v = *vols[vi];
      uint64_t first = rng() % region_sectors;
      uint64_t n = 1 + rng() % (3 * kSectorsPerBlock);
      if (first + n > region_sectors) n = region_sectors - first;
      uint64_t off = first * kSector, len = n * kSector;
      uint64_t op = rng() % 100;
      Status s;
      if (op < 45) {
        uint64_t id = next_id_++;
        Bytes buf(len);
        for (uint64_t i = 0; i < n; ++i) FillSector(buf.data() + i * kSector, id, first + i + vi * (1 << 20));
        s = pool_->Write(v, buf.data(), len, off);
      } else if (op < 75) {
        Bytes buf(len);
        s = pool_->Read(v, buf.data(), len, off);
        if (s.ok()) CheckSectors(buf, off, vi, std::string("read of ") + (vi ? "B" : "A"));
      } else if (op < 83) {
        s = pool_->Trim(v, len, off);
      } else if (op < 90) {
        s = pool_->Zero(v, len, off, Pool::kMayTrim);
      } else if (op < 94) {
        s = pool_->Zero(v, len, off, 0);
      } else if (op < 97) {
        s = pool_->Zero(v, len, off, Pool::kMayTrim | Pool::kFastZero);
        if (s.code() == ErrorCode::kUnsupported) s = Status::OK();
      } else {
        s = pool_->Provision(vi ? "B" : "A", off, len);
      }
      // The pool is large enough that nothing but success is expected.
      if (!s.ok()) Fail("I/O thread " + std::to_string(t) + ": " + s.ToString());
      ++ops_;
    }
    pool_->CloseVolume(vols[0], true);
    pool_->CloseVolume(vols[1], true);
  }

  // Writes generations 1, 2, ... to the private range, block by block.
  void GenerationThread(std::chrono::steady_clock::time_point deadline) {
    std::shared_ptr<Volume> a, b;
    ASSERT_TRUE(pool_->OpenVolume("A", true, &a).ok());
    ASSERT_TRUE(pool_->OpenVolume("B", true, &b).ok());
    Bytes buf(kBS);
    for (uint64_t gen = 1; std::chrono::steady_clock::now() < deadline && !failed_; ++gen) {
      for (uint64_t i = 0; i < kGenBlocks; ++i) {
        uint64_t block = kGenFirst + i;
        FillGen(buf.data(), gen, block);
        for (Volume* v : {a.get(), b.get()}) {
          Status s = pool_->Write(*v, buf.data(), kBS, block * kBS);
          if (!s.ok()) Fail("generation write: " + s.ToString());
        }
      }
      generations_ = gen;
    }
    pool_->CloseVolume(a, true);
    pool_->CloseVolume(b, true);
  }

  // Reads live snapshots (which holds them open: their deletion is Busy).
  void SnapshotReaderThread(std::chrono::steady_clock::time_point deadline) {
    std::mt19937_64 rng(77);
    while (std::chrono::steady_clock::now() < deadline && !failed_) {
      std::vector<std::string> names;
      {
        std::lock_guard<std::mutex> lock(snaps_mu_);
        for (const auto& [a, b] : live_snaps_) names.push_back(rng() % 2 ? a : b);
      }
      if (names.empty()) {
        std::this_thread::sleep_for(1ms);
        continue;
      }
      const std::string& name = names[rng() % names.size()];
      if (name.empty()) continue;  // a snapshot of A alone
      std::shared_ptr<Volume> v;
      if (!pool_->OpenVolume(name, false, &v).ok()) continue;  // deleted meanwhile
      int vi = name[0] == 'b' ? 1 : 0;
      Bytes buf(kSharedBlocks * kBS);
      Status s = pool_->Read(*v, buf.data(), buf.size(), 0);
      if (!s.ok()) Fail("snapshot read: " + s.ToString());
      CheckSectors(buf, 0, vi, "snapshot " + name);
      Bytes gen(kGenBlocks * kBS);
      s = pool_->Read(*v, gen.data(), gen.size(), kGenFirst * kBS);
      if (!s.ok()) Fail("snapshot read: " + s.ToString());
      for (uint64_t i = 0; i < kGenBlocks; ++i) {
        if (ReadGen(gen.data() + i * kBS, kGenFirst + i) < 0) Fail("snapshot " + name + ": torn generation block");
      }
      pool_->CloseVolume(v, false);
      ++snapshot_reads_;
    }
  }

  // Takes snapshots of A, or of A and B together, checks them, and deletes
  // old ones.
  void SnapshotThread(std::chrono::steady_clock::time_point deadline) {
    std::mt19937_64 rng(5);
    for (int n = 0; std::chrono::steady_clock::now() < deadline && !failed_; ++n) {
      std::string a = SnapshotName('a', n), b;
      bool both = rng() % 2;
      bool read_only = rng() % 2;
      std::vector<SnapshotRequest> reqs = {{"A", a}};
      if (both) {
        b = SnapshotName('b', n);
        reqs.push_back({"B", b});
      }
      Status s = pool_->CreateSnapshots(reqs, read_only);
      if (!s.ok()) {
        Fail("snapshot: " + s.ToString());
        break;
      }
      ++snapshots_;
      Bytes ga, gb;
      if (!ReadVolume(a, kGenFirst * kBS, kGenBlocks * kBS, &ga).ok() ||
          (both && !ReadVolume(b, kGenFirst * kBS, kGenBlocks * kBS, &gb).ok())) {
        Fail("reading new snapshot failed");
        break;
      }
      CheckGenerations(ga, both ? &gb : nullptr, "snapshot " + a + (both ? "+" + b : ""));
      {
        std::lock_guard<std::mutex> lock(snaps_mu_);
        live_snaps_.push_back({a, b});
      }
      // Keep at most three; a snapshot being read is Busy: try it later.
      while (true) {
        std::pair<std::string, std::string> old;
        {
          std::lock_guard<std::mutex> lock(snaps_mu_);
          if (live_snaps_.size() <= 3) break;
          old = live_snaps_.front();
          live_snaps_.pop_front();
        }
        for (const std::string& name : {old.first, old.second}) {
          if (name.empty()) continue;
          Status d;
          for (int tries = 0; tries < 10000; ++tries) {
            d = pool_->DeleteVolume(name);
            if (d.code() != ErrorCode::kBusy) break;
            std::this_thread::sleep_for(100us);
          }
          if (!d.ok()) Fail("delete " + name + ": " + d.ToString());
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 5));
    }
  }

  std::unique_ptr<Pool> pool_;
  std::atomic<uint64_t> next_id_{1};
  std::atomic<uint64_t> ops_{0};
  std::atomic<uint64_t> snapshots_{0};
  std::atomic<uint64_t> snapshot_reads_{0};
  std::atomic<uint64_t> generations_{0};
  std::atomic<bool> failed_{false};
  std::mutex errors_mu_;
  std::vector<std::string> errors_;
  std::mutex snaps_mu_;
  std::deque<std::pair<std::string, std::string>> live_snaps_;
};

TEST_F(PoolConcurrencyTest, OverlappingIoWithSnapshots) {
  const auto deadline = std::chrono::steady_clock::now() + 3s;
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) threads.emplace_back([&, t] { IoThread(t, deadline); });
  threads.emplace_back([&] { GenerationThread(deadline); });
  threads.emplace_back([&] { SnapshotThread(deadline); });
  threads.emplace_back([&] { SnapshotReaderThread(deadline); });
  for (auto& th : threads) th.join();
  std::printf("%llu I/O ops, %llu generations, %llu snapshots, %llu snapshot reads\n",
              static_cast<unsigned long long>(ops_.load()),
              static_cast<unsigned long long>(generations_.load()),
              static_cast<unsigned long long>(snapshots_.load()),
              static_cast<unsigned long long>(snapshot_reads_.load()));
  for (const std::string& e : errors_) ADD_FAILURE() << e;
  ASSERT_FALSE(failed_);

  Status s = pool_->TEST_CheckCounters();
  ASSERT_TRUE(s.ok()) << s.ToString();
  // Snapshots were not starved by the writers.
  EXPECT_GE(snapshots_.load(), 5u);
  EXPECT_GE(generations_.load(), 2u);

  // The final state: every sector valid, generations consistent.
  for (int vi = 0; vi < 2; ++vi) {
    Bytes buf;
    ASSERT_TRUE(ReadVolume(vi ? "B" : "A", 0, kVolumeBlocks * kBS, &buf).ok());
    CheckSectors(Bytes(buf.begin(), buf.begin() + kSharedBlocks * kBS), 0, vi, "final");
  }
  Bytes ga, gb;
  ASSERT_TRUE(ReadVolume("A", kGenFirst * kBS, kGenBlocks * kBS, &ga).ok());
  ASSERT_TRUE(ReadVolume("B", kGenFirst * kBS, kGenBlocks * kBS, &gb).ok());
  CheckGenerations(ga, &gb, "final");
  for (const std::string& e : errors_) ADD_FAILURE() << e;

  // Deleting every snapshot leaves exactly the volumes' blocks.
  for (const auto& [a, b] : live_snaps_) {
    ASSERT_TRUE(pool_->DeleteVolume(a).ok());
    if (!b.empty()) {
      ASSERT_TRUE(pool_->DeleteVolume(b).ok());
    }
  }
  ASSERT_TRUE(pool_->TEST_CheckCounters().ok());
  VolumeInfo a, b;
  ASSERT_TRUE(pool_->QueryVolume("A", &a).ok());
  ASSERT_TRUE(pool_->QueryVolume("B", &b).ok());
  EXPECT_EQ(a.exclusive_blocks, a.mapped_blocks);
  EXPECT_EQ(b.exclusive_blocks, b.mapped_blocks);
  EXPECT_EQ(pool_->QueryPool().used_blocks, a.mapped_blocks + b.mapped_blocks);
}

// Writers that wait for space in queue mode are released by a concurrent
// trim, delete or grow, and nothing is lost or double-allocated.
TEST(PoolQueueConcurrencyTest, QueuedWritersAreReleased) {
  PoolOptions o;
  o.block_size = kBS;
  o.size = 16 * kBS;
  o.when_full = WhenFull::kQueue;
  o.no_space_timeout_seconds = 30;
  std::unique_ptr<Pool> pool;
  ASSERT_TRUE(Pool::Open(o, &pool).ok());
  ASSERT_TRUE(pool->CreateVolume("filler", 16 * kBS, std::nullopt).ok());
  std::shared_ptr<Volume> filler;
  ASSERT_TRUE(pool->OpenVolume("filler", true, &filler).ok());
  Bytes block(16 * kBS, 0xAB);
  ASSERT_TRUE(pool->Write(*filler, block.data(), block.size(), 0).ok());

  constexpr int kWriters = 4;
  std::vector<std::thread> writers;
  std::atomic<int> done{0};
  std::vector<Status> results(kWriters);
  for (int t = 0; t < kWriters; ++t) {
    std::string name = "w" + std::to_string(t);
    ASSERT_TRUE(pool->CreateVolume(name, 4 * kBS, std::nullopt).ok());
    writers.emplace_back([&, t, name] {
      std::shared_ptr<Volume> v;
      results[t] = pool->OpenVolume(name, true, &v);
      if (!results[t].ok()) return;
      Bytes data(2 * kBS, static_cast<uint8_t>(t + 1));
      results[t] = pool->Write(*v, data.data(), data.size(), kBS);
      pool->CloseVolume(v, true);
      ++done;
    });
  }
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(done.load(), 0);
  // Free space in steps: 3 blocks by trim, 2 by grow, 3 by trim, the rest by grow.
  ASSERT_TRUE(pool->Trim(*filler, 3 * kBS, 0).ok());
  std::this_thread::sleep_for(20ms);
  ASSERT_TRUE(pool->Grow(18 * kBS).ok());
  std::this_thread::sleep_for(20ms);
  ASSERT_TRUE(pool->Trim(*filler, 3 * kBS, 3 * kBS).ok());
  std::this_thread::sleep_for(20ms);
  ASSERT_TRUE(pool->Grow(24 * kBS).ok());
  for (auto& th : writers) th.join();
  pool->CloseVolume(filler, true);
  for (int t = 0; t < kWriters; ++t) {
    ASSERT_TRUE(results[t].ok()) << t << ": " << results[t].ToString();
    std::string name = "w" + std::to_string(t);
    std::shared_ptr<Volume> v;
    ASSERT_TRUE(pool->OpenVolume(name, false, &v).ok());
    Bytes got(4 * kBS);
    ASSERT_TRUE(pool->Read(*v, got.data(), got.size(), 0).ok());
    pool->CloseVolume(v, false);
    for (size_t i = 0; i < got.size(); ++i) {
      uint8_t want = i >= kBS && i < 3 * kBS ? static_cast<uint8_t>(t + 1) : 0;
      ASSERT_EQ(got[i], want) << name << " byte " << i;
    }
  }
  ASSERT_TRUE(pool->TEST_CheckCounters().ok());
  PoolInfo info = pool->QueryPool();
  EXPECT_EQ(info.used_blocks, 10u + 2 * kWriters);
  EXPECT_EQ(info.total_blocks, 24u);
}

// Control-plane requests that look a volume up and then wait for its
// io_gate (Provision, ResizeVolume) racing DeleteVolume of that volume. The
// interleaving is forced: the test holds x's io_gate so that DeleteVolume
// waits for it; a write to y raises LOW_WATER, whose handler keeps the
// metadata lock; the test lets DeleteVolume take the gate (it then waits for
// the metadata lock) and starts `op`, whose lookup waits for the metadata
// lock too. When the handler returns, `op` finds x, DeleteVolume deletes it,
// and `op` gets the gate only after x is gone: it must see that.
Status RaceWithDelete(const std::function<Status(Pool*)>& op, uint64_t* used_after, Status* check) {
  PoolOptions o;
  o.block_size = kBS;
  o.size = 10 * kBS;
  o.low_water_percent = 50;
  std::unique_ptr<Pool> pool;
  EXPECT_TRUE(Pool::Open(o, &pool).ok());
  EXPECT_TRUE(pool->CreateVolume("x", 4 * kBS, std::nullopt).ok());
  EXPECT_TRUE(pool->CreateVolume("y", 8 * kBS, std::nullopt).ok());
  std::promise<void> entered, release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<bool> armed{true};
  pool->SetEventHandler([&](const PoolEvent& e) {
    if (e.name == "LOW_WATER" && armed.exchange(false)) {
      entered.set_value();
      released.wait();
    }
  });
  std::shared_ptr<Volume> x, y;
  EXPECT_TRUE(pool->OpenVolume("x", false, &x).ok());
  pool->CloseVolume(x, false);
  EXPECT_TRUE(pool->OpenVolume("y", true, &y).ok());

  x->io_gate.lock_shared();  // as an in-flight request would
  auto deleter = std::async(std::launch::async, [&] { return pool->DeleteVolume("x"); });
  std::this_thread::sleep_for(200ms);  // DeleteVolume waits for the gate
  Bytes data(6 * kBS, 1);              // free 10 -> 4, below 50%: LOW_WATER
  auto writer = std::async(std::launch::async, [&] { return pool->Write(*y, data.data(), data.size(), 0); });
  entered.get_future().wait();         // the metadata lock is held
  x->io_gate.unlock_shared();
  std::this_thread::sleep_for(200ms);  // DeleteVolume has the gate, waits for the metadata lock
  auto racer = std::async(std::launch::async, [&] { return op(pool.get()); });
  std::this_thread::sleep_for(200ms);  // op's lookup waits for the metadata lock
  release.set_value();
  Status deleted = deleter.get();
  Status written = writer.get();
  Status result = racer.get();
  EXPECT_TRUE(deleted.ok()) << deleted.ToString();
  EXPECT_TRUE(written.ok()) << written.ToString();
  pool->CloseVolume(y, true);
  VolumeInfo info;
  EXPECT_EQ(pool->QueryVolume("x", &info).code(), ErrorCode::kNotFound);
  *used_after = pool->QueryPool().used_blocks;
  *check = pool->TEST_CheckCounters();
  pool->SetEventHandler(nullptr);
  return result;
}

TEST(PoolDeleteRaceTest, ProvisionOfVolumeDeletedMeanwhileChangesNothing) {
  for (int round = 0; round < 3; ++round) {
    uint64_t used;
    Status check;
    Status s = RaceWithDelete([](Pool* p) { return p->Provision("x", 0, 2 * kBS); }, &used, &check);
    EXPECT_EQ(s.code(), ErrorCode::kNotFound) << s.ToString();
    EXPECT_TRUE(check.ok()) << check.ToString();
    EXPECT_EQ(used, 6u) << "blocks provisioned into the deleted volume leaked";
  }
}

TEST(PoolDeleteRaceTest, ResizeOfVolumeDeletedMeanwhileIsNotFound) {
  for (uint64_t size : {8 * kBS, 2 * kBS, 4 * kBS + 512}) {
    uint64_t used;
    Status check;
    Status s = RaceWithDelete([size](Pool* p) { return p->ResizeVolume("x", size); }, &used, &check);
    EXPECT_EQ(s.code(), ErrorCode::kNotFound) << s.ToString();
    EXPECT_TRUE(check.ok()) << check.ToString();
    EXPECT_EQ(used, 6u);
  }
}

// Growing a volume whose old size ends inside a block zeroes that block's
// stale tail first, and the zero may need a block of its own (the tail block
// is shared with a snapshot). Writers of another volume keep the pool at
// the edge of full meanwhile. Whatever they take, a resize that fails must
// have changed nothing: the grown volume's counters are as they were.
TEST(PoolResizeRaceTest, GrowthRacingOtherVolumesAllocationsFailsBeforeChangingAnything) {
  PoolOptions o;
  o.block_size = kBS;
  o.size = 40 * kBS;
  std::unique_ptr<Pool> pool;
  ASSERT_TRUE(Pool::Open(o, &pool).ok());
  const uint64_t small = 10 * kBS + 512, large = 20 * kBS + 512;  // 11 and 21 vblocks
  ASSERT_TRUE(pool->CreateVolume("r", small, Strategy::kFull).ok());
  ASSERT_TRUE(pool->CreateVolume("w", 64 * kBS, Strategy::kNone).ok());
  {
    std::shared_ptr<Volume> r;
    ASSERT_TRUE(pool->OpenVolume("r", true, &r).ok());
    Bytes data(small, 0x5a);
    ASSERT_TRUE(pool->Write(*r, data.data(), data.size(), 0).ok());
    pool->CloseVolume(r, true);
  }
  std::shared_ptr<Volume> w;
  ASSERT_TRUE(pool->OpenVolume("w", true, &w).ok());

  const auto deadline = std::chrono::steady_clock::now() + 3s;
  std::atomic<bool> stop{false};
  auto writer = [&](uint64_t seed) {
    std::mt19937_64 rng(seed);
    Bytes block(kBS, 0x77);
    while (!stop) {
      uint64_t vb = rng() % 64;
      Status s = pool->Write(*w, block.data(), kBS, vb * kBS);
      if (s.code() == ErrorCode::kNoSpace) {  // full: free up to half of w
        uint64_t first = rng() % 32;
        s = pool->Trim(*w, 32 * kBS, first * kBS);
      }
      if (!s.ok() && s.code() != ErrorCode::kNoSpace) ADD_FAILURE() << s.ToString();
    }
  };
  std::thread w1(writer, 1), w2(writer, 2);

  auto counters = [&](VolumeInfo* info) {
    EXPECT_TRUE(pool->QueryVolume("r", info).ok());
    return std::to_string(info->size) + " mapped " + std::to_string(info->mapped_blocks) + " exclusive " +
           std::to_string(info->exclusive_blocks) + " shared " + std::to_string(info->shared_blocks) +
           " reserved " + std::to_string(info->reserved_blocks);
  };
  int grown = 0, refused = 0;
  while (std::chrono::steady_clock::now() < deadline && !::testing::Test::HasFailure()) {
    if (!pool->CreateSnapshots({{"r", "s"}}, /*read_only=*/true).ok()) continue;  // no room: again
    VolumeInfo before, after;
    std::string want = counters(&before);
    Status s = pool->ResizeVolume("r", large);
    if (s.ok()) {
      ++grown;
      ASSERT_TRUE(pool->ResizeVolume("r", small).ok());
    } else {
      ++refused;
      EXPECT_EQ(s.code(), ErrorCode::kNoSpace) << s.ToString();
      EXPECT_EQ(counters(&after), want) << "a refused resize changed the volume";
    }
    ASSERT_TRUE(pool->DeleteVolume("s").ok());
  }
  stop = true;
  w1.join();
  w2.join();
  pool->CloseVolume(w, true);
  EXPECT_TRUE(pool->TEST_CheckCounters().ok());
  std::printf("resizes: %d grown, %d refused\n", grown, refused);
  EXPECT_GT(grown + refused, 0);
}

}  // namespace
}  // namespace thinsim
