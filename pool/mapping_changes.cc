// Pool: the mapping changes shared by the data plane (pool_io.cc) and the
// control plane (pool.cc). Each keeps every counter exact as it goes: the
// volumes' mapped, exclusive and provisioned counts, the chunks' sole
// marks, the space map's reference counts and the reserved blocks
// (Reservations). Also the space events that follow a change of free
// space. REQUIRES (every function here): meta_mu_ exclusive.
#include <algorithm>

#include "pool/pool.h"
#include "pool/space_map.h"
#include "pool/volume.h"

namespace thinsim {

void Pool::MapFreshLocked(Volume& v, vblock_t vb, dblock_t b, bool provisioned) {
  UnmapLocked(v, vb);
  // A fresh block has one owner: need(b) = 0 whether or not v guarantees it.
  Guarantee g = GuaranteeOfLocked(v);
  reservations_.SetFresh(b, g.Covers(provisioned));
  if (g.all) reservations_.Add(-1);  // the vblock is no longer an unmapped guaranteed one
  Chunk& c = v.map->MutableChunk(vb, space_map_.get());
  c.Set(vb & (kChunkSize - 1), b, provisioned);
  c.SetSole(vb & (kChunkSize - 1), true);  // a fresh block: count 1
  NoteChunkLocked(v, vb);
  ++v.nr_mapped;
  ++v.nr_exclusive;
  if (provisioned) ++v.nr_provisioned;
}

void Pool::UnmapLocked(Volume& v, vblock_t vb) {
  MappingTable::Entry e = v.map->Lookup(vb);
  if (e.dblock == kNoDblock) return;
  // v stops owning the block (and guaranteeing it, if it did).
  Guarantee g = GuaranteeOfLocked(v);
  // Nobody guarantees it: need(b) is 0 before and after; skip the owner count.
  if (reservations_.guarantors(e.dblock) > 0) {
    uint32_t owners = OwnersLocked(v.family, vb, e.dblock, nullptr);
    reservations_.ChangeOwner(e.dblock, owners, g.Covers(e.provisioned), /*leave=*/true, /*apply=*/true);
  }
  if (g.all) reservations_.Add(1);  // an unmapped guaranteed vblock needs one block
  Chunk& c = v.map->MutableChunk(vb, space_map_.get());  // now private: refs 1
  bool was_exclusive = c.sole(vb & (kChunkSize - 1));  // c is private now
  c.Clear(vb & (kChunkSize - 1));
  NoteChunkLocked(v, vb);
  --v.nr_mapped;
  if (was_exclusive) --v.nr_exclusive;
#ifndef THINSIM_PLANTED_BUG_PROVISIONED_COUNT  // the planted bug: see THINSIM_PLANTED_BUG in CMakeLists.txt
  if (e.provisioned) --v.nr_provisioned;
#endif
#ifdef THINSIM_PLANTED_BUG_REFCOUNT_LEAK
  if (!was_exclusive) return;  // the planted bug: see THINSIM_PLANTED_BUG in CMakeLists.txt
#endif
  DropBlockRefLocked(v.family, vb, e.dblock);
}

void Pool::NoteUnsharedLocked(Volume& w) {
  if (journal_) w.unshared_in_txn.store(commits_captured_.load() + 1);
}

bool Pool::InPlaceNeedsCommit(const Volume& v) const {
  return journal_ && v.unshared_in_txn.load() > commits_succeeded_.load();
}

void Pool::UnmapRangeLocked(Volume& v, vblock_t first, vblock_t last) {
  for (vblock_t vb = first; vb <= last;) {
    size_t idx = vb >> kChunkShift;
    vblock_t chunk_end = std::min<vblock_t>(last, ((idx + 1) << kChunkShift) - 1);
    const Chunk* c = v.map->chunk(idx);
    if (c != nullptr && !c->empty()) {
      for (vblock_t x = vb; x <= chunk_end; ++x) UnmapLocked(v, x);
      v.map->DropIfEmpty(vb);
    }
    vb = chunk_end + 1;
  }
}

// One chunk object stopped mapping `b` (at `vb`). If exactly one volume owns
// it now, that volume's exclusive count grows.
void Pool::DropBlockRefLocked(uint64_t family, vblock_t vb, dblock_t b) {
  if (space_map_->Dec(b) != 1) return;
  for (Volume* w : families_[family]) {
    if (vb >= w->map->nr_vblocks()) continue;
    MappingTable::Entry e = w->map->Lookup(vb);
    if (e.dblock != b) continue;
    // The one chunk left that maps b: its holders are b's owners.
    w->map->SetSole(vb, true);
    if (!e.chunk_shared) {
      ++w->nr_exclusive;
      NoteUnsharedLocked(*w);
    }
    return;
  }
}

// ---- Space events -------------------------------------------------------------

void Pool::LeaveOutOfSpaceIfRoomLocked() {
  std::optional<PoolEvent> e =
      space_policy_.LeaveOutOfSpaceIfRoom(FreeLocked(), reservations_.reserved(), space_map_->nr_blocks());
  if (e) txn_.NotePool();
  PublishLocked(e);
}

void Pool::SetModeLocked(PoolMode mode) {
  std::optional<PoolEvent> e = space_policy_.SetMode(mode, FreeLocked(), space_map_->nr_blocks());
  if (e) txn_.NotePool();  // the mode is stored with the pool
  PublishLocked(e);
}

void Pool::CheckLowWaterLocked() {
  PublishLocked(space_policy_.CheckLowWater(FreeLocked(), space_map_->nr_blocks()));
}

void Pool::PublishLocked(const std::optional<PoolEvent>& event) {
  if (event && event_handler_) event_handler_(*event);
}

}  // namespace thinsim
