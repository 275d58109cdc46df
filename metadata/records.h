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
#ifndef THINSIM_METADATA_RECORDS_H_
#define THINSIM_METADATA_RECORDS_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

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
};

struct VolumeRecord {
  uint64_t id = 0;
  std::string name;
  uint64_t size = 0;
  uint8_t strategy = 0;   // thinsim::Strategy
  bool read_only = false;
  uint64_t origin_id = 0;  // 0: none
  uint64_t family = 0;
  bool pinned = false;
};

struct SnapshotRecord {
  uint64_t id = 0;
  uint64_t origin_id = 0;
  std::string name;
  bool read_only = false;
};

// The mappings of chunk `index` of a volume: `mapped` and `provisioned` are
// bitmaps of its 64 vblocks; `dblocks` has one entry per mapped bit, in
// order. `chunk_id` names the chunk within one checkpoint so that later
// slots can share it (kShareChunk); 0 in the log.
struct ChunkRecord {
  uint64_t volume_id = 0;
  uint64_t index = 0;
  uint64_t chunk_id = 0;
  uint64_t mapped = 0;
  uint64_t provisioned = 0;
  std::vector<uint32_t> dblocks;
};

struct ShareChunkRecord {
  uint64_t volume_id = 0;
  uint64_t index = 0;
  uint64_t chunk_id = 0;
};

// Appends one framed record to `out`.
void AppendPool(std::string* out, uint32_t block_size, uint64_t nr_blocks, uint8_t mode);
void AppendVolume(std::string* out, const VolumeRecord& r);
void AppendSnapshot(std::string* out, const SnapshotRecord& r);
void AppendDelete(std::string* out, uint64_t id);
void AppendChunk(std::string* out, const ChunkRecord& r);
void AppendShareChunk(std::string* out, const ShareChunkRecord& r);
void AppendRefcounts(std::string* out, const std::vector<std::pair<uint32_t, uint32_t>>& counts);
void AppendCommit(std::string* out, uint64_t seq);

// Splits framed records. Next() returns false at the end or at the first
// record that is cut short or fails its checksum; error() says which.
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
