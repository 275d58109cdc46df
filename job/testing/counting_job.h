// CountingJob: a job for tests that "copies" a number of chunks, with a
// pause point and a throttle call per chunk, errors injected on chosen
// chunks, and optionally a gate so that a test decides when each chunk is
// copied. Mirror-like (the default), it goes READY once every chunk is
// copied and ends on job-complete or a cancel; otherwise it ends when the
// copy does. Header-only: job/ and plugin/ tests both use it.
//
// Thread safety: thread-safe (its state is the job's or under its mutex).
#ifndef THINSIM_JOB_TESTING_COUNTING_JOB_H_
#define THINSIM_JOB_TESTING_COUNTING_JOB_H_

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <utility>

#include <nlohmann/json.hpp>

#include "base/mutex.h"
#include "job/job.h"

namespace thinsim {

struct CountingJobSpec {
  uint64_t chunks = 4;
  uint64_t chunk_size = 64 << 10;
  bool mirror_like = true;  // READY after copying; ends on complete/cancel
  bool gated = false;       // copy a chunk only when Allow() let it
};

class CountingJob : public Job {
 public:
  CountingJob(JobOptions options, CountingJobSpec spec) : Job("counting", std::move(options)), spec_(spec) {}
  ~CountingJob() override = default;

  // Lets `n` more chunks be copied (gated jobs).
  void Allow(uint64_t n) {
    {
      MutexLock lock(&mu_);
      credits_ += n;
    }
    Wake();
  }
  // The next `times` attempts at `chunk` fail with `error` on `op`.
  void InjectError(uint64_t chunk, JobOperation op, Status error, int times = 1) {
    MutexLock lock(&mu_);
    faults_[chunk] = Fault{op, std::move(error), times};
  }
  uint64_t copied() const {
    MutexLock lock(&mu_);
    return copied_;
  }
  // How the job ended: finalisation hooks run, and a final flush on complete.
  struct Ends {
    int commits = 0, aborts = 0, cleans = 0;
    bool flushed = false;
  };
  Ends ends() const {
    MutexLock lock(&mu_);
    return ends_;
  }
  nlohmann::json changes() const {
    MutexLock lock(&mu_);
    return changes_;
  }

 protected:
  Status Run() override {
    SetTotalProgress(spec_.chunks * spec_.chunk_size);
    std::deque<uint64_t> todo;
    for (uint64_t i = 0; i < spec_.chunks; ++i) todo.push_back(i);
    while (!todo.empty()) {
      if (PausePoint()) return Status::OK();  // cancelled: the result is ignored
      if (!TakeCredit()) {
        WaitForWakeup(std::chrono::milliseconds(100));
        continue;
      }
      const uint64_t chunk = todo.front();
      todo.pop_front();
      JobOperation op = JobOperation::kWrite;
      Status s = Attempt(chunk, &op);
      if (!s.ok()) {
        switch (HandleError(op, s)) {
          case JobErrorAction::kReport: return s;
          case JobErrorAction::kIgnore: todo.push_back(chunk); continue;  // later
          case JobErrorAction::kStop: todo.push_front(chunk); continue;   // again, now
        }
      }
      AddProgress(spec_.chunk_size);
      {
        MutexLock lock(&mu_);
        ++copied_;
      }
      if (Throttle(spec_.chunk_size)) return Status::OK();
    }
    if (!spec_.mirror_like) return Status::OK();
    SetReady();
    while (!completion_requested() && !soft_cancelled()) {
      if (PausePoint()) return Status::OK();
      WaitForWakeup(std::chrono::milliseconds(100));
    }
    const bool completed = completion_requested();  // rather than a soft cancel
    MutexLock lock(&mu_);
    ends_.flushed = completed;
    return Status::OK();
  }
  Status OnComplete() override { return Status::OK(); }
  Status OnChange(const nlohmann::json& args) override {
    if (!args.contains("copy-mode")) return Status::Invalid("job-change needs 'copy-mode'");
    MutexLock lock(&mu_);
    changes_.push_back(args);
    return Status::OK();
  }
  void Commit() override { Count(&Ends::commits); }
  void Abort() override { Count(&Ends::aborts); }
  void Clean() override { Count(&Ends::cleans); }
  nlohmann::json QueryFields() const override {
    MutexLock lock(&mu_);
    return {{"copied-chunks", copied_}};
  }

 private:
  struct Fault {
    JobOperation op;
    Status error;
    int times;
  };

  bool TakeCredit() {
    MutexLock lock(&mu_);
    if (!spec_.gated) return true;
    if (credits_ == 0) return false;
    --credits_;
    return true;
  }
  Status Attempt(uint64_t chunk, JobOperation* op) {
    MutexLock lock(&mu_);
    auto it = faults_.find(chunk);
    if (it == faults_.end() || it->second.times == 0) return Status::OK();
    --it->second.times;
    *op = it->second.op;
    return it->second.error;
  }
  void Count(int Ends::*counter) {
    MutexLock lock(&mu_);
    ++(ends_.*counter);
  }
  const CountingJobSpec spec_;
  mutable Mutex mu_;  // never held while calling the Job base
  uint64_t credits_ GUARDED_BY(mu_) = 0;
  uint64_t copied_ GUARDED_BY(mu_) = 0;
  std::map<uint64_t, Fault> faults_ GUARDED_BY(mu_);
  Ends ends_ GUARDED_BY(mu_);
  nlohmann::json changes_ GUARDED_BY(mu_) = nlohmann::json::array();
};

}  // namespace thinsim

#endif  // THINSIM_JOB_TESTING_COUNTING_JOB_H_
