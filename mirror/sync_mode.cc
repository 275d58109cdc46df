// Sync modes of a mirror job (sync_mode.h).
#include "mirror/sync_mode.h"

#include <vector>

#include "metadata/delta.h"

namespace thinsim {
namespace {

constexpr SyncMode kModes[] = {SyncMode::kFull, SyncMode::kTop, SyncMode::kNone, SyncMode::kIncremental};

// top: the runs where the volume's mapping differs from its origin's (or,
// without an origin, from an empty volume's).
Status MarkTop(const Pool& pool, const std::string& volume, DirtyBitmap* dirty) {
  VolumeInfo info;
  THINSIM_RETURN_IF_ERROR(pool.QueryVolume(volume, &info));
  std::vector<std::string> names = {volume};
  if (info.origin) names.push_back(*info.origin);
  std::vector<metadata::VolumeImage> images;
  THINSIM_RETURN_IF_ERROR(pool.VolumeImagesOf(names, &images));
  metadata::VolumeImage empty;
  const metadata::VolumeImage& base = images.size() > 1 ? images[1] : empty;
  for (const metadata::DeltaRange& r : metadata::ComputeDelta(pool.block_size(), images[0], base)) {
    if (r.type != metadata::DeltaType::kSame) dirty->Mark(r.offset, r.length);
  }
  return Status::OK();
}

}  // namespace

std::string_view SyncModeName(SyncMode mode) {
  switch (mode) {
    case SyncMode::kFull:
      return "full";
    case SyncMode::kTop:
      return "top";
    case SyncMode::kNone:
      return "none";
    case SyncMode::kIncremental:
      return "incremental";
  }
  return "?";
}

Status ParseSyncMode(std::string_view name, SyncMode* out) {
  for (SyncMode m : kModes) {
    if (name == SyncModeName(m)) {
      *out = m;
      return Status::OK();
    }
  }
  return Status::Invalid("unknown sync mode '" + std::string(name) + "': full, top, none or incremental");
}

Status MarkInitial(const Pool& pool, const std::string& volume, SyncMode mode,
                   const boost::icl::interval_set<uint64_t>& bitmap_dirty, DirtyBitmap* dirty) {
  switch (mode) {
    case SyncMode::kFull:
      dirty->MarkAll();
      return Status::OK();
    case SyncMode::kTop:
      return MarkTop(pool, volume, dirty);
    case SyncMode::kNone:
      return Status::OK();
    case SyncMode::kIncremental:
      for (const auto& r : bitmap_dirty) dirty->Mark(boost::icl::first(r), boost::icl::length(r));
      return Status::OK();
  }
  return Status::Invalid("unknown sync mode");
}

}  // namespace thinsim
