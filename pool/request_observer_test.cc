// Tests of the request hook (request_observer.h) and CopyRead: what an
// observer sees, refusals that change nothing, failures after the fact,
// attaching as a point in time, and copies that overlapping writes wait for.
#include "pool/request_observer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "base/status_test_util.h"
#include "pool/pool.h"
#include "pool/volume.h"

namespace thinsim {
namespace {

using namespace std::chrono_literals;
constexpr uint32_t kBS = 4096;

struct Seen {
  ChangeRequest::Kind kind;
  uint64_t offset;
  uint64_t length;
  bool after;
  ErrorCode result;  // AfterChange only
  uint8_t first_byte;  // kWrite only
};

// Records every call; can refuse before or fail after, and can block in
// BeforeChange until released.
class RecordingObserver : public RequestObserver {
 public:
  Status BeforeChange(const ChangeRequest& r) override {
    Record(r, false, ErrorCode::kOk);
    if (block_before) {
      entered.set_value();
      release.get_future().wait();
    }
    return refuse_before;
  }
  Status AfterChange(const ChangeRequest& r, const Status& result) override {
    Record(r, true, result.code());
    return fail_after;
  }
  void VolumeSize(uint64_t size) override {
    std::lock_guard<std::mutex> lock(mu_);
    sizes_.push_back(size);
  }
  std::vector<Seen> seen() {
    std::lock_guard<std::mutex> lock(mu_);
    return seen_;
  }
  std::vector<uint64_t> sizes() {
    std::lock_guard<std::mutex> lock(mu_);
    return sizes_;
  }

  Status refuse_before;
  Status fail_after;
  bool block_before = false;
  std::promise<void> entered;
  std::promise<void> release;

 private:
  void Record(const ChangeRequest& r, bool after, ErrorCode result) {
    std::lock_guard<std::mutex> lock(mu_);
    uint8_t b = r.kind == ChangeRequest::Kind::kWrite && r.length > 0 ? r.data[0] : 0;
    seen_.push_back({r.kind, r.offset, r.length, after, result, b});
  }
  std::mutex mu_;
  std::vector<Seen> seen_;
  std::vector<uint64_t> sizes_;
};

class RequestObserverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    PoolOptions o;
    o.block_size = kBS;
    o.size = 64 * kBS;
    ASSERT_OK(Pool::Open(o, &pool_));
    ASSERT_OK(pool_->CreateVolume("v", 16 * kBS, std::nullopt));
    ASSERT_OK(pool_->OpenVolume("v", true, &v_));
  }
  void TearDown() override {
    if (v_) pool_->CloseVolume(v_, true);
  }
  std::shared_ptr<RecordingObserver> Attach() {
    auto o = std::make_shared<RecordingObserver>();
    EXPECT_OK(pool_->AttachObserver("v", o));
    return o;
  }
  std::vector<uint8_t> ReadAll() {
    std::vector<uint8_t> b(16 * kBS);
    EXPECT_OK(pool_->Read(*v_, b.data(), b.size(), 0));
    return b;
  }

  std::unique_ptr<Pool> pool_;
  std::shared_ptr<Volume> v_;
};

TEST_F(RequestObserverTest, SeesEveryKindOfChangeBeforeAndAfter) {
  auto o = Attach();
  std::vector<uint8_t> a(kBS + 100, 'a');
  ASSERT_OK(pool_->Write(*v_, a.data(), a.size(), 10));
  ASSERT_OK(pool_->Write(*v_, a.data(), 512, 10));  // an exclusive overwrite in place
  ASSERT_OK(pool_->Zero(*v_, 300, 20, 0));
  ASSERT_OK(pool_->Trim(*v_, 3 * kBS, 100));  // whole blocks 1 and 2 only
  ASSERT_OK(pool_->Provision("v", 8 * kBS, kBS));
  using K = ChangeRequest::Kind;
  std::vector<Seen> s = o->seen();
  ASSERT_EQ(s.size(), 10u);
  auto expect = [&](size_t i, K kind, uint64_t off, uint64_t len) {
    for (size_t j : {2 * i, 2 * i + 1}) {
      EXPECT_EQ(s[j].kind, kind) << j;
      EXPECT_EQ(s[j].offset, off) << j;
      EXPECT_EQ(s[j].length, len) << j;
      EXPECT_EQ(s[j].after, j == 2 * i + 1) << j;
      EXPECT_EQ(s[j].result, ErrorCode::kOk) << j;
    }
  };
  expect(0, K::kWrite, 10, kBS + 100);
  EXPECT_EQ(s[0].first_byte, 'a');
  expect(1, K::kWrite, 10, 512);
  expect(2, K::kZero, 20, 300);
  expect(3, K::kTrim, kBS, 2 * kBS);
  expect(4, K::kProvision, 8 * kBS, kBS);
}

