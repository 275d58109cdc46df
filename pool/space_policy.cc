#include "pool/space_policy.h"

namespace thinsim {

void SpacePolicy::Restore(uint8_t stored_mode) {
  mode_ = stored_mode <= static_cast<uint8_t>(PoolMode::kFail) ? static_cast<PoolMode>(stored_mode)
                                                                : PoolMode::kWrite;
  if (mode_ == PoolMode::kOutOfDataSpace) mode_ = PoolMode::kWrite;
}

std::optional<PoolEvent> SpacePolicy::SetMode(PoolMode mode, uint64_t free, uint64_t total) {
  // Fail mode is final: a write already past its check must not bring the
  // pool back to life after a failed commit.
  if (mode == mode_ || mode_ == PoolMode::kFail) return std::nullopt;
  mode_ = mode;
  PoolEvent e;
  e.name = "POOL_MODE";
  e.mode = mode;
  e.free_blocks = free;
  e.total_blocks = total;
  return e;
}

std::optional<PoolEvent> SpacePolicy::CheckLowWater(uint64_t free, uint64_t total) {
  uint64_t threshold = total * low_water_percent_ / 100;
  if (free >= threshold) {
    low_water_armed_ = true;
    return std::nullopt;
  }
  if (!low_water_armed_) return std::nullopt;
  low_water_armed_ = false;
  PoolEvent e;
  e.name = "LOW_WATER";
  e.mode = mode_;
  e.free_blocks = free;
  e.total_blocks = total;
  e.threshold_blocks = threshold;
  return e;
}

std::optional<PoolEvent> SpacePolicy::LeaveOutOfSpaceIfRoom(uint64_t free, int64_t reserved, uint64_t total) {
  if (mode_ != PoolMode::kOutOfDataSpace || static_cast<int64_t>(free) <= reserved) return std::nullopt;
  queue_timed_out_ = false;  // queue again from now on
  return SetMode(PoolMode::kWrite, free, total);
}

}  // namespace thinsim
