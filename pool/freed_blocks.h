// FreedBlocks: the life cycle of data blocks whose reference count has
// reached zero, from release until they may be allocated again.
//
// A released block is not free yet. It must read as zeroes before it is
// reused (a fresh block is never zeroed), and in a persistent pool the last
// commit may still map it, so it is not reused before the transaction that
// freed it commits (thinp's careful_alloc rule). The steps:
//
//   released --AddReleased--> uncommitted   (persistent pools only:
//            |                  |            the open transaction freed it)
//            |             CaptureForCommit
//            |                  v
//            |              committing      (its commit is syncing)
//            |                  |
//            |             FinishCommit(ok)    FinishCommit(!ok): dropped,
//            v                  v              never reused
//       to discard  <-----------+
//            |
//       TakeDiscards                          (the caller discards with
//            v                                 no pool lock held)
//       discarding --DoneDiscarding--> the caller recycles them in the
//                                      space map: allocatable
//
// Every step counts as free space (pending()), so that admission sees a
// freed block at once; only allocation has to wait for it.
//
// Thread safety: thread-compatible. Pool guards every call with meta_mu_,
// except discards_pending(), which may be read with no lock as a cheap
// "anything to do?" test.
//
// Invariants: a block is in at most one step; pending() is the number of
// blocks in all steps together, those being discarded included.
#ifndef THINSIM_POOL_FREED_BLOCKS_H_
#define THINSIM_POOL_FREED_BLOCKS_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "base/types.h"

namespace thinsim {

class DataStore;

class FreedBlocks {
 public:
  FreedBlocks() = default;
  FreedBlocks(const FreedBlocks&) = delete;
  FreedBlocks& operator=(const FreedBlocks&) = delete;

  // Takes blocks just released. `hold_until_commit` (a persistent pool):
  // the last commit may still map them, so they wait for the next one;
  // otherwise they go straight to the discard step.
  void AddReleased(const std::vector<dblock_t>& blocks, bool hold_until_commit);
  // A commit captured the open transaction: the blocks it freed are now
  // committing.
  void CaptureForCommit();
  // That commit finished. On success its blocks may be reused once
  // discarded; on failure they stay out of use for good (the disk still
  // maps them) and no longer count as free.
  void FinishCommit(bool ok);
  // Moves the blocks to discard to the caller, who discards them and then
  // calls DoneDiscarding(batch size). They count as pending until then.
  std::vector<dblock_t> TakeDiscards();
  // REQUIRES: `taken` is the size of a batch from TakeDiscards.
  void DoneDiscarding(uint64_t taken) { discarding_ -= taken; }

  // Discards `blocks` from `store` in runs of consecutive blocks; returns
  // those it discarded. A block whose discard fails still holds old bytes,
  // so it is left out and never reused. Needs no lock.
  static std::vector<dblock_t> Discard(DataStore* store, std::vector<dblock_t> blocks);

  // Some blocks wait to be discarded. May be called with no lock held.
  bool discards_pending() const { return discards_pending_.load(std::memory_order_acquire); }
  bool has_discards() const { return !to_discard_.empty(); }
  // Some blocks wait for a commit of the open transaction.
  bool has_uncommitted() const { return !uncommitted_.empty(); }
  // Freed blocks that are not allocatable yet (every step).
  uint64_t pending() const {
    return uncommitted_.size() + committing_.size() + to_discard_.size() + discarding_;
  }
  // Heap bytes of the step lists.
  size_t MemoryUsage() const;

 private:
  std::vector<dblock_t> uncommitted_;
  std::vector<dblock_t> committing_;
  std::vector<dblock_t> to_discard_;
  uint64_t discarding_ = 0;  // taken by TakeDiscards, not yet done
  // to_discard_ is not empty.
  std::atomic<bool> discards_pending_{false};
};

}  // namespace thinsim

#endif  // THINSIM_POOL_FREED_BLOCKS_H_
