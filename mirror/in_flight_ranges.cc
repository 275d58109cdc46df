// InFlightRanges (in_flight_ranges.h).
#include "mirror/in_flight_ranges.h"

#include <cassert>

namespace thinsim {

bool InFlightRanges::OverlapsLocked(const Interval& range) const {
  return boost::icl::intersects(held_, range);
}

void InFlightRanges::Acquire(uint64_t offset, uint64_t length) {
  assert(length > 0);
  const Interval range = Interval::right_open(offset, offset + length);
  MutexLock lock(&mu_);
  while (OverlapsLocked(range)) changed_.Wait(&mu_);
  held_ += range;
}

bool InFlightRanges::TryAcquire(uint64_t offset, uint64_t length) {
  const Interval range = Interval::right_open(offset, offset + length);
  MutexLock lock(&mu_);
  if (OverlapsLocked(range)) return false;
  held_ += range;
  return true;
}

void InFlightRanges::Release(uint64_t offset, uint64_t length) {
  {
    MutexLock lock(&mu_);
    held_ -= Interval::right_open(offset, offset + length);
  }
  // Waiters wait for different ranges: wake them all to look again.
  changed_.SignalAll();
}

void InFlightRanges::WaitIdle() {
  MutexLock lock(&mu_);
  while (!held_.empty()) changed_.Wait(&mu_);
}

bool InFlightRanges::idle() const {
  MutexLock lock(&mu_);
  return held_.empty();
}

}  // namespace thinsim
