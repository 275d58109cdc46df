// Transaction: see transaction.h.
#include "pool/transaction.h"

namespace thinsim {

void Transaction::MaterializeChunks() {
  for (const auto& [volume_id, index] : dirty_chunks_) encode_chunk_(volume_id, index, &records_);
  dirty_chunks_.clear();
}

void Transaction::AppendVolume(const metadata::VolumeRecord& r) {
  MaterializeChunks();
  metadata::AppendVolume(&records_, r);
}

void Transaction::AppendSnapshot(const metadata::SnapshotRecord& r) {
  MaterializeChunks();
  metadata::AppendSnapshot(&records_, r);
}

void Transaction::AppendDelete(uint64_t volume_id) {
  MaterializeChunks();
  metadata::AppendDelete(&records_, volume_id);
}

void Transaction::TakeRecords(std::string* out, const std::function<void(std::string*)>& encode_pool) {
  if (dirty_pool_) encode_pool(out);
  *out += records_;
  records_.clear();
  dirty_pool_ = false;
}

}  // namespace thinsim
