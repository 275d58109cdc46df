// Job: a background operation with QEMU's job model (SPEC section 13,
// job/job_status.h). A concrete job (the mirror) subclasses it and writes
// Run(); the base class owns the thread that runs it and everything a
// control verb does: pause, resume, cancel, complete, finalize, dismiss,
// set-speed, change, and the events each transition sends.
//
// Life cycle, as QEMU's:
//   created -> running -> (ready <-> standby) -> waiting -> pending
//     -> (job-finalize unless auto-finalize) -> concluded
//     -> (job-dismiss unless auto-dismiss) -> null
//   a failure or a cancel: -> aborting -> concluded.
// Run() returning OK is success: Commit(), Clean(), BLOCK_JOB_COMPLETED. A
// failed Run() (not cancelled): Abort(), Clean(), BLOCK_JOB_COMPLETED with
// "error", and query shows the error. A cancel before READY, or with force:
// Abort(), Clean(), BLOCK_JOB_CANCELLED whatever Run() returned. A cancel
// after READY without force asks Run() to end without completing (a
// point-in-time copy): success, BLOCK_JOB_COMPLETED. Cancelling a paused job
// resumes it so that it can end.
//
// What Run() gets from the base class:
//  - PausePoint(): call between chunks. Blocks while the job is paused (the
//    status moves to paused or standby while it waits), returns true when
//    the job was cancelled and Run() should return at once.
//  - Throttle(bytes): call per chunk copied; sleeps to keep to the speed
//    limit, waking early for a pause or a cancel.
//  - SetReady(): nothing left to copy (running -> ready, BLOCK_JOB_READY).
//  - HandleError(op, error): applies on-source-error (reads) or
//    on-target-error (writes): BLOCK_JOB_ERROR, and for "stop" a pause
//    until job-resume, then tells Run() to retry, go on, or fail.
//  - WaitForWakeup(timeout): sleeps until a verb or Wake() arrives, for a
//    job with nothing to do (ready, waiting for new writes).
//  - AddProgress / SetTotalProgress / AddTotalProgress.
//  - completion_requested(), soft_cancelled(), cancelled(): how to end.
//
// Events go to the sink the registry gives (JobEventSink), with the
// name and data of the control socket's event (docs/control-protocol.md):
// JOB_STATUS_CHANGE {id, status} on every transition, BLOCK_JOB_READY,
// BLOCK_JOB_PENDING, BLOCK_JOB_COMPLETED, BLOCK_JOB_CANCELLED,
// BLOCK_JOB_ERROR {id, operation, action, errno}. They are sent under the
// job's lock, in the order of the transitions.
//
// Thread safety: every public method is thread-safe. The hooks (Run,
// OnComplete, OnChange, Commit, Abort, Clean, QueryFields) are called with
// no lock of the job held: Run, Commit, Abort and Clean on the job's
// thread, OnComplete and OnChange on the caller's, QueryFields on any.
// No exception leaves the job's thread: one thrown by Run() fails the job,
// one thrown by Commit, Abort or Clean is dropped.
//
// Invariants: the status only moves along JobTransitionAllowed; every verb
// is checked against JobVerbAllowed first; the thread has ended by the time
// finished() is true, except for returning.
#ifndef THINSIM_JOB_JOB_H_
#define THINSIM_JOB_JOB_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/mutex.h"
#include "base/status.h"
#include "job/job_clock.h"
#include "job/job_status.h"

