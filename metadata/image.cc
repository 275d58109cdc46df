#include "metadata/image.h"

#include <set>
#include <unordered_map>

#include "base/encoding.h"
#include "base/sizes.h"

namespace thinsim::metadata {

namespace {

// How many chunk slots a volume of `size` bytes has. Rounded up without
// size + block_size, which wraps for a huge size.
uint64_t ChunkSlots(uint64_t size, uint32_t block_size) {
  uint64_t vblocks = block_size ? size / block_size + (size % block_size != 0) : 0;
  return (vblocks + 63) / 64;
}

// The appliers: one decoded record's change to the image. Each checks the
// record against the image before it changes anything, so a refused record
// leaves the image as it was.

Status ApplyPool(Image* image, PoolRecord r) {
  image->block_size = r.block_size;
  image->nr_blocks = r.nr_blocks;
  image->mode = r.mode;
  return Status::OK();
}

// Creates the volume, or updates it; a shrink drops the chunks past the end,
// and a size change reshapes its bitmaps.
Status ApplyVolume(Image* image, VolumeRecord r) {
  auto it = image->volumes.find(r.id);
  if (it == image->volumes.end()) {
    image->volumes[r.id].attrs = std::move(r);
    return Status::OK();
  }
  auto& chunks = it->second.chunks;
  chunks.erase(chunks.lower_bound(ChunkSlots(r.size, image->block_size)), chunks.end());
  ResizeBitmapImages(&it->second.bitmaps, it->second.attrs.size, r.size);
  it->second.attrs = std::move(r);
  return Status::OK();
}

Status ApplySnapshot(Image* image, SnapshotRecord r) {
  auto origin = image->volumes.find(r.origin_id);
  if (origin == image->volumes.end()) {
    return RecordCorruption("snapshot " + r.name + " of unknown volume id " + std::to_string(r.origin_id));
  }
  VolumeImage snap = origin->second;  // shares the chunk objects
  snap.attrs.id = r.id;
  snap.attrs.name = std::move(r.name);
  snap.attrs.read_only = r.read_only;
  snap.attrs.origin_id = r.origin_id;
  snap.attrs.pinned = false;
  snap.bitmaps.clear();  // bitmaps belong to their volume (SPEC section 12)
  image->volumes[r.id] = std::move(snap);
  return Status::OK();
}

Status ApplyDelete(Image* image, DeleteRecord r) {
  if (image->volumes.erase(r.id) == 0) return RecordCorruption("delete of unknown volume id " + std::to_string(r.id));
  // A deleted origin leaves its snapshots without one.
  for (auto& [vid, v] : image->volumes) {
    if (v.attrs.origin_id == r.id) v.attrs.origin_id = 0;
  }
  return Status::OK();
}

// Sets the slot's mappings (an empty chunk clears it) and, in a checkpoint,
// remembers the chunk for the kShareChunk records after it.
Status ApplyChunk(Image* image, ChunkRecord r) {
  auto it = image->volumes.find(r.volume_id);
  if (it == image->volumes.end()) return RecordCorruption("chunk of unknown volume id " + std::to_string(r.volume_id));
  if ((r.provisioned & ~r.mapped) != 0) return RecordCorruption("chunk has provisioned vblocks that are not mapped");
  auto c = std::make_shared<ChunkImage>(ChunkImage{r.mapped, r.provisioned, std::move(r.dblocks)});
  if (r.chunk_id != 0) image->checkpoint_chunks[r.chunk_id] = c;
  if (c->mapped == 0) {
    it->second.chunks.erase(r.index);
  } else {
    it->second.chunks[r.index] = std::move(c);
  }
  return Status::OK();
}

Status ApplyShareChunk(Image* image, ShareChunkRecord r) {
  auto it = image->volumes.find(r.volume_id);
  auto c = image->checkpoint_chunks.find(r.chunk_id);
  if (it == image->volumes.end() || c == image->checkpoint_chunks.end()) {
    return RecordCorruption("shared chunk refers to an unknown volume or chunk");
  }
  it->second.chunks[r.index] = c->second;
  return Status::OK();
}

Status ApplyRefcounts(Image* image, RefcountRecord r) {
  for (auto [b, count] : r.counts) {
    if (count == 0) {
      image->refcounts.erase(b);
    } else {
      image->refcounts[b] = count;
    }
  }
  return Status::OK();
}

// Bitmap `id` of volume `v`, or Corruption naming them.
Status FindBitmap(VolumeImage* v, uint64_t id, BitmapImage** bitmap) {
  auto b = v->bitmaps.find(id);
  if (b == v->bitmaps.end()) {
    return RecordCorruption("unknown bitmap id " + std::to_string(id) + " of volume " + v->attrs.name);
  }
  *bitmap = &b->second;
  return Status::OK();
}

// Creates bitmap r.id, or renames it and sets its flags.
Status ApplyBitmap(VolumeImage* v, BitmapRecord r) {
  if (r.id == 0 || r.name.empty() || !ValidateBitmapGranularity(r.granularity).ok()) {
    return RecordCorruption("bitmap '" + r.name + "' has id 0, an empty name or a bad granularity " +
                            std::to_string(r.granularity));
  }
  auto& bitmaps = v->bitmaps;
  for (const auto& [id, other] : bitmaps) {
    if (id != r.id && other.name == r.name) {
      return RecordCorruption("two bitmaps named " + r.name + " on volume " + v->attrs.name);
    }
  }
  auto [b, created] = bitmaps.try_emplace(r.id);
  if (!created && b->second.granularity != r.granularity) {
    return RecordCorruption("bitmap " + r.name + " changes its granularity");
  }
  b->second.name = std::move(r.name);
  b->second.granularity = r.granularity;
  b->second.flags = r.flags;
  return Status::OK();
}

Status ApplyBitmapRemove(VolumeImage* v, BitmapRemoveRecord r) {
  BitmapImage* b;
  THINSIM_RETURN_IF_ERROR(FindBitmap(v, r.id, &b));
  v->bitmaps.erase(r.id);
  return Status::OK();
}

Status ApplyBitmapDirty(VolumeImage* v, BitmapDirtyRecord r) {
  BitmapImage* b;
  THINSIM_RETURN_IF_ERROR(FindBitmap(v, r.id, &b));
  const uint64_t granules = GranuleCount(v->attrs.size, b->granularity);
  for (auto [first, count] : r.ranges) {
    if (count == 0 || first >= granules || count > granules - first) {
      return RecordCorruption("bitmap " + b->name + " marks granules past the end of volume " + v->attrs.name);
    }
  }
  if (r.replace) b->dirty.clear();
  for (auto [first, count] : r.ranges) b->dirty += boost::icl::interval<uint64_t>::right_open(first, first + count);
  return Status::OK();
}

Status ApplyBitmapCopy(VolumeImage* v, BitmapCopyRecord r) {
  BitmapImage *from, *to;
  THINSIM_RETURN_IF_ERROR(FindBitmap(v, r.from, &from));
  THINSIM_RETURN_IF_ERROR(FindBitmap(v, r.to, &to));
  if (from->granularity != to->granularity) {
    return RecordCorruption("bitmap copy from " + from->name + " to " + to->name + " across granularities");
  }
  to->dirty = from->dirty;
  return Status::OK();
}

// Decodes a bitmap record and applies it to `v`, which it must name.
template <typename R>
Status DecodeAndApplyToVolume(std::string_view payload, Status (*decode)(std::string_view, R*),
                              Status (*apply)(VolumeImage*, R), VolumeImage* v) {
  R record;
  THINSIM_RETURN_IF_ERROR(decode(payload, &record));
  if (record.volume_id != v->attrs.id) {
    return RecordCorruption("bitmap record of volume id " + std::to_string(record.volume_id) +
                            " applied to volume " + v->attrs.name);
  }
  return apply(v, std::move(record));
}

Status ApplyCommit(Image* image, CommitRecord r) {
  image->commit_seq = r.seq;
  return Status::OK();
}

// Decodes `payload` into a record of type R and, if it is whole, applies it.
template <typename R>
Status DecodeAndApply(std::string_view payload, Status (*decode)(std::string_view, R*), Status (*apply)(Image*, R),
                      Image* image) {
  R record;
  THINSIM_RETURN_IF_ERROR(decode(payload, &record));
  return apply(image, std::move(record));
}

}  // namespace

Status Image::Apply(std::string_view payload) {
  RecordType type = TypeOf(payload);
  switch (type) {
    case RecordType::kPool:
      return DecodeAndApply(payload, DecodePool, ApplyPool, this);
    case RecordType::kVolume:
      return DecodeAndApply(payload, DecodeVolume, ApplyVolume, this);
    case RecordType::kSnapshot:
      return DecodeAndApply(payload, DecodeSnapshot, ApplySnapshot, this);
    case RecordType::kDelete:
      return DecodeAndApply(payload, DecodeDelete, ApplyDelete, this);
    case RecordType::kChunk:
      return DecodeAndApply(payload, DecodeChunk, ApplyChunk, this);
    case RecordType::kShareChunk:
      return DecodeAndApply(payload, DecodeShareChunk, ApplyShareChunk, this);
    case RecordType::kRefcount:
      return DecodeAndApply(payload, DecodeRefcounts, ApplyRefcounts, this);
    case RecordType::kCommit:
      return DecodeAndApply(payload, DecodeCommit, ApplyCommit, this);
    case RecordType::kBitmap:
    case RecordType::kBitmapRemove:
    case RecordType::kBitmapDirty:
    case RecordType::kBitmapCopy:
      return ApplyBitmapRecordToItsVolume(payload);
  }
  return RecordCorruption("unknown record type " + std::to_string(static_cast<int>(type)));
}

void ResizeBitmapImages(std::map<uint64_t, BitmapImage>* bitmaps, uint64_t old_size, uint64_t new_size) {
  using Interval = boost::icl::interval<uint64_t>;
  for (auto& [id, b] : *bitmaps) {
    const uint64_t end = GranuleCount(new_size, b.granularity);
    if (new_size < old_size) b.dirty -= Interval::right_open(end, UINT64_MAX);
    if (new_size > old_size) b.dirty += Interval::right_open(old_size / b.granularity, end);
  }
}

void AppendBitmapImages(std::string* out, uint64_t volume_id, const std::map<uint64_t, BitmapImage>& bitmaps) {
  for (const auto& [bitmap_id, b] : bitmaps) {
    AppendBitmap(out, BitmapRecord{volume_id, bitmap_id, b.name, b.granularity, b.flags});
    BitmapDirtyRecord dirty{volume_id, bitmap_id, false, {}};
    for (const auto& range : b.dirty) dirty.ranges.emplace_back(boost::icl::first(range), boost::icl::length(range));
    AppendBitmapDirty(out, dirty);
  }
}

Status ApplyBitmapRecord(std::string_view payload, VolumeImage* volume) {
  switch (TypeOf(payload)) {
    case RecordType::kBitmap:
      return DecodeAndApplyToVolume(payload, DecodeBitmap, ApplyBitmap, volume);
    case RecordType::kBitmapRemove:
      return DecodeAndApplyToVolume(payload, DecodeBitmapRemove, ApplyBitmapRemove, volume);
    case RecordType::kBitmapDirty:
      return DecodeAndApplyToVolume(payload, DecodeBitmapDirty, ApplyBitmapDirty, volume);
    case RecordType::kBitmapCopy:
      return DecodeAndApplyToVolume(payload, DecodeBitmapCopy, ApplyBitmapCopy, volume);
    default:
      return RecordCorruption("record type " + std::to_string(static_cast<int>(TypeOf(payload))) +
                              " is not a bitmap record");
  }
}

Status Image::ApplyBitmapRecordToItsVolume(std::string_view payload) {
  // Every bitmap record starts with its volume's id (docs/format.md).
  if (payload.size() < 9) return RecordCorruption("bitmap record is cut short");
  uint64_t volume_id = Reader(payload.substr(1, 8)).U64();
  auto v = volumes.find(volume_id);
  if (v == volumes.end()) return RecordCorruption("bitmap of unknown volume id " + std::to_string(volume_id));
  return ApplyBitmapRecord(payload, &v->second);
}

void Image::Encode(std::string* out) const {
  AppendPool(out, block_size, nr_blocks, mode);
  std::unordered_map<const ChunkImage*, uint64_t> ids;
  for (const auto& [id, v] : volumes) {
    AppendVolume(out, v.attrs);
    for (const auto& [index, c] : v.chunks) {
      auto known = ids.find(c.get());
      if (known != ids.end()) {
        AppendShareChunk(out, ShareChunkRecord{id, index, known->second});
        continue;
      }
      uint64_t chunk_id = ids.size() + 1;
      ids.emplace(c.get(), chunk_id);
      AppendChunk(out, ChunkRecord{id, index, chunk_id, c->mapped, c->provisioned, c->dblocks});
    }
    AppendBitmapImages(out, id, v.bitmaps);
  }
  AppendRefcounts(out, std::vector<std::pair<uint32_t, uint32_t>>(refcounts.begin(), refcounts.end()));
}

std::map<uint32_t, uint32_t> Image::DerivedRefcounts() const {
  std::map<uint32_t, uint32_t> counts;
  std::set<const ChunkImage*> seen;
  for (const auto& [id, v] : volumes) {
    for (const auto& [index, c] : v.chunks) {
      if (!seen.insert(c.get()).second) continue;
      for (uint32_t b : c->dblocks) ++counts[b];
    }
  }
  return counts;
}

}  // namespace thinsim::metadata
