// Pool: how freed blocks go back to the free set (see RecycleLocked in
// pool.h). A freed block must read as zeroes before it is reused, since a
// fresh block is never zeroed, and discarding costs a system call per run
// of blocks (~8 us for one 64K block in memory). Deleting a volume may free
// hundreds of thousands of blocks; doing that under meta_mu_ stalled every
// allocating write in the pool for the whole delete (bench/README.md). So
// the operation that freed them discards them after it has dropped its
// locks, and an allocation that needs them sooner discards them itself.
#include <algorithm>

#include "pool/data_store.h"
#include "pool/pool.h"
#include "pool/space_map.h"

namespace thinsim {

void Pool::RecycleLocked() {
  std::vector<dblock_t> released = space_map_->TakeReleased();
  if (!released.empty()) {
    // A persistent pool's last commit still maps them: reusable after the
    // next one (CommitLocked moves them on).
    std::vector<dblock_t>& next = journal_ ? freed_in_txn_ : to_discard_;
    next.insert(next.end(), released.begin(), released.end());
    if (!to_discard_.empty()) discards_pending_.store(true, std::memory_order_release);
    space_freed_.notify_all();  // queued writers: there is room now
  }
  LeaveOutOfSpaceIfRoomLocked();
  CheckLowWaterLocked();
}

std::vector<dblock_t> Pool::TakeDiscardsLocked() {
  std::vector<dblock_t> batch;
  batch.swap(to_discard_);
  discards_pending_.store(false, std::memory_order_release);
  discarding_ += batch.size();
  return batch;
}

void Pool::DiscardFreedBlocks() {
  if (!discards_pending_.load(std::memory_order_acquire)) return;
  std::vector<dblock_t> batch;
  {
    std::unique_lock lock(meta_mu_);
    batch = TakeDiscardsLocked();
  }
  if (batch.empty()) return;
  const uint64_t taken = batch.size();
  // No lock: nothing maps these blocks and nothing can allocate them.
  std::vector<dblock_t> discarded = DiscardRuns(std::move(batch));
  std::unique_lock lock(meta_mu_);
  RecycleDiscardedLocked(discarded, taken);
}

void Pool::DiscardFreedBlocksLocked() {
  std::vector<dblock_t> batch = TakeDiscardsLocked();
  const uint64_t taken = batch.size();
  RecycleDiscardedLocked(DiscardRuns(std::move(batch)), taken);
}

std::vector<dblock_t> Pool::DiscardRuns(std::vector<dblock_t> blocks) {
  std::sort(blocks.begin(), blocks.end());
  std::vector<dblock_t> done;
  done.reserve(blocks.size());
  for (size_t i = 0; i < blocks.size();) {
    size_t j = i + 1;
    while (j < blocks.size() && blocks[j] == blocks[j - 1] + 1) ++j;
    if (store_->Discard(blocks[i], j - i).ok()) {
      done.insert(done.end(), blocks.begin() + i, blocks.begin() + j);
    } else {
      // Find the blocks that failed: only they stay out of the free set.
      for (size_t k = i; k < j; ++k) {
        if (store_->Discard(blocks[k], 1).ok()) done.push_back(blocks[k]);
      }
    }
    i = j;
  }
  return done;
}

void Pool::RecycleDiscardedLocked(const std::vector<dblock_t>& blocks, uint64_t taken) {
  discarding_ -= taken;
  space_map_->Recycle(blocks);
  space_freed_.notify_all();
  LeaveOutOfSpaceIfRoomLocked();
  CheckLowWaterLocked();
}

uint64_t Pool::PendingFreeLocked() const {
  return freed_in_txn_.size() + committing_.size() + to_discard_.size() + discarding_;
}

uint64_t Pool::FreeLocked() const { return space_map_->nr_free() + PendingFreeLocked(); }

}  // namespace thinsim
