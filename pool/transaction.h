// Transaction: the open metadata transaction of a persistent pool - the
// changes made since the last capture, as the records that a commit writes
// to the log (docs/format.md).
//
// Volume changes (create or change, snapshot, delete) are appended as
// records in the order they happen. Mapping changes are only noted, as a
// set of (volume id, chunk index): a chunk written a thousand times between
// commits is encoded once, as it is when it is encoded. Before each volume
// record the chunks noted so far are encoded (through the ChunkEncoder the
// pool gives), so that replay applies mapping and volume changes in the
// order they were made: a chunk of a volume deleted later is written
// before the delete. Changes of the pool's own attributes are a flag; the
// pool's record goes first in the capture.
//
// Thread safety: thread-compatible. Pool guards it with meta_mu_; the
// encoder is called with it held.
//
// Invariants: records() only ever grows between captures; after
// TakeRecords nothing is pending (empty()).
#ifndef THINSIM_POOL_TRANSACTION_H_
#define THINSIM_POOL_TRANSACTION_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <utility>

#include "metadata/records.h"

namespace thinsim {

class Transaction {
 public:
  // Appends to `out` the record of chunk `index` of volume `volume_id` as
  // it is now, or nothing when that chunk no longer exists.
  using ChunkEncoder = std::function<void(uint64_t volume_id, size_t index, std::string* out)>;

  explicit Transaction(ChunkEncoder encode_chunk) : encode_chunk_(std::move(encode_chunk)) {}
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  // A mapping in chunk `index` of volume `volume_id` changed.
  void NoteChunk(uint64_t volume_id, size_t index) { dirty_chunks_.emplace(volume_id, index); }
  // The pool's attributes (size, mode) changed.
  void NotePool() { dirty_pool_ = true; }
  // Each after the chunk changes noted so far.
  void AppendVolume(const metadata::VolumeRecord& r);
  void AppendSnapshot(const metadata::SnapshotRecord& r);
  void AppendDelete(uint64_t volume_id);
  // Framed records of another layer (dirty bitmaps), as they are.
  void AppendFramed(const std::string& records) { records_ += records; }
  // Encodes the noted chunks as they are now and appends them.
  void MaterializeChunks();

  // No records, no chunks noted and the pool's attributes unchanged.
  bool empty() const { return records_.empty() && dirty_chunks_.empty() && !dirty_pool_; }
  // Appends the transaction to `out` and starts a new one: the pool's
  // record first (by `encode_pool`) if its attributes changed, then the
  // records in order. REQUIRES: MaterializeChunks since the last NoteChunk.
  void TakeRecords(std::string* out, const std::function<void(std::string*)>& encode_pool);

 private:
  const ChunkEncoder encode_chunk_;
  std::string records_;
  std::set<std::pair<uint64_t, size_t>> dirty_chunks_;
  bool dirty_pool_ = false;
};

}  // namespace thinsim

#endif  // THINSIM_POOL_TRANSACTION_H_
