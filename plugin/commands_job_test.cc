// The job-* and query-jobs commands (SPEC section 13) through
// ControlCommands, with CountingJob (job/testing/counting_job.h) started
// directly in the server's registry (no job type is started by a command
// yet): query shapes, verbs and QEMU's refusal, strict arguments, the
// events, and a job's volumes refusing delete and shrink.
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "base/status_test_util.h"
#include "job/testing/counting_job.h"
#include "job/testing/job_test_util.h"
#include "plugin/control_commands.h"
#include "plugin/testing/command_test.h"

namespace thinsim {
namespace {

using nlohmann::json;

constexpr uint64_t kBS = 64 << 10;

class JobCommandsTest : public CommandTest {
 protected:
  void SetUp() override {
    ASSERT_OK(OpenMemoryPool(64, kBS, &pool_));
    ASSERT_OK(pool_->CreateVolume("vol", 16 * kBS, std::nullopt));
    commands_ = std::make_unique<ControlCommands>(pool_.get());
    commands_->SetJobEventSink(events_.Sink());
  }

  std::shared_ptr<CountingJob> StartJob(JobOptions options, CountingJobSpec spec = {}) {
    auto job = std::make_shared<CountingJob>(std::move(options), spec);
    Status s = commands_->jobs()->Start(job);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return job;
  }
  ControlCommands* commands() override { return commands_.get(); }

