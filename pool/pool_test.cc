// Unit tests of the engine's operations on small in-memory pools.
#include "pool/pool.h"
#include "base/status_test_util.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "pool/volume.h"

namespace thinsim {
namespace {

using namespace std::chrono_literals;
using Bytes = std::vector<uint8_t>;

constexpr uint32_t kBS = 4096;
constexpr uint32_t kHoleZero = Extent::kHole | Extent::kZero;

// Non-zero bytes that differ between seeds.
Bytes Pattern(int seed, size_t n) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>((seed * 131 + i * 7 + i / 251) % 255 + 1);
  return b;
}

bool AllZero(const Bytes& b) {
  for (uint8_t x : b) {
    if (x != 0) return false;
  }
  return true;
}

void Put(Bytes* image, uint64_t off, const Bytes& data) {
  std::copy(data.begin(), data.end(), image->begin() + static_cast<long>(off));
}
void Clear(Bytes* image, uint64_t off, uint64_t len) {
  std::fill(image->begin() + static_cast<long>(off), image->begin() + static_cast<long>(off + len), 0);
}

// An open connection, closed at the end of scope.
class Conn {
 public:
  Conn(Pool* pool, std::shared_ptr<Volume> v, bool writable) : pool_(pool), v_(std::move(v)), writable_(writable) {}
  ~Conn() { pool_->CloseVolume(v_, writable_); }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;
  Volume& operator*() const { return *v_; }
  const std::shared_ptr<Volume>& get() const { return v_; }

 private:
  Pool* pool_;
  std::shared_ptr<Volume> v_;
  bool writable_;
};

class PoolTest : public ::testing::Test {
 protected:
  void SetUp() override { OpenPool(32); }

