// Committer: the background thread of a persistent pool's commit timer
// (SPEC commit-interval). It calls a function once every period until it
// is stopped; the pool's function commits when changes are pending.
//
// Thread safety: thread-safe. Start and Stop may be called from any thread
// but not from the tick itself (Stop joins the thread).
//
// Invariants: at most one thread runs; after Stop returns no tick runs and
// none will until the next Start.
#ifndef THINSIM_POOL_COMMITTER_H_
#define THINSIM_POOL_COMMITTER_H_

#include <chrono>
#include <functional>
#include <thread>

#include "base/mutex.h"
#include "base/thread_annotations.h"

namespace thinsim {

class Committer {
 public:
  Committer() = default;
  ~Committer() { Stop(); }
  Committer(const Committer&) = delete;
  Committer& operator=(const Committer&) = delete;

  // Starts a thread that calls `tick` every `period` (the first call one
  // period from now). A no-op when running already or when `period` is 0.
  // REQUIRES: not called from `tick`.
  void Start(std::chrono::milliseconds period, std::function<void()> tick) EXCLUDES(mu_);
  // Stops the thread, waiting for a tick that is running; a no-op when not
  // running. REQUIRES: not called from `tick`.
  void Stop() EXCLUDES(mu_);
  bool running() const { return thread_.joinable(); }

 private:
  void Loop(std::chrono::milliseconds period, const std::function<void()>& tick);
  // Waits up to `period` for Stop; true when it was called.
  bool StopsWithin(std::chrono::milliseconds period) EXCLUDES(mu_);

  Mutex mu_;
  CondVar cv_;  // with mu_
  bool stop_ GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace thinsim

#endif  // THINSIM_POOL_COMMITTER_H_
