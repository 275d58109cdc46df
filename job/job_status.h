// The job model of SPEC section 13, after QEMU's qapi/job.json: the states
// a job passes through, which state may follow which (JobSTT in QEMU's
// job.c), which control verbs each state accepts (JobVerbTable), and the
// error policies of on-source-error / on-target-error.
//
//   created -> running -> [paused <-> running] -> ready <-> standby
//   running | ready -> waiting -> pending -> concluded -> null
//   created | running | ready | waiting | pending -> aborting -> concluded
//
// Thread safety: pure functions over values.
#ifndef THINSIM_JOB_JOB_STATUS_H_
#define THINSIM_JOB_JOB_STATUS_H_

#include <string>
#include <string_view>

#include "base/status.h"

namespace thinsim {

enum class JobStatus {
  kCreated,    // made, its thread not yet running
  kRunning,    // working
  kPaused,     // running, stopped at a pause point
  kReady,      // nothing left to copy: job-complete may end it
  kStandby,    // ready, stopped at a pause point
  kWaiting,    // done; others of its transaction are not (momentary here)
  kPending,    // done; finalisation remains (job-finalize when !auto-finalize)
  kAborting,   // failed or cancelled, cleaning up
  kConcluded,  // ended; job-dismiss removes it when !auto-dismiss
  kNull,       // being torn down
};

enum class JobVerb { kCancel, kPause, kResume, kSetSpeed, kChange, kComplete, kFinalize, kDismiss };

// As QEMU spells them: "created", "running", ..., "null".
std::string_view JobStatusName(JobStatus status);
// "cancel", "pause", "resume", "set-speed", "change", "complete",
// "finalize", "dismiss".
std::string_view JobVerbName(JobVerb verb);

// Whether a job in `from` may move to `to`.
bool JobTransitionAllowed(JobStatus from, JobStatus to);
// Whether a job in `status` accepts `verb`.
bool JobVerbAllowed(JobStatus status, JobVerb verb);
// OK, or Invalid with QEMU's message: "Job 'ID' in state 'STATE' cannot
// accept command verb 'VERB'".
Status CheckJobVerb(std::string_view id, JobStatus status, JobVerb verb);

// What a job does when an operation fails (QEMU's BlockdevOnError).
enum class JobErrorPolicy {
  kReport,  // the job fails with the error
  kIgnore,  // go on; the operation is retried later
  kStop,    // pause the job (BLOCK_JOB_ERROR); job-resume retries
  kEnospc,  // stop on ENOSPC, report anything else
};
// The side of a copy that failed: on-source-error governs reads,
// on-target-error writes.
enum class JobOperation { kRead, kWrite };
// What the policy decided for one error; its name is BLOCK_JOB_ERROR's
// "action".
enum class JobErrorAction { kReport, kIgnore, kStop };

std::string_view JobErrorPolicyName(JobErrorPolicy policy);
// "report", "ignore", "stop" or "enospc"; false for anything else.
bool ParseJobErrorPolicy(std::string_view name, JobErrorPolicy* out);
std::string_view JobOperationName(JobOperation op);  // "read" | "write"
std::string_view JobErrorActionName(JobErrorAction action);
// The policy applied to one error: enospc stops only for NoSpace.
JobErrorAction DecideJobErrorAction(JobErrorPolicy policy, const Status& error);

}  // namespace thinsim

#endif  // THINSIM_JOB_JOB_STATUS_H_
