// Pool: the durable state of persistent dirty bitmaps. The bitmap layer
// decides what to log and when to wait for it (bitmap/volume_bitmaps.h);
// the pool only carries the records in its transactions and keeps what
// they add up to, so that a checkpoint can write it out again.
#include <algorithm>

#include "base/sizes.h"
#include "pool/pool.h"
#include "pool/volume.h"

namespace thinsim {

Status Pool::LogBitmapRecords(std::string_view name, const std::string& records) {
  if (!persistent()) return Status::Unsupported("an in-memory pool has no persistent bitmaps");
  WriterLock lock(&meta_mu_);
  THINSIM_RETURN_IF_ERROR(RefuseIfFailedLocked());
  Volume* v = FindLocked(name);
  if (v == nullptr) return Status::NotFound("no volume named '" + std::string(name) + "'");
  // Applied to a copy first: a record that does not fit changes nothing.
  metadata::VolumeImage image;
  image.attrs.id = v->id;  // what the records are checked against
  image.attrs.name = v->name;
  image.attrs.size = v->size;
  image.bitmaps = v->bitmaps;
  metadata::RecordReader reader(records);
  std::string_view payload;
  while (reader.Next(&payload)) {
    Status s = metadata::ApplyBitmapRecord(payload, &image);
    if (!s.ok()) return Status::Invalid("bitmap record for volume '" + v->name + "' refused: " + s.message());
  }
  if (!reader.error().empty()) return Status::Invalid("bitmap records for volume '" + v->name + "': " + reader.error());
  v->bitmaps = std::move(image.bitmaps);
  txn_.AppendFramed(records);
  return Status::OK();
}

Status Pool::PersistentBitmaps(std::string_view name, uint64_t* volume_id,
                               std::map<uint64_t, metadata::BitmapImage>* out) const {
  ReaderLock lock(&meta_mu_);
  const Volume* v = FindLocked(name);
  if (v == nullptr) return Status::NotFound("no volume named '" + std::string(name) + "'");
  *volume_id = v->id;
  *out = v->bitmaps;
  return Status::OK();
}

void Pool::TrimBitmapsLocked(Volume& v) {
  // As replaying the volume's record does (metadata/image.h): a shrink
  // drops the granules past the new end.
  for (auto& [id, b] : v.bitmaps) {
    uint64_t granules = GranuleCount(v.size, b.granularity);
    b.dirty -= boost::icl::interval<uint64_t>::right_open(granules, UINT64_MAX);
  }
}

}  // namespace thinsim
