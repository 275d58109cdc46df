#include "job/job.h"

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <utility>

namespace thinsim {

using nlohmann::json;

Job::Job(std::string type, JobOptions options)
    : type_(std::move(type)),
      options_(std::move(options)),
      clock_(options_.clock ? options_.clock : JobClock::Real()),
      id_(options_.id),
      speed_(options_.speed) {}

Job::~Job() {
  // The registry ends every job before dropping it; a job never started
  // has no thread.
  if (thread_.joinable()) thread_.join();
}

void Job::Prepare(std::string id, JobEventSink sink) {
  id_ = std::move(id);
  sink_ = std::move(sink);
}

void Job::Start() {
  {
    MutexLock lock(&mu_);
    RestartThrottleLocked();
    // QEMU's first event: the job now exists.
    EmitLocked("JOB_STATUS_CHANGE", {{"id", id_}, {"status", JobStatusName(JobStatus::kCreated)}});
  }
  thread_ = std::thread([this] { Main(); });
}

// ---- The job's thread -------------------------------------------------------

void Job::Main() noexcept {
  {
    MutexLock lock(&mu_);
    TransitionLocked(JobStatus::kRunning);
  }
  Finish(RunGuarded());
}

Status Job::RunGuarded() noexcept {
  try {
    return Run();
  } catch (const std::exception& e) {
    try {
      return Status::IOError(std::string("internal error: ") + e.what());
    } catch (...) {
    }
  } catch (...) {
  }
  return Status::IOError("internal error");
}

void Job::Finish(Status result) {
  bool succeeded;
  {
    MutexLock lock(&mu_);
    succeeded = result.ok() && !cancel_hard_;
    if (succeeded) {
      TransitionLocked(JobStatus::kWaiting);  // no transactions: nothing to wait for
      TransitionLocked(JobStatus::kPending);
      EmitLocked("BLOCK_JOB_PENDING", {{"id", id_}, {"type", type_}});
    }
  }
  if (succeeded && AwaitFinalize()) {
    RunHookGuarded(&Job::Commit);
    RunHookGuarded(&Job::Clean);
    Conclude("BLOCK_JOB_COMPLETED", "");
    return;
  }
  bool cancelled;
  {
    MutexLock lock(&mu_);
    TransitionLocked(JobStatus::kAborting);
    cancelled = cancel_hard_;
  }
  RunHookGuarded(&Job::Abort);
  RunHookGuarded(&Job::Clean);
  Conclude(cancelled ? "BLOCK_JOB_CANCELLED" : "BLOCK_JOB_COMPLETED", cancelled ? "" : result.message());
}

void Job::RunHookGuarded(void (Job::*hook)()) noexcept {
  try {
    (this->*hook)();
  } catch (...) {
    // The job ends anyway: a hook that throws cannot undo that, and nothing
    // may leave the job's thread.
  }
}

bool Job::AwaitFinalize() {
  MutexLock lock(&mu_);
  while (!options_.auto_finalize && !finalize_requested_ && !cancel_hard_) cv_.Wait(&mu_);
  return !cancel_hard_;
}

void Job::Conclude(const char* event, const std::string& error) {
  MutexLock lock(&mu_);
  json data = ProgressDataLocked();
  if (!error.empty()) {
    error_ = error;
    data["error"] = error;
  }
  EmitLocked(event, std::move(data));
  TransitionLocked(JobStatus::kConcluded);
  if (options_.auto_dismiss) TransitionLocked(JobStatus::kNull);
  finished_ = true;
  cv_.SignalAll();
}

// ---- What Run() calls -------------------------------------------------------

bool Job::PausePoint() {
  MutexLock lock(&mu_);
  while (pause_requested_ && !cancel_hard_) {
    if (status_ == JobStatus::kRunning) TransitionLocked(JobStatus::kPaused);
    if (status_ == JobStatus::kReady) TransitionLocked(JobStatus::kStandby);
    cv_.Wait(&mu_);
  }
  if (status_ == JobStatus::kPaused) TransitionLocked(JobStatus::kRunning);
  if (status_ == JobStatus::kStandby) TransitionLocked(JobStatus::kReady);
  return cancel_hard_;
}

bool Job::Throttle(uint64_t bytes) {
  MutexLock lock(&mu_);
  throttled_bytes_ += bytes;
  // Anything that changes how the job should go on ends the sleep early.
  while (speed_ != 0 && !pause_requested_ && !cancel_hard_ && !cancel_soft_ && !complete_requested_) {
    // When the bytes counted since the window opened are due at this speed.
    // 128 bits: bytes * 1e9 overflows 64 at 18 GB.
    const auto due = throttle_start_ + std::chrono::nanoseconds(static_cast<int64_t>(
                                           static_cast<unsigned __int128>(throttled_bytes_) * 1000000000u / speed_));
    const auto now = clock_->Now();
    if (now >= due) break;
    clock_->WaitFor(&cv_, &mu_, due - now);
  }
  return cancel_hard_;
}

void Job::SetReady() {
  MutexLock lock(&mu_);
  if (status_ != JobStatus::kRunning) return;
  TransitionLocked(JobStatus::kReady);
  EmitLocked("BLOCK_JOB_READY", ProgressDataLocked());
}

JobErrorAction Job::HandleError(JobOperation op, const Status& error) {
  const JobErrorPolicy policy = op == JobOperation::kRead ? options_.on_source_error : options_.on_target_error;
  const JobErrorAction action = DecideJobErrorAction(policy, error);
  {
    MutexLock lock(&mu_);
    EmitLocked("BLOCK_JOB_ERROR", {{"id", id_},
                                   {"operation", JobOperationName(op)},
                                   {"action", JobErrorActionName(action)},
                                   {"errno", ErrnoName(error.code())}});
    // A stop is a pause as job-pause makes one: job-resume ends it.
    if (action == JobErrorAction::kStop) pause_requested_ = true;
  }
  if (action == JobErrorAction::kStop) PausePoint();
  return action;
}

void Job::WaitForWakeup(std::chrono::nanoseconds timeout) {
  MutexLock lock(&mu_);
  if (!wake_pending_) cv_.WaitFor(&mu_, timeout);
  wake_pending_ = false;
}

void Job::Wake() {
  MutexLock lock(&mu_);
  WakeLocked();
}

void Job::AddProgress(uint64_t done) {
  MutexLock lock(&mu_);
  current_progress_ += done;
}

void Job::SetTotalProgress(uint64_t total) {
  MutexLock lock(&mu_);
  total_progress_ = total;
}

void Job::AddTotalProgress(uint64_t more) {
  MutexLock lock(&mu_);
  total_progress_ += more;
}

bool Job::cancelled() const {
  MutexLock lock(&mu_);
  return cancel_hard_;
}

bool Job::completion_requested() const {
  MutexLock lock(&mu_);
  return complete_requested_;
}

bool Job::soft_cancelled() const {
  MutexLock lock(&mu_);
  return cancel_soft_;
}

// ---- Verbs ------------------------------------------------------------------

Status Job::Pause() {
  MutexLock lock(&mu_);
  THINSIM_RETURN_IF_ERROR(CheckVerbLocked(JobVerb::kPause));
  if (pause_requested_) return Status::Invalid("Job '" + id_ + "' is already paused");
  pause_requested_ = true;
  WakeLocked();
  return Status::OK();
}

Status Job::Resume() {
  MutexLock lock(&mu_);
  THINSIM_RETURN_IF_ERROR(CheckVerbLocked(JobVerb::kResume));
  if (!pause_requested_) return Status::Invalid("Can't resume job '" + id_ + "': it was not paused");
  pause_requested_ = false;
  RestartThrottleLocked();  // the pause is no time the job could have used
  WakeLocked();
  return Status::OK();
}

Status Job::Cancel(bool force) {
  MutexLock lock(&mu_);
  THINSIM_RETURN_IF_ERROR(CheckVerbLocked(JobVerb::kCancel));
  const bool ready = status_ == JobStatus::kReady || status_ == JobStatus::kStandby;
  if (ready && !force) {
    cancel_soft_ = true;
  } else {
    cancel_hard_ = true;
  }
  pause_requested_ = false;  // a paused job must run to end
  WakeLocked();
  return Status::OK();
}

Status Job::Complete() {
  {
    MutexLock lock(&mu_);
    THINSIM_RETURN_IF_ERROR(CheckVerbLocked(JobVerb::kComplete));
    if (cancel_hard_ || cancel_soft_) return Status::Invalid("Job '" + id_ + "' is being cancelled");
  }
  THINSIM_RETURN_IF_ERROR(OnComplete());
  MutexLock lock(&mu_);
  complete_requested_ = true;
  WakeLocked();
  return Status::OK();
}

Status Job::Finalize() {
  MutexLock lock(&mu_);
  THINSIM_RETURN_IF_ERROR(CheckVerbLocked(JobVerb::kFinalize));
  finalize_requested_ = true;
  WakeLocked();
  while (!finished_) cv_.Wait(&mu_);
  return Status::OK();
}

Status Job::Dismiss() {
  MutexLock lock(&mu_);
  THINSIM_RETURN_IF_ERROR(CheckVerbLocked(JobVerb::kDismiss));
  TransitionLocked(JobStatus::kNull);
  return Status::OK();
}

Status Job::SetSpeed(uint64_t bytes_per_second) {
  MutexLock lock(&mu_);
  THINSIM_RETURN_IF_ERROR(CheckVerbLocked(JobVerb::kSetSpeed));
  speed_ = bytes_per_second;
  RestartThrottleLocked();  // a sleep computed for the old speed ends and recomputes
  WakeLocked();
  return Status::OK();
}

Status Job::Change(const json& args) {
  {
    MutexLock lock(&mu_);
    THINSIM_RETURN_IF_ERROR(CheckVerbLocked(JobVerb::kChange));
  }
  THINSIM_RETURN_IF_ERROR(OnChange(args));
  Wake();
  return Status::OK();
}

Status Job::OnComplete() {
  return Status::Unsupported("job '" + id_ + "' of type '" + type_ + "' cannot be completed");
}

Status Job::OnChange(const json& /*args*/) {
  return Status::Unsupported("job '" + id_ + "' of type '" + type_ + "' has nothing to change");
}

// ---- Queries ----------------------------------------------------------------

JobStatus Job::status() const {
  MutexLock lock(&mu_);
  return status_;
}

JobInfo Job::Query() const {
  json fields = QueryFields();  // the subclass's, outside our lock
  MutexLock lock(&mu_);
  return JobInfo{id_, type_, status_, current_progress_, total_progress_, speed_, error_, std::move(fields)};
}

bool Job::finished() const {
  MutexLock lock(&mu_);
  return finished_;
}

void Job::WaitFinished() {
  MutexLock lock(&mu_);
  while (!finished_) cv_.Wait(&mu_);
}

bool Job::WaitForStatus(JobStatus status) {
  MutexLock lock(&mu_);
  while (status_ != status && !finished_) cv_.Wait(&mu_);
  return status_ == status;
}

// ---- Helpers ----------------------------------------------------------------

void Job::TransitionLocked(JobStatus to) {
  if (!JobTransitionAllowed(status_, to)) {
    std::fprintf(stderr, "thinsim: job '%s': no transition from %s to %s\n", id_.c_str(),
                 std::string(JobStatusName(status_)).c_str(), std::string(JobStatusName(to)).c_str());
    std::abort();
  }
  status_ = to;
  EmitLocked("JOB_STATUS_CHANGE", {{"id", id_}, {"status", JobStatusName(to)}});
  cv_.SignalAll();
}

void Job::EmitLocked(const char* name, json data) {
  if (!sink_) return;
  try {
    sink_(name, data);
  } catch (...) {
    // A sink that throws (out of memory) loses this event, not the job.
  }
}

json Job::ProgressDataLocked() const {
  return {{"id", id_}, {"type", type_}, {"len", total_progress_}, {"offset", current_progress_}, {"speed", speed_}};
}

Status Job::CheckVerbLocked(JobVerb verb) const { return CheckJobVerb(id_, status_, verb); }

void Job::RestartThrottleLocked() {
  throttle_start_ = clock_->Now();
  throttled_bytes_ = 0;
}

void Job::WakeLocked() {
  wake_pending_ = true;
  cv_.SignalAll();
}

}  // namespace thinsim
