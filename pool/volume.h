// Volume: one volume or snapshot of a Pool. Internal to pool/; other layers
// hold it only as an opaque handle from Pool::OpenVolume.
#ifndef THINSIM_POOL_VOLUME_H_
#define THINSIM_POOL_VOLUME_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <shared_mutex>
#include <string>
#include <vector>

#include "metadata/image.h"
#include "pool/mapping.h"
#include "pool/range_lock.h"
#include "pool/request_observer.h"
#include "base/types.h"

namespace thinsim {

struct Volume {
  // Constant after construction.
  uint64_t id = 0;
  std::string name;
  bool read_only = false;
  uint64_t family = 0;     // id of the volume its snapshot line started from

  // Guarded by Pool::meta_mu_.
  uint64_t origin_id = 0;  // 0: not a snapshot, or its origin was deleted
  uint64_t size = 0;
  Strategy strategy = Strategy::kNone;
  std::unique_ptr<MappingTable> map;
  // Exact counters: mapped vblocks; those whose block no other volume owns;
  // those marked provisioned. shared = mapped - exclusive.
  uint64_t nr_mapped = 0;
  uint64_t nr_exclusive = 0;
  uint64_t nr_provisioned = 0;
  // Persistent pools: the durable state of the volume's persistent dirty
  // bitmaps as the records logged so far leave it (bitmap/ keeps the live
  // bits; the pool keeps this so that a checkpoint can encode it).
  std::map<uint64_t, metadata::BitmapImage> bitmaps;
  uint32_t connections = 0;
  uint32_t writable_connections = 0;
  bool pinned = false;
  // Persistent pools: the number of the open transaction in which a block
  // of this volume stopped being shared (0: none). Until a commit with that
  // number has succeeded, the last committed state still shares the block,
  // so overwriting it in place could change another volume's data after a
  // crash; writes in place commit first. Set under Pool::meta_mu_, read
  // without it by the write path.
  std::atomic<uint64_t> unshared_in_txn{0};

  // See Pool's locking comment.
  RangeLock range_lock;
  std::shared_mutex io_gate;
  // Guards `map` and `size` for readers that do not hold Pool::meta_mu_:
  // changing either takes meta_mu_ and map_mu exclusively.
  std::shared_mutex map_mu;
  bool deleted = false;  // set under meta_mu_ and map_mu
  // The request hook (request_observer.h), called in order. Changed only
  // with io_gate held exclusively (writes drained); read by requests that
  // hold it shared.
  std::vector<std::shared_ptr<RequestObserver>> observers;
};

}  // namespace thinsim

#endif  // THINSIM_POOL_VOLUME_H_