  void OpenPool(uint64_t blocks, PoolOptions options = {}) {
    pool_.reset();
    options.block_size = kBS;
    options.size = blocks * kBS;
    Status s = Pool::Open(options, &pool_);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  void Create(const std::string& name, uint64_t blocks) {
    Status s = pool_->CreateVolume(name, blocks * kBS, std::nullopt);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  void Snap(const std::string& origin, const std::string& name, bool read_only = false) {
    Status s = pool_->CreateSnapshots({{origin, name}}, read_only);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  std::unique_ptr<Conn> Open(const std::string& name, bool writable = true) {
    std::shared_ptr<Volume> v;
    Status s = pool_->OpenVolume(name, writable, &v);
    EXPECT_TRUE(s.ok()) << name << ": " << s.ToString();
    if (!s.ok()) return nullptr;
    return std::make_unique<Conn>(pool_.get(), std::move(v), writable);
  }

  Status Write(const std::string& name, uint64_t off, const Bytes& data) {
    auto c = Open(name);
    if (!c) return Status::NotFound(name);
    return pool_->Write(**c, data.data(), data.size(), off);
  }
  Status Trim(const std::string& name, uint64_t off, uint64_t len) {
    auto c = Open(name);
    if (!c) return Status::NotFound(name);
    return pool_->Trim(**c, len, off);
  }
  Status Flush() { return pool_->Flush(); }
  Status Zero(const std::string& name, uint64_t off, uint64_t len, unsigned flags) {
    auto c = Open(name);
    if (!c) return Status::NotFound(name);
    return pool_->Zero(**c, len, off, flags);
  }
  Bytes Read(const std::string& name, uint64_t off, uint64_t len) {
    auto c = Open(name, false);
    Bytes out(len, 0xEE);
    if (!c) return out;
    Status s = pool_->Read(**c, out.data(), len, off);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  }
  Bytes ReadAll(const std::string& name) { return Read(name, 0, Info(name).size); }
  std::vector<Extent> Extents(const std::string& name, uint64_t off, uint64_t len,
                              ExtentsMode mode = ExtentsMode::kAllocation) {
    auto c = Open(name, false);
    std::vector<Extent> out;
    if (!c) return out;
    Status s = pool_->Extents(**c, len, off, &out, mode);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  }

  VolumeInfo Info(const std::string& name) {
    VolumeInfo info;
    Status s = pool_->QueryVolume(name, &info);
    EXPECT_TRUE(s.ok()) << name << ": " << s.ToString();
    return info;
  }
  uint64_t Used() { return pool_->QueryPool().used_blocks; }
  uint64_t Free() { return pool_->QueryPool().free_blocks; }

  // Checks the counters of `name` and the pool's internal consistency.
  void ExpectCounts(const std::string& name, uint64_t mapped, uint64_t exclusive, uint64_t provisioned) {
    SCOPED_TRACE(name);
    VolumeInfo info = Info(name);
    EXPECT_EQ(info.mapped_blocks, mapped);
    EXPECT_EQ(info.exclusive_blocks, exclusive);
    EXPECT_EQ(info.shared_blocks, mapped - exclusive);
    EXPECT_EQ(info.provisioned_blocks, provisioned);
    Check();
  }
  void Check() {
    Status s = pool_->TEST_CheckCounters();
    EXPECT_TRUE(s.ok()) << s.ToString();
    PoolInfo p = pool_->QueryPool();
    EXPECT_EQ(p.used_blocks + p.free_blocks, p.total_blocks);
  }

  std::unique_ptr<Pool> pool_;
};

// ---- Opening and the control plane ------------------------------------------

TEST(PoolOpenTest, ValidatesOptions) {
  std::unique_ptr<Pool> pool;
  PoolOptions o;
  o.size = 1 << 20;
  for (uint32_t bs : {0u, 512u, 2048u, 4095u, 12288u, 3u << 20, 1u << 31}) {
    o.block_size = bs;
    EXPECT_CODE(Pool::Open(o, &pool), kInvalid);
  }
  o.block_size = 64 * 1024;
  o.size = 64 * 1024 - 1;  // smaller than one block
  EXPECT_CODE(Pool::Open(o, &pool), kInvalid);
  o.size = 0;
  EXPECT_CODE(Pool::Open(o, &pool), kInvalid);
  o.size = 1 << 20;
  o.low_water_percent = 101;
  EXPECT_CODE(Pool::Open(o, &pool), kInvalid);
  EXPECT_EQ(pool, nullptr);

  o.low_water_percent = 10;
  o.size = (1 << 20) + 100;  // a partial block at the end is not capacity
  ASSERT_OK(Pool::Open(o, &pool));
  PoolInfo info = pool->QueryPool();
  EXPECT_EQ(info.block_size, 64u * 1024);
  EXPECT_EQ(info.total_blocks, 16u);
  EXPECT_EQ(info.used_blocks, 0u);
  EXPECT_EQ(info.free_blocks, 16u);
  EXPECT_EQ(info.mode, PoolMode::kWrite);
  EXPECT_FALSE(info.persistent);
  EXPECT_EQ(info.nr_volumes, 0u);
  EXPECT_EQ(pool->block_size(), 64u * 1024);
  EXPECT_EQ(pool->DefaultVolumeName(), "");
}

TEST_F(PoolTest, CreateVolumeValidatesNameAndSize) {
  EXPECT_CODE(pool_->CreateVolume("", kBS, std::nullopt), kInvalid);
  EXPECT_CODE(pool_->CreateVolume(std::string(65, 'a'), kBS, std::nullopt), kInvalid);
  EXPECT_CODE(pool_->CreateVolume("bad name", kBS, std::nullopt), kInvalid);
  EXPECT_CODE(pool_->CreateVolume("a/b", kBS, std::nullopt), kInvalid);
  EXPECT_CODE(pool_->CreateVolume("v", 0, std::nullopt), kInvalid);
  EXPECT_CODE(pool_->CreateVolume("v", 1000, std::nullopt), kInvalid);
  EXPECT_CODE(pool_->CreateVolume("v", kMaxVolumeSize + 512, std::nullopt), kInvalid);
  EXPECT_CODE(pool_->CreateVolume("v", (uint64_t{1} << 31) * kBS + 512, std::nullopt), kInvalid);
  EXPECT_EQ(pool_->QueryPool().nr_volumes, 0u);

  ASSERT_OK(pool_->CreateVolume(std::string(64, 'a'), 512, std::nullopt));
  ASSERT_OK(pool_->CreateVolume("v", 100 * kBS, Strategy::kNone));
  EXPECT_CODE(pool_->CreateVolume("v", kBS, std::nullopt), kExists);
  // Overcommit is fine: 100 blocks on a 32-block pool.
  VolumeInfo info = Info("v");
  EXPECT_EQ(info.name, "v");
  EXPECT_EQ(info.size, 100u * kBS);
  EXPECT_EQ(info.strategy, Strategy::kNone);
  EXPECT_FALSE(info.read_only);
  EXPECT_FALSE(info.active);
  EXPECT_FALSE(info.origin.has_value());
  EXPECT_EQ(info.mapped_blocks, 0u);
  EXPECT_EQ(Info(std::string(64, 'a')).size, 512u);
  EXPECT_EQ(pool_->QueryPool().nr_volumes, 2u);
  Check();
}

TEST_F(PoolTest, UnknownNamesAreNotFound) {
  std::shared_ptr<Volume> v;
  VolumeInfo info;
  EXPECT_CODE(pool_->OpenVolume("nope", false, &v), kNotFound);
  EXPECT_CODE(pool_->QueryVolume("nope", &info), kNotFound);
  EXPECT_CODE(pool_->DeleteVolume("nope"), kNotFound);
  EXPECT_CODE(pool_->ResizeVolume("nope", kBS), kNotFound);
  EXPECT_CODE(pool_->Provision("nope", 0, kBS), kNotFound);
  EXPECT_CODE(pool_->CreateSnapshots({{"nope", "s"}}, false), kNotFound);
}

TEST_F(PoolTest, DefaultVolumeAndCreationOrder) {
  Create("b", 4);
  Create("a", 4);
  Snap("b", "c");
  EXPECT_EQ(pool_->DefaultVolumeName(), "b");
  std::vector<VolumeInfo> all = pool_->QueryVolumes();
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].name, "b");
  EXPECT_EQ(all[1].name, "a");
  EXPECT_EQ(all[2].name, "c");
  EXPECT_EQ(all[2].origin, "b");
  ASSERT_OK(pool_->DeleteVolume("b"));
  EXPECT_EQ(pool_->DefaultVolumeName(), "a");
  EXPECT_FALSE(Info("c").origin.has_value());  // its origin is gone
}

TEST_F(PoolTest, ConnectionsAreCounted) {
  Create("v", 4);
  {
    auto rw = Open("v", true);
    auto ro = Open("v", false);
    VolumeInfo info = Info("v");
    EXPECT_EQ(info.connections, 2u);
    EXPECT_EQ(info.writable_connections, 1u);
    EXPECT_TRUE(info.active);
    EXPECT_EQ(pool_->VolumeSize(**rw), 4u * kBS);
    EXPECT_FALSE(pool_->VolumeReadOnly(**rw));
  }
  VolumeInfo info = Info("v");
  EXPECT_EQ(info.connections, 0u);
  EXPECT_FALSE(info.active);
  {
    auto ro = Open("v", false);
    EXPECT_FALSE(Info("v").active);  // read-only connections do not activate
  }
}

TEST_F(PoolTest, BusyOnDeleteAndShrinkWithOpenConnection) {
  Create("v", 8);
  ASSERT_OK(Write("v", 0, Pattern(1, 8 * kBS)));
  for (bool writable : {true, false}) {
    SCOPED_TRACE(writable);
    auto c = Open("v", writable);
    EXPECT_CODE(pool_->DeleteVolume("v"), kBusy);
    EXPECT_CODE(pool_->ResizeVolume("v", 4 * kBS), kBusy);
    // Growing is allowed online.
    ASSERT_OK(pool_->ResizeVolume("v", 9 * kBS));
    EXPECT_EQ(pool_->VolumeSize(**c), 9u * kBS);
    EXPECT_CODE(pool_->ResizeVolume("v", 8 * kBS), kBusy);
    EXPECT_EQ(Info("v").size, 9u * kBS);
    EXPECT_EQ(Read("v", 0, 8 * kBS), Pattern(1, 8 * kBS));
  }
  ASSERT_OK(pool_->ResizeVolume("v", 8 * kBS));
  ASSERT_OK(pool_->DeleteVolume("v"));
  EXPECT_EQ(Used(), 0u);
  Check();
}

// ---- Reads and writes -----------------------------------------------------------

TEST_F(PoolTest, UnwrittenVolumeReadsZero) {
  Create("v", 10);
  EXPECT_TRUE(AllZero(ReadAll("v")));
  EXPECT_TRUE(AllZero(Read("v", 123, 4567)));
  ExpectCounts("v", 0, 0, 0);
  EXPECT_EQ(Used(), 0u);
}

TEST_F(PoolTest, FirstWriteAllocatesAndRestOfBlockReadsZero) {
  Create("v", 10);
  Bytes data = Pattern(1, 100);
  ASSERT_OK(Write("v", 3 * kBS + 1000, data));
  EXPECT_EQ(Used(), 1u);
  ExpectCounts("v", 1, 1, 0);
  Bytes block = Read("v", 3 * kBS, kBS);
  Bytes want(kBS, 0);
  Put(&want, 1000, data);
  EXPECT_EQ(block, want);
  EXPECT_TRUE(AllZero(Read("v", 0, 3 * kBS)));
  EXPECT_TRUE(AllZero(Read("v", 4 * kBS, 6 * kBS)));
}

TEST_F(PoolTest, PartialWritesAtBothEndsOfARequest) {
  Create("v", 10);
  Bytes image(10 * kBS, 0);
  // Into holes: first block written from its middle, last block up to its middle.
  Bytes a = Pattern(1, 2 * kBS + 200);
  ASSERT_OK(Write("v", kBS - 100, a));
  Put(&image, kBS - 100, a);
  EXPECT_EQ(Used(), 4u);  // blocks 0..3
  ExpectCounts("v", 4, 4, 0);
  EXPECT_EQ(ReadAll("v"), image);

  // Over existing data: the bytes outside the request survive.
  Bytes full = Pattern(2, 4 * kBS);
  ASSERT_OK(Write("v", 4 * kBS, full));
  Put(&image, 4 * kBS, full);
  Bytes b = Pattern(3, 2 * kBS + 2);
  ASSERT_OK(Write("v", 5 * kBS - 1, b));
  Put(&image, 5 * kBS - 1, b);
  EXPECT_EQ(ReadAll("v"), image);
  EXPECT_EQ(Used(), 8u);

  // Single bytes at both edges of a block.
  ASSERT_OK(Write("v", 9 * kBS, Bytes{7}));
  ASSERT_OK(Write("v", 10 * kBS - 1, Bytes{9}));
  image[9 * kBS] = 7;
  image[10 * kBS - 1] = 9;
  EXPECT_EQ(ReadAll("v"), image);
  ExpectCounts("v", 9, 9, 0);

  // Unaligned reads of every shape agree with the image.
  for (uint64_t off : {0ul, 1ul, 4095ul, 4096ul, 5000ul, 20000ul}) {
    for (uint64_t len : {1ul, 511ul, 4096ul, 9000ul}) {
      if (off + len > image.size()) continue;
      EXPECT_EQ(Read("v", off, len), Bytes(image.begin() + off, image.begin() + off + len)) << off << "+" << len;
    }
  }
}

TEST_F(PoolTest, RequestSpanningManyBlocks) {
  OpenPool(64);
  Create("v", 48);
  Bytes data = Pattern(5, 40 * kBS + 777);
  ASSERT_OK(Write("v", 3 * kBS + 123, data));
  EXPECT_EQ(Used(), 41u);  // blocks 3..43
  ExpectCounts("v", 41, 41, 0);
  Bytes image(48 * kBS, 0);
  Put(&image, 3 * kBS + 123, data);
  EXPECT_EQ(ReadAll("v"), image);
  EXPECT_EQ(Read("v", 3 * kBS + 123, data.size()), data);
}

TEST_F(PoolTest, OverwriteOfExclusiveBlockIsInPlace) {
  Create("v", 4);
  ASSERT_OK(Write("v", 0, Pattern(1, 4 * kBS)));
  EXPECT_EQ(Used(), 4u);
  ASSERT_OK(Write("v", 100, Pattern(2, 3 * kBS)));
  ASSERT_OK(Write("v", 0, Pattern(3, kBS)));
  EXPECT_EQ(Used(), 4u);  // no new block
  ExpectCounts("v", 4, 4, 0);
  Bytes image = Pattern(1, 4 * kBS);
  Put(&image, 100, Pattern(2, 3 * kBS));
  Put(&image, 0, Pattern(3, kBS));
  EXPECT_EQ(ReadAll("v"), image);
}

TEST_F(PoolTest, ZeroLengthRequestsAreNoOps) {
  Create("v", 4);
  auto c = Open("v");
  ASSERT_OK(pool_->Write(**c, nullptr, 0, 4 * kBS));
  ASSERT_OK(pool_->Read(**c, nullptr, 0, 0));
  ASSERT_OK(pool_->Trim(**c, 0, 0));
  ASSERT_OK(pool_->Zero(**c, 0, 0, 0));
  std::vector<Extent> ext;
  ASSERT_OK(pool_->Extents(**c, 0, 0, &ext));
  EXPECT_TRUE(ext.empty());
  ASSERT_OK(pool_->Flush());
  EXPECT_EQ(Used(), 0u);
}

TEST_F(PoolTest, OutOfRangeRequestsAreInvalid) {
  Create("v", 4);
  auto c = Open("v");
  Bytes buf(2 * kBS);
  EXPECT_CODE(pool_->Write(**c, buf.data(), 2 * kBS, 3 * kBS), kInvalid);
  EXPECT_CODE(pool_->Read(**c, buf.data(), 1, 4 * kBS), kInvalid);
  EXPECT_CODE(pool_->Read(**c, buf.data(), 2, 4 * kBS - 1), kInvalid);
  EXPECT_CODE(pool_->Zero(**c, 2 * kBS, 3 * kBS, Pool::kMayTrim), kInvalid);
  EXPECT_CODE(pool_->Zero(**c, 2 * kBS, 3 * kBS, 0), kInvalid);
  EXPECT_CODE(pool_->Trim(**c, 2 * kBS, 3 * kBS), kInvalid);
  EXPECT_CODE(pool_->Write(**c, buf.data(), 1, UINT64_MAX), kInvalid);
  EXPECT_CODE(pool_->Write(**c, buf.data(), UINT64_MAX, 1), kInvalid);
  EXPECT_CODE(pool_->Provision("v", 3 * kBS, 2 * kBS), kInvalid);
  std::vector<Extent> ext;
  EXPECT_CODE(pool_->Extents(**c, 2, 4 * kBS - 1, &ext), kInvalid);
  EXPECT_EQ(Used(), 0u);
  Check();
}

TEST_F(PoolTest, VolumeWithPartialLastBlock) {
  ASSERT_OK(pool_->CreateVolume("v", 3 * kBS + 1024, std::nullopt));
  Bytes data = Pattern(1, kBS);
  ASSERT_OK(Write("v", 2 * kBS + 1024, data));
  Bytes image(3 * kBS + 1024, 0);
  Put(&image, 2 * kBS + 1024, data);
  EXPECT_EQ(ReadAll("v"), image);
  ExpectCounts("v", 2, 2, 0);
  auto c = Open("v");
  Bytes buf(1);
  EXPECT_CODE(pool_->Write(**c, buf.data(), 1, 3 * kBS + 1024), kInvalid);
  std::vector<Extent> ext;
  ASSERT_OK(pool_->Extents(**c, 3 * kBS + 1024, 0, &ext));
  ASSERT_EQ(ext.size(), 2u);
  EXPECT_EQ(ext[0].offset, 0u);
  EXPECT_EQ(ext[0].length, 2u * kBS);
  EXPECT_EQ(ext[0].type, kHoleZero);
  EXPECT_EQ(ext[1].offset, 2u * kBS);
  EXPECT_EQ(ext[1].length, kBS + 1024u);
  EXPECT_EQ(ext[1].type, 0u);
}

// ---- Snapshots ----------------------------------------------------------------

TEST_F(PoolTest, SnapshotIsolationBothDirections) {
  Create("v", 8);
  Bytes base = Pattern(1, 4 * kBS);
  ASSERT_OK(Write("v", 0, base));
  Snap("v", "s");
  EXPECT_EQ(Used(), 4u);  // a snapshot costs no blocks
  ExpectCounts("v", 4, 0, 0);
  ExpectCounts("s", 4, 0, 0);
  EXPECT_EQ(Info("s").origin, "v");
  EXPECT_EQ(Info("s").size, 8u * kBS);

  Bytes v_image(8 * kBS, 0), s_image(8 * kBS, 0);
  Put(&v_image, 0, base);
  Put(&s_image, 0, base);

  // Origin -> snapshot: a partial write to block 1 copies the block.
  Bytes w1 = Pattern(2, 10);
  ASSERT_OK(Write("v", kBS + 5, w1));
  Put(&v_image, kBS + 5, w1);
  EXPECT_EQ(Used(), 5u);
  ExpectCounts("v", 4, 1, 0);
  ExpectCounts("s", 4, 1, 0);  // the old block 1 is the snapshot's alone now
  EXPECT_EQ(ReadAll("v"), v_image);
  EXPECT_EQ(ReadAll("s"), s_image);

  // Snapshot -> origin.
  Bytes w2 = Pattern(3, kBS + 2);
  ASSERT_OK(Write("s", 2 * kBS - 1, w2));  // blocks 1, 2, 3 of s
  Put(&s_image, 2 * kBS - 1, w2);
  EXPECT_EQ(Used(), 7u);  // block 1 of s was already exclusive: in place
  ExpectCounts("s", 4, 3, 0);
  ExpectCounts("v", 4, 3, 0);
  EXPECT_EQ(ReadAll("v"), v_image);
  EXPECT_EQ(ReadAll("s"), s_image);

  // Writes to holes are private as well.
  ASSERT_OK(Write("s", 6 * kBS, Pattern(4, kBS)));
  Put(&s_image, 6 * kBS, Pattern(4, kBS));
  EXPECT_EQ(ReadAll("v"), v_image);
  EXPECT_EQ(ReadAll("s"), s_image);
  ExpectCounts("s", 5, 4, 0);
  ExpectCounts("v", 4, 3, 0);
}

TEST_F(PoolTest, WholeBlockWriteToSharedBlockNeedsNoCopy) {
  Create("v", 2);
  ASSERT_OK(Write("v", 0, Pattern(1, 2 * kBS)));
  Snap("v", "s");
  ASSERT_OK(Write("v", 0, Pattern(2, kBS)));
  EXPECT_EQ(Read("v", 0, 2 * kBS), [] {
    Bytes b = Pattern(1, 2 * kBS);
    Put(&b, 0, Pattern(2, kBS));
    return b;
  }());
  EXPECT_EQ(ReadAll("s"), Pattern(1, 2 * kBS));
  EXPECT_EQ(Used(), 3u);
  ExpectCounts("v", 2, 1, 0);
}

TEST_F(PoolTest, SnapshotOfSnapshotDepthFour) {
  Create("v", 8);
  std::vector<std::string> names = {"v", "s1", "s2", "s3", "s4"};
  std::vector<Bytes> images;
  Bytes image(8 * kBS, 0);
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) Snap(names[i - 1], names[i]);
    // Write one new block and overwrite part of block 0 in the newest one.
    Bytes d = Pattern(static_cast<int>(i) + 10, kBS / 2);
    ASSERT_OK(Write(names[i], i * kBS + 100, d));
    Put(&image, i * kBS + 100, d);
    Bytes e = Pattern(static_cast<int>(i) + 20, 50);
    ASSERT_OK(Write(names[i], 7, e));
    Put(&image, 7, e);
    images.push_back(image);
  }
  for (size_t i = 0; i < names.size(); ++i) {
    SCOPED_TRACE(names[i]);
    EXPECT_EQ(ReadAll(names[i]), images[i]);
    EXPECT_EQ(Info(names[i]).mapped_blocks, i + 1);
    if (i > 0) {
      EXPECT_EQ(Info(names[i]).origin, names[i - 1]);
    }
  }
  // Each level wrote one new block and copied block 0: 5 + 4 copies.
  EXPECT_EQ(Used(), 9u);
  // s4 (the newest) owns its block 0 and block 4; every other block it shares.
  ExpectCounts("s4", 5, 2, 0);
  // v: block 0 (own copy since s1 took it), everything else... v only has blocks 0 and 1.
  ExpectCounts("v", 1, 1, 0);
  // Deleting a middle level keeps the others intact.
  ASSERT_OK(pool_->DeleteVolume("s2"));
  for (size_t i : {0u, 1u, 3u, 4u}) EXPECT_EQ(ReadAll(names[i]), images[i]) << names[i];
  Check();
  EXPECT_FALSE(Info("s3").origin.has_value());
}