TEST_F(RequestObserverTest, IgnoredRequestsAndReadsAreNotObserved) {
  auto o = Attach();
  std::vector<uint8_t> b(kBS);
  ASSERT_OK(pool_->Read(*v_, b.data(), b.size(), 0));
  ASSERT_OK(pool_->Trim(*v_, 100, 10));  // less than a block: ignored
  ASSERT_OK(pool_->Write(*v_, b.data(), 0, 0));
  EXPECT_TRUE(o->seen().empty());
}

TEST_F(RequestObserverTest, ARefusalBeforeChangesNothing) {
  std::vector<uint8_t> a(2 * kBS, 'a');
  ASSERT_OK(pool_->Write(*v_, a.data(), a.size(), 0));
  auto o = Attach();
  o->refuse_before = Status::IOError("intent record not durable");
  std::vector<uint8_t> before = ReadAll();
  VolumeInfo info_before;
  ASSERT_OK(pool_->QueryVolume("v", &info_before));
  std::vector<uint8_t> b(3 * kBS, 'b');
  EXPECT_CODE(pool_->Write(*v_, b.data(), b.size(), 0), kIO);  // overwrite and allocation
  EXPECT_CODE(pool_->Trim(*v_, kBS, 0), kIO);
  EXPECT_EQ(ReadAll(), before);
  VolumeInfo info_after;
  ASSERT_OK(pool_->QueryVolume("v", &info_after));
  EXPECT_EQ(info_after.mapped_blocks, info_before.mapped_blocks);
  EXPECT_EQ(pool_->QueryPool().used_blocks, 2u);
  ASSERT_OK(pool_->TEST_CheckCounters());
  // It still sees AfterChange, with the refusal.
  std::vector<Seen> s = o->seen();
  ASSERT_EQ(s.size(), 4u);
  EXPECT_TRUE(s[1].after);
  EXPECT_EQ(s[1].result, ErrorCode::kIO);
}

TEST_F(RequestObserverTest, EveryObserverThatSawBeforeSeesAfterWhenALaterOneRefuses) {
  auto first = Attach();
  auto second = Attach();
  second->refuse_before = Status::Busy("no");
  std::vector<uint8_t> a(kBS, 'a');
  EXPECT_CODE(pool_->Write(*v_, a.data(), a.size(), 0), kBusy);
  std::vector<Seen> s = first->seen();
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[1].result, ErrorCode::kBusy);
}

TEST_F(RequestObserverTest, AFailureAfterFailsTheRequestWithItsDataInPlace) {
  auto o = Attach();
  o->fail_after = Status::IOError("mirror target refused the write");
  std::vector<uint8_t> a(kBS, 'a');
  EXPECT_CODE(pool_->Write(*v_, a.data(), a.size(), 0), kIO);
  std::vector<uint8_t> got(kBS);
  ASSERT_OK(pool_->Read(*v_, got.data(), got.size(), 0));
  EXPECT_EQ(got, a);
}