namespace thinsim {

// Receives each event: its name ("JOB_STATUS_CHANGE", ...) and its data.
// Called with the job's lock held: it must not call back into the job or
// its registry, nor block for long (ControlServer::Publish only queues).
using JobEventSink = std::function<void(const std::string& name, const nlohmann::json& data)>;

struct JobOptions {
  std::string id = "";  // empty: the registry makes one up ("job0", "job1", ...)
  bool auto_finalize = true;
  bool auto_dismiss = true;
  uint64_t speed = 0;  // bytes/s; 0: no limit
  JobErrorPolicy on_source_error = JobErrorPolicy::kReport;
  JobErrorPolicy on_target_error = JobErrorPolicy::kReport;
  // The volumes the job reads or writes: they cannot be deleted or shrunk
  // while the job has not concluded (JobRegistry::VolumeInUse).
  std::vector<std::string> volumes = {};
  JobClock* clock = nullptr;  // null: JobClock::Real()
};

// A job as query-jobs shows it.
struct JobInfo {
  std::string id;
  std::string type;
  JobStatus status = JobStatus::kCreated;
  uint64_t current_progress = 0;
  uint64_t total_progress = 0;
  uint64_t speed = 0;
  std::string error;         // set when the job failed
  nlohmann::json fields;     // the subclass's QueryFields(), an object
};

class Job {
 public:
  virtual ~Job();
  Job(const Job&) = delete;
  Job& operator=(const Job&) = delete;

  const std::string& id() const { return id_; }
  const std::string& type() const { return type_; }
  const std::vector<std::string>& volumes() const { return options_.volumes; }
  JobStatus status() const EXCLUDES(mu_);
  JobInfo Query() const EXCLUDES(mu_);

  // The verbs (SPEC section 13). Each refuses a state the verb table does
  // not allow with CheckJobVerb's message.
  Status Pause() EXCLUDES(mu_);
  Status Resume() EXCLUDES(mu_);
  Status Cancel(bool force) EXCLUDES(mu_);
  // Only in ready or standby; OnComplete() may refuse. A standby job
  // completes once it is resumed.
  Status Complete() EXCLUDES(mu_);
  // Runs the finalisation of a pending job (auto-finalize=false) and
  // returns once it has concluded.
  Status Finalize() EXCLUDES(mu_);
  // concluded -> null. The registry then forgets the job.
  Status Dismiss() EXCLUDES(mu_);
  Status SetSpeed(uint64_t bytes_per_second) EXCLUDES(mu_);
  Status Change(const nlohmann::json& args) EXCLUDES(mu_);

  // Whether the thread is done with the job (concluded or null); a
  // concluded job still waits for job-dismiss when !auto_dismiss.
  bool finished() const EXCLUDES(mu_);
  // Blocks until finished(); for tests and shutdown.
  void WaitFinished() EXCLUDES(mu_);
  // Blocks until the job is in `status` or has finished; true if it got
  // there. For tests, which wait on states rather than sleeping.
  bool WaitForStatus(JobStatus status) EXCLUDES(mu_);

 protected:
  // `type`: query-jobs' "type" ("mirror").
  Job(std::string type, JobOptions options);

  // ---- For the subclass -------------------------------------------------
  // The work, on the job's thread. Returns OK when done (also after a soft
  // cancel or job-complete), the error that failed it otherwise; after a
  // hard cancel its result is ignored.
  virtual Status Run() = 0;
  // job-complete was asked of a ready job: say whether it can (default:
  // Unsupported). Run() then sees completion_requested().
  virtual Status OnComplete();
  // job-change {id, ...}: `args` without "id" (default: Unsupported).
  virtual Status OnChange(const nlohmann::json& args);
  // Finalisation: Commit() after success, Abort() after failure or
  // cancel, then Clean() either way. On the job's thread.
  virtual void Commit() {}
  virtual void Abort() {}
  virtual void Clean() {}
  // Extra query-jobs fields, e.g. {"actively-synced": false}.
  virtual nlohmann::json QueryFields() const { return nlohmann::json::object(); }

  // Blocks while paused; true when Run() must return now (cancelled()).
  bool PausePoint() EXCLUDES(mu_);
  // Counts `bytes` against the speed limit and sleeps as long as it asks,
  // waking early for a pause, a cancel or job-complete. True when
  // cancelled().
  bool Throttle(uint64_t bytes) EXCLUDES(mu_);
  // running -> ready, BLOCK_JOB_READY. Does nothing unless running.
  void SetReady() EXCLUDES(mu_);
  // The error policy for a failed operation, after BLOCK_JOB_ERROR: kReport
  // (return `error` from Run), kIgnore (go on, retry the operation later) or
  // kStop (the job paused and has been resumed or cancelled: retry unless
  // cancelled()).
  JobErrorAction HandleError(JobOperation op, const Status& error) EXCLUDES(mu_);
  // Sleeps until Wake(), a verb, or `timeout`; a wake-up that came first
  // makes it return at once (none is lost).
  void WaitForWakeup(std::chrono::nanoseconds timeout) EXCLUDES(mu_);
  // Wakes WaitForWakeup (e.g. a mirror's source was written).
  void Wake() EXCLUDES(mu_);

