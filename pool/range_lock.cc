#include "pool/range_lock.h"

namespace thinsim {

bool RangeLock::Conflicts(const Range& r) const {
  for (const Range& h : held_) {
    bool overlap = h.first <= r.last && r.first <= h.last;
    if (overlap && (h.exclusive || r.exclusive)) return true;
  }
  return false;
}

RangeLock::Handle RangeLock::Lock(vblock_t first, vblock_t last, bool exclusive) {
  Range r{first, last, exclusive};
  std::unique_lock<std::mutex> lock(mu_);
  released_.wait(lock, [&] { return !Conflicts(r); });
  held_.push_front(r);
  return held_.begin();
}

void RangeLock::Unlock(Handle h) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    held_.erase(h);
  }
  released_.notify_all();
}

}  // namespace thinsim
