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
// Thread safety: thread-safe.
#ifndef THINSIM_POOL_RANGE_LOCK_H_
#define THINSIM_POOL_RANGE_LOCK_H_

#include <condition_variable>
#include <list>
#include <mutex>

#include "pool/types.h"

namespace thinsim {

class RangeLock {
 public:
  RangeLock() = default;
  RangeLock(const RangeLock&) = delete;
  RangeLock& operator=(const RangeLock&) = delete;

  struct Range {
    vblock_t first;
    vblock_t last;  // inclusive
    bool exclusive;
  };
  using Handle = std::list<Range>::iterator;

  // Blocks until no held range overlapping [first, last] conflicts.
  Handle Lock(vblock_t first, vblock_t last, bool exclusive);
  void Unlock(Handle h);

 private:
  bool Conflicts(const Range& r) const;

  std::mutex mu_;
  std::condition_variable released_;
  std::list<Range> held_;
};

// Holds a range for the current scope.
class ScopedRange {
 public:
  ScopedRange(RangeLock* lock, vblock_t first, vblock_t last, bool exclusive)
      : lock_(lock), handle_(lock->Lock(first, last, exclusive)) {}
  ~ScopedRange() { lock_->Unlock(handle_); }
  ScopedRange(const ScopedRange&) = delete;
  ScopedRange& operator=(const ScopedRange&) = delete;

 private:
  RangeLock* lock_;
  RangeLock::Handle handle_;
};

}  // namespace thinsim

#endif  // THINSIM_POOL_RANGE_LOCK_H_
