// Directed tests of reservations (SPEC section 5): each scenario states the
// exact reserved blocks the spec's formula gives, in the pool and charged to
// each volume, and where admission must refuse. pool_model_test.cc checks
// the same rules on random operation sequences.
//
// Reminder of the formula: for a block with o owners, g of which guarantee
// it, need = g if o > g else g - 1; each guaranteed unmapped vblock needs 1.
// Reserved = sum of needs, and reserved <= free always.
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "pool/pool.h"
#include "base/status_test_util.h"

namespace thinsim {
namespace {

constexpr uint32_t kBS = 4096;

class ReservationTest : public ::testing::Test {
 protected:
  void OpenPool(uint64_t blocks) {
    PoolOptions o;
    o.block_size = kBS;
    o.size = blocks * kBS;
    ASSERT_OK(Pool::Open(o, &pool_));
  }

  void TearDown() override {
    for (auto& [v, writable] : handles_) pool_->CloseVolume(v, writable);
    handles_.clear();
    if (pool_) {
      Status s = pool_->TEST_CheckCounters();
      EXPECT_TRUE(s.ok()) << s.ToString();
    }
  }

  uint64_t Reserved() { return pool_->QueryPool().reserved_blocks; }
  uint64_t Free() { return pool_->QueryPool().free_blocks; }
  VolumeInfo Info(const std::string& name) {
    VolumeInfo info;
    Status s = pool_->QueryVolume(name, &info);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return info;
  }

  // A connection kept open until the test ends (or Close).
  std::shared_ptr<Volume> Open(const std::string& name, bool writable) {
    std::shared_ptr<Volume> v;
    Status s = pool_->OpenVolume(name, writable, &v);
    EXPECT_TRUE(s.ok()) << s.ToString();
    if (s.ok()) handles_.push_back({v, writable});
    return v;
  }
  void Close(const std::shared_ptr<Volume>& v) {
    for (auto it = handles_.begin(); it != handles_.end(); ++it) {
      if (it->first == v) {
        pool_->CloseVolume(it->first, it->second);
        handles_.erase(it);
        return;
      }
    }
    ADD_FAILURE() << "not open";
  }

  // Writes whole blocks [vb, vb + n) with a recognisable pattern.
  Status WriteBlocks(Volume& v, uint64_t vb, uint64_t n, uint8_t fill = 0xab) {
    std::vector<uint8_t> buf(n * kBS, fill);
    return pool_->Write(v, buf.data(), buf.size(), vb * kBS);
  }

