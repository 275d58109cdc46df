#include "job/job_registry.h"

#include <utility>

namespace thinsim {

namespace {

// A job id goes into messages and events: printable ASCII, no quotes.
bool ValidJobId(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    if (c <= ' ' || c > '~' || c == '\'' || c == '"') return false;
  }
  return true;
}

}  // namespace

JobRegistry::~JobRegistry() { Shutdown(); }

void JobRegistry::SetEventSink(JobEventSink sink) {
  MutexLock lock(&mu_);
  sink_ = std::move(sink);
}

Status JobRegistry::Start(std::shared_ptr<Job> job, std::string* id) {
  MutexLock lock(&mu_);
  if (shut_down_) return Status::Unavailable("the server is shutting down: no new jobs");
  ReapLocked();
  std::string name = job->id().empty() ? NewIdLocked() : job->id();
  if (!ValidJobId(name)) {
    return Status::Invalid("job-id '" + name + "' must be 1-128 printable characters without quotes or spaces");
  }
  if (jobs_.count(name) != 0) return Status::Exists("a job with id '" + name + "' already exists");
  job->Prepare(name, sink_);
  jobs_.emplace(name, job);
  job->Start();
  if (id != nullptr) *id = name;
  return Status::OK();
}

Status JobRegistry::Verb(std::string_view id, JobVerb verb, const JobVerbArgs& args) {
  std::shared_ptr<Job> job = Find(id);
  if (job == nullptr) return Status::NotFound("no job '" + std::string(id) + "'");
  switch (verb) {
    case JobVerb::kCancel: return job->Cancel(args.force);
    case JobVerb::kPause: return job->Pause();
    case JobVerb::kResume: return job->Resume();
    case JobVerb::kSetSpeed: return job->SetSpeed(args.speed);
    case JobVerb::kChange: return job->Change(args.change);
    case JobVerb::kComplete: return job->Complete();
    case JobVerb::kFinalize: return job->Finalize();
    case JobVerb::kDismiss: {
      THINSIM_RETURN_IF_ERROR(job->Dismiss());
      MutexLock lock(&mu_);
      ReapLocked();
      return Status::OK();
    }
  }
  return Status::Invalid("unknown job verb");
}

std::vector<JobInfo> JobRegistry::Query() {
  std::vector<std::shared_ptr<Job>> jobs;
  {
    MutexLock lock(&mu_);
    ReapLocked();
    for (const auto& [name, job] : jobs_) jobs.push_back(job);
  }
  // Queried outside mu_: QueryFields() is the subclass's code.
  std::vector<JobInfo> infos;
  for (const auto& job : jobs) {
    JobInfo info = job->Query();
    if (info.status != JobStatus::kNull) infos.push_back(std::move(info));
  }
  return infos;
}

std::shared_ptr<Job> JobRegistry::Find(std::string_view id) {
  MutexLock lock(&mu_);
  ReapLocked();
  auto it = jobs_.find(id);
  return it == jobs_.end() ? nullptr : it->second;
}

bool JobRegistry::VolumeInUse(std::string_view volume) {
  MutexLock lock(&mu_);
  ReapLocked();
  for (const auto& [name, job] : jobs_) {
    const JobStatus s = job->status();
    if (s == JobStatus::kConcluded || s == JobStatus::kNull) continue;
    for (const std::string& v : job->volumes()) {
      if (v == volume) return true;
    }
  }
  return false;
}

void JobRegistry::Shutdown() {
  std::map<std::string, std::shared_ptr<Job>, std::less<>> jobs;
  {
    MutexLock lock(&mu_);
    shut_down_ = true;
    jobs.swap(jobs_);
  }
  // Refusals are expected here: a job already concluding accepts no cancel.
  for (auto& [name, job] : jobs) job->Cancel(/*force=*/true);
  for (auto& [name, job] : jobs) job->WaitFinished();
  // Dropping `jobs` joins the threads, which have finished.
}

void JobRegistry::ReapLocked() {
  for (auto it = jobs_.begin(); it != jobs_.end();) {
    if (it->second->finished() && it->second->status() == JobStatus::kNull) {
      it = jobs_.erase(it);
    } else {
      ++it;
    }
  }
}

std::string JobRegistry::NewIdLocked() {
  std::string name;
  do {
    name = "job" + std::to_string(next_id_++);
  } while (jobs_.count(name) != 0);
  return name;
}

}  // namespace thinsim
