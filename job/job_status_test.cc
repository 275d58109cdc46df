// The state machine and verb table of job/job_status.h, checked against
// QEMU's JobSTT and JobVerbTable written out as the reference lists them
// (nbd-and-mirror.md 5.5), and the error policies.
#include "job/job_status.h"

#include <map>
#include <set>
#include <string>

#include <gtest/gtest.h>

namespace thinsim {
namespace {

constexpr JobStatus kAll[] = {JobStatus::kCreated, JobStatus::kRunning,  JobStatus::kPaused,
                              JobStatus::kReady,   JobStatus::kStandby,  JobStatus::kWaiting,
                              JobStatus::kPending, JobStatus::kAborting, JobStatus::kConcluded,
                              JobStatus::kNull};
constexpr JobVerb kVerbs[] = {JobVerb::kCancel, JobVerb::kPause,    JobVerb::kResume,   JobVerb::kSetSpeed,
                              JobVerb::kChange, JobVerb::kComplete, JobVerb::kFinalize, JobVerb::kDismiss};

// The one-letter names of the reference: C R P Y S W D X E N.
char Letter(JobStatus s) { return "CRPYSWDXEN"[static_cast<int>(s)]; }

TEST(JobStatusTest, NamesAreQemus) {
  std::string names;
  for (JobStatus s : kAll) names += std::string(JobStatusName(s)) + " ";
  EXPECT_EQ(names, "created running paused ready standby waiting pending aborting concluded null ");
  std::string verbs;
  for (JobVerb v : kVerbs) verbs += std::string(JobVerbName(v)) + " ";
  EXPECT_EQ(verbs, "cancel pause resume set-speed change complete finalize dismiss ");
}

TEST(JobStatusTest, TransitionsAreExactlyJobSTT) {
  // "C→R,X,N; R→P,Y,W,X; P→R; Y→S,W,X; S→Y; W→D,X; D→X,E; X→X,E; E→N"
  const std::map<char, std::string> allowed = {{'C', "RXN"}, {'R', "PYWX"}, {'P', "R"}, {'Y', "SWX"}, {'S', "Y"},
                                               {'W', "DX"},  {'D', "XE"},   {'X', "XE"}, {'E', "N"},   {'N', ""}};
  for (JobStatus from : kAll) {
    for (JobStatus to : kAll) {
      const bool expected = allowed.at(Letter(from)).find(Letter(to)) != std::string::npos;
      EXPECT_EQ(JobTransitionAllowed(from, to), expected) << Letter(from) << "->" << Letter(to);
    }
  }
}

TEST(JobStatusTest, VerbsAreExactlyJobVerbTable) {
  // "cancel in C,R,P,Y,S,W,D; pause/resume/set-speed/change in C,R,P,Y,S;
  //  complete in Y,S; finalize in D; dismiss in E"
  const std::map<JobVerb, std::string> allowed = {
      {JobVerb::kCancel, "CRPYSWD"}, {JobVerb::kPause, "CRPYS"},  {JobVerb::kResume, "CRPYS"},
      {JobVerb::kSetSpeed, "CRPYS"}, {JobVerb::kChange, "CRPYS"}, {JobVerb::kComplete, "YS"},
      {JobVerb::kFinalize, "D"},     {JobVerb::kDismiss, "E"}};
  for (JobVerb verb : kVerbs) {
    for (JobStatus s : kAll) {
      const bool expected = allowed.at(verb).find(Letter(s)) != std::string::npos;
      EXPECT_EQ(JobVerbAllowed(s, verb), expected) << JobVerbName(verb) << " in " << JobStatusName(s);
      Status check = CheckJobVerb("j1", s, verb);
      EXPECT_EQ(check.ok(), expected);
      if (!expected) {
        EXPECT_EQ(check.code(), ErrorCode::kInvalid);
        EXPECT_EQ(check.message(), "Job 'j1' in state '" + std::string(JobStatusName(s)) +
                                       "' cannot accept command verb '" + std::string(JobVerbName(verb)) + "'");
      }
    }
  }
}

TEST(JobStatusTest, RefusalMessageIsQemus) {
  EXPECT_EQ(CheckJobVerb("mirror0", JobStatus::kRunning, JobVerb::kComplete).message(),
            "Job 'mirror0' in state 'running' cannot accept command verb 'complete'");
}

TEST(JobStatusTest, ErrorPoliciesDecide) {
  const Status enospc = Status::NoSpace("target full"), eio = Status::IOError("gone");
  EXPECT_EQ(DecideJobErrorAction(JobErrorPolicy::kReport, enospc), JobErrorAction::kReport);
  EXPECT_EQ(DecideJobErrorAction(JobErrorPolicy::kIgnore, eio), JobErrorAction::kIgnore);
  EXPECT_EQ(DecideJobErrorAction(JobErrorPolicy::kStop, eio), JobErrorAction::kStop);
  EXPECT_EQ(DecideJobErrorAction(JobErrorPolicy::kEnospc, enospc), JobErrorAction::kStop);
  EXPECT_EQ(DecideJobErrorAction(JobErrorPolicy::kEnospc, eio), JobErrorAction::kReport);
  std::set<std::string> names;
  for (const char* name : {"report", "ignore", "stop", "enospc"}) {
    JobErrorPolicy p;
    ASSERT_TRUE(ParseJobErrorPolicy(name, &p)) << name;
    names.insert(std::string(JobErrorPolicyName(p)));
  }
  EXPECT_EQ(names.size(), 4u);
  JobErrorPolicy p;
  EXPECT_FALSE(ParseJobErrorPolicy("auto", &p));
  EXPECT_FALSE(ParseJobErrorPolicy("", &p));
}

}  // namespace
}  // namespace thinsim
