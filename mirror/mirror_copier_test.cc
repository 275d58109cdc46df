// Tests of MirrorCopier: an in-memory pool's volume copied to real nbdkit
// targets (the memory plugin, with the error filter where a target must
// fail). The target must equal the volume after a background copy with
// writes during it, at every point in write-blocking mode, and with writers
// racing the copy; zero chunks must not be written where the target reads
// zero; target errors must leave the granules dirty.
#include "mirror/mirror_copier.h"

#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <thread>
#include <vector>

#include "base/status_test_util.h"
#include "mirror/testing/mirror_fixture.h"

namespace thinsim {
namespace {

using testing::NbdServer;
using Mode = MirrorCopier::CopyMode;
constexpr uint64_t kGran = 64 << 10;

class MirrorCopierTest : public testing::MirrorFixture {
 protected:
  void TearDown() override {
    if (copier_) (void)pool_->DetachObserver("v", copier_.get());
    copier_.reset();  // its connections close before the server stops
    MirrorFixture::TearDown();
  }
  // A copier of v onto the server's export, attached when `attach`.
  void StartCopier(const NbdServer& server, Mode mode, bool attach = true, uint64_t buf_size = 256 << 10) {
    ASSERT_TRUE(server.ok());
    std::unique_ptr<NbdTarget> target;
    ASSERT_OK(NbdTarget::Connect(server.Uri(), 4, &target));
    MirrorCopier::Options o;
    o.granularity = kGran;
    o.buf_size = buf_size;
    o.copy_mode = mode;
    ASSERT_OK(MirrorCopier::Check(kSize, target->info(), o));
    copier_ = std::make_shared<MirrorCopier>(pool_.get(), v_, std::move(target), o);
    ASSERT_OK(copier_->ProbeTargetZero());
    if (attach) ASSERT_OK(pool_->AttachObserver("v", copier_));
  }
  void CopyAll() {
    for (int i = 0; i < 10000 && copier_->dirty_bytes() > 0; ++i) {
      uint64_t copied = 0;
      std::optional<MirrorCopier::Failure> failure;
      copier_->CopySome(&copied, &failure);
      ASSERT_FALSE(failure) << failure->status.ToString();
    }
    ASSERT_EQ(copier_->dirty_bytes(), 0u);
  }
  std::shared_ptr<MirrorCopier> copier_;
};

TEST_F(MirrorCopierTest, CheckRefusesSizeMismatchSmallGranularityAndReadOnlyTargets) {
  NbdTarget::Info info;
  info.size = kSize;
  info.preferred_block = 64 << 10;
  MirrorCopier::Options o;
  o.granularity = 4096;
  Status s = MirrorCopier::Check(kSize, info, o);
  EXPECT_EQ(s.code(), ErrorCode::kInvalid);
  EXPECT_NE(s.message().find("granularity 4096 bytes is smaller than the target's preferred block size 65536 bytes"),
            std::string::npos)
      << s.message();
  o.granularity = 64 << 10;
  EXPECT_OK(MirrorCopier::Check(kSize, info, o));
  s = MirrorCopier::Check(kSize + 512, info, o);
  EXPECT_EQ(s.code(), ErrorCode::kInvalid);
  EXPECT_NE(s.message().find("different sizes"), std::string::npos) << s.message();
  o.granularity = 3000;
  EXPECT_EQ(MirrorCopier::Check(kSize, info, o).code(), ErrorCode::kInvalid);
  o.granularity = 64 << 10;
  info.read_only = true;
  EXPECT_EQ(MirrorCopier::Check(kSize, info, o).code(), ErrorCode::kReadOnly);
}

TEST_F(MirrorCopierTest, FullCopyWithWritesDuringItMakesTheTargetEqual) {
  Write(0, 100 << 10, 'a');
  Write(1 << 20, 5000, 'b');
  const NbdServer& server = Serve({"memory", "4M"});
  StartCopier(server, Mode::kBackground);
  copier_->dirty().MarkAll();
  uint64_t copied = 0;
  std::optional<MirrorCopier::Failure> failure;
  copier_->CopySome(&copied, &failure);
  ASSERT_FALSE(failure);
  EXPECT_EQ(copied, 256u << 10);  // buf_size per step
  Write(10 << 10, 100, 'c');      // already copied: dirty again
  Write(3 << 20, 1, 'd');         // not copied yet
  CopyAll();
  EXPECT_EQ(Target(), Source());
  EXPECT_TRUE(boost::icl::contains(copier_->done(), boost::icl::interval<uint64_t>::right_open(0, kSize)));
}

TEST_F(MirrorCopierTest, ZeroChunksAreNotWrittenWhereTheTargetReadsZero) {
  Write(2 << 20, kBS, 'z');
  // Every zero request fails on this target: a copy that sent one fails.
  const NbdServer& server = Serve({"--filter=error", "memory", "4M", "error-zero=EIO", "error-zero-rate=1",
                                      "error-trim=EIO", "error-trim-rate=1"});
  StartCopier(server, Mode::kBackground);
  copier_->dirty().MarkAll();
  CopyAll();
  EXPECT_EQ(Target(), Source());
}

TEST_F(MirrorCopierTest, HolesBecomeZeroesOnATargetThatHeldData) {
  const NbdServer& server = Serve({"memory", "4M"});
  {
    std::unique_ptr<NbdTarget> t;
    ASSERT_OK(NbdTarget::Connect(server.Uri(), 1, &t));
    std::vector<uint8_t> junk(kSize, 'j');
    ASSERT_OK(t->Write(junk.data(), kSize, 0));
  }
  Write(kGran + 7, 3, 'x');
  StartCopier(server, Mode::kBackground);
  copier_->dirty().MarkAll();
  CopyAll();
  EXPECT_EQ(Target(), Source());
}

TEST_F(MirrorCopierTest, WriteBlockingKeepsTheTargetEqualAtEveryAcknowledgement) {
  const NbdServer& server = Serve({"memory", "4M"});
  StartCopier(server, Mode::kWriteBlocking);  // sync none: both sides zero, nothing dirty
  copier_->MarkActivelySynced();
  EXPECT_TRUE(copier_->actively_synced());
  Write(5000, 100, 'p');             // inside one granule
  Write(kGran - 10, kGran + 20, 'q');  // across three, one whole
  EXPECT_EQ(Target(), Source());
  ASSERT_OK(pool_->Zero(*v_, 300, 5010, Pool::kMayTrim));
  EXPECT_EQ(Target(), Source());
  ASSERT_OK(pool_->Trim(*v_, 2 * kGran, kGran));
  EXPECT_EQ(Target(), Source());
  ASSERT_OK(pool_->Provision("v", 3 << 20, kGran));
  EXPECT_EQ(Target(), Source());
  EXPECT_EQ(copier_->dirty_bytes(), 0u);
  EXPECT_TRUE(copier_->actively_synced());
}

TEST_F(MirrorCopierTest, ATargetErrorLeavesTheRunDirtyAndWriteBlockingQueuesIt) {
  Write(0, kGran, 'e');
  const NbdServer& server = Serve({"--filter=error", "memory", "4M", "error-pwrite=ENOSPC",
                                      "error-pwrite-rate=1"});
  StartCopier(server, Mode::kBackground);
  copier_->dirty().Mark(0, kGran);
  uint64_t copied = 0;
  std::optional<MirrorCopier::Failure> failure;
  copier_->CopySome(&copied, &failure);
  ASSERT_TRUE(failure);
  EXPECT_EQ(failure->side, MirrorCopier::Side::kTarget);
  EXPECT_EQ(failure->status.code(), ErrorCode::kNoSpace) << failure->status.ToString();
  EXPECT_EQ(copier_->dirty_bytes(), kGran);

  copier_->set_copy_mode(Mode::kWriteBlocking);
  Write(2 * kGran, kGran, 'w');  // the client's write succeeds; the target's fails
  EXPECT_EQ(copier_->dirty_bytes(), 2 * kGran);
  EXPECT_FALSE(copier_->actively_synced());
  std::optional<MirrorCopier::Failure> active = copier_->TakeActiveFailure();
  ASSERT_TRUE(active);
  EXPECT_EQ(active->status.code(), ErrorCode::kNoSpace);
  EXPECT_FALSE(copier_->TakeActiveFailure());
}

// Writers in write-blocking mode race the background copy of a full sync
// over the same granules (intersecting active and background I/O, as QEMU's
// iotest 151): nothing deadlocks, and once the copy is done the target
// equals the source.
TEST_F(MirrorCopierTest, WritersRacingTheBackgroundCopyLeaveTheTargetEqual) {
  Write(0, kSize, 's');
  const NbdServer& server = Serve({"memory", "4M"});
  StartCopier(server, Mode::kBackground, true, 128 << 10);
  copier_->dirty().MarkAll();
  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  for (int w = 0; w < 3; ++w) {
    writers.emplace_back([&, w] {
      std::mt19937_64 rng(w);
      std::vector<uint8_t> buf(3 * kGran);
      for (int i = 0; !stop.load(); ++i) {
        uint64_t len = 1 + rng() % buf.size();
        uint64_t off = rng() % (kSize - len);
        std::fill(buf.begin(), buf.end(), static_cast<uint8_t>(w * 50 + i % 50));
        if (i % 7 == 0) {
          EXPECT_OK(pool_->Zero(*v_, len, off, i % 2 ? unsigned{Pool::kMayTrim} : 0u));
        } else {
          EXPECT_OK(pool_->Write(*v_, buf.data(), len, off));
        }
        if (i == 20 && w == 0) copier_->set_copy_mode(Mode::kWriteBlocking);  // job-change mid-copy
      }
    });
  }
  for (int i = 0; i < 40; ++i) {
    uint64_t copied = 0;
    std::optional<MirrorCopier::Failure> failure;
    copier_->CopySome(&copied, &failure);
    ASSERT_FALSE(failure) << failure->status.ToString();
  }
  stop.store(true);
  for (auto& t : writers) t.join();
  CopyAll();
  EXPECT_EQ(copier_->copy_mode(), Mode::kWriteBlocking);
  EXPECT_EQ(Target(), Source());
}

}  // namespace
}  // namespace thinsim
