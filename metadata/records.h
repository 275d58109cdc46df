// The records of thinsim's metadata (docs/format.md).
//
// Metadata is a stream of records. A checkpoint file holds the whole state
// as records; the log holds transactions since the checkpoint, each a run
// of records closed by a kCommit record. Replaying the checkpoint and then
// the log's committed transactions rebuilds the state (Image::Apply).
//
// Framing of one record: u32 payload length, u32 CRC-32C of the payload,
// then the payload, whose first byte is the RecordType. Integers are
// little-endian.
//
// Each record type has a struct, an encoder (AppendX: frames one record and
// appends it) and a decoder (DecodeX: one payload, as RecordReader yields
// it, into the struct). The decoders check only what one record can tell:
// its type byte and that its fields are all there. Whether it makes sense
// against the state (a known volume, ...) is Image::Apply's business.
//
// Decoder contract, for every DecodeX(payload, out):
//   - OK: *out holds the record's fields.
//   - Corruption (message from RecordCorruption) when the payload is not of
//     type X or its fields are cut short; for kChunk and kRefcount, whose
//     length the fields fix, also when it is longer. *out is then unchanged.
//   - Any bytes are safe: nothing is read past the payload, and no length
//     taken from it is trusted before it is checked against the payload.
//
// Thread safety: free functions on caller-owned values; RecordReader is a
// value type with no internal synchronisation.
#ifndef THINSIM_METADATA_RECORDS_H_
#define THINSIM_METADATA_RECORDS_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"

