#include "metadata/records.h"

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

}  // namespace

void AppendPool(std::string* out, uint32_t block_size, uint64_t nr_blocks, uint8_t mode) {
  std::string p = Start(RecordType::kPool);
  PutU32(&p, block_size);
  PutU64(&p, nr_blocks);
  PutU8(&p, mode);
  Frame(out, p);
}

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

void AppendSnapshot(std::string* out, const SnapshotRecord& r) {
  std::string p = Start(RecordType::kSnapshot);
  PutU64(&p, r.id);
  PutU64(&p, r.origin_id);
  PutString(&p, r.name);
  PutU8(&p, r.read_only);
  Frame(out, p);
}

void AppendDelete(std::string* out, uint64_t id) {
  std::string p = Start(RecordType::kDelete);
  PutU64(&p, id);
  Frame(out, p);
}

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

void AppendShareChunk(std::string* out, const ShareChunkRecord& r) {
  std::string p = Start(RecordType::kShareChunk);
  PutU64(&p, r.volume_id);
  PutU64(&p, r.index);
  PutU64(&p, r.chunk_id);
  Frame(out, p);
}

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

void AppendCommit(std::string* out, uint64_t seq) {
  std::string p = Start(RecordType::kCommit);
  PutU64(&p, seq);
  Frame(out, p);
}

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
