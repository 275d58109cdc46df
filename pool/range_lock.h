// RangeLock: readers-writer locks over ranges of vblocks of one volume.
//
// NBD clients may have overlapping requests in flight and nothing in nbdkit
// orders them. Every data request locks the whole vblocks it touches
// (rounded out, as QEMU serialises padded requests): reads share, anything
// that writes is exclusive. So a partial-block write into a hole or a shared
// block - a read-modify-write of the whole block - never races another
// request on that block, and a read never sees half of a write.
//
// Waiters are woken in no particular order; a steady stream of overlapping
// readers can delay a writer (there is no queueing by arrival).
//
// A held range is a node the caller owns (ScopedRange keeps it on the
// stack), linked into the lock's list: taking a range allocates nothing,
// which matters on the 4K read path.
//
// Thread safety: thread-safe.
#ifndef THINSIM_POOL_RANGE_LOCK_H_
#define THINSIM_POOL_RANGE_LOCK_H_

#include "base/mutex.h"
#include "base/types.h"

namespace thinsim {

class RangeLock {
 public:
  RangeLock() = default;
  RangeLock(const RangeLock&) = delete;
  RangeLock& operator=(const RangeLock&) = delete;

  struct Range {
    Range(vblock_t first_vb, vblock_t last_vb, bool excl) : first(first_vb), last(last_vb), exclusive(excl) {}
    Range(const Range&) = delete;
    Range& operator=(const Range&) = delete;

    const vblock_t first;
    const vblock_t last;  // inclusive
    const bool exclusive;

   private:
    friend class RangeLock;
    Range* prev = nullptr;  // links in the held list
    Range* next = nullptr;
  };

  // Blocks until no held range overlapping [r->first, r->last] conflicts,
  // then holds r.
  // REQUIRES: r is not held, and stays alive until Unlock(r).
  void Lock(Range* r) EXCLUDES(mu_);
  // REQUIRES: r is held.
  void Unlock(Range* r) EXCLUDES(mu_);

 private:
  bool Conflicts(const Range& r) const REQUIRES(mu_);

  Mutex mu_;
  CondVar released_;  // with mu_
  Range* held_ GUARDED_BY(mu_) = nullptr;  // head of a doubly-linked list
  int waiters_ GUARDED_BY(mu_) = 0;
};

// Holds a range for the current scope.
class ScopedRange {
 public:
  ScopedRange(RangeLock* lock, vblock_t first, vblock_t last, bool exclusive)
      : lock_(lock), range_(first, last, exclusive) {
    lock_->Lock(&range_);
  }
  ~ScopedRange() { lock_->Unlock(&range_); }
  ScopedRange(const ScopedRange&) = delete;
  ScopedRange& operator=(const ScopedRange&) = delete;

 private:
  RangeLock* lock_;
  RangeLock::Range range_;
};

}  // namespace thinsim

#endif  // THINSIM_POOL_RANGE_LOCK_H_
