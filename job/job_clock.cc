#include "job/job_clock.h"

namespace thinsim {

namespace {

class RealJobClock : public JobClock {
 public:
  std::chrono::nanoseconds Now() override {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::steady_clock::now().time_since_epoch());
  }
  void WaitFor(CondVar* cv, Mutex* mu, std::chrono::nanoseconds timeout) REQUIRES(mu) override {
    cv->WaitFor(mu, timeout);
  }
};

}  // namespace

JobClock* JobClock::Real() {
  static JobClock* const clock = new RealJobClock;  // never destroyed: jobs may outlive statics
  return clock;
}

}  // namespace thinsim
