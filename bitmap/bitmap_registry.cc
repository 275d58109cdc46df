#include "bitmap/bitmap_registry.h"

namespace thinsim {
namespace {

// A volume's bitmap records go into the pool's transactions.
class PoolBitmapJournal final : public BitmapJournal {
 public:
  PoolBitmapJournal(Pool* pool, std::string volume, uint64_t volume_id)
      : pool_(pool), volume_(std::move(volume)), volume_id_(volume_id) {}
  uint64_t volume_id() const override { return volume_id_; }
  Status Append(const std::string& records) override { return pool_->LogBitmapRecords(volume_, records); }
  Status Sync() override { return pool_->Flush(); }

 private:
  Pool* const pool_;
  const std::string volume_;
  const uint64_t volume_id_;
};

}  // namespace

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
  return AttachLocked(volume, info, out);
}

Status BitmapRegistry::AttachLocked(std::string_view volume, const VolumeInfo& info,
                                    std::shared_ptr<VolumeBitmaps>* out) {
  std::unique_ptr<BitmapJournal> journal;
  std::map<uint64_t, metadata::BitmapImage> images;
  if (pool_->persistent()) {
    uint64_t volume_id = 0;
    THINSIM_RETURN_IF_ERROR(pool_->PersistentBitmaps(volume, &volume_id, &images));
    journal = std::make_unique<PoolBitmapJournal>(pool_, std::string(volume), volume_id);
  }
  auto set = std::make_shared<VolumeBitmaps>(std::string(volume), info.size, std::move(journal));
  for (const auto& [id, image] : images) THINSIM_RETURN_IF_ERROR(set->Restore(id, image));
  // The attach tells the set the volume's size at that point in time
  // (VolumeSize), so a resize since QueryVolume is not missed.
  THINSIM_RETURN_IF_ERROR(pool_->AttachObserver(volume, set));
  sets_.emplace(std::string(volume), set);
  *out = std::move(set);
  return Status::OK();
}

Status BitmapRegistry::LoadPersistent() {
  if (!pool_->persistent()) return Status::OK();
  MutexLock lock(&mu_);
  for (const VolumeInfo& info : pool_->QueryVolumes()) {
    uint64_t volume_id = 0;
    std::map<uint64_t, metadata::BitmapImage> images;
    if (!pool_->PersistentBitmaps(info.name, &volume_id, &images).ok() || images.empty()) continue;
    if (sets_.count(info.name) != 0) continue;
    std::shared_ptr<VolumeBitmaps> set;
    THINSIM_RETURN_IF_ERROR(AttachLocked(info.name, info, &set));
  }
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

}  // namespace thinsim
