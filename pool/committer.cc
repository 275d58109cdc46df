// Committer: see committer.h.
#include "pool/committer.h"

#include <utility>

namespace thinsim {

void Committer::Start(std::chrono::milliseconds period, std::function<void()> tick) {
  if (period.count() <= 0 || thread_.joinable()) return;
  {
    MutexLock lock(&mu_);
    stop_ = false;
  }
  thread_ = std::thread([this, period, tick = std::move(tick)] { Loop(period, tick); });
}

void Committer::Stop() {
  if (!thread_.joinable()) return;
  {
    MutexLock lock(&mu_);
    stop_ = true;
  }
  cv_.SignalAll();
  thread_.join();
}

void Committer::Loop(std::chrono::milliseconds period, const std::function<void()>& tick) {
  while (!StopsWithin(period)) tick();
}

bool Committer::StopsWithin(std::chrono::milliseconds period) {
  MutexLock lock(&mu_);
  const auto deadline = std::chrono::steady_clock::now() + period;
  while (!stop_) {
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return false;
    cv_.WaitFor(&mu_, deadline - now);
  }
  return true;
}

}  // namespace thinsim
