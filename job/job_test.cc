// A job's life through its registry (job/job.h, job/job_registry.h), with
// CountingJob: the event sequence of a normal run, pause, cancel before
// and after READY, force, complete, auto-finalize and auto-dismiss off,
// each verb refused in each state it is not allowed in, error policies and
// the speed limit (on an injected clock: no timing).
#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "base/status_test_util.h"
#include "job/job_registry.h"
#include "job/testing/counting_job.h"
#include "job/testing/job_test_util.h"

namespace thinsim {
namespace {

using Names = std::vector<std::string>;
constexpr uint64_t kChunk = 64 << 10;

class JobTest : public ::testing::Test {
 protected:
  std::shared_ptr<CountingJob> StartJob(JobOptions options = {}, CountingJobSpec spec = {}) {
    if (options.id.empty()) options.id = "j";
    auto job = std::make_shared<CountingJob>(std::move(options), spec);
    Status s = registry_.Start(job);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return job;
  }
  Status Verb(JobVerb verb, JobVerbArgs args = {}) { return registry_.Verb("j", verb, args); }
  // Every verb the table refuses in the job's state, with QEMU's message.
  void ExpectRefusedVerbs(JobStatus state) {
    ASSERT_TRUE(job_->WaitForStatus(state)) << JobStatusName(state);
    for (JobVerb verb : {JobVerb::kCancel, JobVerb::kPause, JobVerb::kResume, JobVerb::kSetSpeed, JobVerb::kChange,
                         JobVerb::kComplete, JobVerb::kFinalize, JobVerb::kDismiss}) {
      if (JobVerbAllowed(state, verb)) continue;
      Status s = Verb(verb, {.change = {{"copy-mode", "write-blocking"}}});
      EXPECT_EQ(s.message(), "Job 'j' in state '" + std::string(JobStatusName(state)) +
                                 "' cannot accept command verb '" + std::string(JobVerbName(verb)) + "'");
    }
    EXPECT_EQ(job_->status(), state);  // refusals change nothing
  }
  uint64_t Progress() { return job_->Query().current_progress; }

