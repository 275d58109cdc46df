// Image: an in-core copy of a pool's metadata, built by replaying records.
// The offline tools (check, dump, restore, repair, delta) work on an Image;
// the pool loads its state from one when it reopens.
//
// Chunks are shared between volumes exactly as in the live pool: a
// snapshot's slots point at its origin's chunk objects until a kChunk record
// replaces one.
//
// Thread safety: a value type; no internal synchronisation.
#ifndef THINSIM_METADATA_IMAGE_H_
#define THINSIM_METADATA_IMAGE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <boost/icl/interval_set.hpp>

#include "metadata/records.h"
#include "base/status.h"

namespace thinsim::metadata {

struct ChunkImage {
  uint64_t mapped = 0;
  uint64_t provisioned = 0;
  std::vector<uint32_t> dblocks;  // one per mapped bit, in order
};

// A persistent dirty bitmap as its records left it: `dirty` holds granule
// indexes, all below the volume's granule count (size rounded up). Names
// are unique among a volume's bitmaps.
struct BitmapImage {
  std::string name;
  uint32_t granularity = 0;
  uint8_t flags = 0;  // BitmapRecord::kRecording | kInconsistent
  boost::icl::interval_set<uint64_t> dirty;
  bool operator==(const BitmapImage&) const = default;
};

struct VolumeImage {
  VolumeRecord attrs;
  std::map<uint64_t, std::shared_ptr<const ChunkImage>> chunks;  // by chunk index
  std::map<uint64_t, BitmapImage> bitmaps;                       // by id; a snapshot has none
};

struct Image {
  uint32_t block_size = 0;
  uint64_t nr_blocks = 0;
  uint8_t mode = 0;
  uint64_t commit_seq = 0;
  std::map<uint64_t, VolumeImage> volumes;   // by id
  std::map<uint32_t, uint32_t> refcounts;    // stored counts, non-zero only

  // Applies one record payload (type byte first, as RecordReader yields
  // it): decodes it (records.h) and makes its change. Corruption, with a
  // RecordCorruption message, names what was wrong: a malformed record, or
  // one that does not fit the image (an unknown volume or shared chunk, a
  // chunk provisioning unmapped vblocks, a bitmap granule past the volume's
  // end). A refused record changes nothing. A volume's shrink drops its
  // chunks and bitmap granules past the new end.
  Status Apply(std::string_view payload);

  // The whole state as a checkpoint record stream (no kCommit).
  // (Each volume's bitmaps as AppendBitmapImages writes them.)
  void Encode(std::string* out) const;

  // Chunks named in the checkpoint being applied, for kShareChunk.
  std::map<uint64_t, std::shared_ptr<const ChunkImage>> checkpoint_chunks;

  // Reference counts derived from the mappings: the number of distinct
  // chunk objects mapping each dblock.
  std::map<uint32_t, uint32_t> DerivedRefcounts() const;

 private:
  Status ApplyBitmapRecordToItsVolume(std::string_view payload);
};

// Applies one bitmap record (types 9 to 12) to `volume`, which it must name
// (attrs.id; attrs.size bounds the granules), with Image::Apply's checks: a
// refused record changes nothing. The live pool keeps its persistent
// bitmaps' durable state so, record by record, as it logs them.
Status ApplyBitmapRecord(std::string_view payload, VolumeImage* volume);

// What a volume's size change does to its bitmaps, the same in replay and in
// the live pool: a shrink drops the granules past the new end; a grow marks
// dirty every granule from the one holding the old end to the new end (the
// bytes there were not in the volume at the last cut, so a backup must copy
// them), as a live bitmap does (DirtyBitmap::Resize).
void ResizeBitmapImages(std::map<uint64_t, BitmapImage>* bitmaps, uint64_t old_size, uint64_t new_size);

// Appends volume `volume_id`'s bitmaps as a checkpoint holds them: each
// one's Bitmap record and one BitmapDirty (replace 0).
void AppendBitmapImages(std::string* out, uint64_t volume_id, const std::map<uint64_t, BitmapImage>& bitmaps);

}  // namespace thinsim::metadata

#endif  // THINSIM_METADATA_IMAGE_H_