TEST_F(PoolTest, SnapshotAfterOriginDiverged) {
  Create("v", 4);
  ASSERT_OK(Write("v", 0, Pattern(1, 4 * kBS)));
  Snap("v", "s1");
  ASSERT_OK(Write("v", 0, Pattern(2, kBS)));  // v: block 0 exclusive
  Snap("v", "s2");                             // every v block shared again
  ExpectCounts("v", 4, 0, 0);
  ExpectCounts("s1", 4, 1, 0);  // s1's old block 0 is still only its own
  ExpectCounts("s2", 4, 0, 0);
  EXPECT_EQ(Used(), 5u);
}

TEST_F(PoolTest, DeletingOriginKeepsSnapshotsAndFreesOnlyUnownedBlocks) {
  Create("v", 8);
  Bytes base = Pattern(1, 4 * kBS);
  ASSERT_OK(Write("v", 0, base));
  Snap("v", "s");
  ASSERT_OK(Write("v", 0, Pattern(2, kBS)));      // breaks block 0: +1
  ASSERT_OK(Write("v", 5 * kBS, Pattern(3, kBS)));  // private hole: +1
  EXPECT_EQ(Used(), 6u);
  ExpectCounts("v", 5, 2, 0);
  ExpectCounts("s", 4, 1, 0);

  ASSERT_OK(pool_->DeleteVolume("v"));
  EXPECT_EQ(Used(), 4u);  // v's two private blocks are freed
  ExpectCounts("s", 4, 4, 0);
  Bytes s_image(8 * kBS, 0);
  Put(&s_image, 0, base);
  EXPECT_EQ(ReadAll("s"), s_image);
  std::shared_ptr<Volume> gone;
  EXPECT_CODE(pool_->OpenVolume("v", false, &gone), kNotFound);
  // The name can be reused; the new volume is empty.
  Create("v", 2);
  EXPECT_TRUE(AllZero(ReadAll("v")));
  ASSERT_OK(pool_->DeleteVolume("s"));
  ASSERT_OK(pool_->DeleteVolume("v"));
  EXPECT_EQ(Used(), 0u);
  EXPECT_EQ(pool_->QueryPool().nr_volumes, 0u);
  Check();
}

TEST_F(PoolTest, DeleteWithThreeOwnersHandsBlocksToTheLastOwner) {
  Create("v", 70);  // two chunks
  ASSERT_OK(Write("v", 0, Pattern(1, kBS)));
  ASSERT_OK(Write("v", 65 * kBS, Pattern(2, kBS)));
  Snap("v", "a");
  Snap("v", "b");
  ExpectCounts("a", 2, 0, 0);
  ASSERT_OK(pool_->DeleteVolume("v"));
  ExpectCounts("a", 2, 0, 0);
  ExpectCounts("b", 2, 0, 0);
  ASSERT_OK(Write("a", 65 * kBS + 1, Pattern(3, 1)));  // unshares chunk 1 of a
  ExpectCounts("a", 2, 1, 0);
  ExpectCounts("b", 2, 1, 0);
  ASSERT_OK(pool_->DeleteVolume("a"));
  ExpectCounts("b", 2, 2, 0);
  EXPECT_EQ(Used(), 2u);
  EXPECT_EQ(Read("b", 0, kBS), Pattern(1, kBS));
  EXPECT_EQ(Read("b", 65 * kBS, kBS), Pattern(2, kBS));
}