  EventRecorder events_;
  JobRegistry registry_{events_.Sink()};
  std::shared_ptr<CountingJob> job_;
};

TEST_F(JobTest, NormalRunSendsQemusEventSequence) {
  job_ = StartJob({}, {.chunks = 3});
  ASSERT_TRUE(job_->WaitForStatus(JobStatus::kReady));
  JobInfo ready = job_->Query();
  EXPECT_EQ(ready.current_progress, 3 * kChunk);
  EXPECT_EQ(ready.total_progress, 3 * kChunk);
  EXPECT_EQ(ready.type, "counting");
  EXPECT_EQ(ready.fields, nlohmann::json({{"copied-chunks", 3}}));
  ASSERT_OK(Verb(JobVerb::kComplete));
  job_->WaitFinished();
  EXPECT_EQ(events_.Names("j"), (Names{"created", "running", "ready", "BLOCK_JOB_READY", "waiting", "pending",
                                       "BLOCK_JOB_PENDING", "BLOCK_JOB_COMPLETED", "concluded", "null"}));
  nlohmann::json completed = events_.Data("j", "BLOCK_JOB_COMPLETED").at(0);
  EXPECT_EQ(completed, nlohmann::json({{"id", "j"}, {"type", "counting"}, {"len", 3 * kChunk},
                                       {"offset", 3 * kChunk}, {"speed", 0}}));
  CountingJob::Ends ends = job_->ends();
  EXPECT_EQ(ends.commits, 1);
  EXPECT_EQ(ends.aborts, 0);
  EXPECT_EQ(ends.cleans, 1);
  EXPECT_TRUE(ends.flushed);
  EXPECT_TRUE(registry_.Query().empty());  // auto-dismissed
}

TEST_F(JobTest, AJobThatNeverGoesReadyEndsWhenItsWorkIsDone) {
  job_ = StartJob({}, {.chunks = 2, .mirror_like = false});
  job_->WaitFinished();
  EXPECT_EQ(events_.Names("j"), (Names{"created", "running", "waiting", "pending", "BLOCK_JOB_PENDING",
                                       "BLOCK_JOB_COMPLETED", "concluded", "null"}));
}

TEST_F(JobTest, PauseKeepsProgressStillAndResumeGoesOn) {
  job_ = StartJob({}, {.chunks = 8, .gated = true});
  job_->Allow(2);
  ASSERT_TRUE(WaitUntil([&] { return job_->copied() == 2; }));
  ASSERT_OK(Verb(JobVerb::kPause));
  EXPECT_EQ(Verb(JobVerb::kPause).message(), "Job 'j' is already paused");
  ASSERT_TRUE(job_->WaitForStatus(JobStatus::kPaused));
  job_->Allow(6);  // a paused job copies nothing, even when it may
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(Progress(), 2 * kChunk);
  EXPECT_EQ(job_->copied(), 2u);
  EXPECT_EQ(job_->status(), JobStatus::kPaused);
  ASSERT_OK(Verb(JobVerb::kResume));
  ASSERT_TRUE(job_->WaitForStatus(JobStatus::kReady));
  EXPECT_EQ(Progress(), 8 * kChunk);
  EXPECT_EQ(Verb(JobVerb::kResume).message(), "Can't resume job 'j': it was not paused");
  ASSERT_OK(Verb(JobVerb::kCancel));
  job_->WaitFinished();
  EXPECT_EQ(events_.Names("j"), (Names{"created", "running", "paused", "running", "ready", "BLOCK_JOB_READY",
                                       "waiting", "pending", "BLOCK_JOB_PENDING", "BLOCK_JOB_COMPLETED",
                                       "concluded", "null"}));
}

TEST_F(JobTest, CancelBeforeReadyIsCancelled) {
  job_ = StartJob({}, {.chunks = 8, .gated = true});
  job_->Allow(1);
  ASSERT_TRUE(WaitUntil([&] { return job_->copied() == 1; }));
  ASSERT_OK(Verb(JobVerb::kCancel));
  job_->WaitFinished();
  EXPECT_EQ(events_.Names("j"), (Names{"created", "running", "aborting", "BLOCK_JOB_CANCELLED", "concluded", "null"}));
  CountingJob::Ends ends = job_->ends();
  EXPECT_EQ(ends.commits, 0);
  EXPECT_EQ(ends.aborts, 1);
  EXPECT_EQ(ends.cleans, 1);
}

TEST_F(JobTest, CancelAfterReadyCompletesWithoutCompleting) {
  job_ = StartJob();
  ASSERT_TRUE(job_->WaitForStatus(JobStatus::kReady));
  ASSERT_OK(Verb(JobVerb::kCancel));
  job_->WaitFinished();
  Names names = events_.Names("j");
  EXPECT_EQ(names.end() - std::find(names.begin(), names.end(), "BLOCK_JOB_COMPLETED"), 3);
  EXPECT_EQ(std::count(names.begin(), names.end(), "BLOCK_JOB_CANCELLED"), 0);
  EXPECT_EQ(job_->ends().commits, 1);
  EXPECT_FALSE(job_->ends().flushed);  // a point-in-time copy: no job-complete
}

TEST_F(JobTest, ForceCancelAfterReadyIsCancelled) {
  job_ = StartJob();
  ASSERT_TRUE(job_->WaitForStatus(JobStatus::kReady));
  ASSERT_OK(Verb(JobVerb::kCancel, {.force = true}));
  job_->WaitFinished();
  EXPECT_EQ(events_.Names("j"), (Names{"created", "running", "ready", "BLOCK_JOB_READY", "aborting",
                                       "BLOCK_JOB_CANCELLED", "concluded", "null"}));
  EXPECT_EQ(job_->ends().aborts, 1);
}

TEST_F(JobTest, CancellingAPausedJobResumesItSoItEnds) {
  job_ = StartJob({}, {.chunks = 8, .gated = true});
  ASSERT_OK(Verb(JobVerb::kPause));
  ASSERT_TRUE(job_->WaitForStatus(JobStatus::kPaused));
  ASSERT_OK(Verb(JobVerb::kCancel));
  job_->WaitFinished();
  EXPECT_EQ(events_.Names("j"), (Names{"created", "running", "paused", "running", "aborting",
                                       "BLOCK_JOB_CANCELLED", "concluded", "null"}));
}

TEST_F(JobTest, CompleteOnlyInReadyOrStandby) {
  job_ = StartJob({}, {.chunks = 2, .gated = true});
  ASSERT_TRUE(job_->WaitForStatus(JobStatus::kRunning));
  EXPECT_EQ(Verb(JobVerb::kComplete).message(), "Job 'j' in state 'running' cannot accept command verb 'complete'");
  ASSERT_OK(Verb(JobVerb::kPause));
  ASSERT_TRUE(job_->WaitForStatus(JobStatus::kPaused));
  EXPECT_EQ(Verb(JobVerb::kComplete).message(), "Job 'j' in state 'paused' cannot accept command verb 'complete'");
  ASSERT_OK(Verb(JobVerb::kResume));
  job_->Allow(2);
  ASSERT_TRUE(job_->WaitForStatus(JobStatus::kReady));
  ASSERT_OK(Verb(JobVerb::kPause));
  ASSERT_TRUE(job_->WaitForStatus(JobStatus::kStandby));
  ASSERT_OK(Verb(JobVerb::kComplete));  // accepted in standby, done once resumed
  EXPECT_EQ(job_->status(), JobStatus::kStandby);
  ASSERT_OK(Verb(JobVerb::kResume));
  job_->WaitFinished();
  EXPECT_TRUE(job_->ends().flushed);
  EXPECT_EQ(events_.Data("j", "BLOCK_JOB_COMPLETED").size(), 1u);
}

TEST_F(JobTest, EachStateRefusesTheVerbsTheTableRefuses) {
  job_ = StartJob({.auto_finalize = false, .auto_dismiss = false}, {.chunks = 1, .gated = true});
  ExpectRefusedVerbs(JobStatus::kRunning);
  ASSERT_OK(Verb(JobVerb::kPause));
  ExpectRefusedVerbs(JobStatus::kPaused);
  ASSERT_OK(Verb(JobVerb::kResume));
  job_->Allow(1);
  ExpectRefusedVerbs(JobStatus::kReady);
  ASSERT_OK(Verb(JobVerb::kPause));
  ExpectRefusedVerbs(JobStatus::kStandby);
  ASSERT_OK(Verb(JobVerb::kResume));
  ASSERT_TRUE(job_->WaitForStatus(JobStatus::kReady));
  ASSERT_OK(Verb(JobVerb::kComplete));
  ExpectRefusedVerbs(JobStatus::kPending);
  ASSERT_OK(Verb(JobVerb::kFinalize));
  ExpectRefusedVerbs(JobStatus::kConcluded);
  ASSERT_OK(Verb(JobVerb::kDismiss));
}

TEST_F(JobTest, WithoutAutoFinalizeAJobWaitsInPendingForJobFinalize) {
  job_ = StartJob({.auto_finalize = false}, {.chunks = 2, .mirror_like = false});
  ASSERT_TRUE(job_->WaitForStatus(JobStatus::kPending));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(job_->status(), JobStatus::kPending);
  EXPECT_EQ(job_->ends().commits, 0);
  ASSERT_EQ(registry_.Query().size(), 1u);
  EXPECT_EQ(registry_.Query()[0].status, JobStatus::kPending);
  ASSERT_OK(Verb(JobVerb::kFinalize));  // returns once concluded
  EXPECT_TRUE(job_->finished());
  EXPECT_EQ(job_->ends().commits, 1);
  EXPECT_TRUE(registry_.Query().empty());
}

TEST_F(JobTest, CancelInPendingAborts) {
  job_ = StartJob({.auto_finalize = false}, {.chunks = 1, .mirror_like = false});
  ASSERT_TRUE(job_->WaitForStatus(JobStatus::kPending));
  ASSERT_OK(Verb(JobVerb::kCancel));
  job_->WaitFinished();
  EXPECT_EQ(events_.Names("j"), (Names{"created", "running", "waiting", "pending", "BLOCK_JOB_PENDING", "aborting",
                                       "BLOCK_JOB_CANCELLED", "concluded", "null"}));
  EXPECT_EQ(job_->ends().commits, 0);
  EXPECT_EQ(job_->ends().aborts, 1);
}

TEST_F(JobTest, WithoutAutoDismissAJobStaysConcludedUntilJobDismiss) {
  job_ = StartJob({.auto_dismiss = false}, {.chunks = 1, .mirror_like = false});
  job_->WaitFinished();
  std::vector<JobInfo> jobs = registry_.Query();
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].status, JobStatus::kConcluded);
  EXPECT_EQ(jobs[0].error, "");
  ASSERT_OK(Verb(JobVerb::kDismiss));
  EXPECT_TRUE(registry_.Query().empty());
  EXPECT_CODE(Verb(JobVerb::kDismiss), kNotFound);
  EXPECT_EQ(events_.Names("j").back(), "null");
}

