// SpacePolicy: what a thin pool does as its free space runs out (SPEC
// section 6) - the pool mode, the low-water event, and whether a write that
// finds no space may wait for it (when-full=queue) or fails at once.
//
// It decides; the Pool counts. Every call takes the pool's current free and
// total blocks, and returns the event to publish, if any, so the policy
// needs no back pointer into the pool.
//
// Invariants: fail mode is final (no call leaves it). LOW_WATER fires once
// each time free space falls below the threshold, and re-arms only when it
// is back at or above it. After one queued write timed out, writes stop
// queueing until the pool leaves out-of-data-space (dm-thin's
// no_space_timeout switches the pool to error mode likewise).
//
// Thread safety: not thread-safe; the Pool calls it under its metadata lock
// (exclusive for the mutators).
#ifndef THINSIM_POOL_SPACE_POLICY_H_
#define THINSIM_POOL_SPACE_POLICY_H_

#include <cstdint>
#include <optional>
#include <string>

#include "base/types.h"

namespace thinsim {

// A pool event for the control socket's subscribers.
struct PoolEvent {
  std::string name;  // "LOW_WATER" or "POOL_MODE"
  PoolMode mode = PoolMode::kWrite;
  uint64_t free_blocks = 0;
  uint64_t total_blocks = 0;
  uint64_t threshold_blocks = 0;  // LOW_WATER: free space fell below this
};

class SpacePolicy {
 public:
  // REQUIRES: low_water_percent <= 100.
  SpacePolicy(WhenFull when_full, uint32_t low_water_percent)
      : when_full_(when_full), low_water_percent_(low_water_percent) {}

  PoolMode mode() const { return mode_; }
  WhenFull when_full() const { return when_full_; }
  uint32_t low_water_percent() const { return low_water_percent_; }
  bool failed() const { return mode_ == PoolMode::kFail; }

  // The mode a reopened pool starts in, from its stored byte: an unknown
  // value reads as write, and out-of-data-space is re-derived by the next
  // allocation rather than trusted.
  void Restore(uint8_t stored_mode);
  // Changes the mode; a POOL_MODE event when it changed.
  std::optional<PoolEvent> SetMode(PoolMode mode, uint64_t free, uint64_t total);
  // After a change in free space: LOW_WATER when it just fell below the
  // threshold.
  std::optional<PoolEvent> CheckLowWater(uint64_t free, uint64_t total);
  // Back to write once some free space is unreserved again (free >
  // reserved); queued writes may queue again from then on.
  std::optional<PoolEvent> LeaveOutOfSpaceIfRoom(uint64_t free, int64_t reserved, uint64_t total);

  // Whether a write that found no space may wait for some.
  bool MayQueue() const { return when_full_ == WhenFull::kQueue && !queue_timed_out_; }
  // A queued write gave up waiting: the next ones fail at once.
  void NoteQueueTimedOut() { queue_timed_out_ = true; }

 private:
  const WhenFull when_full_;
  const uint32_t low_water_percent_;
  PoolMode mode_ = PoolMode::kWrite;
  bool low_water_armed_ = true;
  bool queue_timed_out_ = false;
};

}  // namespace thinsim

#endif  // THINSIM_POOL_SPACE_POLICY_H_