  void AddProgress(uint64_t done) EXCLUDES(mu_);
  void SetTotalProgress(uint64_t total) EXCLUDES(mu_);
  void AddTotalProgress(uint64_t more) EXCLUDES(mu_);

  // A hard cancel: before READY or with force.
  bool cancelled() const EXCLUDES(mu_);
  // job-complete was accepted: finish (e.g. a final flush) and return OK.
  bool completion_requested() const EXCLUDES(mu_);
  // job-cancel after READY without force: stop copying and return OK.
  bool soft_cancelled() const EXCLUDES(mu_);

 private:
  friend class JobRegistry;

  // The registry sets these before Start(). REQUIRES: not started.
  void Prepare(std::string id, JobEventSink sink);
  // Starts the thread. REQUIRES: Prepare() first; called once.
  void Start();

  void Main() noexcept;
  // Run(), with any exception turned into a failure.
  Status RunGuarded() noexcept;
  // After Run(): the success or the abort path, then concluded (and null
  // with auto_dismiss).
  void Finish(Status result) EXCLUDES(mu_);
  // Commit, Abort or Clean, with any exception swallowed.
  void RunHookGuarded(void (Job::*hook)()) noexcept;
  // Waits in pending for job-finalize; true to commit, false if cancelled.
  bool AwaitFinalize() EXCLUDES(mu_);
  void Conclude(const char* event, const std::string& error) EXCLUDES(mu_);

  // REQUIRES: JobTransitionAllowed(status_, to) (anything else aborts: a
  // bug in this file, not a run-time condition).
  void TransitionLocked(JobStatus to) REQUIRES(mu_);
  void EmitLocked(const char* name, nlohmann::json data) REQUIRES(mu_);
  // {id, type, len, offset, speed}: the data of the BLOCK_JOB_* events.
  nlohmann::json ProgressDataLocked() const REQUIRES(mu_);
  Status CheckVerbLocked(JobVerb verb) const REQUIRES(mu_);
  void WakeLocked() REQUIRES(mu_);
  // Opens a new speed-limit window at the clock's now.
  void RestartThrottleLocked() REQUIRES(mu_);

  // Constant after construction (id_ and sink_ after Prepare()).
  const std::string type_;
  const JobOptions options_;
  JobClock* const clock_;
  std::string id_;
  JobEventSink sink_;
  std::thread thread_;

  mutable Mutex mu_;
  CondVar cv_;  // every change below
  JobStatus status_ GUARDED_BY(mu_) = JobStatus::kCreated;
  bool pause_requested_ GUARDED_BY(mu_) = false;
  bool cancel_hard_ GUARDED_BY(mu_) = false;
  bool cancel_soft_ GUARDED_BY(mu_) = false;
  bool complete_requested_ GUARDED_BY(mu_) = false;
  bool finalize_requested_ GUARDED_BY(mu_) = false;
  bool wake_pending_ GUARDED_BY(mu_) = false;
  bool finished_ GUARDED_BY(mu_) = false;
  uint64_t current_progress_ GUARDED_BY(mu_) = 0;
  uint64_t total_progress_ GUARDED_BY(mu_) = 0;
  uint64_t speed_ GUARDED_BY(mu_);
  // The speed limit's window: bytes counted since throttle_start_.
  std::chrono::nanoseconds throttle_start_ GUARDED_BY(mu_) = std::chrono::nanoseconds(0);
  uint64_t throttled_bytes_ GUARDED_BY(mu_) = 0;
  std::string error_ GUARDED_BY(mu_);
};

}  // namespace thinsim

#endif  // THINSIM_JOB_JOB_H_