TEST_F(JobTest, ReportFailsTheJobWithItsError) {
  job_ = StartJob({.auto_dismiss = false}, {.chunks = 4, .gated = true});
  job_->InjectError(1, JobOperation::kWrite, Status::IOError("target went away"));
  job_->Allow(4);
  job_->WaitFinished();
  JobInfo info = registry_.Query().at(0);
  EXPECT_EQ(info.status, JobStatus::kConcluded);
  EXPECT_EQ(info.error, "target went away");
  EXPECT_EQ(info.current_progress, 1 * kChunk);
  EXPECT_EQ(events_.Data("j", "BLOCK_JOB_ERROR"),
            std::vector<nlohmann::json>({{{"id", "j"}, {"operation", "write"}, {"action", "report"}, {"errno", "EIO"}}}));
  EXPECT_EQ(events_.Data("j", "BLOCK_JOB_COMPLETED").at(0).value("error", ""), "target went away");
  EXPECT_EQ(job_->ends().aborts, 1);
  EXPECT_EQ(job_->ends().commits, 0);
}

TEST_F(JobTest, StopPausesWithAnErrorEventAndResumeRetries) {
  job_ = StartJob({.on_target_error = JobErrorPolicy::kStop}, {.chunks = 4, .gated = true});
  job_->InjectError(0, JobOperation::kWrite, Status::IOError("flaky"), /*times=*/1);
  job_->Allow(5);  // four chunks and the attempt that fails
  ASSERT_TRUE(job_->WaitForStatus(JobStatus::kPaused));
  EXPECT_EQ(job_->copied(), 0u);
  EXPECT_EQ(events_.Data("j", "BLOCK_JOB_ERROR").at(0).value("action", ""), "stop");
  ASSERT_OK(Verb(JobVerb::kResume));
  ASSERT_TRUE(job_->WaitForStatus(JobStatus::kReady));
  EXPECT_EQ(job_->copied(), 4u);
  EXPECT_EQ(job_->Query().error, "");
}

