// JobRegistry: a server's jobs by id (SPEC section 13). Starts a job,
// applies the control verbs to it, answers query-jobs, tells whether a
// volume is in use by a job, and forgets a job once it is dismissed
// (job-dismiss, or by itself with auto-dismiss).
//
// No job thread outlives the registry: the destructor (and Shutdown())
// cancels every job with force and waits for its thread.
//
// Thread safety: thread-safe. Lock order: the registry's mu_ -> a job's mu_
// (Start, and the status checks of Query, VolumeInUse and reaping); the
// registry's mu_ is never held while a verb runs (a verb may wait for the
// job's thread). A job's hooks and its event sink may run concurrently with
// any registry call but must not call back into the registry.
#ifndef THINSIM_JOB_JOB_REGISTRY_H_
#define THINSIM_JOB_JOB_REGISTRY_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/mutex.h"
#include "base/status.h"
#include "job/job.h"
#include "job/job_status.h"

namespace thinsim {

// The arguments a verb may take: force (cancel), speed (set-speed), the
// subclass's options (change).
struct JobVerbArgs {
  bool force = false;
  uint64_t speed = 0;
  nlohmann::json change = nlohmann::json::object();
};

class JobRegistry {
 public:
  // `sink` receives every job's events (Job.h, JobEventSink); may be null.
  explicit JobRegistry(JobEventSink sink = nullptr) : sink_(std::move(sink)) {}
  ~JobRegistry();
  JobRegistry(const JobRegistry&) = delete;
  JobRegistry& operator=(const JobRegistry&) = delete;

  // Replaces the sink. REQUIRES: no job started yet.
  void SetEventSink(JobEventSink sink) EXCLUDES(mu_);

  // Gives `job` its id (its options' id, or a new "jobN") and starts its
  // thread. Exists when a job of that id is still known, Invalid for an id
  // that is not a non-empty printable name, Unavailable after Shutdown().
  // *id (optional) receives the id.
  Status Start(std::shared_ptr<Job> job, std::string* id = nullptr) EXCLUDES(mu_);

  // Applies `verb` to job `id` (NotFound if there is none).
  Status Verb(std::string_view id, JobVerb verb, const JobVerbArgs& args = {}) EXCLUDES(mu_);

  // Every job not yet dismissed, by id.
  std::vector<JobInfo> Query() EXCLUDES(mu_);
  // The job `id`, or null.
  std::shared_ptr<Job> Find(std::string_view id) EXCLUDES(mu_);

  // Whether a job that has not concluded declares `volume` (JobOptions::
  // volumes): such a volume cannot be deleted or shrunk.
  bool VolumeInUse(std::string_view volume) EXCLUDES(mu_);

  // Cancels every job (force) and waits for all of them to end; Start()
  // refuses from then on. Idempotent.
  void Shutdown() EXCLUDES(mu_);

 private:
  // Forgets the jobs that reached null. Their threads have ended (or are
  // returning), so dropping them joins at once.
  void ReapLocked() REQUIRES(mu_);
  std::string NewIdLocked() REQUIRES(mu_);

  Mutex mu_;
  JobEventSink sink_ GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<Job>, std::less<>> jobs_ GUARDED_BY(mu_);
  uint64_t next_id_ GUARDED_BY(mu_) = 0;
  bool shut_down_ GUARDED_BY(mu_) = false;
};

}  // namespace thinsim

#endif  // THINSIM_JOB_JOB_REGISTRY_H_
