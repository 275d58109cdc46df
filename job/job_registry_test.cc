// JobRegistry (job/job_registry.h): ids given and made up, unknown ids,
// the volumes jobs use, and shutdown with jobs in every live state: no
// thread outlives the registry.
#include "job/job_registry.h"

#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/status_test_util.h"
#include "job/testing/counting_job.h"
#include "job/testing/job_test_util.h"

namespace thinsim {
namespace {

// "j<i>", built by appending: GCC 12 warns falsely (-Wrestrict) on
// JobId(i) at -O3.
std::string JobId(int i) {
  std::string id = "j";
  id += std::to_string(i);
  return id;
}

std::shared_ptr<CountingJob> MakeJob(JobOptions options, CountingJobSpec spec = {}) {
  return std::make_shared<CountingJob>(std::move(options), spec);
}

TEST(JobRegistryTest, IdsAreUniqueGivenOrMadeUp) {
  JobRegistry registry;
  std::string a, b;
  ASSERT_OK(registry.Start(MakeJob({}, {.gated = true}), &a));
  ASSERT_OK(registry.Start(MakeJob({}, {.gated = true}), &b));
  EXPECT_EQ(a, "job0");
  EXPECT_EQ(b, "job1");
  ASSERT_OK(registry.Start(MakeJob({.id = "job2"}, {.gated = true})));
  std::string c;
  ASSERT_OK(registry.Start(MakeJob({}, {.gated = true}), &c));
  EXPECT_EQ(c, "job3");  // made-up ids skip the ones taken
  EXPECT_CODE(registry.Start(MakeJob({.id = "job0"})), kExists);
  EXPECT_CODE(registry.Start(MakeJob({.id = "it's"})), kInvalid);
  EXPECT_CODE(registry.Start(MakeJob({.id = "a b"})), kInvalid);
  std::vector<JobInfo> jobs = registry.Query();
  ASSERT_EQ(jobs.size(), 4u);
  EXPECT_EQ(jobs[0].id, "job0");
  EXPECT_EQ(jobs[3].id, "job3");
  EXPECT_NE(registry.Find("job2"), nullptr);
  EXPECT_EQ(registry.Find("job9"), nullptr);
}

TEST(JobRegistryTest, UnknownIdIsNotFound) {
  JobRegistry registry;
  Status s = registry.Verb("nope", JobVerb::kPause);
  EXPECT_EQ(s.code(), ErrorCode::kNotFound);
  EXPECT_EQ(s.message(), "no job 'nope'");
}

TEST(JobRegistryTest, AnIdIsFreeAgainOnceItsJobIsDismissed) {
  JobRegistry registry;
  auto first = MakeJob({.id = "m", .auto_dismiss = false}, {.chunks = 1, .mirror_like = false});
  ASSERT_OK(registry.Start(first));
  first->WaitFinished();
  EXPECT_CODE(registry.Start(MakeJob({.id = "m"})), kExists);  // concluded, not dismissed
  ASSERT_OK(registry.Verb("m", JobVerb::kDismiss));
  ASSERT_OK(registry.Start(MakeJob({.id = "m"})));
}

TEST(JobRegistryTest, AVolumeIsInUseUntilItsJobConcludes) {
  JobRegistry registry;
  auto job = MakeJob({.id = "m", .auto_dismiss = false, .volumes = {"src", "other"}}, {.chunks = 2, .gated = true});
  ASSERT_OK(registry.Start(job));
  EXPECT_TRUE(registry.VolumeInUse("src"));
  EXPECT_TRUE(registry.VolumeInUse("other"));
  EXPECT_FALSE(registry.VolumeInUse("sr"));
  ASSERT_OK(registry.Verb("m", JobVerb::kPause));
  ASSERT_TRUE(job->WaitForStatus(JobStatus::kPaused));
  EXPECT_TRUE(registry.VolumeInUse("src"));  // paused is still running
  ASSERT_OK(registry.Verb("m", JobVerb::kCancel));
  job->WaitFinished();
  EXPECT_FALSE(registry.VolumeInUse("src"));  // concluded: nothing in use
}

TEST(JobRegistryTest, ShutdownCancelsEveryJobAndWaitsForItsThread) {
  EventRecorder events;
  std::vector<std::shared_ptr<CountingJob>> jobs = {
      MakeJob({.id = "gated"}, {.chunks = 4, .gated = true}),
      MakeJob({.id = "paused"}, {.chunks = 4, .gated = true}),
      MakeJob({.id = "ready"}),
      MakeJob({.id = "pending", .auto_finalize = false}, {.mirror_like = false}),
      MakeJob({.id = "throttled", .speed = 1}),  // sleeping 18 hours a chunk
      MakeJob({.id = "concluded", .auto_dismiss = false}, {.mirror_like = false}),
  };
  {
    JobRegistry registry(events.Sink());
    for (const auto& job : jobs) ASSERT_OK(registry.Start(job));
    ASSERT_OK(registry.Verb("paused", JobVerb::kPause));
    ASSERT_TRUE(jobs[1]->WaitForStatus(JobStatus::kPaused));
    ASSERT_TRUE(jobs[2]->WaitForStatus(JobStatus::kReady));
    ASSERT_TRUE(jobs[3]->WaitForStatus(JobStatus::kPending));
    ASSERT_TRUE(WaitUntil([&] { return jobs[4]->copied() == 1; }));
    jobs[5]->WaitFinished();
  }  // the registry ends them all
  for (const auto& job : jobs) EXPECT_TRUE(job->finished()) << job->id();
  for (const char* id : {"gated", "paused", "ready", "pending", "throttled"}) {
    EXPECT_EQ(events.Data(id, "BLOCK_JOB_CANCELLED").size(), 1u) << id;
  }
  EXPECT_EQ(events.Data("concluded", "BLOCK_JOB_COMPLETED").size(), 1u);
}

TEST(JobRegistryTest, NoJobStartsAfterShutdown) {
  JobRegistry registry;
  registry.Shutdown();
  EXPECT_CODE(registry.Start(MakeJob({})), kUnavailable);
  registry.Shutdown();  // again: nothing to do
}

TEST(JobRegistryTest, ManyJobsAndVerbsFromSeveralThreads) {
  EventRecorder events;
  JobRegistry registry(events.Sink());
  constexpr int kJobs = 8;
  for (int i = 0; i < kJobs; ++i) ASSERT_OK(registry.Start(MakeJob({.id = JobId(i)}, {.chunks = 16})));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&registry, t] {
      for (int round = 0; round < 50; ++round) {
        const std::string id = JobId((round + t) % kJobs);
        // Any of these may be refused by the job's state of the moment.
        (void)registry.Verb(id, JobVerb::kPause);
        (void)registry.Query();
        (void)registry.Verb(id, JobVerb::kResume);
        (void)registry.Verb(id, JobVerb::kSetSpeed, {.speed = 0});
        (void)registry.VolumeInUse("v");
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int i = 0; i < kJobs; ++i) {
    const std::string id = JobId(i);
    std::shared_ptr<Job> job = registry.Find(id);
    ASSERT_NE(job, nullptr);
    (void)registry.Verb(id, JobVerb::kResume);  // a pause that outlived the rounds
    ASSERT_TRUE(job->WaitForStatus(JobStatus::kReady)) << id;
    ASSERT_OK(registry.Verb(id, JobVerb::kComplete));
    job->WaitFinished();
    EXPECT_EQ(events.Data(id, "BLOCK_JOB_COMPLETED").size(), 1u);
  }
  EXPECT_TRUE(registry.Query().empty());
}

}  // namespace
}  // namespace thinsim