TEST_F(JobTest, EnospcPausesOnlyForEnospc) {
  job_ = StartJob({.auto_dismiss = false, .on_target_error = JobErrorPolicy::kEnospc}, {.chunks = 4, .gated = true});
  job_->InjectError(1, JobOperation::kWrite, Status::NoSpace("target full"));
  job_->InjectError(2, JobOperation::kWrite, Status::IOError("target broke"));
  job_->Allow(4);
  ASSERT_TRUE(job_->WaitForStatus(JobStatus::kPaused));
  EXPECT_EQ(job_->copied(), 1u);
  ASSERT_OK(Verb(JobVerb::kResume));  // the target grew
  job_->WaitFinished();
  EXPECT_EQ(registry_.Query().at(0).error, "target broke");
  std::vector<nlohmann::json> errors = events_.Data("j", "BLOCK_JOB_ERROR");
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_EQ(errors[0], nlohmann::json({{"id", "j"}, {"operation", "write"}, {"action", "stop"}, {"errno", "ENOSPC"}}));
  EXPECT_EQ(errors[1].value("action", ""), "report");
  EXPECT_EQ(job_->copied(), 2u);
}

TEST_F(JobTest, IgnoreGoesOnAndRetriesLater) {
  job_ = StartJob({.on_source_error = JobErrorPolicy::kIgnore}, {.chunks = 3, .gated = true});
  job_->InjectError(0, JobOperation::kRead, Status::IOError("bad sector"), /*times=*/2);
  job_->Allow(5);  // three chunks and two attempts that fail
  ASSERT_TRUE(job_->WaitForStatus(JobStatus::kReady));
  EXPECT_EQ(job_->copied(), 3u);
  std::vector<nlohmann::json> errors = events_.Data("j", "BLOCK_JOB_ERROR");
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_EQ(errors[1], nlohmann::json({{"id", "j"}, {"operation", "read"}, {"action", "ignore"}, {"errno", "EIO"}}));
}

TEST_F(JobTest, SourceAndTargetErrorsFollowTheirOwnPolicies) {
  job_ = StartJob({.auto_dismiss = false, .on_source_error = JobErrorPolicy::kReport,
                   .on_target_error = JobErrorPolicy::kIgnore},
                  {.chunks = 2, .gated = true});
  job_->InjectError(0, JobOperation::kWrite, Status::IOError("w"));
  job_->InjectError(1, JobOperation::kRead, Status::IOError("r"));
  job_->Allow(3);
  job_->WaitFinished();
  EXPECT_EQ(registry_.Query().at(0).error, "r");
}

