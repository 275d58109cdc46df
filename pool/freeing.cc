// Pool: how freed blocks go back to the free set. FreedBlocks
// (freed_blocks.h) keeps the steps; the pool moves blocks between them and
// the space map, and wakes allocations waiting for them. The operation that
// freed blocks discards them after it has dropped its locks
// (DiscardAtExit), and an allocation that needs them sooner discards them
// itself.
#include "pool/pool.h"
#include "pool/space_map.h"

namespace thinsim {

void Pool::RecycleLocked() {
  std::vector<dblock_t> released = space_map_->TakeReleased();
  if (!released.empty()) {
    // A persistent pool's last commit still maps them: reusable after the
    // next one (CaptureTxnLocked and FinishCommitLocked move them on).
    freed_.AddReleased(released, /*hold_until_commit=*/journal_ != nullptr);
    space_freed_.SignalAll();  // queued writers: there is room now
  }
  LeaveOutOfSpaceIfRoomLocked();
  CheckLowWaterLocked();
}

bool Pool::DiscardsPending() const NO_THREAD_SAFETY_ANALYSIS {
  return freed_.discards_pending();  // an atomic: no lock needed
}

void Pool::DiscardFreedBlocks() {
  if (!DiscardsPending()) return;
  std::vector<dblock_t> batch;
  {
    WriterLock lock(&meta_mu_);
    batch = freed_.TakeDiscards();
  }
  if (batch.empty()) return;
  const uint64_t taken = batch.size();
  // No lock: nothing maps these blocks and nothing can allocate them.
  std::vector<dblock_t> discarded = FreedBlocks::Discard(store_.get(), std::move(batch));
  WriterLock lock(&meta_mu_);
  RecycleDiscardedLocked(discarded, taken);
}

void Pool::DiscardFreedBlocksLocked() {
  std::vector<dblock_t> batch = freed_.TakeDiscards();
  const uint64_t taken = batch.size();
  RecycleDiscardedLocked(FreedBlocks::Discard(store_.get(), std::move(batch)), taken);
}

void Pool::RecycleDiscardedLocked(const std::vector<dblock_t>& blocks, uint64_t taken) {
  freed_.DoneDiscarding(taken);
  space_map_->Recycle(blocks);
  space_freed_.SignalAll();
  LeaveOutOfSpaceIfRoomLocked();
  CheckLowWaterLocked();
}

uint64_t Pool::FreeLocked() const { return space_map_->nr_free() + freed_.pending(); }

}  // namespace thinsim