  std::unique_ptr<Pool> pool_;
  EventRecorder events_;  // outlives commands_, whose jobs send to it
  std::unique_ptr<ControlCommands> commands_;
};

TEST_F(JobCommandsTest, QueryJobsShowsQemusJobInfoAndTheTypesFields) {
  EXPECT_EQ(Ok("query-jobs"), json::array());
  auto job = StartJob({.id = "m0", .speed = 1 << 20}, {.chunks = 2, .chunk_size = kBS, .gated = true});
  job->Allow(1);
  ASSERT_TRUE(WaitUntil([&] { return job->copied() == 1; }));
  EXPECT_EQ(Ok("query-jobs"), json::parse(R"([{"id":"m0","type":"counting","status":"running",
      "current-progress":65536,"total-progress":131072,"speed":1048576,"copied-chunks":1}])"));
  EXPECT_EQ(Refused("query-jobs", {{"id", "m0"}}), "Invalid: unknown argument 'id'");
}

TEST_F(JobCommandsTest, VerbsDriveTheJobAndABadStateGetsQemusMessage) {
  auto job = StartJob({.id = "m0", .auto_finalize = false, .auto_dismiss = false}, {.chunks = 1, .gated = true});
  ASSERT_TRUE(job->WaitForStatus(JobStatus::kRunning));
  EXPECT_EQ(Refused("job-complete", {{"id", "m0"}}),
            "Invalid: Job 'm0' in state 'running' cannot accept command verb 'complete'");
  Ok("job-pause", {{"id", "m0"}});
  ASSERT_TRUE(job->WaitForStatus(JobStatus::kPaused));
  EXPECT_EQ(Ok("query-jobs")[0]["status"], "paused");
  Ok("job-resume", {{"id", "m0"}});
  job->Allow(1);
  ASSERT_TRUE(job->WaitForStatus(JobStatus::kReady));
  Ok("job-change", {{"id", "m0"}, {"copy-mode", "write-blocking"}});
  EXPECT_EQ(job->changes(), json::parse(R"([{"copy-mode":"write-blocking"}])"));
  Ok("job-complete", {{"id", "m0"}});
  ASSERT_TRUE(job->WaitForStatus(JobStatus::kPending));
  EXPECT_EQ(Refused("job-dismiss", {{"id", "m0"}}),
            "Invalid: Job 'm0' in state 'pending' cannot accept command verb 'dismiss'");
  Ok("job-finalize", {{"id", "m0"}});
  EXPECT_EQ(Ok("query-jobs")[0]["status"], "concluded");
  Ok("job-dismiss", {{"id", "m0"}});
  EXPECT_EQ(Ok("query-jobs"), json::array());
  EXPECT_EQ(Refused("job-pause", {{"id", "m0"}}), "NotFound: no job 'm0'");
}

TEST_F(JobCommandsTest, ArgumentsAreStrict) {
  auto job = StartJob({.id = "m0"}, {.gated = true});
  ASSERT_TRUE(job->WaitForStatus(JobStatus::kRunning));
  EXPECT_EQ(Refused("job-pause", json::object()), "Invalid: missing argument 'id'");
  EXPECT_EQ(Refused("job-pause", {{"id", 7}}), "Invalid: argument 'id' must be a string");
  EXPECT_EQ(Refused("job-pause", {{"id", "m0"}, {"force", true}}), "Invalid: unknown argument 'force'");
  EXPECT_EQ(Refused("job-cancel", {{"id", "m0"}, {"force", "yes"}}), "Invalid: argument 'force' must be true or false");
  EXPECT_EQ(Refused("job-set-speed", {{"id", "m0"}}), "Invalid: missing argument 'speed'");
  EXPECT_EQ(Refused("job-set-speed", {{"id", "m0"}, {"speed", -1}}).rfind("Invalid: argument 'speed' must be", 0), 0u);
  EXPECT_EQ(Refused("job-change", {{"copy-mode", "write-blocking"}}), "Invalid: missing argument 'id'");
  EXPECT_EQ(Refused("job-change", {{"id", "m0"}}), "Invalid: job-change needs 'copy-mode'");
  EXPECT_EQ(Refused("job-change", {{"id", "m0"}, {"copy-mode", 1}}), "Invalid: argument 'copy-mode' must be a string");
  EXPECT_EQ(Refused("job-change", {{"id", "m0"}, {"speed", 1}}), "Invalid: unknown argument 'speed'");
  EXPECT_EQ(job->status(), JobStatus::kRunning);  // none of it touched the job
  Ok("job-set-speed", {{"id", "m0"}, {"speed", "10M"}});
  EXPECT_EQ(Ok("query-jobs")[0]["speed"], 10 << 20);
}

TEST_F(JobCommandsTest, CancelWithForceAfterReadyIsCancelledWithoutIsCompleted) {
  auto soft = StartJob({.id = "soft"});
  auto hard = StartJob({.id = "hard"});
  ASSERT_TRUE(soft->WaitForStatus(JobStatus::kReady));
  ASSERT_TRUE(hard->WaitForStatus(JobStatus::kReady));
  Ok("job-cancel", {{"id", "soft"}});
  Ok("job-cancel", {{"id", "hard"}, {"force", true}});
  soft->WaitFinished();
  hard->WaitFinished();
  EXPECT_EQ(events_.Data("soft", "BLOCK_JOB_COMPLETED").size(), 1u);
  EXPECT_EQ(events_.Data("soft", "BLOCK_JOB_CANCELLED").size(), 0u);
  EXPECT_EQ(events_.Data("hard", "BLOCK_JOB_CANCELLED").size(), 1u);
}

TEST_F(JobCommandsTest, EventsReachTheSinkInOrder) {
  auto job = StartJob({.id = "m0"}, {.chunks = 1});
  ASSERT_TRUE(job->WaitForStatus(JobStatus::kReady));
  Ok("job-complete", {{"id", "m0"}});
  job->WaitFinished();
  EXPECT_EQ(events_.Names("m0"), (std::vector<std::string>{"created", "running", "ready", "BLOCK_JOB_READY", "waiting",
                                                           "pending", "BLOCK_JOB_PENDING", "BLOCK_JOB_COMPLETED",
                                                           "concluded", "null"}));
  EXPECT_EQ(events_.Data("m0", "JOB_STATUS_CHANGE").at(0), json({{"id", "m0"}, {"status", "created"}}));
}

TEST_F(JobCommandsTest, AJobsVolumeCannotBeDeletedOrResized) {
  auto job = StartJob({.id = "m0", .volumes = {"vol"}}, {.gated = true});
  EXPECT_EQ(Refused("volume-delete", {{"name", "vol"}}), "Busy: cannot delete volume 'vol': a job is using it");
  EXPECT_EQ(Refused("volume-resize", {{"name", "vol"}, {"size", 8 * kBS}}),
            "Busy: cannot shrink volume 'vol': a job is using it");
  EXPECT_EQ(Refused("volume-resize", {{"name", "vol"}, {"size", 32 * kBS}}),
            "Busy: cannot grow volume 'vol': a job is using it");
  Ok("job-cancel", {{"id", "m0"}});
  job->WaitFinished();
  Ok("volume-resize", {{"name", "vol"}, {"size", 8 * kBS}});
  Ok("volume-delete", {{"name", "vol"}});
}

}  // namespace
}  // namespace thinsim
