#include "metadata/records.h"

#include <algorithm>
#include <bit>

#include "base/crc32c.h"
#include "base/encoding.h"

namespace thinsim::metadata {

namespace {

// Frames `payload` (type byte first) and appends it.
void Frame(std::string* out, const std::string& payload) {
  PutU32(out, static_cast<uint32_t>(payload.size()));
  PutU32(out, Crc32c(0, payload.data(), payload.size()));
  out->append(payload);
}

std::string Start(RecordType t) {
  std::string p;
  PutU8(&p, static_cast<uint8_t>(t));
  return p;
}

// Reads the type byte of the payload `r` reads and checks it is `t`. Only a
// caller that has not looked at the type (not Image::Apply) can get this.
Status ExpectType(Reader* r, RecordType t) {
  auto got = static_cast<RecordType>(r->U8());
  if (got == t) return Status::OK();
  return RecordCorruption("record type " + std::to_string(static_cast<int>(got)) + " where type " +
                          std::to_string(static_cast<int>(t)) + " was expected");
}

// The frame of every decoder: checks the type byte, lets `read` fill a
// fresh record (returning false if what it read shows the record is not
// whole), refuses it as `damage` if it was not or a read ran past the end,
// and only then stores it, so that a refused record leaves *out alone.
template <typename R, typename ReadFn>
Status DecodeAs(std::string_view payload, RecordType t, const char* damage, R* out, ReadFn read) {
  Reader r(payload);
  THINSIM_RETURN_IF_ERROR(ExpectType(&r, t));
  R record;
  bool whole = read(&r, &record);
  if (r.failed() || !whole) return RecordCorruption(damage);
  *out = std::move(record);
  return Status::OK();
}

}  // namespace

RecordType TypeOf(std::string_view payload) {
  return payload.empty() ? RecordType{0} : static_cast<RecordType>(payload[0]);
}

Status RecordCorruption(const std::string& what) { return Status::Corruption("metadata record: " + what); }

// ---- kPool -------------------------------------------------------------------

void AppendPool(std::string* out, uint32_t block_size, uint64_t nr_blocks, uint8_t mode) {
  std::string p = Start(RecordType::kPool);
  PutU32(&p, block_size);
  PutU64(&p, nr_blocks);
  PutU8(&p, mode);
  Frame(out, p);
}

Status DecodePool(std::string_view payload, PoolRecord* out) {
  return DecodeAs(payload, RecordType::kPool, "record cut short", out, [](Reader* r, PoolRecord* pool) {
    pool->block_size = r->U32();
    pool->nr_blocks = r->U64();
    pool->mode = r->U8();
    return true;
  });
}

// ---- kVolume -----------------------------------------------------------------

void AppendVolume(std::string* out, const VolumeRecord& r) {
  std::string p = Start(RecordType::kVolume);
  PutU64(&p, r.id);
  PutString(&p, r.name);
  PutU64(&p, r.size);
  PutU8(&p, r.strategy);
  PutU8(&p, r.read_only);
  PutU64(&p, r.origin_id);
  PutU64(&p, r.family);
  PutU8(&p, r.pinned);
  Frame(out, p);
}

Status DecodeVolume(std::string_view payload, VolumeRecord* out) {
  return DecodeAs(payload, RecordType::kVolume, "volume record cut short", out, [](Reader* r, VolumeRecord* v) {
    v->id = r->U64();
    v->name = r->String();
    v->size = r->U64();
    v->strategy = r->U8();
    v->read_only = r->U8() != 0;
    v->origin_id = r->U64();
    v->family = r->U64();
    v->pinned = r->U8() != 0;
    return true;
  });
}

// ---- kSnapshot ---------------------------------------------------------------

void AppendSnapshot(std::string* out, const SnapshotRecord& r) {
  std::string p = Start(RecordType::kSnapshot);
  PutU64(&p, r.id);
  PutU64(&p, r.origin_id);
  PutString(&p, r.name);
  PutU8(&p, r.read_only);
  Frame(out, p);
}

Status DecodeSnapshot(std::string_view payload, SnapshotRecord* out) {
  return DecodeAs(payload, RecordType::kSnapshot, "snapshot record cut short", out, [](Reader* r, SnapshotRecord* s) {
    s->id = r->U64();
    s->origin_id = r->U64();
    s->name = r->String();
    s->read_only = r->U8() != 0;
    return true;
  });
}

// ---- kDelete -----------------------------------------------------------------

void AppendDelete(std::string* out, uint64_t id) {
  std::string p = Start(RecordType::kDelete);
  PutU64(&p, id);
  Frame(out, p);
}

Status DecodeDelete(std::string_view payload, DeleteRecord* out) {
  // The message a cut-short delete has always had (its id reads as 0, which
  // no volume has); check and repair print it as it is.
  return DecodeAs(payload, RecordType::kDelete, "delete of unknown volume id 0", out, [](Reader* r, DeleteRecord* d) {
    d->id = r->U64();
    return true;
  });
}

// ---- kChunk ------------------------------------------------------------------

void AppendChunk(std::string* out, const ChunkRecord& r) {
  std::string p = Start(RecordType::kChunk);
  PutU64(&p, r.volume_id);
  PutU64(&p, r.index);
  PutU64(&p, r.chunk_id);
  PutU64(&p, r.mapped);
  PutU64(&p, r.provisioned);
  for (uint32_t b : r.dblocks) PutU32(&p, b);
  Frame(out, p);
}

Status DecodeChunk(std::string_view payload, ChunkRecord* out) {
  return DecodeAs(payload, RecordType::kChunk, "chunk record has a bad length", out, [](Reader* r, ChunkRecord* c) {
    c->volume_id = r->U64();
    c->index = r->U64();
    c->chunk_id = r->U64();
    c->mapped = r->U64();
    c->provisioned = r->U64();
    // At most 64 entries, whatever the bytes say.
    int n = std::popcount(c->mapped);
    c->dblocks.reserve(n);
    for (int i = 0; i < n; ++i) c->dblocks.push_back(r->U32());
    // The bitmap fixes the length: a dblock more is damage too.
    return r->done();
  });
}

// ---- kShareChunk -------------------------------------------------------------

void AppendShareChunk(std::string* out, const ShareChunkRecord& r) {
  std::string p = Start(RecordType::kShareChunk);
  PutU64(&p, r.volume_id);
  PutU64(&p, r.index);
  PutU64(&p, r.chunk_id);
  Frame(out, p);
}

Status DecodeShareChunk(std::string_view payload, ShareChunkRecord* out) {
  // Worded as Image::Apply words a share it cannot resolve: a cut-short one
  // has always been reported the same way.
  return DecodeAs(payload, RecordType::kShareChunk, "shared chunk refers to an unknown volume or chunk", out,
                  [](Reader* r, ShareChunkRecord* s) {
                    s->volume_id = r->U64();
                    s->index = r->U64();
                    s->chunk_id = r->U64();
                    return true;
                  });
}

// ---- kRefcount ---------------------------------------------------------------

void AppendRefcounts(std::string* out, const std::vector<std::pair<uint32_t, uint32_t>>& counts) {
  // Bounded records keep a reader's memory bounded too.
  constexpr size_t kPerRecord = 1 << 16;
  for (size_t start = 0; start < counts.size(); start += kPerRecord) {
    std::string p = Start(RecordType::kRefcount);
    size_t end = std::min(counts.size(), start + kPerRecord);
    PutU32(&p, static_cast<uint32_t>(end - start));
    for (size_t i = start; i < end; ++i) {
      PutU32(&p, counts[i].first);
      PutU32(&p, counts[i].second);
    }
    Frame(out, p);
  }
}

Status DecodeRefcounts(std::string_view payload, RefcountRecord* out) {
  return DecodeAs(payload, RecordType::kRefcount, "refcount record has a bad length", out,
                  [](Reader* r, RefcountRecord* rc) {
                    uint32_t n = r->U32();
                    // Checked before anything is allocated for the n pairs.
                    if (r->failed() || r->remaining() != static_cast<size_t>(n) * 8) return false;
                    rc->counts.reserve(n);
                    for (uint32_t i = 0; i < n; ++i) {
                      uint32_t b = r->U32();
                      rc->counts.emplace_back(b, r->U32());
                    }
                    return true;
                  });
}

// ---- kCommit -----------------------------------------------------------------

void AppendCommit(std::string* out, uint64_t seq) {
  std::string p = Start(RecordType::kCommit);
  PutU64(&p, seq);
  Frame(out, p);
}

Status DecodeCommit(std::string_view payload, CommitRecord* out) {
  return DecodeAs(payload, RecordType::kCommit, "record cut short", out, [](Reader* r, CommitRecord* c) {
    c->seq = r->U64();
    return true;
  });
}

// ---- Dirty bitmaps -----------------------------------------------------------

void AppendBitmap(std::string* out, const BitmapRecord& r) {
  std::string p = Start(RecordType::kBitmap);
  PutU64(&p, r.volume_id);
  PutU64(&p, r.id);
  PutString(&p, r.name);
  PutU32(&p, r.granularity);
  PutU8(&p, r.flags);
  Frame(out, p);
}

Status DecodeBitmap(std::string_view payload, BitmapRecord* out) {
  return DecodeAs(payload, RecordType::kBitmap, "bitmap record cut short", out, [](Reader* r, BitmapRecord* b) {
    b->volume_id = r->U64();
    b->id = r->U64();
    b->name = r->String();
    b->granularity = r->U32();
    b->flags = r->U8();
    return true;
  });
}

void AppendBitmapRemove(std::string* out, const BitmapRemoveRecord& r) {
  std::string p = Start(RecordType::kBitmapRemove);
  PutU64(&p, r.volume_id);
  PutU64(&p, r.id);
  Frame(out, p);
}

Status DecodeBitmapRemove(std::string_view payload, BitmapRemoveRecord* out) {
  return DecodeAs(payload, RecordType::kBitmapRemove, "bitmap record cut short", out,
                  [](Reader* r, BitmapRemoveRecord* b) {
                    b->volume_id = r->U64();
                    b->id = r->U64();
                    return true;
                  });
}

void AppendBitmapDirty(std::string* out, const BitmapDirtyRecord& r) {
  constexpr size_t kPerRecord = 1 << 16;  // bounded records, bounded reader memory
  size_t start = 0;
  bool replace = r.replace;
  while (start < r.ranges.size() || replace) {
    std::string p = Start(RecordType::kBitmapDirty);
    PutU64(&p, r.volume_id);
    PutU64(&p, r.id);
    PutU8(&p, replace);
    size_t end = std::min(r.ranges.size(), start + kPerRecord);
    PutU32(&p, static_cast<uint32_t>(end - start));
    for (size_t i = start; i < end; ++i) {
      PutU64(&p, r.ranges[i].first);
      PutU64(&p, r.ranges[i].second);
    }
    Frame(out, p);
    start = end;
    replace = false;
  }
}

Status DecodeBitmapDirty(std::string_view payload, BitmapDirtyRecord* out) {
  return DecodeAs(payload, RecordType::kBitmapDirty, "bitmap dirty record has a bad length", out,
                  [](Reader* r, BitmapDirtyRecord* d) {
                    d->volume_id = r->U64();
                    d->id = r->U64();
                    d->replace = r->U8() != 0;
                    uint32_t n = r->U32();
                    // Checked before anything is allocated for the n ranges.
                    if (r->failed() || r->remaining() != static_cast<size_t>(n) * 16) return false;
                    d->ranges.reserve(n);
                    for (uint32_t i = 0; i < n; ++i) {
                      uint64_t first = r->U64();
                      d->ranges.emplace_back(first, r->U64());
                    }
                    return true;
                  });
}

void AppendBitmapCopy(std::string* out, const BitmapCopyRecord& r) {
  std::string p = Start(RecordType::kBitmapCopy);
  PutU64(&p, r.volume_id);
  PutU64(&p, r.from);
  PutU64(&p, r.to);
  Frame(out, p);
}

Status DecodeBitmapCopy(std::string_view payload, BitmapCopyRecord* out) {
  return DecodeAs(payload, RecordType::kBitmapCopy, "bitmap record cut short", out, [](Reader* r, BitmapCopyRecord* c) {
    c->volume_id = r->U64();
    c->from = r->U64();
    c->to = r->U64();
    return true;
  });
}

// ---- Framing -----------------------------------------------------------------

bool RecordReader::Next(std::string_view* payload) {
  if (pos_ == data_.size()) return false;
  if (data_.size() - pos_ < 8) {
    error_ = "record header cut short at offset " + std::to_string(pos_);
    return false;
  }
  Reader header(data_.substr(pos_, 8));
  uint32_t len = header.U32();
  uint32_t crc = header.U32();
  if (len == 0 || len > data_.size() - pos_ - 8) {
    error_ = "record at offset " + std::to_string(pos_) + " is cut short or has a bad length";
    return false;
  }
  std::string_view p = data_.substr(pos_ + 8, len);
  if (Crc32c(0, p.data(), p.size()) != crc) {
    error_ = "bad checksum in record at offset " + std::to_string(pos_);
    return false;
  }
  *payload = p;
  pos_ += 8 + len;
  return true;
}

}  // namespace thinsim::metadata
