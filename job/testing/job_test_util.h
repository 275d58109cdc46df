// Helpers for job tests: a sink that records events, a clock whose sleeps
// only advance a counter, and a bounded wait on a condition. Header-only.
//
// Thread safety: thread-safe.
#ifndef THINSIM_JOB_TESTING_JOB_TEST_UTIL_H_
#define THINSIM_JOB_TESTING_JOB_TEST_UTIL_H_

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/mutex.h"
#include "job/job.h"
#include "job/job_clock.h"

namespace thinsim {

// Every event a registry sent, in order.
class EventRecorder {
 public:
  JobEventSink Sink() {
    return [this](const std::string& name, const nlohmann::json& data) {
      MutexLock lock(&mu_);
      events_.emplace_back(name, data);
    };
  }
  // One word per event: a JOB_STATUS_CHANGE as its status ("running"),
  // others by name ("BLOCK_JOB_READY"); only those of job `id`.
  std::vector<std::string> Names(const std::string& id) const {
    MutexLock lock(&mu_);
    std::vector<std::string> names;
    for (const auto& [name, data] : events_) {
      if (data.value("id", "") != id) continue;
      names.push_back(name == "JOB_STATUS_CHANGE" ? data.at("status").get<std::string>() : name);
    }
    return names;
  }
  // The data of every event `name` of job `id`.
  std::vector<nlohmann::json> Data(const std::string& id, const std::string& name) const {
    MutexLock lock(&mu_);
    std::vector<nlohmann::json> out;
    for (const auto& [n, data] : events_) {
      if (n == name && data.value("id", "") == id) out.push_back(data);
    }
    return out;
  }

 private:
  mutable Mutex mu_;
  std::vector<std::pair<std::string, nlohmann::json>> events_ GUARDED_BY(mu_);
};

// Time that passes only when a job sleeps: a sleep of d advances it by d
// and returns at once.
class FakeJobClock : public JobClock {
 public:
  std::chrono::nanoseconds Now() override { return std::chrono::nanoseconds(now_.load()); }
  void WaitFor(CondVar* cv, Mutex* mu, std::chrono::nanoseconds timeout) REQUIRES(mu) override {
    (void)cv;
    (void)mu;
    now_ += timeout.count();
  }

 private:
  std::atomic<int64_t> now_{0};
};

// Polls `done` until it holds or 20 s passed; returns its last value. The
// bound only keeps a broken test from hanging: nothing is timed.
template <typename Pred>
bool WaitUntil(Pred done) {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!done()) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

}  // namespace thinsim

#endif  // THINSIM_JOB_TESTING_JOB_TEST_UTIL_H_