TEST_F(RequestObserverTest, LearnsTheSizeWhenAttachedAndAfterEachResize) {
  auto o = Attach();
  EXPECT_EQ(o->sizes(), (std::vector<uint64_t>{16 * kBS}));
  ASSERT_OK(pool_->ResizeVolume("v", 20 * kBS + 512));  // a grow with a partial last block
  ASSERT_OK(pool_->ResizeVolume("v", 24 * kBS));        // zeroes the old partial block's tail
  EXPECT_EQ(pool_->ResizeVolume("v", 8 * kBS).code(), ErrorCode::kBusy);  // a connection is open
  EXPECT_EQ(o->sizes(), (std::vector<uint64_t>{16 * kBS, 20 * kBS + 512, 24 * kBS}));
  pool_->CloseVolume(v_, true);
  v_.reset();
  ASSERT_OK(pool_->ResizeVolume("v", 8 * kBS));
  EXPECT_EQ(o->sizes().back(), 8 * kBS);
  EXPECT_TRUE(o->seen().empty());  // the tail zeroing of a grow is not a client's change
}

TEST_F(RequestObserverTest, DetachStopsObservingAndUnknownObserversAreRefused) {
  auto o = Attach();
  ASSERT_OK(pool_->DetachObserver("v", o.get()));
  EXPECT_CODE(pool_->DetachObserver("v", o.get()), kNotFound);
  EXPECT_CODE(pool_->AttachObserver("nope", o), kNotFound);
  EXPECT_CODE(pool_->AttachObserver("v", nullptr), kInvalid);
  std::vector<uint8_t> a(kBS, 'a');
  ASSERT_OK(pool_->Write(*v_, a.data(), a.size(), 0));
  EXPECT_TRUE(o->seen().empty());
}

// Attaching waits for changes in flight (here one held inside an earlier
// observer's BeforeChange); reads go on meanwhile.
TEST_F(RequestObserverTest, AttachingDrainsChangesInFlightButNotReads) {
  auto blocker = Attach();
  blocker->block_before = true;
  std::vector<uint8_t> a(kBS, 'a');
  auto write = std::async(std::launch::async, [&] { return pool_->Write(*v_, a.data(), a.size(), 0); });
  blocker->entered.get_future().wait();
  auto late = std::make_shared<RecordingObserver>();
  auto attach = std::async(std::launch::async, [&] { return pool_->AttachObserver("v", late); });
  EXPECT_EQ(attach.wait_for(50ms), std::future_status::timeout);
  std::vector<uint8_t> b(kBS);
  ASSERT_OK(pool_->Read(*v_, b.data(), kBS, 4 * kBS));  // a read elsewhere does not wait
  blocker->release.set_value();
  ASSERT_OK(write.get());
  ASSERT_OK(attach.get());
  EXPECT_TRUE(late->seen().empty());  // the write started before it was attached
  blocker->block_before = false;
  ASSERT_OK(pool_->Write(*v_, a.data(), a.size(), 0));
  EXPECT_EQ(late->seen().size(), 2u);
}

// A write overlapping a CopyRead waits until the copy has cleared its state,
// so the write's observer marks the range after the clear, never before.
TEST_F(RequestObserverTest, AnOverlappingWriteWaitsForCopyReadsWhileLocked) {
  std::vector<uint8_t> a(kBS, 'a');
  ASSERT_OK(pool_->Write(*v_, a.data(), a.size(), 0));
  auto o = Attach();
  std::promise<void> in_copy, finish_copy;
  std::atomic<bool> cleared{false};
  std::vector<uint8_t> copy(kBS);
  auto reader = std::async(std::launch::async, [&] {
    return pool_->CopyRead(*v_, copy.data(), kBS, 0, [&] {
      in_copy.set_value();
      finish_copy.get_future().wait();
      cleared = true;
    });
  });
  in_copy.get_future().wait();
  std::vector<uint8_t> b(kBS, 'b');
  auto write = std::async(std::launch::async, [&] {
    Status s = pool_->Write(*v_, b.data(), b.size(), 100);
    EXPECT_TRUE(cleared.load());
    return s;
  });
  EXPECT_EQ(write.wait_for(50ms), std::future_status::timeout);
  EXPECT_TRUE(o->seen().empty());
  finish_copy.set_value();
  ASSERT_OK(reader.get());
  ASSERT_OK(write.get());
  EXPECT_EQ(copy, a);
  EXPECT_EQ(o->seen().size(), 2u);
}

}  // namespace
}  // namespace thinsim