TEST_F(PoolTest, ReadOnlySnapshotRefusesChanges) {
  Create("v", 4);
  ASSERT_OK(Write("v", 0, Pattern(1, 2 * kBS)));
  Snap("v", "ro", /*read_only=*/true);
  VolumeInfo info = Info("ro");
  EXPECT_TRUE(info.read_only);
  std::shared_ptr<Volume> h;
  EXPECT_CODE(pool_->OpenVolume("ro", true, &h), kReadOnly);
  EXPECT_EQ(Info("ro").connections, 0u);
  auto c = Open("ro", false);
  EXPECT_TRUE(pool_->VolumeReadOnly(**c));
  Bytes buf = Pattern(2, kBS);
  EXPECT_CODE(pool_->Write(**c, buf.data(), kBS, 0), kReadOnly);
  EXPECT_CODE(pool_->Write(**c, buf.data(), kBS, 3 * kBS), kReadOnly);
  EXPECT_CODE(pool_->Trim(**c, 4 * kBS, 0), kReadOnly);
  EXPECT_CODE(pool_->Zero(**c, 4 * kBS, 0, Pool::kMayTrim), kReadOnly);
  EXPECT_CODE(pool_->Zero(**c, 4 * kBS, 0, 0), kReadOnly);
  EXPECT_CODE(pool_->Zero(**c, kBS, 0, Pool::kMayTrim | Pool::kFastZero), kReadOnly);
  EXPECT_CODE(pool_->Provision("ro", 0, kBS), kReadOnly);
  EXPECT_CODE(pool_->ResizeVolume("ro", 8 * kBS), kReadOnly);
  c.reset();
  Bytes image(4 * kBS, 0);
  Put(&image, 0, Pattern(1, 2 * kBS));
  EXPECT_EQ(ReadAll("ro"), image);
  EXPECT_EQ(Used(), 2u);
  ExpectCounts("ro", 2, 0, 0);
  // A snapshot of a read-only snapshot may be writable.
  Snap("ro", "rw");
  ASSERT_OK(Write("rw", 0, Pattern(3, 10)));
  EXPECT_EQ(ReadAll("ro"), image);
  // And read-only snapshots can be deleted.
  ASSERT_OK(pool_->DeleteVolume("ro"));
  Check();
}

TEST_F(PoolTest, SnapshotValidationAndAllOrNothing) {
  Create("a", 4);
  Create("b", 4);
  ASSERT_OK(Write("a", 0, Pattern(1, kBS)));
  EXPECT_CODE(pool_->CreateSnapshots({}, false), kInvalid);
  EXPECT_CODE(pool_->CreateSnapshots({{"a", "bad name"}}, false), kInvalid);
  EXPECT_CODE(pool_->CreateSnapshots({{"a", ""}}, false), kInvalid);
  EXPECT_CODE(pool_->CreateSnapshots({{"a", "x"}, {"b", "x"}}, false), kInvalid);
  EXPECT_CODE(pool_->CreateSnapshots({{"a", "b"}}, false), kExists);
  EXPECT_CODE(pool_->CreateSnapshots({{"a", "a"}}, false), kExists);
  // One bad request fails them all.
  EXPECT_CODE(pool_->CreateSnapshots({{"a", "a1"}, {"missing", "m1"}}, false), kNotFound);
  EXPECT_CODE(pool_->CreateSnapshots({{"a", "a1"}, {"b", "a"}}, false), kExists);
  EXPECT_EQ(pool_->QueryPool().nr_volumes, 2u);
  ExpectCounts("a", 1, 1, 0);

  ASSERT_OK(pool_->CreateSnapshots({{"a", "a1"}, {"b", "b1"}, {"a", "a2"}}, true));
  EXPECT_EQ(pool_->QueryPool().nr_volumes, 5u);
  EXPECT_TRUE(Info("a1").read_only);
  EXPECT_TRUE(Info("b1").read_only);
  EXPECT_EQ(Info("a2").origin, "a");
  ExpectCounts("a", 1, 0, 0);
  ExpectCounts("a1", 1, 0, 0);
  ExpectCounts("a2", 1, 0, 0);
  ExpectCounts("b1", 0, 0, 0);
  EXPECT_EQ(Read("a2", 0, kBS), Pattern(1, kBS));
  EXPECT_EQ(Used(), 1u);
}

// ---- Trim -------------------------------------------------------------------------

TEST_F(PoolTest, TrimUnmapsWholeBlocksAndFreesThem) {
  Create("v", 8);
  Bytes image = Pattern(1, 8 * kBS);
  ASSERT_OK(Write("v", 0, image));
  // [kBS/2, 4kBS + kBS/2): blocks 1..3 are whole, 0 and 4 partial.
  ASSERT_OK(Trim("v", kBS / 2, 4 * kBS));
  Clear(&image, kBS, 3 * kBS);
  EXPECT_EQ(ReadAll("v"), image);
  EXPECT_EQ(Used(), 5u);
  ExpectCounts("v", 5, 5, 0);
  ASSERT_OK(Trim("v", 0, 8 * kBS));
  EXPECT_EQ(Used(), 0u);
  ExpectCounts("v", 0, 0, 0);
  EXPECT_TRUE(AllZero(ReadAll("v")));
  ASSERT_OK(Trim("v", 0, 8 * kBS));  // trimming holes is fine
  // A trimmed block is discarded: a new write there reads zero around it.
  ASSERT_OK(Write("v", 10, Bytes{1, 2, 3}));
  Bytes want(kBS, 0);
  want[10] = 1, want[11] = 2, want[12] = 3;
  EXPECT_EQ(Read("v", 0, kBS), want);
}

TEST_F(PoolTest, SubBlockTrimIsANoOp) {
  Create("v", 4);
  Bytes image = Pattern(1, 4 * kBS);
  ASSERT_OK(Write("v", 0, image));
  ASSERT_OK(Zero("v", 0, kBS, 0));  // provision block 0 ...
  Clear(&image, 0, kBS);
  ASSERT_OK(Trim("v", 0, kBS - 1));
  ASSERT_OK(Trim("v", 1, kBS));        // two partial blocks
  ASSERT_OK(Trim("v", kBS + 512, 512));
  ASSERT_OK(Trim("v", 2 * kBS - 1, kBS));  // partial 1 and 2
  EXPECT_EQ(ReadAll("v"), image);
  EXPECT_EQ(Used(), 4u);
  ExpectCounts("v", 4, 4, 1);  // ... and its provision survives
}

TEST_F(PoolTest, TrimOfSharedBlockOnlyUnmapsFromThisVolume) {
  Create("v", 4);
  Bytes base = Pattern(1, 4 * kBS);
  ASSERT_OK(Write("v", 0, base));
  Snap("v", "s");
  ASSERT_OK(Trim("v", kBS, kBS));
  EXPECT_EQ(Used(), 4u);  // the snapshot still has it
  ExpectCounts("v", 3, 0, 0);
  ExpectCounts("s", 4, 1, 0);
  Bytes v_image = base;
  Clear(&v_image, kBS, kBS);
  EXPECT_EQ(ReadAll("v"), v_image);
  EXPECT_EQ(ReadAll("s"), base);
  // Trimming the same block from the snapshot frees it.
  ASSERT_OK(Trim("s", kBS, kBS));
  EXPECT_EQ(Used(), 3u);
  ExpectCounts("s", 3, 0, 0);
}

// ---- Write zeroes -------------------------------------------------------------------

TEST_F(PoolTest, ZeroMayTrimUnmapsWholeBlocksAndZeroesEdgesInPlace) {
  Create("v", 6);
  Bytes image = Pattern(1, 6 * kBS);
  ASSERT_OK(Write("v", 0, image));
  ASSERT_OK(Zero("v", kBS / 2, 3 * kBS, Pool::kMayTrim));  // [0.5, 3.5): 1, 2 whole
  Clear(&image, kBS / 2, 3 * kBS);
  EXPECT_EQ(ReadAll("v"), image);
  EXPECT_EQ(Used(), 4u);  // edges zeroed in place, no new blocks
  ExpectCounts("v", 4, 4, 0);
  // Zeroing within one block.
  ASSERT_OK(Zero("v", 5 * kBS + 10, 20, Pool::kMayTrim));
  Clear(&image, 5 * kBS + 10, 20);
  EXPECT_EQ(ReadAll("v"), image);
  EXPECT_EQ(Used(), 4u);
  // Partial edges over holes stay holes.
  ASSERT_OK(Zero("v", kBS + 1, 2 * kBS - 2, Pool::kMayTrim));
  EXPECT_EQ(Used(), 4u);
  ExpectCounts("v", 4, 4, 0);
  EXPECT_EQ(ReadAll("v"), image);
}

TEST_F(PoolTest, ZeroMayTrimOfSharedEdgesBreaksSharing) {
  Create("v", 4);
  Bytes base = Pattern(1, 4 * kBS);
  ASSERT_OK(Write("v", 0, base));
  Snap("v", "s");
  ASSERT_OK(Zero("v", kBS / 2, 2 * kBS, Pool::kMayTrim));  // edges 0 and 2, block 1 whole
  Bytes image = base;
  Clear(&image, kBS / 2, 2 * kBS);
  EXPECT_EQ(ReadAll("v"), image);
  EXPECT_EQ(ReadAll("s"), base);
  EXPECT_EQ(Used(), 6u);  // two copies for the edges
  ExpectCounts("v", 3, 2, 0);
  ExpectCounts("s", 4, 3, 0);
}

