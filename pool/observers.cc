// Pool: attaching the request hook and reading for background copies
// (request_observer.h). The hook itself is called in pool_io.cc.
#include <algorithm>
#include <mutex>
#include <shared_mutex>

#include "pool/pool.h"
#include "pool/volume.h"

namespace thinsim {

namespace {

// `observer` among v's. REQUIRES: v's io_gate held (shared or exclusive).
std::vector<std::shared_ptr<RequestObserver>>::iterator FindObserver(Volume& v, const RequestObserver* observer) {
  return std::find_if(v.observers.begin(), v.observers.end(),
                      [observer](const std::shared_ptr<RequestObserver>& o) { return o.get() == observer; });
}

}  // namespace

Status Pool::FindShared(std::string_view name, std::shared_ptr<Volume>* out) const {
  ReaderLock lock(&meta_mu_);
  Volume* found = FindLocked(name);
  if (found == nullptr) return Status::NotFound("no volume named '" + std::string(name) + "'");
  *out = volumes_.at(found->id);
  return Status::OK();
}

Status Pool::AttachObserver(std::string_view name, std::shared_ptr<RequestObserver> observer) {
  if (!observer) return Status::Invalid("no observer to attach");
  std::shared_ptr<Volume> v;
  THINSIM_RETURN_IF_ERROR(FindShared(name, &v));
  // Exclusive: waits for the changes in flight, holds new ones back until
  // the observer is in place. Reads do not take the gate.
  std::unique_lock gate(v->io_gate);
  if (v->deleted) return Status::NotFound("volume '" + v->name + "' was deleted");
  uint64_t size;
  {
    ReaderLock lock(&meta_mu_);
    size = v->size;  // stands still: a resize holds the gate
  }
  observer->VolumeSize(size);
  v->observers.push_back(std::move(observer));
  return Status::OK();
}

Status Pool::DetachObserver(std::string_view name, const RequestObserver* observer) {
  std::shared_ptr<Volume> v;
  THINSIM_RETURN_IF_ERROR(FindShared(name, &v));
  std::unique_lock gate(v->io_gate);
  auto it = FindObserver(*v, observer);
  if (it == v->observers.end()) {
    return Status::NotFound("that observer is not attached to volume '" + v->name + "'");
  }
  v->observers.erase(it);
  return Status::OK();
}

bool Pool::HasObserver(std::string_view name, const RequestObserver* observer) const {
  std::shared_ptr<Volume> v;
  if (!FindShared(name, &v).ok()) return false;
  std::shared_lock gate(v->io_gate);  // observers change only under it, exclusively
  return FindObserver(*v, observer) != v->observers.end();
}

Status Pool::CopyRead(Volume& v, void* buf, uint64_t len, uint64_t offset,
                      const std::function<void()>& while_locked) {
  if (len == 0) return Status::OK();
  ScopedRange range(&v.range_lock, offset / block_size_, (offset + len - 1) / block_size_,
                    /*exclusive=*/false);
  THINSIM_RETURN_IF_ERROR(ReadHeld(v, buf, len, offset));
  if (while_locked) while_locked();
  return Status::OK();
}

}  // namespace thinsim
