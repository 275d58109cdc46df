// InFlightRanges: the byte ranges of one mirror job being written to its
// target right now - by the background copy and by write-blocking writes -
// as an interval set (Boost.ICL).
//
// Why: NBD leaves overlapping writes in flight at once undefined (libnbd:
// they "may even cause disk corruption"), and a background copy of old
// bytes must not land on the target after a write-blocking write of newer
// ones. So every target write of a range first waits until no range in
// flight overlaps it, then holds its range until it is answered. A write
// waits only for what it overlaps; disjoint ones run in parallel.
//
// Deadlock freedom: a holder never waits for anything while it holds a
// range except its own target call, so a waiter's wait is bounded by the
// target's answers.
//
// Thread safety: thread-safe.
#ifndef THINSIM_MIRROR_IN_FLIGHT_RANGES_H_
#define THINSIM_MIRROR_IN_FLIGHT_RANGES_H_

#include <cstdint>

#include <boost/icl/interval_set.hpp>

#include "base/mutex.h"
#include "base/thread_annotations.h"

namespace thinsim {

class InFlightRanges {
 public:
  InFlightRanges() = default;
  InFlightRanges(const InFlightRanges&) = delete;
  InFlightRanges& operator=(const InFlightRanges&) = delete;

  // Waits until [offset, offset + length) overlaps no range in flight, then
  // holds it. REQUIRES: length > 0.
  void Acquire(uint64_t offset, uint64_t length) EXCLUDES(mu_);
  // Holds the range if nothing in flight overlaps it; false (holding
  // nothing) otherwise.
  bool TryAcquire(uint64_t offset, uint64_t length) EXCLUDES(mu_);
  // REQUIRES: the range was acquired and not released since.
  void Release(uint64_t offset, uint64_t length) EXCLUDES(mu_);
  // Waits until nothing is in flight.
  void WaitIdle() EXCLUDES(mu_);
  bool idle() const EXCLUDES(mu_);

  // RAII: holds a range from construction (Acquire) to destruction.
  class Hold {
   public:
    Hold(InFlightRanges* ranges, uint64_t offset, uint64_t length)
        : ranges_(ranges), offset_(offset), length_(length) {
      ranges_->Acquire(offset_, length_);
    }
    ~Hold() { ranges_->Release(offset_, length_); }
    Hold(const Hold&) = delete;
    Hold& operator=(const Hold&) = delete;

   private:
    InFlightRanges* const ranges_;
    const uint64_t offset_;
    const uint64_t length_;
  };

 private:
  using Interval = boost::icl::interval_set<uint64_t>::interval_type;
  bool OverlapsLocked(const Interval& range) const REQUIRES(mu_);

  mutable Mutex mu_;
  CondVar changed_;
  boost::icl::interval_set<uint64_t> held_ GUARDED_BY(mu_);
};

}  // namespace thinsim

#endif  // THINSIM_MIRROR_IN_FLIGHT_RANGES_H_