namespace thinsim::metadata {

enum class RecordType : uint8_t {
  kPool = 1,        // block_size u32, nr_blocks u64, mode u8
  kVolume = 2,      // a volume's attributes (create, or update of an existing id)
  kSnapshot = 3,    // new volume whose mappings are a copy of its origin's
  kDelete = 4,      // id u64
  kChunk = 5,       // a volume's mappings for one chunk of 64 vblocks
  kShareChunk = 6,  // the slot shares a chunk given earlier (checkpoints)
  kRefcount = 7,    // pairs of (dblock u32, count u32)
  kCommit = 8,      // seq u64: closes a transaction
  kBitmap = 9,         // a dirty bitmap's definition (create, or update of one)
  kBitmapRemove = 10,  // a dirty bitmap goes
  kBitmapDirty = 11,   // granule ranges added to a bitmap's dirty set, or replacing it
  kBitmapCopy = 12,    // one bitmap's dirty set becomes another's (bitmap-cut)
};

// The type byte of `payload`; 0, which no type has, for an empty one.
RecordType TypeOf(std::string_view payload);

// Corruption("metadata record: " + what): the one form of every error about
// a record's contents, from the decoders here and from Image::Apply.
Status RecordCorruption(const std::string& what);

// ---- kPool: the pool's geometry and mode -----------------------------------

struct PoolRecord {
  uint32_t block_size = 0;
  uint64_t nr_blocks = 0;
  uint8_t mode = 0;  // thinsim::PoolMode
  bool operator==(const PoolRecord&) const = default;
};

void AppendPool(std::string* out, uint32_t block_size, uint64_t nr_blocks, uint8_t mode);
Status DecodePool(std::string_view payload, PoolRecord* out);

// ---- kVolume: a volume's attributes ----------------------------------------

struct VolumeRecord {
  uint64_t id = 0;
  std::string name;
  uint64_t size = 0;
  uint8_t strategy = 0;   // thinsim::Strategy
  bool read_only = false;
  uint64_t origin_id = 0;  // 0: none
  uint64_t family = 0;
  bool pinned = false;
  bool operator==(const VolumeRecord&) const = default;
};

void AppendVolume(std::string* out, const VolumeRecord& r);
Status DecodeVolume(std::string_view payload, VolumeRecord* out);

// ---- kSnapshot: a new volume sharing its origin's mappings -----------------

struct SnapshotRecord {
  uint64_t id = 0;
  uint64_t origin_id = 0;
  std::string name;
  bool read_only = false;
  bool operator==(const SnapshotRecord&) const = default;
};

void AppendSnapshot(std::string* out, const SnapshotRecord& r);
Status DecodeSnapshot(std::string_view payload, SnapshotRecord* out);

// ---- kDelete: a volume goes ------------------------------------------------

struct DeleteRecord {
  uint64_t id = 0;
  bool operator==(const DeleteRecord&) const = default;
};

void AppendDelete(std::string* out, uint64_t id);
Status DecodeDelete(std::string_view payload, DeleteRecord* out);

// ---- kChunk: one chunk of a volume's mappings ------------------------------

// The mappings of chunk `index` of a volume: `mapped` and `provisioned` are
// bitmaps of its 64 vblocks; `dblocks` has one entry per mapped bit, in
// order. `chunk_id` names the chunk within one checkpoint so that later
// slots can share it (kShareChunk); 0 in the log.
//
// The decoder reads one dblock per mapped bit, so a decoded record always
// has popcount(mapped) dblocks. It does not check provisioned against
// mapped (Image::Apply does, after the volume).
struct ChunkRecord {
  uint64_t volume_id = 0;
  uint64_t index = 0;
  uint64_t chunk_id = 0;
  uint64_t mapped = 0;
  uint64_t provisioned = 0;
  std::vector<uint32_t> dblocks;
  bool operator==(const ChunkRecord&) const = default;
};

// REQUIRES: r.dblocks.size() == popcount(r.mapped), else it will not decode.
void AppendChunk(std::string* out, const ChunkRecord& r);
Status DecodeChunk(std::string_view payload, ChunkRecord* out);

// ---- kShareChunk: a slot shares a chunk of the same checkpoint -------------

struct ShareChunkRecord {
  uint64_t volume_id = 0;
  uint64_t index = 0;
  uint64_t chunk_id = 0;
  bool operator==(const ShareChunkRecord&) const = default;
};

void AppendShareChunk(std::string* out, const ShareChunkRecord& r);
Status DecodeShareChunk(std::string_view payload, ShareChunkRecord* out);

// ---- kRefcount: stored reference counts ------------------------------------

// (dblock, count) pairs; a count of 0 erases the block's stored count.
struct RefcountRecord {
  std::vector<std::pair<uint32_t, uint32_t>> counts;
  bool operator==(const RefcountRecord&) const = default;
};

// Appends as many records as keep each at most 2^16 pairs (none for no
// counts), so that a reader's memory per record stays bounded.
void AppendRefcounts(std::string* out, const std::vector<std::pair<uint32_t, uint32_t>>& counts);
// Decodes one of those records.
Status DecodeRefcounts(std::string_view payload, RefcountRecord* out);

// ---- kCommit: closes a transaction -----------------------------------------

struct CommitRecord {
  uint64_t seq = 0;
  bool operator==(const CommitRecord&) const = default;
};

void AppendCommit(std::string* out, uint64_t seq);
Status DecodeCommit(std::string_view payload, CommitRecord* out);

// ---- Dirty bitmaps (docs/format.md, "Dirty bitmaps") -------------------------

// The records name a bitmap by its id, unique among the volume's bitmaps and
// never reused: a cut renames the instance that was live (its id stays with
// the bits, so intents logged for it still land there) and creates a new
// instance under the old name. Its dirty set is in granules of
// `granularity` bytes (a power of two, 512 B .. 64 MiB; Image::Apply checks).
struct BitmapRecord {
  static constexpr uint8_t kRecording = 1;     // enabled: new writes mark it
  static constexpr uint8_t kInconsistent = 2;  // its bits cannot be trusted
  uint64_t volume_id = 0;
  uint64_t id = 0;
  std::string name;
  uint32_t granularity = 0;
  uint8_t flags = 0;
  bool operator==(const BitmapRecord&) const = default;
};

// Creates bitmap `id`, or renames it and sets its flags.
void AppendBitmap(std::string* out, const BitmapRecord& r);
Status DecodeBitmap(std::string_view payload, BitmapRecord* out);

struct BitmapRemoveRecord {
  uint64_t volume_id = 0;
  uint64_t id = 0;
  bool operator==(const BitmapRemoveRecord&) const = default;
};

void AppendBitmapRemove(std::string* out, const BitmapRemoveRecord& r);
Status DecodeBitmapRemove(std::string_view payload, BitmapRemoveRecord* out);

// (first granule, count) ranges. `replace` empties the dirty set first: a
// clear, or the exact set a cut's live bitmap holds once the requests from
// before the cut are done. Neither order nor overlap of the ranges
// matters; a count of 0 is damage.
struct BitmapDirtyRecord {
  uint64_t volume_id = 0;
  uint64_t id = 0;
  bool replace = false;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  bool operator==(const BitmapDirtyRecord&) const = default;
};

// Appends as many records as keep each at most 2^16 ranges (one, with no
// ranges, for a replace by nothing; none for an add of nothing). Only the
// first of them replaces; the rest add.
void AppendBitmapDirty(std::string* out, const BitmapDirtyRecord& r);
Status DecodeBitmapDirty(std::string_view payload, BitmapDirtyRecord* out);

// Bitmap `to`'s dirty set := `from`'s, in one volume; both exist, same
// granularity.
struct BitmapCopyRecord {
  uint64_t volume_id = 0;
  uint64_t from = 0;
  uint64_t to = 0;
  bool operator==(const BitmapCopyRecord&) const = default;
};

void AppendBitmapCopy(std::string* out, const BitmapCopyRecord& r);
Status DecodeBitmapCopy(std::string_view payload, BitmapCopyRecord* out);

// ---- Framing ----------------------------------------------------------------

// Splits framed records. Next() returns false at the end or at the first
// record that is cut short or fails its checksum; error() says which. A
// payload it yields is never empty.
class RecordReader {
 public:
  explicit RecordReader(std::string_view data) : data_(data) {}
  bool Next(std::string_view* payload);
  size_t offset() const { return pos_; }  // of the next record
  const std::string& error() const { return error_; }

 private:
  std::string_view data_;
  size_t pos_ = 0;
  std::string error_;
};

}  // namespace thinsim::metadata

#endif  // THINSIM_METADATA_RECORDS_H_
