// SpaceMap: reference counts and allocation of the pool's data blocks.
//
// Every dblock has a reference count: the number of mapping chunks
// (pool/mapping.h) that point at it, plus one while a write is filling a
// freshly allocated block that is not mapped yet. A block with count 0 is
// free. Allocation is next-fit from a cursor, so a volume written front to
// back gets consecutive dblocks, as dm-thin's space maps allocate "linearly
// from front to back".
//
// Blocks whose count drops to 0 go to a *released* list, not straight back
// to the free set: the owner (Pool) must make them read as zero (discard)
// and, for persistent pools, wait until the transaction that freed them has
// committed, before calling Recycle(). This is dm-thin's rule that a block
// freed in a transaction is never reused inside it.
//
// Thread safety: not thread-safe. Pool serialises access with its metadata
// lock.
#ifndef THINSIM_POOL_SPACE_MAP_H_
#define THINSIM_POOL_SPACE_MAP_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "base/types.h"

namespace thinsim {

class SpaceMap {
 public:
  explicit SpaceMap(uint64_t nr_blocks);

  SpaceMap(const SpaceMap&) = delete;
  SpaceMap& operator=(const SpaceMap&) = delete;

  uint64_t nr_blocks() const { return refcounts_.size(); }
  // Blocks that Allocate() can hand out now.
  uint64_t nr_free() const { return nr_free_; }
  // Blocks with a non-zero count, plus released blocks not yet recycled.
  uint64_t nr_used() const { return nr_blocks() - nr_free_; }

  // Returns a free block with count 1, or kNoDblock when none is free.
  dblock_t Allocate();

  uint32_t RefCount(dblock_t b) const {
    return refcounts_[b] == kReleased ? 0 : refcounts_[b];
  }
  // REQUIRES: RefCount(b) > 0.
  void Inc(dblock_t b);
  // Returns the new count. At 0 the block joins the released list.
  // REQUIRES: RefCount(b) > 0.
  uint32_t Dec(dblock_t b);

  // Blocks released since the last TakeReleased(); the caller owns them
  // until it passes them to Recycle().
  std::vector<dblock_t> TakeReleased();
  // Returns released blocks to the free set.
  // REQUIRES: each block came from TakeReleased() and has count 0.
  void Recycle(const std::vector<dblock_t>& blocks);

  // Adds blocks at the end. REQUIRES: new_nr_blocks >= nr_blocks().
  void Grow(uint64_t new_nr_blocks);

  // Change tracking for metadata transactions: when on, every block whose
  // count changes is remembered until TakeChanged().
  void set_track_changes(bool on) { track_changes_ = on; }
  std::vector<dblock_t> TakeChanged();
  // Records a change of b's state that its count does not show (a block
  // allocated earlier becomes mapped).
  void MarkChanged(dblock_t b) { NoteChange(b); }

  // Heap bytes of the counts, the change tracking and the lists.
  size_t MemoryUsage() const;

  // Sets the count of a free block when rebuilding from mappings.
  // REQUIRES: RefCount(b) == 0 and the block is not released.
  void SetInitialCount(dblock_t b, uint32_t count);

 private:
  // Count of a block that was released and is not yet reusable.
  static constexpr uint32_t kReleased = UINT32_MAX;

  void NoteChange(dblock_t b) {
    if (!track_changes_ || changed_bit_[b]) return;
    changed_bit_[b] = true;
    changed_.push_back(b);
  }

  std::vector<uint32_t> refcounts_;
  std::vector<dblock_t> released_;
  uint64_t nr_free_;
  bool track_changes_ = false;
  std::vector<bool> changed_bit_;
  std::vector<dblock_t> changed_;
  uint64_t cursor_ = 0;  // next-fit start
};

}  // namespace thinsim

#endif  // THINSIM_POOL_SPACE_MAP_H_
