#include "bitmap/bitmap_registry.h"

namespace thinsim {

void BitmapRegistry::PruneLocked() {
  for (auto it = sets_.begin(); it != sets_.end();) {
    if (pool_->HasObserver(it->first, it->second.get())) {
      ++it;
    } else {
      it = sets_.erase(it);
    }
  }
}

Status BitmapRegistry::Get(std::string_view volume, bool create, std::shared_ptr<VolumeBitmaps>* out) {
  VolumeInfo info;
  THINSIM_RETURN_IF_ERROR(pool_->QueryVolume(volume, &info));
  MutexLock lock(&mu_);
  PruneLocked();
  auto it = sets_.find(volume);
  if (it != sets_.end()) {
    *out = it->second;
    return Status::OK();
  }
  if (!create) {
    out->reset();
    return Status::OK();
  }
  auto set = std::make_shared<VolumeBitmaps>(std::string(volume), info.size);
  THINSIM_RETURN_IF_ERROR(pool_->AttachObserver(volume, set));
  // A resize between QueryVolume and the attach would leave the size stale;
  // under the attach's gate none can run, so read it again now.
  if (pool_->QueryVolume(volume, &info).ok() && info.size != set->size()) set->Resize(info.size);
  sets_.emplace(std::string(volume), set);
  *out = std::move(set);
  return Status::OK();
}

void BitmapRegistry::ReleaseIfEmpty(std::string_view volume) {
  MutexLock lock(&mu_);
  auto it = sets_.find(volume);
  if (it == sets_.end() || !it->second->Query().empty()) return;
  // NotFound if the volume went meanwhile: nothing is attached then either.
  (void)pool_->DetachObserver(volume, it->second.get());
  sets_.erase(it);
}

std::vector<std::pair<std::string, std::shared_ptr<VolumeBitmaps>>> BitmapRegistry::All() {
  MutexLock lock(&mu_);
  PruneLocked();
  return {sets_.begin(), sets_.end()};
}

void BitmapRegistry::Resized(std::string_view volume, uint64_t size) {
  std::shared_ptr<VolumeBitmaps> set;
  if (Get(volume, /*create=*/false, &set).ok() && set) set->Resize(size);
}

}  // namespace thinsim
