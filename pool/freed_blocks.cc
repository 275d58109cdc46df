// FreedBlocks: see freed_blocks.h. Discarding costs a system call per run
// of blocks (~8 us for one 64K block in memory), and deleting a volume may
// free hundreds of thousands of blocks; doing that under the pool's
// metadata lock stalled every allocating write for the whole delete
// (bench/README.md). So the caller takes the batch under the lock and
// discards it without.
#include "pool/freed_blocks.h"

#include <algorithm>

#include "pool/data_store.h"

namespace thinsim {

void FreedBlocks::AddReleased(const std::vector<dblock_t>& blocks, bool hold_until_commit) {
  if (blocks.empty()) return;
  std::vector<dblock_t>& next = hold_until_commit ? uncommitted_ : to_discard_;
  next.insert(next.end(), blocks.begin(), blocks.end());
  if (!to_discard_.empty()) discards_pending_.store(true, std::memory_order_release);
}

void FreedBlocks::CaptureForCommit() {
  committing_.insert(committing_.end(), uncommitted_.begin(), uncommitted_.end());
  uncommitted_.clear();
}

void FreedBlocks::FinishCommit(bool ok) {
  if (!ok) {
    committing_.clear();
    return;
  }
  if (committing_.empty()) return;
  to_discard_.insert(to_discard_.end(), committing_.begin(), committing_.end());
  committing_.clear();
  discards_pending_.store(true, std::memory_order_release);
}

std::vector<dblock_t> FreedBlocks::TakeDiscards() {
  std::vector<dblock_t> batch;
  batch.swap(to_discard_);
  discards_pending_.store(false, std::memory_order_release);
  discarding_ += batch.size();
  return batch;
}

std::vector<dblock_t> FreedBlocks::Discard(DataStore* store, std::vector<dblock_t> blocks) {
  std::sort(blocks.begin(), blocks.end());
  std::vector<dblock_t> done;
  done.reserve(blocks.size());
  for (size_t i = 0; i < blocks.size();) {
    size_t j = i + 1;
    while (j < blocks.size() && blocks[j] == blocks[j - 1] + 1) ++j;
    if (store->Discard(blocks[i], j - i).ok()) {
      done.insert(done.end(), blocks.begin() + i, blocks.begin() + j);
    } else {
      // Find the blocks that failed: only they stay out of the free set.
      for (size_t k = i; k < j; ++k) {
        if (store->Discard(blocks[k], 1).ok()) done.push_back(blocks[k]);
      }
    }
    i = j;
  }
  return done;
}

size_t FreedBlocks::MemoryUsage() const {
  return (uncommitted_.capacity() + committing_.capacity() + to_discard_.capacity()) * sizeof(dblock_t);
}

}  // namespace thinsim