TEST_F(PoolTest, ZeroNoHoleProvisionsEveryTouchedBlock) {
  Create("v", 8);
  // Block 1 exclusive, block 2 shared with s, blocks 0 and 3 holes.
  ASSERT_OK(Write("v", kBS, Pattern(1, 2 * kBS)));
  Snap("v", "s");
  ASSERT_OK(Write("v", kBS, Pattern(2, kBS)));
  EXPECT_EQ(Used(), 3u);
  ExpectCounts("v", 2, 1, 0);

  ASSERT_OK(Zero("v", kBS / 2, 3 * kBS, 0));  // [0.5, 3.5): blocks 0..3
  // Everything v had lies inside the zeroed range.
  EXPECT_TRUE(AllZero(ReadAll("v")));
  // Holes 0 and 3 got fresh blocks, shared block 2 was broken.
  EXPECT_EQ(Used(), 6u);
  ExpectCounts("v", 4, 4, 4);
  ExpectCounts("s", 2, 2, 0);
  Bytes s_image(8 * kBS, 0);
  Put(&s_image, kBS, Pattern(1, 2 * kBS));
  EXPECT_EQ(ReadAll("s"), s_image);
  // Extents: provisioned blocks are allocated.
  std::vector<Extent> ext = Extents("v", 0, 8 * kBS);
  ASSERT_EQ(ext.size(), 2u);
  EXPECT_EQ(ext[0].offset, 0u);
  EXPECT_EQ(ext[0].length, 4u * kBS);
  EXPECT_EQ(ext[0].type, 0u);
  EXPECT_EQ(ext[1].type, kHoleZero);

  // Again over the same range: nothing new to allocate.
  ASSERT_OK(Zero("v", 0, 4 * kBS, 0));
  EXPECT_EQ(Used(), 6u);
  ExpectCounts("v", 4, 4, 4);

  // The provisioned mark is inherited by snapshots and survives overwrites
  // and breaking of sharing.
  Snap("v", "s2");
  ExpectCounts("s2", 4, 0, 4);
  ASSERT_OK(Write("v", 0, Pattern(3, 100)));
  ExpectCounts("v", 4, 1, 4);
  ASSERT_OK(Write("s2", 3 * kBS, Pattern(4, kBS)));
  ExpectCounts("s2", 4, 2, 4);  // its block 3 is new, its block 0 v left to it
  ExpectCounts("v", 4, 2, 4);
  // Trim ends the promise.
  ASSERT_OK(Trim("v", 0, 2 * kBS));
  ExpectCounts("v", 2, 1, 2);
  ASSERT_OK(Zero("v", 2 * kBS, 2 * kBS, Pool::kMayTrim));
  ExpectCounts("v", 0, 0, 0);
  ExpectCounts("s2", 4, 4, 4);
}

TEST_F(PoolTest, ZeroNoHoleZeroesPartialEdgesOfSharedBlock) {
  Create("v", 2);
  Bytes base = Pattern(1, 2 * kBS);
  ASSERT_OK(Write("v", 0, base));
  Snap("v", "s");
  ASSERT_OK(Zero("v", 100, 200, 0));
  Bytes image = base;
  Clear(&image, 100, 200);
  EXPECT_EQ(ReadAll("v"), image);
  EXPECT_EQ(ReadAll("s"), base);
  ExpectCounts("v", 2, 1, 1);
  ExpectCounts("s", 2, 1, 0);
  EXPECT_EQ(Used(), 3u);
}

TEST_F(PoolTest, ProvisionKeepsDataAndBreaksSharing) {
  Create("v", 6);
  Bytes base = Pattern(1, 3 * kBS);
  ASSERT_OK(Write("v", 0, base));  // 0..2 exclusive
  Snap("v", "s");
  ASSERT_OK(Write("v", 0, Pattern(2, kBS)));  // 0 exclusive, 1..2 shared
  Bytes image(6 * kBS, 0);
  Put(&image, 0, base);
  Put(&image, 0, Pattern(2, kBS));
  EXPECT_EQ(Used(), 4u);

  ASSERT_OK(pool_->Provision("v", 100, 4 * kBS));  // touches 0..4
  EXPECT_EQ(ReadAll("v"), image);
  Bytes s_image(6 * kBS, 0);
  Put(&s_image, 0, base);
  EXPECT_EQ(ReadAll("s"), s_image);
  // 1, 2 broken (copies), 3, 4 fresh.
  EXPECT_EQ(Used(), 8u);
  ExpectCounts("v", 5, 5, 5);
  ExpectCounts("s", 3, 3, 0);
  // Provisioning again changes nothing.
  ASSERT_OK(pool_->Provision("v", 0, 6 * kBS - 4096));
  EXPECT_EQ(Used(), 8u);
  ExpectCounts("v", 5, 5, 5);
  EXPECT_EQ(ReadAll("v"), image);
  ASSERT_OK(pool_->Provision("v", 0, 0));
  // Provision works on a volume with a connection too, and on the whole volume.
  auto c = Open("v");
  ASSERT_OK(pool_->Provision("v", 0, 6 * kBS));
  ExpectCounts("v", 6, 6, 6);
  EXPECT_EQ(ReadAll("v"), image);
}

TEST_F(PoolTest, FastZero) {
  Create("v", 8);
  Bytes base = Pattern(1, 4 * kBS);
  ASSERT_OK(Write("v", 0, base));  // 0..3 exclusive, 4..7 holes
  Snap("v", "s");
  ASSERT_OK(Write("v", 0, Pattern(2, kBS)));  // 0 exclusive, 1..3 shared
  Bytes image(8 * kBS, 0);
  Put(&image, 0, base);
  Put(&image, 0, Pattern(2, kBS));
  const uint64_t used = Used();
  const unsigned kFastTrim = Pool::kMayTrim | Pool::kFastZero;

  // Refused, changing nothing: partial edge of a mapped block (exclusive or
  // shared) needs writing; without MAY_TRIM everything needs writing or
  // allocating.
  EXPECT_CODE(Zero("v", 10, kBS, kFastTrim), kUnsupported);
  EXPECT_CODE(Zero("v", kBS + 10, 100, kFastTrim), kUnsupported);
  EXPECT_CODE(Zero("v", 2 * kBS, kBS + 1, kFastTrim), kUnsupported);
  EXPECT_CODE(Zero("v", 4 * kBS, kBS, Pool::kFastZero), kUnsupported);       // hole
  EXPECT_CODE(Zero("v", 0, kBS, Pool::kFastZero), kUnsupported);             // exclusive
  EXPECT_CODE(Zero("v", kBS, kBS, Pool::kFastZero), kUnsupported);           // shared
  EXPECT_CODE(Zero("v", 4 * kBS + 1, 10, Pool::kFastZero), kUnsupported);    // hole, partial
  EXPECT_EQ(ReadAll("v"), image);
  EXPECT_EQ(Used(), used);
  ExpectCounts("v", 4, 1, 0);

  // Succeeds: whole-block unmaps of mapped blocks (exclusive and shared) and
  // anything over holes.
  ASSERT_OK(Zero("v", 0, 2 * kBS, kFastTrim));
  Clear(&image, 0, 2 * kBS);
  ASSERT_OK(Zero("v", 4 * kBS + 7, 3 * kBS, kFastTrim));
  ASSERT_OK(Zero("v", 5 * kBS + 7, 5, kFastTrim));
  EXPECT_EQ(ReadAll("v"), image);
  ExpectCounts("v", 2, 0, 0);
  EXPECT_EQ(Used(), used - 1);
  ExpectCounts("s", 4, 2, 0);
}

// ---- A full pool -------------------------------------------------------------------

