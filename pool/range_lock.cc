#include "pool/range_lock.h"

namespace thinsim {

bool RangeLock::Conflicts(const Range& r) const {
  for (const Range* h = held_; h != nullptr; h = h->next) {
    bool overlap = h->first <= r.last && r.first <= h->last;
    if (overlap && (h->exclusive || r.exclusive)) return true;
  }
  return false;
}

void RangeLock::Lock(Range* r) {
  MutexLock lock(&mu_);
  if (Conflicts(*r)) {
    ++waiters_;
    while (Conflicts(*r)) released_.Wait(&mu_);
    --waiters_;
  }
  r->prev = nullptr;
  r->next = held_;
  if (held_ != nullptr) held_->prev = r;
  held_ = r;
}

void RangeLock::Unlock(Range* r) {
  bool wake;
  {
    MutexLock lock(&mu_);
    if (r->prev != nullptr) {
      r->prev->next = r->next;
    } else {
      held_ = r->next;
    }
    if (r->next != nullptr) r->next->prev = r->prev;
    wake = waiters_ > 0;
  }
  if (wake) released_.SignalAll();
}

}  // namespace thinsim
