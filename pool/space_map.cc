#include "pool/space_map.h"

#include <cassert>

namespace thinsim {

SpaceMap::SpaceMap(uint64_t nr_blocks)
    : refcounts_(nr_blocks, 0), nr_free_(nr_blocks), changed_bit_(nr_blocks, false) {
  assert(nr_blocks <= kMaxPoolBlocks);
}

dblock_t SpaceMap::Allocate() {
  if (nr_free_ == 0) return kNoDblock;
  const uint64_t n = nr_blocks();
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t b = cursor_ + i;
    if (b >= n) b -= n;
    if (refcounts_[b] == 0) {
      refcounts_[b] = 1;
      --nr_free_;
      NoteChange(static_cast<dblock_t>(b));
      cursor_ = b + 1 == n ? 0 : b + 1;
      return static_cast<dblock_t>(b);
    }
  }
  assert(false && "nr_free_ out of step with refcounts_");
  return kNoDblock;
}

void SpaceMap::Inc(dblock_t b) {
  assert(refcounts_[b] > 0 && refcounts_[b] < kReleased - 1);
  ++refcounts_[b];
  NoteChange(b);
}

uint32_t SpaceMap::Dec(dblock_t b) {
  assert(refcounts_[b] > 0 && refcounts_[b] != kReleased);
  uint32_t left = --refcounts_[b];
  NoteChange(b);
  if (left == 0) {
    // Hold the block out of the free set until Recycle(): Allocate() only
    // takes blocks whose count is 0.
    refcounts_[b] = kReleased;
    released_.push_back(b);
  }
  return left;
}

std::vector<dblock_t> SpaceMap::TakeReleased() {
  std::vector<dblock_t> out;
  out.swap(released_);
  return out;
}

void SpaceMap::Recycle(const std::vector<dblock_t>& blocks) {
  for (dblock_t b : blocks) {
    assert(refcounts_[b] == kReleased);
    refcounts_[b] = 0;
    ++nr_free_;
  }
}

void SpaceMap::Grow(uint64_t new_nr_blocks) {
  assert(new_nr_blocks >= nr_blocks() && new_nr_blocks <= kMaxPoolBlocks);
  nr_free_ += new_nr_blocks - nr_blocks();
  refcounts_.resize(new_nr_blocks, 0);
  changed_bit_.resize(new_nr_blocks, false);
}

std::vector<dblock_t> SpaceMap::TakeChanged() {
  for (dblock_t b : changed_) changed_bit_[b] = false;
  std::vector<dblock_t> out;
  out.swap(changed_);
  return out;
}

void SpaceMap::SetInitialCount(dblock_t b, uint32_t count) {
  assert(refcounts_[b] == 0 && count > 0);
  refcounts_[b] = count;
  --nr_free_;
}

size_t SpaceMap::MemoryUsage() const {
  return refcounts_.capacity() * sizeof(uint32_t) + changed_bit_.capacity() / 8 +
         (released_.capacity() + changed_.capacity()) * sizeof(dblock_t);
}

}  // namespace thinsim