TEST_F(JobTest, SpeedLimitSleepsBytesOverSpeed) {
  FakeJobClock clock;
  job_ = StartJob({.speed = 1 << 20, .clock = &clock}, {.chunks = 8, .mirror_like = false});
  job_->WaitFinished();
  // 8 x 64 KiB at 1 MiB/s: half a second, to the nanosecond.
  EXPECT_EQ(clock.Now(), std::chrono::milliseconds(500));
  EXPECT_EQ(events_.Data("j", "BLOCK_JOB_COMPLETED").at(0).value("speed", 0u), 1u << 20);
}

TEST_F(JobTest, SetSpeedChangesTheLimitFromNowOn) {
  FakeJobClock clock;
  job_ = StartJob({.speed = 1 << 20, .clock = &clock}, {.chunks = 4, .gated = true});
  job_->Allow(2);
  EXPECT_TRUE(WaitUntil([&] { return clock.Now() >= std::chrono::milliseconds(125); }));
  ASSERT_OK(Verb(JobVerb::kSetSpeed, {.speed = 2 << 20}));
  EXPECT_EQ(job_->Query().speed, 2u << 20);
  job_->Allow(2);
  ASSERT_TRUE(job_->WaitForStatus(JobStatus::kReady));
  EXPECT_EQ(clock.Now(), std::chrono::microseconds(125000 + 62500));
  ASSERT_OK(Verb(JobVerb::kSetSpeed, {.speed = 0}));  // ready jobs accept it too
}

TEST_F(JobTest, SetSpeedAndCancelCutALongThrottleShort) {
  // One byte a second: each 64K chunk would sleep 18 hours on the real clock.
  job_ = StartJob({.speed = 1}, {.chunks = 2});
  ASSERT_TRUE(WaitUntil([&] { return job_->copied() == 1; }));
  ASSERT_OK(Verb(JobVerb::kSetSpeed, {.speed = 0}));
  ASSERT_TRUE(job_->WaitForStatus(JobStatus::kReady));
  ASSERT_OK(Verb(JobVerb::kSetSpeed, {.speed = 1}));
  ASSERT_OK(Verb(JobVerb::kCancel, {.force = true}));
  job_->WaitFinished();

  job_ = StartJob({.id = "slow", .speed = 1}, {.chunks = 2});
  ASSERT_TRUE(WaitUntil([&] { return job_->copied() == 1; }));
  ASSERT_OK(registry_.Verb("slow", JobVerb::kPause));  // a pause ends the sleep too
  ASSERT_TRUE(job_->WaitForStatus(JobStatus::kPaused));
  ASSERT_OK(registry_.Verb("slow", JobVerb::kCancel));
  job_->WaitFinished();
}

// A Run() that throws: the job fails with the exception's message, and the
// exception never leaves the job's thread.
class ThrowingJob : public Job {
 public:
  ThrowingJob() : Job("throwing", JobOptions{.id = "t", .auto_dismiss = false}) {}

 protected:
  Status Run() override { throw std::runtime_error("boom"); }
  void Abort() override { throw std::runtime_error("abort hook too"); }
};

TEST_F(JobTest, AnExceptionFromRunFailsTheJob) {
  auto job = std::make_shared<ThrowingJob>();
  ASSERT_OK(registry_.Start(job));
  job->WaitFinished();
  EXPECT_EQ(registry_.Query().at(0).error, "internal error: boom");
  EXPECT_EQ(events_.Names("t"), (Names{"created", "running", "aborting", "BLOCK_JOB_COMPLETED", "concluded"}));
}

TEST_F(JobTest, ChangeGoesToTheSubclass) {
  job_ = StartJob();
  ASSERT_TRUE(job_->WaitForStatus(JobStatus::kReady));
  ASSERT_OK(Verb(JobVerb::kChange, {.change = {{"copy-mode", "write-blocking"}}}));
  EXPECT_EQ(job_->changes(), nlohmann::json::parse(R"([{"copy-mode":"write-blocking"}])"));
  EXPECT_CODE(Verb(JobVerb::kChange, {.change = {{"speed", 1}}}), kInvalid);
}

}  // namespace
}  // namespace thinsim