  std::unique_ptr<Pool> pool_;
  std::vector<std::pair<std::shared_ptr<Volume>, bool>> handles_;
};

TEST_F(ReservationTest, FullVolumesCannotOvercommit) {
  ASSERT_NO_FATAL_FAILURE(OpenPool(16));
  ASSERT_OK(pool_->CreateVolume("a", 10 * kBS, Strategy::kFull));
  EXPECT_EQ(Reserved(), 10u);
  EXPECT_EQ(Info("a").reserved_blocks, 10u);
  Status s = pool_->CreateVolume("b", 7 * kBS, Strategy::kFull);
  EXPECT_EQ(s.code(), ErrorCode::kNoSpace) << s.ToString();
  EXPECT_NE(s.message().find("needs 7 more reserved block"), std::string::npos) << s.message();
  EXPECT_EQ(Reserved(), 10u);
  EXPECT_EQ(pool_->QueryPool().nr_volumes, 1u);
  ASSERT_OK(pool_->CreateVolume("b", 6 * kBS, Strategy::kFull));
  EXPECT_EQ(Reserved(), 16u);  // = free: nothing unreserved is left
  ASSERT_OK(pool_->CreateVolume("c", 100 * kBS, Strategy::kNone));  // thin: reserves nothing

  auto c = Open("c", true);
  auto a = Open("a", true);
  EXPECT_CODE(WriteBlocks(*c, 0, 1), kNoSpace);  // would take a reserved block
  ASSERT_OK(WriteBlocks(*a, 0, 10));             // guaranteed: uses its reservation
  EXPECT_EQ(Reserved(), 6u);
  EXPECT_EQ(Free(), 6u);
  EXPECT_EQ(Info("a").reserved_blocks, 0u);
  EXPECT_CODE(WriteBlocks(*c, 0, 1), kNoSpace);
  ASSERT_OK(WriteBlocks(*a, 3, 2, 0xcd));  // exclusive blocks: in place
  EXPECT_EQ(Free(), 6u);
}

TEST_F(ReservationTest, VolumeStrategyReservesWhileActive) {
  ASSERT_NO_FATAL_FAILURE(OpenPool(20));
  ASSERT_OK(pool_->CreateVolume("v", 10 * kBS, Strategy::kVolume));
  EXPECT_EQ(Reserved(), 0u);  // inactive
  ASSERT_OK(pool_->CreateVolume("f", 12 * kBS, Strategy::kFull));
  EXPECT_EQ(Reserved(), 12u);

  std::shared_ptr<Volume> h;
  Status s = pool_->OpenVolume("v", true, &h);
  EXPECT_EQ(s.code(), ErrorCode::kNoSpace) << s.ToString();
  EXPECT_NE(s.message().find("needs 10 more reserved block"), std::string::npos) << s.message();
  EXPECT_CODE(pool_->Activate("v"), kNoSpace);
  VolumeInfo info = Info("v");
  EXPECT_FALSE(info.active);
  EXPECT_FALSE(info.pinned);
  EXPECT_EQ(info.connections, 0u);
  EXPECT_EQ(info.writable_connections, 0u);
  EXPECT_EQ(Reserved(), 12u);
  // A read-only connection does not activate.
  auto ro = Open("v", false);
  EXPECT_FALSE(Info("v").active);
  Close(ro);

  ASSERT_OK(pool_->DeleteVolume("f"));
  EXPECT_EQ(Reserved(), 0u);
  auto w = Open("v", true);
  EXPECT_TRUE(Info("v").active);
  EXPECT_EQ(Reserved(), 10u);
  EXPECT_EQ(Info("v").reserved_blocks, 10u);
  ASSERT_OK(WriteBlocks(*w, 0, 3));
  EXPECT_EQ(Reserved(), 7u);
  ASSERT_OK(pool_->Activate("v"));  // pinned as well
  Close(w);
  EXPECT_TRUE(Info("v").active);
  EXPECT_EQ(Reserved(), 7u);
  ASSERT_OK(pool_->Deactivate("v"));
  EXPECT_FALSE(Info("v").active);
  EXPECT_EQ(Reserved(), 0u);
  ASSERT_OK(pool_->Deactivate("v"));  // idempotent
}

TEST_F(ReservationTest, SnapshotOfActiveVolumeOriginCoversSharedBlocks) {
  ASSERT_NO_FATAL_FAILURE(OpenPool(32));
  ASSERT_OK(pool_->CreateVolume("v", 8 * kBS, Strategy::kVolume));
  ASSERT_OK(pool_->Activate("v"));
  {
    auto w = Open("v", true);
    ASSERT_OK(WriteBlocks(*w, 0, 4));
    Close(w);
  }
  EXPECT_EQ(Reserved(), 4u);  // its unmapped vblocks
  // The snapshot inherits `volume` and starts inactive: each shared block has
  // 2 owners, 1 guarantor, and needs 1.
  ASSERT_OK(pool_->CreateSnapshots({{"v", "s"}}, false));
  EXPECT_EQ(Reserved(), 8u);
  EXPECT_EQ(Info("v").reserved_blocks, 8u);
  VolumeInfo s = Info("s");
  EXPECT_EQ(s.strategy, Strategy::kVolume);
  EXPECT_FALSE(s.active);
  EXPECT_EQ(s.reserved_blocks, 0u);
  // A read-only one adds an owner and no guarantor: still 1 per block.
  ASSERT_OK(pool_->CreateSnapshots({{"v", "r"}}, true));
  EXPECT_EQ(Reserved(), 8u);
  // Inactive, the origin guarantees nothing, and its snapshots reserve nothing.
  ASSERT_OK(pool_->Deactivate("v"));
  EXPECT_EQ(Reserved(), 0u);
  ASSERT_OK(pool_->CreateSnapshots({{"v", "s2"}}, false));
  EXPECT_EQ(Reserved(), 0u);
}

TEST_F(ReservationTest, FullSnapshotChargesTheNewerOwner) {
  ASSERT_NO_FATAL_FAILURE(OpenPool(32));
  ASSERT_OK(pool_->CreateVolume("f", 8 * kBS, Strategy::kFull));
  auto f = Open("f", true);
  ASSERT_OK(WriteBlocks(*f, 0, 4));
  EXPECT_EQ(Reserved(), 4u);
  // f: 4 unmapped; s: 4 unmapped; 4 blocks with o = g = 2 need 1 each.
  ASSERT_OK(pool_->CreateSnapshots({{"f", "s"}}, false));
  EXPECT_EQ(Reserved(), 12u);
  EXPECT_EQ(Info("f").reserved_blocks, 4u);  // the oldest owner is charged nothing
  EXPECT_EQ(Info("s").reserved_blocks, 8u);
  auto s = Open("s", true);
  std::vector<Extent> ext;
  ASSERT_OK(pool_->Extents(*s, 8 * kBS, 0, &ext, ExtentsMode::kSpace));
  ASSERT_EQ(ext.size(), 2u);
  EXPECT_EQ(ext[0].type, 0u);  // shared but guaranteed: a write cannot fail
  EXPECT_EQ(ext[0].length, 4u * kBS);
  EXPECT_EQ(ext[1].type, Extent::kHole | Extent::kZero);

  ASSERT_OK(WriteBlocks(*s, 0, 1, 0x11));  // breaks sharing, from the reservation
  EXPECT_EQ(Reserved(), 11u);
  EXPECT_EQ(Free(), 27u);
  // A read-only snapshot guarantees nothing: block 0 of f gets o=2, g=1
  // (need 1), blocks 1-3 get o=3, g=2 (need 2).
  ASSERT_OK(pool_->CreateSnapshots({{"f", "r"}}, true));
  EXPECT_EQ(Reserved(), 15u);
  EXPECT_EQ(Info("f").reserved_blocks, 8u);
  EXPECT_EQ(Info("s").reserved_blocks, 7u);
  EXPECT_EQ(Info("r").reserved_blocks, 0u);
}

TEST_F(ReservationTest, MultiOriginSnapshotIsAllOrNothing) {
  ASSERT_NO_FATAL_FAILURE(OpenPool(20));
  ASSERT_OK(pool_->CreateVolume("a", 6 * kBS, Strategy::kFull));
  ASSERT_OK(pool_->CreateVolume("b", 6 * kBS, Strategy::kFull));
  EXPECT_EQ(Reserved(), 12u);
  Status s = pool_->CreateSnapshots({{"a", "a1"}, {"b", "b1"}}, false);
  EXPECT_EQ(s.code(), ErrorCode::kNoSpace) << s.ToString();
  EXPECT_NE(s.message().find("snapshot 'b1' of 'b' needs 6 more reserved block"), std::string::npos)
      << s.message();
  EXPECT_EQ(Reserved(), 12u);
  EXPECT_EQ(pool_->QueryPool().nr_volumes, 2u);
  VolumeInfo info;
  EXPECT_CODE(pool_->QueryVolume("a1", &info), kNotFound);
  // Read-only snapshots of empty full volumes need nothing.
  ASSERT_OK(pool_->CreateSnapshots({{"a", "a1"}, {"b", "b1"}}, true));
  EXPECT_EQ(Reserved(), 12u);
  ASSERT_OK(pool_->CreateSnapshots({{"a", "a2"}}, false));
  EXPECT_EQ(Reserved(), 18u);
}

TEST_F(ReservationTest, ProvisionedBlocksKeepTheirPromiseAcrossSnapshots) {
  ASSERT_NO_FATAL_FAILURE(OpenPool(12));
  ASSERT_OK(pool_->CreateVolume("p", 8 * kBS, Strategy::kProvision));
  ASSERT_OK(pool_->CreateVolume("n", 20 * kBS, Strategy::kNone));
  ASSERT_OK(pool_->Provision("p", 0, 3 * kBS));
  EXPECT_EQ(Info("p").provisioned_blocks, 3u);
  EXPECT_EQ(Reserved(), 0u);  // exclusive blocks, written in place
  ASSERT_OK(pool_->CreateSnapshots({{"p", "s"}}, false));
  EXPECT_EQ(Info("s").provisioned_blocks, 3u);
  EXPECT_EQ(Reserved(), 3u);  // o = g = 2: 1 each

  auto n = Open("n", true);
  ASSERT_OK(WriteBlocks(*n, 0, 6));  // 9 free, 3 reserved
  EXPECT_CODE(WriteBlocks(*n, 6, 1), kNoSpace);
  EXPECT_EQ(Free(), 3u);
  auto p = Open("p", true);
  auto s = Open("s", true);
  ASSERT_OK(WriteBlocks(*p, 0, 1, 0x21));
  ASSERT_OK(WriteBlocks(*s, 1, 1, 0x22));
  EXPECT_EQ(Reserved(), 1u);
  EXPECT_EQ(Free(), 1u);
  EXPECT_CODE(WriteBlocks(*p, 4, 1), kNoSpace);  // not provisioned: no promise
  std::vector<Extent> ext;
  ASSERT_OK(pool_->Extents(*p, 8 * kBS, 0, &ext, ExtentsMode::kSpace));
  ASSERT_EQ(ext.size(), 2u);
  EXPECT_EQ(ext[0].type, 0u);  // blocks 0-2: exclusive or shared-and-guaranteed
  EXPECT_EQ(ext[0].length, 3u * kBS);
  ASSERT_OK(WriteBlocks(*p, 2, 1, 0x23));  // the last shared block: the last reserved one
  EXPECT_EQ(Reserved(), 0u);
  EXPECT_EQ(Free(), 0u);
}

TEST_F(ReservationTest, StrategyChangeIsAdmittedOnlyIfItFits) {
  ASSERT_NO_FATAL_FAILURE(OpenPool(10));
  ASSERT_OK(pool_->CreateVolume("v", 8 * kBS, Strategy::kNone));
  {
    auto v = Open("v", true);
    ASSERT_OK(WriteBlocks(*v, 0, 2));
    Close(v);
  }
  ASSERT_OK(pool_->SetStrategy("v", Strategy::kFull));
  EXPECT_EQ(Reserved(), 6u);
  ASSERT_OK(pool_->CreateVolume("w", 4 * kBS, Strategy::kNone));
  Status s = pool_->SetStrategy("w", Strategy::kFull);
  EXPECT_EQ(s.code(), ErrorCode::kNoSpace) << s.ToString();
  EXPECT_NE(s.message().find("needs 4 more reserved block"), std::string::npos) << s.message();
  EXPECT_EQ(Info("w").strategy, Strategy::kNone);
  EXPECT_EQ(Reserved(), 6u);
  ASSERT_OK(pool_->SetStrategy("w", Strategy::kVolume));  // inactive: nothing yet
  EXPECT_EQ(Reserved(), 6u);
  std::shared_ptr<Volume> h;
  EXPECT_CODE(pool_->OpenVolume("w", true, &h), kNoSpace);
  ASSERT_OK(pool_->SetStrategy("v", Strategy::kNone));
  EXPECT_EQ(Reserved(), 0u);
  auto w = Open("w", true);
  EXPECT_EQ(Reserved(), 4u);
}

TEST_F(ReservationTest, GrowingAGuaranteedVolumeReservesTheNewBlocks) {
  ASSERT_NO_FATAL_FAILURE(OpenPool(12));
  ASSERT_OK(pool_->CreateVolume("f", 8 * kBS, Strategy::kFull));
  ASSERT_OK(pool_->ResizeVolume("f", 12 * kBS));
  EXPECT_EQ(Reserved(), 12u);
  Status s = pool_->ResizeVolume("f", 12 * kBS + 512);
  EXPECT_EQ(s.code(), ErrorCode::kNoSpace) << s.ToString();
  EXPECT_NE(s.message().find("growing 'f' needs 1 more reserved block"), std::string::npos)
      << s.message();
  EXPECT_EQ(Info("f").size, 12u * kBS);
  ASSERT_OK(pool_->ResizeVolume("f", 4 * kBS));
  EXPECT_EQ(Reserved(), 4u);

  ASSERT_OK(pool_->CreateVolume("v", 4 * kBS, Strategy::kVolume));
  ASSERT_OK(pool_->ResizeVolume("v", 20 * kBS));  // inactive: reserves nothing
  EXPECT_EQ(Reserved(), 4u);
  EXPECT_CODE(pool_->Activate("v"), kNoSpace);
  ASSERT_OK(pool_->ResizeVolume("v", 8 * kBS));
  ASSERT_OK(pool_->Activate("v"));
  EXPECT_EQ(Reserved(), 12u);
  EXPECT_CODE(pool_->ResizeVolume("v", 9 * kBS), kNoSpace);
  EXPECT_EQ(Info("v").size, 8u * kBS);
}

}  // namespace
}  // namespace thinsim
