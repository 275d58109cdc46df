// JobClock: the time a job's speed limit is measured against. The real one
// reads the steady clock and sleeps on the job's condition variable; tests
// inject one whose sleeps advance a counter instead, so that throttling is
// checked by arithmetic, never by timing.
//
// Thread safety: implementations are thread-safe.
#ifndef THINSIM_JOB_JOB_CLOCK_H_
#define THINSIM_JOB_JOB_CLOCK_H_

#include <chrono>

#include "base/mutex.h"

namespace thinsim {

class JobClock {
 public:
  virtual ~JobClock() = default;

  // Monotonic time.
  virtual std::chrono::nanoseconds Now() = 0;
  // Sleeps at most `timeout` on *cv, which *mu guards; may return early
  // (a signal: the job was paused, cancelled or its speed changed).
  // REQUIRES: the caller holds *mu.
  virtual void WaitFor(CondVar* cv, Mutex* mu, std::chrono::nanoseconds timeout) REQUIRES(mu) = 0;

  // The steady clock. Never destroyed.
  static JobClock* Real();
};

}  // namespace thinsim

#endif  // THINSIM_JOB_JOB_CLOCK_H_
