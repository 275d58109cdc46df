// Tests of MirrorJob through a JobRegistry, after QEMU's iotests 041, 151
// and 248: complete and cancel before and after READY, write-blocking
// writes with the target equal at every point, incremental bitmaps and
// their bitmap-mode (the whole bitmap-mode x outcome matrix), a target
// filling with ENOSPC that pauses the job until it is resumed, and the
// refusals (size, granularity, bitmap arguments, write-blocking onto blocks
// larger than the pool's).
// Targets are real nbdkit servers (memory plugin; the error filter's
// error-pwrite-file turns ENOSPC on and off).
#include "mirror/mirror_job.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <mutex>
#include <thread>
#include <vector>

#include "base/status_test_util.h"
#include "job/job_registry.h"
#include "mirror/testing/mirror_fixture.h"

namespace thinsim {
namespace {

using CopyMode = MirrorCopier::CopyMode;

class MirrorJobTest : public testing::MirrorFixture {
 protected:
  void SetUp() override {
    MirrorFixture::SetUp();
    bitmaps_ = std::make_unique<BitmapRegistry>(pool_.get());
    registry_ = std::make_unique<JobRegistry>([this](const std::string& name, const nlohmann::json& data) {
      std::lock_guard lock(events_mu_);
      events_.push_back(name == "JOB_STATUS_CHANGE" ? name + ":" + data["status"].get<std::string>() : name);
    });
  }
  void TearDown() override {
    registry_.reset();  // cancels and joins every job first
    job_.reset();       // its connections close before the server stops
    MirrorFixture::TearDown();
    if (!trigger_dir_.empty()) {
      std::remove((trigger_dir_ + "/trigger").c_str());
      rmdir(trigger_dir_.c_str());
    }
  }
  // Serves an nbdkit memory target whose writes fail with `error` (an errno
  // name) while the returned file exists (the error filter's
  // error-pwrite-file); TearDown removes it.
  std::string ServeFailingWhileTriggered(const std::string& error) {
    char tmpl[] = "/tmp/thinsim-trigger-XXXXXX";
    EXPECT_NE(mkdtemp(tmpl), nullptr);
    trigger_dir_ = tmpl;
    const std::string trigger = trigger_dir_ + "/trigger";
    Serve({"--filter=error", "memory", "4M", "error-pwrite=" + error, "error-pwrite-rate=1",
           "error-pwrite-file=" + trigger});
    return trigger;
  }
  // Waits (5 s at most) until the last job is actively synced; whether it is.
  bool WaitActivelySynced() {
    for (int i = 0; i < 500 && !Info().fields["actively-synced"].get<bool>(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return Info().fields["actively-synced"].get<bool>();
  }
  // Waits (5 s at most) until the last job has copied `bytes`.
  void WaitForProgress(uint64_t bytes) {
    for (int i = 0; i < 2500 && Info().current_progress < bytes; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  MirrorOptions Options(SyncMode sync = SyncMode::kFull) {
    MirrorOptions o;
    o.volume = "v";
    o.target = server_->Uri();
    o.sync = sync;
    o.buf_size = 256 << 10;
    return o;
  }
  // Creates and starts a job; its id.
  std::string Start(const MirrorOptions& o, JobOptions job = {}) {
    std::shared_ptr<MirrorJob> mj;
    Status s = MirrorJob::Create(pool_.get(), bitmaps_.get(), o, job, &mj);
    EXPECT_OK(s);
    if (!s.ok()) return "";
    std::string id;
    EXPECT_OK(registry_->Start(mj, &id));
    job_ = mj;
    return id;
  }
  // The last started job, also once the registry has forgotten it.
  JobInfo Info() { return job_->Query(); }
  std::vector<std::string> Events() {
    std::lock_guard lock(events_mu_);
    return events_;
  }
  bool HasEvent(const std::string& name) {
    auto e = Events();
    return std::find(e.begin(), e.end(), name) != e.end();
  }
  boost::icl::interval_set<uint64_t> BitmapDirty(const std::string& name) {
    std::shared_ptr<VolumeBitmaps> set;
    EXPECT_OK(bitmaps_->Get("v", false, &set));
    boost::icl::interval_set<uint64_t> out;
    if (set) EXPECT_OK(set->DirtyRanges(name, &out));
    return out;
  }
  std::shared_ptr<VolumeBitmaps> AddBitmap(const std::string& name) {
    std::shared_ptr<VolumeBitmaps> set;
    EXPECT_OK(bitmaps_->Get("v", true, &set));
    EXPECT_OK(set->Add(name, 64 << 10, false, false));
    return set;
  }

  std::unique_ptr<BitmapRegistry> bitmaps_;
  std::unique_ptr<JobRegistry> registry_;
  std::shared_ptr<MirrorJob> job_;
  std::mutex events_mu_;
  std::vector<std::string> events_;
  std::string trigger_dir_;  // ServeFailingWhileTriggered's
};

TEST_F(MirrorJobTest, FullMirrorGoesReadyAndCompletesWithTheTargetEqual) {
  Write(0, 300 << 10, 'a');
  Write(3 << 20, 5000, 'b');
  Serve({"memory", "4M"});
  std::string id = Start(Options());
  ASSERT_TRUE(job_->WaitForStatus(JobStatus::kReady));
  Write(1 << 20, 100, 'c');  // after READY: copied before completion
  ASSERT_OK(registry_->Verb(id, JobVerb::kComplete));
  job_->WaitFinished();
  EXPECT_EQ(Target(), Source());
  EXPECT_TRUE(HasEvent("BLOCK_JOB_READY"));
  EXPECT_TRUE(HasEvent("BLOCK_JOB_COMPLETED"));
  EXPECT_FALSE(HasEvent("BLOCK_JOB_CANCELLED"));
  // The volume is free again: it can be deleted once its own writer goes.
  pool_->CloseVolume(v_, true);
  v_.reset();
  EXPECT_OK(pool_->DeleteVolume("v"));
}

TEST_F(MirrorJobTest, CancelAfterReadyCompletesAPointInTimeCopyAndBeforeReadyCancels) {
  Write(0, kSize, 'r');
  Serve({"memory", "4M"});
  std::string id = Start(Options());
  ASSERT_TRUE(job_->WaitForStatus(JobStatus::kReady));
  Write(2 << 20, 10, 'n');
  ASSERT_OK(registry_->Verb(id, JobVerb::kCancel));
  job_->WaitFinished();
  EXPECT_TRUE(HasEvent("BLOCK_JOB_COMPLETED"));
  EXPECT_EQ(Target(), Source());

  // Before READY (paused first, so it cannot get there): cancelled.
  JobOptions paused;
  paused.speed = 1;  // one byte a second: never ready within the test
  std::string slow = Start(Options(), paused);
  ASSERT_OK(registry_->Verb(slow, JobVerb::kCancel));
  job_->WaitFinished();
  EXPECT_TRUE(HasEvent("BLOCK_JOB_CANCELLED"));
}

TEST_F(MirrorJobTest, PauseKeepsTheProgressStill) {
  Write(0, kSize, 'p');
  Serve({"memory", "4M"});
  JobOptions slow;
  slow.speed = 2 << 20;  // two seconds for the whole volume
  std::string id = Start(Options(), slow);
  ASSERT_OK(registry_->Verb(id, JobVerb::kPause));
  ASSERT_TRUE(job_->WaitForStatus(JobStatus::kPaused));
  uint64_t before = Info().current_progress;
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(Info().current_progress, before);
  ASSERT_OK(registry_->Verb(id, JobVerb::kResume));
  ASSERT_OK(registry_->Verb(id, JobVerb::kSetSpeed, JobVerbArgs{false, 0, {}}));
  ASSERT_TRUE(job_->WaitForStatus(JobStatus::kReady));
  ASSERT_OK(registry_->Verb(id, JobVerb::kComplete));
  job_->WaitFinished();
  EXPECT_EQ(Target(), Source());
}

TEST_F(MirrorJobTest, WriteBlockingIsActivelySyncedAndKeepsTheTargetEqual) {
  Write(0, 100 << 10, 'w');
  Serve({"memory", "4M"});
  std::string id = Start(Options());
  ASSERT_TRUE(job_->WaitForStatus(JobStatus::kReady));
  EXPECT_FALSE(Info().fields["actively-synced"].get<bool>());
  ASSERT_OK(registry_->Verb(id, JobVerb::kChange, JobVerbArgs{false, 0, {{"copy-mode", "write-blocking"}}}));
  EXPECT_TRUE(WaitActivelySynced());
  Write(5000, 10, 'x');
  EXPECT_EQ(Target(), Source());  // no copy step needed: the write went through
  ASSERT_OK(pool_->Zero(*v_, 64 << 10, 0, Pool::kMayTrim));
  EXPECT_EQ(Target(), Source());
  EXPECT_EQ(registry_->Verb(id, JobVerb::kChange, JobVerbArgs{false, 0, {{"copy-mode", "background"}}}).code(),
            ErrorCode::kInvalid);
  ASSERT_OK(registry_->Verb(id, JobVerb::kComplete));
  job_->WaitFinished();
}

TEST_F(MirrorJobTest, WriteBlockingWidensUnalignedWritesToTheTargetsMinimumBlock) {
  // A target that refuses any request not aligned to 4 KiB (qemu-nbd over
  // O_DIRECT advertises such a minimum): the write-through of a 10-byte
  // write sends the whole 4 KiB block around it, so the mirror stays
  // actively synced and the target equal without a copy step.
  Write(0, 100 << 10, 'w');
  Serve({"--filter=blocksize-policy", "memory", "4M", "blocksize-minimum=4096", "blocksize-error-policy=error"});
  MirrorOptions o = Options();
  o.copy_mode = CopyMode::kWriteBlocking;
  Start(o);
  ASSERT_TRUE(WaitActivelySynced());
  Write(5000, 10, 'x');
  EXPECT_EQ(Target(), Source());
  Write(3 * 4096 + 1, 9000, 'y');  // three target blocks, both edges partial
  EXPECT_EQ(Target(), Source());
  ASSERT_OK(pool_->Zero(*v_, 100, 70000, 0));  // a sub-block zero
  EXPECT_EQ(Target(), Source());
  EXPECT_TRUE(Info().fields["actively-synced"].get<bool>());
}

TEST_F(MirrorJobTest, WriteBlockingOntoATargetWithBlocksLargerThanThePoolsIsRefused) {
  Serve({"--filter=blocksize-policy", "memory", "4M", "blocksize-minimum=65536", "blocksize-preferred=65536",
         "blocksize-error-policy=error"});
  MirrorOptions o = Options();
  o.granularity = 64 << 10;
  o.copy_mode = CopyMode::kWriteBlocking;
  std::shared_ptr<MirrorJob> mj;
  Status s = MirrorJob::Create(pool_.get(), bitmaps_.get(), o, {}, &mj);
  EXPECT_EQ(s.code(), ErrorCode::kInvalid);
  EXPECT_NE(s.message().find("65536"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("4096"), std::string::npos) << s.message();
  // In background mode it runs, and cannot be changed to write-blocking.
  o.copy_mode = CopyMode::kBackground;
  std::string id = Start(o);
  EXPECT_EQ(registry_->Verb(id, JobVerb::kChange, JobVerbArgs{false, 0, {{"copy-mode", "write-blocking"}}}).code(),
            ErrorCode::kInvalid);
  ASSERT_TRUE(job_->WaitForStatus(JobStatus::kReady));
  ASSERT_OK(registry_->Verb(id, JobVerb::kComplete));
  job_->WaitFinished();
  EXPECT_EQ(Target(), Source());
}

TEST_F(MirrorJobTest, IncrementalCopiesTheBitmapAndOnSuccessClearsIt) {
  Serve({"memory", "4M"});
  auto set = AddBitmap("b");
  Write(1 << 20, 10, 'i');
  MirrorOptions o = Options(SyncMode::kIncremental);
  o.bitmap = "b";
  std::string id = Start(o);
  EXPECT_EQ(set->Clear("b").code(), ErrorCode::kBusy);  // in use by the job
  ASSERT_TRUE(job_->WaitForStatus(JobStatus::kReady));
  EXPECT_EQ(Info().total_progress, 64u << 10);  // one granule of the bitmap
  ASSERT_OK(registry_->Verb(id, JobVerb::kComplete));
  job_->WaitFinished();
  // Only the bitmap's granule was copied: the rest of the target is zero,
  // as the volume.
  EXPECT_EQ(Target(), Source());
  EXPECT_TRUE(BitmapDirty("b").empty());
  BitmapInfo info;
  ASSERT_OK(set->Query("b", &info));
  EXPECT_FALSE(info.busy);
}

TEST_F(MirrorJobTest, BitmapModeNeverLeavesTheBitmapAfterSuccess) {
  Serve({"memory", "4M"});
  AddBitmap("b");
  Write(0, 10, 'n');
  MirrorOptions o = Options(SyncMode::kIncremental);
  o.bitmap = "b";
  o.bitmap_mode = BitmapMode::kNever;
  std::string id = Start(o);
  ASSERT_TRUE(job_->WaitForStatus(JobStatus::kReady));
  ASSERT_OK(registry_->Verb(id, JobVerb::kComplete));
  job_->WaitFinished();
  EXPECT_FALSE(BitmapDirty("b").empty());

}

TEST_F(MirrorJobTest, BitmapModeAlwaysClearsWhatWasCopiedWhenTheJobFails) {
  const std::string trigger = ServeFailingWhileTriggered("EIO");
  AddBitmap("b");
  Write(0, 10, 'a');        // granule 0
  Write(2 << 20, 10, 'b');  // granule 32
  MirrorOptions o = Options(SyncMode::kIncremental);
  o.bitmap = "b";
  o.bitmap_mode = BitmapMode::kAlways;
  o.buf_size = 64 << 10;  // one granule per step
  JobOptions job;
  job.speed = 64 << 10;  // a second between the steps
  std::string id = Start(o, job);
  WaitForProgress(64 << 10);
  ASSERT_EQ(Info().current_progress, 64u << 10);
  std::ofstream(trigger).put('x');  // the second granule's write fails: the job fails
  job_->WaitFinished();
  EXPECT_FALSE(Info().error.empty());
  EXPECT_EQ(BitmapDirty("b"), boost::icl::interval_set<uint64_t>(
                                  boost::icl::interval<uint64_t>::right_open(2 << 20, (2 << 20) + (64 << 10))));
}

// The bitmap-sync-mirror matrix of the 2024 series (seed 004, after QEMU's
// iotest 257): each bitmap-mode against each way a job ends - success, a
// target I/O error, a cancel before READY - with the bitmap's dirty
// granules counted after each step, as the iotest prints them. A second
// incremental mirror (on-success) then resumes onto the same target from
// whatever the first left dirty, copying exactly that, and the target must
// equal the volume: the use case the series was written for, resuming a
// failed mirror later.
enum class Outcome { kSuccess, kTargetError, kCancel };

struct MatrixCell {
  BitmapMode mode;
  Outcome outcome;
  // Dirty granules: after the writes, after the first job ended, after
  // the resuming job.
  std::vector<uint64_t> dirty;
  uint64_t resumed;  // granules the resuming job copied
};

const char* OutcomeName(Outcome outcome) {
  static const char* kNames[] = {"Success", "TargetError", "Cancel"};
  return kNames[static_cast<int>(outcome)];
}

std::string CellName(const ::testing::TestParamInfo<MatrixCell>& info) {
  std::string mode(BitmapModeName(info.param.mode));
  mode.erase(std::remove(mode.begin(), mode.end(), '-'), mode.end());
  return mode + "_" + OutcomeName(info.param.outcome);
}

// What ctest shows for a cell, rather than its bytes.
void PrintTo(const MatrixCell& cell, std::ostream* os) {
  *os << BitmapModeName(cell.mode) << " x " << OutcomeName(cell.outcome);
}

class BitmapSyncMatrixTest : public MirrorJobTest, public ::testing::WithParamInterface<MatrixCell> {
 protected:
  static constexpr uint64_t kGranule = 64 << 10;
  uint64_t DirtyGranules() { return boost::icl::length(BitmapDirty("b")) / kGranule; }
};

TEST_P(BitmapSyncMatrixTest, DirtyCountsAfterEachStepAndTheResumedTargetEqual) {
  const MatrixCell& cell = GetParam();
  const std::string trigger = ServeFailingWhileTriggered("EIO");
  AddBitmap("b");
  for (uint64_t g : {0, 8, 32, 50}) Write(g * kGranule, 10, static_cast<uint8_t>('a' + g));
  std::vector<uint64_t> dirty = {DirtyGranules()};

  MirrorOptions o = Options(SyncMode::kIncremental);
  o.bitmap = "b";
  o.bitmap_mode = cell.mode;
  o.buf_size = kGranule;  // one granule per step
  JobOptions job;
  job.speed = 2 * kGranule;  // half a second between the steps
  std::string id = Start(o, job);
  WaitForProgress(kGranule);
  ASSERT_EQ(Info().current_progress, kGranule);  // granule 0 copied, the rest to come
  Write(60 * kGranule, 10, 'w');                 // a write while the job runs
  switch (cell.outcome) {
    case Outcome::kSuccess:
      ASSERT_TRUE(job_->WaitForStatus(JobStatus::kReady));
      ASSERT_OK(registry_->Verb(id, JobVerb::kComplete));
      break;
    case Outcome::kTargetError:
      std::ofstream(trigger).put('x');  // the next granule's write fails: the job fails
      break;
    case Outcome::kCancel:
      ASSERT_OK(registry_->Verb(id, JobVerb::kCancel));
      break;
  }
  job_->WaitFinished();
  EXPECT_EQ(Info().error.empty(), cell.outcome != Outcome::kTargetError) << Info().error;
  EXPECT_TRUE(HasEvent(cell.outcome == Outcome::kCancel ? "BLOCK_JOB_CANCELLED" : "BLOCK_JOB_COMPLETED"));
  dirty.push_back(DirtyGranules());
  std::remove(trigger.c_str());

  MirrorOptions resume = Options(SyncMode::kIncremental);
  resume.bitmap = "b";
  Start(resume);
  ASSERT_TRUE(job_->WaitForStatus(JobStatus::kReady));
  const uint64_t resumed = Info().total_progress / kGranule;
  ASSERT_OK(registry_->Verb(job_->id(), JobVerb::kComplete));
  job_->WaitFinished();
  dirty.push_back(DirtyGranules());

  EXPECT_EQ(dirty, cell.dirty);
  EXPECT_EQ(resumed, cell.resumed);
  EXPECT_EQ(Target(), Source());
}

// Four granules dirty, then a fifth written while the first job runs.
// on-success clears the bitmap only when the job succeeds; always also
// clears, after a failure or a cancel, what the job had copied (granule 0:
// the write during the job was not copied and stays); never leaves it.
INSTANTIATE_TEST_SUITE_P(
    Matrix, BitmapSyncMatrixTest,
    ::testing::Values(MatrixCell{BitmapMode::kOnSuccess, Outcome::kSuccess, {4, 0, 0}, 0},
                      MatrixCell{BitmapMode::kOnSuccess, Outcome::kTargetError, {4, 5, 0}, 5},
                      MatrixCell{BitmapMode::kOnSuccess, Outcome::kCancel, {4, 5, 0}, 5},
                      MatrixCell{BitmapMode::kAlways, Outcome::kSuccess, {4, 0, 0}, 0},
                      MatrixCell{BitmapMode::kAlways, Outcome::kTargetError, {4, 4, 0}, 4},
                      MatrixCell{BitmapMode::kAlways, Outcome::kCancel, {4, 4, 0}, 4},
                      MatrixCell{BitmapMode::kNever, Outcome::kSuccess, {4, 5, 0}, 5},
                      MatrixCell{BitmapMode::kNever, Outcome::kTargetError, {4, 5, 0}, 5},
                      MatrixCell{BitmapMode::kNever, Outcome::kCancel, {4, 5, 0}, 5}),
    CellName);

TEST_F(MirrorJobTest, ATargetFullOfEnospcPausesTheJobUntilResumed) {
  Write(0, kSize, 'f');
  const std::string trigger = ServeFailingWhileTriggered("ENOSPC");
  std::ofstream(trigger).put('x');  // full from the start
  JobOptions job;
  job.on_target_error = JobErrorPolicy::kEnospc;
  std::string id = Start(Options(), job);
  ASSERT_TRUE(job_->WaitForStatus(JobStatus::kPaused));
  EXPECT_TRUE(HasEvent("BLOCK_JOB_ERROR"));
  std::remove(trigger.c_str());  // the target has room again
  ASSERT_OK(registry_->Verb(id, JobVerb::kResume));
  ASSERT_TRUE(job_->WaitForStatus(JobStatus::kReady));
  ASSERT_OK(registry_->Verb(id, JobVerb::kComplete));
  job_->WaitFinished();
  EXPECT_EQ(Target(), Source());
}

TEST_F(MirrorJobTest, ATargetThatGoesAwayFailsTheJobOrUnderStopWaitsForResumeAndReconnects) {
  Write(0, kSize, 'g');
  char tmpl[] = "/tmp/thinsim-file-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string disk = std::string(tmpl) + "/disk";
  ASSERT_EQ(truncate((std::ofstream(disk), disk.c_str()), kSize), 0);
  Serve({"file", disk});  // keeps what it got across a restart
  MirrorOptions o = Options();
  o.buf_size = 64 << 10;
  JobOptions job;
  job.speed = 1 << 20;  // four seconds: the server goes away meanwhile
  job.on_target_error = JobErrorPolicy::kStop;
  Start(o, job);
  for (int i = 0; i < 500 && Info().current_progress == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  server_->Kill();
  ASSERT_TRUE(job_->WaitForStatus(JobStatus::kPaused));
  EXPECT_TRUE(HasEvent("BLOCK_JOB_ERROR"));
  ASSERT_TRUE(server_->Restart());
  ASSERT_OK(job_->SetSpeed(0));
  ASSERT_OK(job_->Resume());
  ASSERT_TRUE(job_->WaitForStatus(JobStatus::kReady));
  ASSERT_OK(job_->Complete());
  job_->WaitFinished();
  EXPECT_EQ(Target(), Source());

  // Under report (the default) the job fails, naming the target.
  job.on_target_error = JobErrorPolicy::kReport;
  Start(o, job);
  for (int i = 0; i < 500 && Info().current_progress == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  server_->Kill();
  job_->WaitFinished();
  EXPECT_NE(Info().error.find(server_->socket()), std::string::npos) << Info().error;
  std::filesystem::remove_all(tmpl);
}

TEST_F(MirrorJobTest, RefusalsNameWhatIsWrong) {
  Serve({"--filter=blocksize-policy", "memory", "4M", "blocksize-preferred=64K"});
  std::shared_ptr<MirrorJob> mj;
  MirrorOptions o = Options();
  o.granularity = 4096;
  Status s = MirrorJob::Create(pool_.get(), bitmaps_.get(), o, {}, &mj);
  EXPECT_EQ(s.code(), ErrorCode::kInvalid);
  EXPECT_NE(s.message().find("granularity 4096 bytes is smaller than the target's preferred block size 65536"),
            std::string::npos)
      << s.message();
  o = Options(SyncMode::kIncremental);
  EXPECT_EQ(MirrorJob::Create(pool_.get(), bitmaps_.get(), o, {}, &mj).code(), ErrorCode::kInvalid);
  o.bitmap = "missing";
  EXPECT_EQ(MirrorJob::Create(pool_.get(), bitmaps_.get(), o, {}, &mj).code(), ErrorCode::kNotFound);
  o = Options();
  o.bitmap = "b";
  EXPECT_EQ(MirrorJob::Create(pool_.get(), bitmaps_.get(), o, {}, &mj).code(), ErrorCode::kInvalid);
  ASSERT_OK(pool_->CreateVolume("small", 1 << 20, std::nullopt));
  o = Options();
  o.volume = "small";
  s = MirrorJob::Create(pool_.get(), bitmaps_.get(), o, {}, &mj);
  EXPECT_EQ(s.code(), ErrorCode::kInvalid);
  EXPECT_NE(s.message().find("different sizes"), std::string::npos) << s.message();
  o.volume = "nope";
  EXPECT_EQ(MirrorJob::Create(pool_.get(), bitmaps_.get(), o, {}, &mj).code(), ErrorCode::kNotFound);
  o = Options();
  o.target = "nbd+unix:///?socket=/nonexistent.sock";
  EXPECT_EQ(MirrorJob::Create(pool_.get(), bitmaps_.get(), o, {}, &mj).code(), ErrorCode::kUnavailable);
  EXPECT_FALSE(mj);
}

}  // namespace
}  // namespace thinsim
