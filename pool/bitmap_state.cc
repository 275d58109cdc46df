// Pool: the durable state of persistent dirty bitmaps. The bitmap layer
// decides what to log and when to wait for it (bitmap/volume_bitmaps.h);
// the pool only carries the records in its transactions and keeps what
// they add up to, so that a checkpoint can write it out again.
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

void Pool::SetSizeAndBitmapsLocked(Volume& v, uint64_t size) {
  // As replaying the volume's record will (metadata/image.h), so that the
  // next checkpoint writes what the journal adds up to.
  metadata::ResizeBitmapImages(&v.bitmaps, v.size, size);
  v.size = size;
}

}  // namespace thinsim
