// Tests of MirrorJob through a JobRegistry, after QEMU's iotests 041, 151
// and 248: complete and cancel before and after READY, write-blocking
// writes with the target equal at every point, incremental bitmaps and
// their bitmap-mode, a target filling with ENOSPC that pauses the job until
// it is resumed, and the refusals (size, granularity, bitmap arguments).
// Targets are real nbdkit servers (memory plugin; the error filter's
// error-pwrite-file turns ENOSPC on and off).
#include "mirror/mirror_job.h"

#include <gtest/gtest.h>

#include <fstream>
#include <mutex>
#include <vector>

#include "base/status_test_util.h"
#include "job/job_registry.h"
#include "mirror/testing/mirror_fixture.h"

namespace thinsim {
namespace {

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
  for (int i = 0; i < 200 && !Info().fields["actively-synced"].get<bool>(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(Info().fields["actively-synced"].get<bool>());
  Write(5000, 10, 'x');
  EXPECT_EQ(Target(), Source());  // no copy step needed: the write went through
  ASSERT_OK(pool_->Zero(*v_, 64 << 10, 0, Pool::kMayTrim));
  EXPECT_EQ(Target(), Source());
  EXPECT_EQ(registry_->Verb(id, JobVerb::kChange, JobVerbArgs{false, 0, {{"copy-mode", "background"}}}).code(),
            ErrorCode::kInvalid);
  ASSERT_OK(registry_->Verb(id, JobVerb::kComplete));
  job_->WaitFinished();
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
  char tmpl[] = "/tmp/thinsim-eio-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string trigger = std::string(tmpl) + "/fail";
  Serve({"--filter=error", "memory", "4M", "error-pwrite=EIO", "error-pwrite-rate=1",
         "error-pwrite-file=" + trigger});
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
  for (int i = 0; i < 500 && Info().current_progress < (64u << 10); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ASSERT_EQ(Info().current_progress, 64u << 10);
  std::ofstream(trigger).put('x');  // the second granule's write fails: the job fails
  job_->WaitFinished();
  EXPECT_FALSE(Info().error.empty());
  EXPECT_EQ(BitmapDirty("b"), boost::icl::interval_set<uint64_t>(
                                  boost::icl::interval<uint64_t>::right_open(2 << 20, (2 << 20) + (64 << 10))));
  std::remove(trigger.c_str());
  rmdir(tmpl);
}

TEST_F(MirrorJobTest, ATargetFullOfEnospcPausesTheJobUntilResumed) {
  Write(0, kSize, 'f');
  char tmpl[] = "/tmp/thinsim-enospc-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string trigger = std::string(tmpl) + "/full";
  std::ofstream(trigger).put('x');
  Serve({"--filter=error", "memory", "4M", "error-pwrite=ENOSPC", "error-pwrite-rate=1",
         "error-pwrite-file=" + trigger});
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
  rmdir(tmpl);
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