TEST_F(PoolTest, ExactlyFullPool) {
  OpenPool(8);
  Create("v", 16);
  Bytes image(16 * kBS, 0);
  Bytes first = Pattern(1, 7 * kBS);
  ASSERT_OK(Write("v", 0, first));
  Put(&image, 0, first);
  EXPECT_EQ(Free(), 1u);
  // The last block can be allocated.
  ASSERT_OK(Write("v", 7 * kBS + 5, Bytes{42}));
  image[7 * kBS + 5] = 42;
  EXPECT_EQ(Free(), 0u);
  EXPECT_EQ(pool_->QueryPool().mode, PoolMode::kWrite);

  // The next allocation fails, naming what was needed and free.
  Status s = Write("v", 8 * kBS, Pattern(2, 10));
  EXPECT_EQ(s.code(), ErrorCode::kNoSpace) << s.ToString();
  EXPECT_NE(s.message().find("need 1 block"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("0 free"), std::string::npos) << s.message();
  EXPECT_EQ(pool_->QueryPool().mode, PoolMode::kOutOfDataSpace);
  EXPECT_CODE(Zero("v", 8 * kBS, kBS, 0), kNoSpace);
  EXPECT_CODE(pool_->Provision("v", 8 * kBS, 1), kNoSpace);
  EXPECT_EQ(ReadAll("v"), image);
  ExpectCounts("v", 8, 8, 0);

  // Overwrites of exclusive blocks, reads, zeroes of mapped blocks and
  // provisions of exclusive blocks still work.
  Bytes over = Pattern(3, 3 * kBS);
  ASSERT_OK(Write("v", 2 * kBS + 17, over));
  Put(&image, 2 * kBS + 17, over);
  ASSERT_OK(Zero("v", 6 * kBS, kBS, 0));
  Clear(&image, 6 * kBS, kBS);
  ASSERT_OK(pool_->Provision("v", 0, kBS));
  EXPECT_EQ(ReadAll("v"), image);
  EXPECT_EQ(Free(), 0u);
  ExpectCounts("v", 8, 8, 2);

  // Trim frees two blocks. Writes that need exactly those succeed; one that
  // needs more changes nothing at all, not even its in-place parts.
  ASSERT_OK(Trim("v", 3 * kBS, 2 * kBS));
  Clear(&image, 3 * kBS, 2 * kBS);
  EXPECT_EQ(Free(), 2u);
  EXPECT_EQ(pool_->QueryPool().mode, PoolMode::kWrite);
  Bytes big = Pattern(4, 5 * kBS);
  // Blocks 2 and 5 exclusive, 3 and 4 holes: needs 2, fits exactly.
  s = Write("v", 2 * kBS, Bytes(big.begin(), big.begin() + 4 * kBS));
  ASSERT_TRUE(s.ok()) << s.ToString();
  Put(&image, 2 * kBS, Bytes(big.begin(), big.begin() + 4 * kBS));
  EXPECT_EQ(Free(), 0u);
  ASSERT_OK(Trim("v", 2 * kBS, 2 * kBS));
  Clear(&image, 2 * kBS, 2 * kBS);
  EXPECT_EQ(Free(), 2u);
  s = Write("v", kBS + 1, big);  // blocks 1, 4, 5, 6 exclusive, 2, 3 holes: fits
  ASSERT_TRUE(s.ok()) << s.ToString();
  Put(&image, kBS + 1, big);
  ASSERT_OK(Trim("v", 2 * kBS, 2 * kBS));
  Clear(&image, 2 * kBS, 2 * kBS);
  EXPECT_EQ(Free(), 2u);
  Bytes huge = Pattern(5, 10 * kBS);
  // Blocks 1..10: 1, 4..7 exclusive, holes 2, 3, 8, 9, 10: needs 5.
  s = Write("v", kBS, huge);
  EXPECT_EQ(s.code(), ErrorCode::kNoSpace) << s.ToString();
  EXPECT_NE(s.message().find("need 5 block"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("2 free"), std::string::npos) << s.message();
  EXPECT_EQ(ReadAll("v"), image);
  EXPECT_EQ(Free(), 2u);
  ExpectCounts("v", 6, 6, 2);
  EXPECT_CODE(Zero("v", kBS, 10 * kBS, 0), kNoSpace);
  EXPECT_CODE(pool_->Provision("v", 0, 16 * kBS), kNoSpace);
  EXPECT_EQ(ReadAll("v"), image);
  ExpectCounts("v", 6, 6, 2);

  // Writes work again once there is room.
  ASSERT_OK(Trim("v", 0, 16 * kBS));
  EXPECT_EQ(Free(), 8u);
  huge.resize(8 * kBS);
  ASSERT_OK(Write("v", kBS, huge));
  EXPECT_EQ(Read("v", kBS, 8 * kBS), huge);
  EXPECT_EQ(Free(), 0u);
  EXPECT_EQ(pool_->QueryPool().mode, PoolMode::kWrite);
  Check();
}

TEST_F(PoolTest, FullPoolSnapshotWritesNeedSpace) {
  OpenPool(4);
  Create("v", 4);
  ASSERT_OK(Write("v", 0, Pattern(1, 4 * kBS)));
  Snap("v", "s");  // snapshots need no space
  Status s = Write("v", 10, Bytes{1});
  EXPECT_EQ(s.code(), ErrorCode::kNoSpace);
  EXPECT_CODE(Zero("v", 10, 10, Pool::kMayTrim), kNoSpace);  // partial edge of a shared block
  EXPECT_CODE(Zero("v", 0, kBS, 0), kNoSpace);
  EXPECT_CODE(pool_->Provision("v", 0, kBS), kNoSpace);
  // Unmapping whole shared blocks needs nothing and frees nothing.
  ASSERT_OK(Zero("v", 0, kBS, Pool::kMayTrim));
  ASSERT_OK(Trim("v", kBS, kBS));
  EXPECT_EQ(Free(), 0u);
  ASSERT_OK(pool_->DeleteVolume("s"));
  EXPECT_EQ(Free(), 2u);
  ExpectCounts("v", 2, 2, 0);
  ASSERT_OK(Write("v", 10, Bytes{1}));
}

TEST_F(PoolTest, GrowThePool) {
  OpenPool(2);
  Create("v", 8);
  ASSERT_OK(Write("v", 0, Pattern(1, 2 * kBS)));
  EXPECT_CODE(Write("v", 2 * kBS, Pattern(2, kBS)), kNoSpace);
  EXPECT_CODE(pool_->Grow(kBS), kInvalid);  // cannot shrink
  EXPECT_CODE(pool_->Grow(100), kInvalid);
  ASSERT_OK(pool_->Grow(2 * kBS));          // same size: fine
  ASSERT_OK(pool_->Grow(6 * kBS + 100));
  PoolInfo info = pool_->QueryPool();
  EXPECT_EQ(info.total_blocks, 6u);
  EXPECT_EQ(info.free_blocks, 4u);
  EXPECT_EQ(info.mode, PoolMode::kWrite);
  ASSERT_OK(Write("v", 2 * kBS, Pattern(2, 4 * kBS)));
  EXPECT_EQ(Read("v", 0, 2 * kBS), Pattern(1, 2 * kBS));
  EXPECT_EQ(Read("v", 2 * kBS, 4 * kBS), Pattern(2, 4 * kBS));
  EXPECT_EQ(Free(), 0u);
  Check();
}

// ---- Resize -----------------------------------------------------------------------

TEST_F(PoolTest, ResizeShrinkUnmapsTailAndFrees) {
  Create("v", 8);
  Bytes image = Pattern(1, 8 * kBS);
  ASSERT_OK(Write("v", 0, image));
  ASSERT_OK(pool_->ResizeVolume("v", 5 * kBS));
  EXPECT_EQ(Info("v").size, 5u * kBS);
  EXPECT_EQ(Used(), 5u);
  ExpectCounts("v", 5, 5, 0);
  EXPECT_EQ(ReadAll("v"), Bytes(image.begin(), image.begin() + 5 * kBS));
  ASSERT_OK(pool_->ResizeVolume("v", 8 * kBS));
  Bytes want = image;
  Clear(&want, 5 * kBS, 3 * kBS);
  EXPECT_EQ(ReadAll("v"), want);
  ExpectCounts("v", 5, 5, 0);
  EXPECT_CODE(pool_->ResizeVolume("v", 0), kInvalid);
  EXPECT_CODE(pool_->ResizeVolume("v", 1000), kInvalid);
  ASSERT_OK(pool_->ResizeVolume("v", 8 * kBS));  // same size
  EXPECT_EQ(ReadAll("v"), want);
}

TEST_F(PoolTest, ResizeGrowAfterUnalignedShrinkReadsZeroInRegrownTail) {
  Create("v", 4);
  Bytes image = Pattern(1, 4 * kBS);
  ASSERT_OK(Write("v", 0, image));
  ASSERT_OK(pool_->ResizeVolume("v", 2 * kBS + 1024));
  EXPECT_EQ(Used(), 3u);  // the partial block 2 stays
  ExpectCounts("v", 3, 3, 0);
  EXPECT_EQ(ReadAll("v"), Bytes(image.begin(), image.begin() + 2 * kBS + 1024));
  // Grow within the same block, then beyond it.
  ASSERT_OK(pool_->ResizeVolume("v", 2 * kBS + 2048));
  Bytes want(image.begin(), image.begin() + 2 * kBS + 1024);
  want.resize(2 * kBS + 2048, 0);
  EXPECT_EQ(ReadAll("v"), want);
  ASSERT_OK(pool_->ResizeVolume("v", 2 * kBS + 1024));
  ASSERT_OK(pool_->ResizeVolume("v", 4 * kBS));
  want.resize(2 * kBS + 1024);
  want.resize(4 * kBS, 0);
  EXPECT_EQ(ReadAll("v"), want);
  ExpectCounts("v", 3, 3, 0);
  EXPECT_EQ(Used(), 3u);
}

TEST_F(PoolTest, ResizeGrowAfterUnalignedShrinkOfSharedBlock) {
  Create("v", 4);
  Bytes image = Pattern(1, 4 * kBS);
  ASSERT_OK(Write("v", 0, image));
  Snap("v", "s");
  ASSERT_OK(pool_->ResizeVolume("s", 2 * kBS + 512));
  ExpectCounts("s", 3, 0, 0);
  ExpectCounts("v", 4, 1, 0);
  ASSERT_OK(pool_->ResizeVolume("s", 3 * kBS));
  Bytes want(image.begin(), image.begin() + 2 * kBS + 512);
  want.resize(3 * kBS, 0);
  EXPECT_EQ(ReadAll("s"), want);
  EXPECT_EQ(ReadAll("v"), image);  // the origin's copy is untouched
  ExpectCounts("s", 3, 1, 0);
  EXPECT_EQ(Used(), 5u);
}

TEST_F(PoolTest, ResizeOfUnalignedVolumeCreatedThatWay) {
  ASSERT_OK(pool_->CreateVolume("v", kBS + 512, std::nullopt));
  ASSERT_OK(Write("v", kBS, Pattern(1, 512)));
  ASSERT_OK(pool_->ResizeVolume("v", 2 * kBS));
  Bytes want(2 * kBS, 0);
  Put(&want, kBS, Pattern(1, 512));
  EXPECT_EQ(ReadAll("v"), want);
  ExpectCounts("v", 1, 1, 0);
}

TEST_F(PoolTest, ShrinkOfSnapshotSharingTail) {
  Bytes image = Pattern(1, 70 * kBS);
  OpenPool(80);
  Create("v", 70);
  ASSERT_OK(Write("v", 0, image));
  Snap("v", "s");
  ASSERT_OK(pool_->ResizeVolume("v", 10 * kBS));
  EXPECT_EQ(Used(), 70u);
  ExpectCounts("v", 10, 0, 0);
  ExpectCounts("s", 70, 60, 0);
  EXPECT_EQ(ReadAll("s"), image);
  ASSERT_OK(pool_->ResizeVolume("v", 70 * kBS));
  Bytes want = image;
  Clear(&want, 10 * kBS, 60 * kBS);
  EXPECT_EQ(ReadAll("v"), want);
  ASSERT_OK(pool_->DeleteVolume("s"));
  EXPECT_EQ(Used(), 10u);
  ExpectCounts("v", 10, 10, 0);
}

// ---- Extents ------------------------------------------------------------------------

// By default every mapped block is data, shared or not, so that QEMU and
// nbdcopy (which read HOLE as "not allocated") see what the export holds.
TEST_F(PoolTest, ExtentsReportEveryMappedBlockAsData) {
  OpenPool(200);
  Create("v", 140);
  ASSERT_OK(Write("v", 3 * kBS, Pattern(1, kBS)));
  ASSERT_OK(Write("v", 70 * kBS, Pattern(1, kBS)));
  Snap("v", "s");
  ASSERT_OK(Write("v", kBS, Pattern(2, 2 * kBS)));
  const uint64_t B = kBS;
  for (const char* name : {"v", "s"}) {
    SCOPED_TRACE(name);
    std::vector<Extent> got = Extents(name, 0, 140 * B);
    std::string want = std::string(name) == "v" ? "0+1:3 1+3:0 4+66:3 70+1:0 71+69:3"
                                                : "0+3:3 3+1:0 4+66:3 70+1:0 71+69:3";
    std::string have;
    for (const Extent& e : got) {
      if (!have.empty()) have += ' ';
      have += std::to_string(e.offset / B) + "+" + std::to_string(e.length / B) + ":" +
              std::to_string(e.type);
    }
    EXPECT_EQ(have, want);
  }
}

// Under extents=space, shared blocks that no reservation covers are HOLE
// without ZERO: a write there could fail for lack of space.
TEST_F(PoolTest, ExtentsSpaceModeReportsUncoveredSharedBlocksAsHoles) {
  OpenPool(200);
  Create("v", 140);  // three chunks
  // Blocks: 0 hole, 1-2 exclusive, 3 shared, 4 exclusive, 5-69 holes,
  // 70 shared, 71-139 holes.
  ASSERT_OK(Write("v", 3 * kBS, Pattern(1, kBS)));
  ASSERT_OK(Write("v", 70 * kBS, Pattern(1, kBS)));
  Snap("v", "s");
  ASSERT_OK(Write("v", kBS, Pattern(2, 2 * kBS)));
  ASSERT_OK(Write("v", 4 * kBS, Pattern(2, kBS)));
  struct E {
    uint64_t off, len;
    uint32_t type;
  };
  auto expect = [&](uint64_t off, uint64_t len, std::vector<E> want) {
    std::vector<Extent> got = Extents("v", off, len, ExtentsMode::kSpace);
    SCOPED_TRACE(std::to_string(off) + "+" + std::to_string(len));
    ASSERT_EQ(got.size(), want.size());
    uint64_t pos = off;
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ(got[i].offset, want[i].off) << i;
      EXPECT_EQ(got[i].length, want[i].len) << i;
      EXPECT_EQ(got[i].type, want[i].type) << i;
      EXPECT_EQ(got[i].offset, pos) << "not contiguous at " << i;
      pos = got[i].offset + got[i].length;
    }
    EXPECT_EQ(pos, off + len);
  };
  const uint64_t B = kBS;
  expect(0, 140 * B,
         {{0, B, kHoleZero}, {B, 2 * B, 0}, {3 * B, B, Extent::kHole}, {4 * B, B, 0},
          {5 * B, 65 * B, kHoleZero}, {70 * B, B, Extent::kHole}, {71 * B, 69 * B, kHoleZero}});
  // Partial first and last blocks.
  expect(100, 2 * B, {{100, B - 100, kHoleZero}, {B, B + 100, 0}});
  expect(B + 1, 1, {{B + 1, 1, 0}});
  expect(3 * B + 5, B, {{3 * B + 5, B - 5, Extent::kHole}, {4 * B, 5, 0}});
  expect(60 * B + 7, 20 * B, {{60 * B + 7, 10 * B - 7, kHoleZero}, {70 * B, B, Extent::kHole},
                              {71 * B, 9 * B + 7, kHoleZero}});
  expect(139 * B + 1, B - 1, {{139 * B + 1, B - 1, kHoleZero}});
  // The snapshot sees its view: all shared except what v broke.
  std::vector<Extent> s = Extents("s", 0, 140 * B, ExtentsMode::kSpace);
  ASSERT_EQ(s.size(), 5u);
  EXPECT_EQ(s[0].type, kHoleZero);
  EXPECT_EQ(s[1].offset, 3 * B);
  EXPECT_EQ(s[1].type, Extent::kHole);
  // Once the snapshot is gone, 3 and 70 become exclusive and coalesce.
  ASSERT_OK(pool_->DeleteVolume("s"));
  expect(0, 140 * B,
         {{0, B, kHoleZero}, {B, 4 * B, 0}, {5 * B, 65 * B, kHoleZero}, {70 * B, B, 0},
          {71 * B, 69 * B, kHoleZero}});
}

// ---- Queue mode -------------------------------------------------------------------

TEST_F(PoolTest, QueueModeWriteIsReleasedByGrow) {
  PoolOptions o;
  o.when_full = WhenFull::kQueue;
  o.no_space_timeout_seconds = 1;
  OpenPool(2, o);
  EXPECT_EQ(pool_->QueryPool().when_full, WhenFull::kQueue);
  Create("v", 8);
  ASSERT_OK(Write("v", 0, Pattern(1, 2 * kBS)));
  Bytes data = Pattern(2, 3 * kBS);
  auto waiter = std::async(std::launch::async, [&] { return Write("v", 2 * kBS, data); });
  EXPECT_EQ(waiter.wait_for(200ms), std::future_status::timeout);
  EXPECT_EQ(pool_->QueryPool().mode, PoolMode::kOutOfDataSpace);
  ASSERT_OK(pool_->Grow(4 * kBS));  // still not enough for 3
  EXPECT_EQ(waiter.wait_for(100ms), std::future_status::timeout);
  ASSERT_OK(pool_->Grow(5 * kBS));
  ASSERT_EQ(waiter.wait_for(5s), std::future_status::ready);
  ASSERT_OK(waiter.get());
  EXPECT_EQ(Read("v", 2 * kBS, 3 * kBS), data);
  EXPECT_EQ(Free(), 0u);
  Check();
}

TEST_F(PoolTest, QueueModeWriteIsReleasedByTrimOfAnotherVolume) {
  PoolOptions o;
  o.when_full = WhenFull::kQueue;
  o.no_space_timeout_seconds = 0;  // wait forever
  OpenPool(2, o);
  Create("a", 2);
  Create("b", 2);
  ASSERT_OK(Write("a", 0, Pattern(1, 2 * kBS)));
  auto waiter = std::async(std::launch::async, [&] { return Write("b", 0, Pattern(2, 100)); });
  EXPECT_EQ(waiter.wait_for(100ms), std::future_status::timeout);
  ASSERT_OK(Trim("a", kBS, kBS));
  bool released = waiter.wait_for(5s) == std::future_status::ready;
  if (!released) ASSERT_OK(pool_->Grow(4 * kBS));  // do not leave the writer waiting forever
  EXPECT_TRUE(released);
  ASSERT_OK(waiter.get());
  ExpectCounts("b", 1, 1, 0);
}

TEST_F(PoolTest, QueueModeTimesOutWithNoSpace) {
  PoolOptions o;
  o.when_full = WhenFull::kQueue;
  o.no_space_timeout_seconds = 1;
  OpenPool(1, o);
  Create("v", 4);
  ASSERT_OK(Write("v", 0, Pattern(1, kBS)));
  auto start = std::chrono::steady_clock::now();
  Status s = Write("v", kBS, Pattern(2, 10));
  auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(s.code(), ErrorCode::kNoSpace) << s.ToString();
  EXPECT_NE(s.message().find("need 1 block"), std::string::npos) << s.message();
  EXPECT_GE(waited, 900ms);
  EXPECT_LT(waited, 10s);
  EXPECT_EQ(Read("v", 0, kBS), Pattern(1, kBS));
  ExpectCounts("v", 1, 1, 0);
  // Overwrites do not queue.
  ASSERT_OK(Write("v", 0, Pattern(3, 10)));
}

// ---- Events -------------------------------------------------------------------------

TEST_F(PoolTest, LowWaterFiresOnceEachTimeAndPoolModeEvents) {
  PoolOptions o;
  o.low_water_percent = 25;
  OpenPool(20, o);  // threshold: 5 free blocks
  std::vector<PoolEvent> events;  // the handler runs with pool locks held: only record
  pool_->SetEventHandler([&events](const PoolEvent& e) { events.push_back(e); });
  Create("v", 40);
  auto count = [&](const std::string& name) {
    return std::count_if(events.begin(), events.end(), [&](const PoolEvent& e) { return e.name == name; });
  };
  ASSERT_OK(Write("v", 0, Pattern(1, 15 * kBS)));  // free 5: not below
  EXPECT_EQ(count("LOW_WATER"), 0);
  ASSERT_OK(Write("v", 15 * kBS, Pattern(1, kBS)));  // free 4
  ASSERT_EQ(count("LOW_WATER"), 1);
  EXPECT_EQ(events.back().free_blocks, 4u);
  EXPECT_EQ(events.back().total_blocks, 20u);
  EXPECT_EQ(events.back().threshold_blocks, 5u);
  ASSERT_OK(Write("v", 16 * kBS, Pattern(1, kBS)));  // still below: no repeat
  ASSERT_OK(Write("v", 0, Pattern(2, kBS)));
  EXPECT_EQ(count("LOW_WATER"), 1);
  ASSERT_OK(Trim("v", 0, 3 * kBS));  // free 6: re-armed
  ASSERT_OK(Flush());
  ASSERT_OK(Write("v", 0, Pattern(3, 2 * kBS)));  // free 4: fires again
  EXPECT_EQ(count("LOW_WATER"), 2);

  EXPECT_EQ(count("POOL_MODE"), 0);
  ASSERT_OK(Write("v", 20 * kBS, Pattern(4, 4 * kBS)));  // free 0
  EXPECT_CODE(Write("v", 30 * kBS, Pattern(5, 1)), kNoSpace);
  ASSERT_EQ(count("POOL_MODE"), 1);
  EXPECT_EQ(events.back().mode, PoolMode::kOutOfDataSpace);
  EXPECT_CODE(Write("v", 30 * kBS, Pattern(5, 1)), kNoSpace);
  EXPECT_EQ(count("POOL_MODE"), 1);  // only changes are reported
  ASSERT_OK(pool_->Grow(30 * kBS));
  ASSERT_EQ(count("POOL_MODE"), 2);
  EXPECT_EQ(events.back().mode, PoolMode::kWrite);
  EXPECT_EQ(pool_->QueryPool().mode, PoolMode::kWrite);
  pool_->SetEventHandler(nullptr);
}

// ---- Other block sizes --------------------------------------------------------------

// Byte-level check of unaligned I/O, snapshots, trims and zeroes at larger
// block sizes (the other tests use 4K blocks).
TEST(PoolBlockSizeTest, UnalignedIoAcrossBlockSizes) {
  for (uint32_t bs : {64u * 1024, 1u << 20}) {
    SCOPED_TRACE(bs);
    PoolOptions o;
    o.block_size = bs;
    o.size = 64ull * bs;
    std::unique_ptr<Pool> pool;
    ASSERT_OK(Pool::Open(o, &pool));
    const uint64_t size = 6ull * bs + 3 * 512;  // a partial last block
    ASSERT_OK(pool->CreateVolume("v", size, std::nullopt));
    std::shared_ptr<Volume> v;
    ASSERT_OK(pool->OpenVolume("v", true, &v));
    Bytes image(size, 0), snap_image;
    std::mt19937 rng(bs);
    bool have_snap = false;
    for (int step = 0; step < 40; ++step) {
      uint64_t off = rng() % size;
      uint64_t len = std::min<uint64_t>(size - off, 1 + rng() % (2 * bs + 1000));
      switch (rng() % 6) {
        case 0:
        case 1: {
          Bytes d = Pattern(step, len);
          ASSERT_OK(pool->Write(*v, d.data(), len, off));
          Put(&image, off, d);
          break;
        }
        case 2: {
          ASSERT_OK(pool->Trim(*v, len, off));
          uint64_t first = (off + bs - 1) / bs, end = (off + len) / bs;
          for (uint64_t b = first; b < end; ++b) Clear(&image, b * bs, bs);
          break;
        }
        case 3:
          ASSERT_OK(pool->Zero(*v, len, off, rng() % 2 ? unsigned{Pool::kMayTrim} : 0u));
          Clear(&image, off, len);
          break;
        case 4:
          if (have_snap) {
            ASSERT_OK(pool->DeleteVolume("s"));
          }
          ASSERT_OK(pool->CreateSnapshots({{"v", "s"}}, true));
          snap_image = image;
          have_snap = true;
          break;
        case 5:
          ASSERT_OK(pool->Provision("v", off, len));
          break;
      }
      Bytes back(size);
      ASSERT_OK(pool->Read(*v, back.data(), size, 0));
      ASSERT_TRUE(back == image) << "step " << step;
      ASSERT_OK(pool->TEST_CheckCounters());
    }
    if (have_snap) {
      std::shared_ptr<Volume> s;
      ASSERT_OK(pool->OpenVolume("s", false, &s));
      Bytes back(size);
      ASSERT_OK(pool->Read(*s, back.data(), size, 0));
      pool->CloseVolume(s, false);
      EXPECT_TRUE(back == snap_image);
    }
    pool->CloseVolume(v, true);
  }
}

// ---- Other pool kinds ------------------------------------------------------------------

TEST(PoolDirTest, PersistentPoolWorksAndIsLocked) {
  char tmpl[] = "/tmp/thinsim-pool-test-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir = std::string(tmpl) + "/pool";  // created by Open
  {
    PoolOptions o;
    o.dir = dir;
    o.block_size = kBS;
    o.size = 16 * kBS;
    std::unique_ptr<Pool> pool;
    ASSERT_OK(Pool::Open(o, &pool));
    EXPECT_TRUE(pool->QueryPool().persistent);
    EXPECT_TRUE(std::filesystem::exists(dir + "/data"));

    std::unique_ptr<Pool> second;
    Status s = Pool::Open(o, &second);
    EXPECT_EQ(s.code(), ErrorCode::kBusy) << s.ToString();
    EXPECT_EQ(second, nullptr);

    ASSERT_OK(pool->CreateVolume("v", 8 * kBS, std::nullopt));
    std::shared_ptr<Volume> v;
    ASSERT_OK(pool->OpenVolume("v", true, &v));
    Bytes data = Pattern(1, 3 * kBS + 7);
    ASSERT_OK(pool->Write(*v, data.data(), data.size(), kBS - 3));
    ASSERT_OK(pool->Flush());
    Bytes back(8 * kBS);
    ASSERT_OK(pool->Read(*v, back.data(), back.size(), 0));
    Bytes want(8 * kBS, 0);
    Put(&want, kBS - 3, data);
    EXPECT_EQ(back, want);
    ASSERT_OK(pool->CreateSnapshots({{"v", "s"}}, false));
    ASSERT_OK(pool->Zero(*v, 2 * kBS, 0, Pool::kMayTrim));
    ASSERT_OK(pool->Zero(*v, kBS, 5 * kBS + 100, 0));
    ASSERT_OK(pool->Read(*v, back.data(), back.size(), 0));
    Clear(&want, 0, 2 * kBS);
    Clear(&want, 5 * kBS + 100, kBS);
    EXPECT_EQ(back, want);
    ASSERT_OK(pool->Trim(*v, 8 * kBS, 0));
    pool->CloseVolume(v, true);
    ASSERT_OK(pool->DeleteVolume("s"));
    // Blocks freed in a transaction are reusable once it has committed.
    ASSERT_OK(pool->Flush());
    EXPECT_EQ(pool->QueryPool().used_blocks, 0u);
    ASSERT_OK(pool->TEST_CheckCounters());
    ASSERT_OK(pool->Grow(32 * kBS));
    EXPECT_EQ(pool->QueryPool().total_blocks, 32u);
    // Leave data behind for the reopen below.
    ASSERT_OK(pool->OpenVolume("v", true, &v));
    ASSERT_OK(pool->Write(*v, data.data(), data.size(), kBS - 3));
    pool->CloseVolume(v, true);
    ASSERT_OK(pool->Flush());
  }
  {
    // Reopened, the pool has its volume and data back.
    PoolOptions o;
    o.dir = dir;
    o.block_size = kBS;
    o.size = 32 * kBS;
    std::unique_ptr<Pool> pool;
    ASSERT_OK(Pool::Open(o, &pool));
    EXPECT_EQ(pool->QueryPool().total_blocks, 32u);
    std::shared_ptr<Volume> v;
    ASSERT_OK(pool->OpenVolume("v", false, &v));
    Bytes back(8 * kBS);
    ASSERT_OK(pool->Read(*v, back.data(), back.size(), 0));
    pool->CloseVolume(v, false);
    Bytes want(8 * kBS, 0);
    Put(&want, kBS - 3, Pattern(1, 3 * kBS + 7));
    EXPECT_EQ(back, want);
    ASSERT_OK(pool->TEST_CheckCounters());
  }
  std::filesystem::remove_all(tmpl);
}

TEST(PoolNullDataTest, MetadataWithoutData) {
  PoolOptions o;
  o.block_size = kBS;
  o.size = 4 * kBS;
  o.null_data = true;
  std::unique_ptr<Pool> pool;
  ASSERT_OK(Pool::Open(o, &pool));
  ASSERT_OK(pool->CreateVolume("v", 8 * kBS, std::nullopt));
  std::shared_ptr<Volume> v;
  ASSERT_OK(pool->OpenVolume("v", true, &v));
  Bytes data = Pattern(1, 4 * kBS);
  ASSERT_OK(pool->Write(*v, data.data(), data.size(), 0));
  Bytes back(4 * kBS, 1);
  ASSERT_OK(pool->Read(*v, back.data(), back.size(), 0));
  EXPECT_TRUE(AllZero(back));
  EXPECT_EQ(pool->QueryPool().used_blocks, 4u);
  EXPECT_CODE(pool->Write(*v, data.data(), 1, 4 * kBS), kNoSpace);
  pool->CloseVolume(v, true);
  ASSERT_OK(pool->TEST_CheckCounters());
}

TEST_F(PoolTest, MetadataMemoryUsage) {
  OpenPool(300);
  Create("v", 256);
  size_t empty = pool_->MetadataMemoryUsage();
  ASSERT_OK(Write("v", 0, Pattern(1, 256 * kBS)));
  size_t full = pool_->MetadataMemoryUsage();
  EXPECT_GE(full, empty + 256 * sizeof(dblock_t));
  Snap("v", "s");
  size_t snapped = pool_->MetadataMemoryUsage();
  EXPECT_GT(snapped, full);
  // The snapshot shares every chunk: it adds a table, not a copy.
  EXPECT_LT(snapped - full, (full - empty) / 2);
}

}  // namespace
}  // namespace thinsim
