// Pool: reservation accounting (SPEC section 5).
//
// For a data block b with o(b) owners, g(b) of which guarantee it,
//   need(b) = g(b)       if o(b) > g(b)   (every guaranteeing owner may have
//                                          to copy the block on write)
//           = g(b) - 1   otherwise        (the last owner writes in place)
// and every guaranteed unmapped vblock needs 1. reserved_ is the sum, kept
// exactly by every change of owners or guarantees, and reserved <= free
// holds after every operation: an operation that would break it fails with
// NoSpace before changing anything.
//
// g(b) is stored per block (guarantors_); o(b) is derived from the chunk
// reference counts (pool/mapping.h), with a walk of the family only for
// blocks that more than one chunk maps.
#include <algorithm>
#include <cassert>

#include "pool/pool.h"
#include "pool/space_map.h"
#include "pool/volume.h"

namespace thinsim {

namespace {

// Calls fn(vb, dblock, provisioned, chunk) for each mapped vblock of v.
template <typename Fn>
void ForEachMapped(const Volume& v, Fn fn) {
  for (size_t idx = 0; idx < v.map->nr_chunks(); ++idx) {
    const Chunk* c = v.map->chunk(idx);
    if (c == nullptr) continue;
    vblock_t base = static_cast<vblock_t>(idx) << kChunkShift;
    c->ForEach([&](uint32_t i, dblock_t b, bool prov) { fn(base + i, b, prov, c); });
  }
}

}  // namespace

Pool::Guarantee Pool::GuaranteeFor(Strategy s, bool read_only, bool active) {
  Guarantee g;
  if (read_only) return g;  // cannot be written, so guarantees nothing
  g.all = s == Strategy::kFull || (s == Strategy::kVolume && active);
  g.provisioned = s == Strategy::kProvision;
  return g;
}

Pool::Guarantee Pool::GuaranteeOfLocked(const Volume& v) const {
  return GuaranteeFor(v.strategy, v.read_only, v.writable_connections > 0 || v.pinned);
}

uint32_t Pool::OwnersLocked(uint64_t family, vblock_t vb, dblock_t b, const Chunk* known) const {
  if (known != nullptr && space_map_->RefCount(b) == 1) return known->refs();
  const size_t idx = vb >> kChunkShift;
  const uint32_t i = vb & (kChunkSize - 1);
  std::vector<const Chunk*> seen;
  uint32_t owners = 0;
  for (const Volume* w : families_.at(family)) {
    if (vb >= w->map->nr_vblocks()) continue;
    const Chunk* c = w->map->chunk(idx);
    if (c == nullptr || !c->mapped(i) || c->dblock(i) != b) continue;
    if (std::find(seen.begin(), seen.end(), c) != seen.end()) continue;
    seen.push_back(c);
    owners += c->refs();
  }
  return owners;
}

uint64_t Pool::UnmappedNeedLocked(const Volume& v) const {
  return GuaranteeOfLocked(v).all ? v.map->nr_vblocks() - v.nr_mapped : 0;
}

Status Pool::AdmitLocked(int64_t delta, const std::string& what) const {
  const int64_t free = static_cast<int64_t>(FreeLocked());
  if (delta <= 0 || reserved_ + delta <= free) return Status::OK();
  return Status::NoSpace(what + " needs " + std::to_string(delta) +
                         " more reserved block(s), but only " + std::to_string(free - reserved_) +
                         " are free and unreserved (" + std::to_string(free) + " free, " +
                         std::to_string(reserved_) + " reserved)");
}

int64_t Pool::ChangeGuaranteeLocked(Volume& v, Guarantee from, Guarantee to, bool apply) {
  int64_t delta = 0;
  if (from.all != to.all || from.provisioned != to.provisioned) {
    ForEachMapped(v, [&](vblock_t vb, dblock_t b, bool prov, const Chunk* c) {
      int gf = from.Covers(prov), gt = to.Covers(prov);
      if (gf == gt) return;
      uint32_t o = OwnersLocked(v.family, vb, b, c);
      uint32_t g = guarantors_[b];
      uint32_t g2 = g - gf + gt;
      delta += Need(o, g2) - Need(o, g);
      if (apply) guarantors_[b] = g2;
    });
  }
  int64_t unmapped = static_cast<int64_t>(v.map->nr_vblocks() - v.nr_mapped);
  delta += (to.all ? unmapped : 0) - (from.all ? unmapped : 0);
  if (apply) reserved_ += delta;
  return delta;
}

int64_t Pool::OwnerChangeLocked(Volume& v, Guarantee g, bool leave, bool apply) {
  // Fast path: nobody in the family guarantees anything and neither does
  // the owner that joins or leaves, so every need stays 0.
  bool covers_any = g.all || (g.provisioned && v.nr_provisioned > 0);
  if (!covers_any) {
    bool family_guarantees = false;
    for (const Volume* w : families_.at(v.family)) {
      Guarantee gw = GuaranteeOfLocked(*w);
      family_guarantees = family_guarantees || gw.all || (gw.provisioned && w->nr_provisioned > 0);
    }
    if (!family_guarantees) return 0;
  }
  int64_t delta = 0;
  ForEachMapped(v, [&](vblock_t vb, dblock_t b, bool prov, const Chunk* c) {
    uint32_t o = OwnersLocked(v.family, vb, b, c);
    uint32_t gb = guarantors_[b];
    uint32_t gs = g.Covers(prov);
    uint32_t o2 = leave ? o - 1 : o + 1;
    uint32_t g2 = leave ? gb - gs : gb + gs;
    delta += Need(o2, g2) - Need(o, gb);
    if (apply) guarantors_[b] = g2;
  });
  if (apply) reserved_ += delta;
  return delta;
}

uint64_t Pool::VolumeReservedLocked(const Volume& v) const {
  Guarantee gv = GuaranteeOfLocked(v);
  uint64_t reserved = UnmappedNeedLocked(v);
  if (!gv.all && !(gv.provisioned && v.nr_provisioned > 0)) return reserved;
  ForEachMapped(v, [&](vblock_t vb, dblock_t b, bool prov, const Chunk* c) {
    if (!gv.Covers(prov)) return;
    uint32_t o = OwnersLocked(v.family, vb, b, c);
    if (o > guarantors_[b]) {
      ++reserved;  // v may have to copy this block
      return;
    }
    // Every owner guarantees b: each needs a copy but one. The oldest owner
    // is the one charged nothing.
    uint64_t oldest = v.id;
    for (const Volume* w : families_.at(v.family)) {
      if (vb < w->map->nr_vblocks() && w->map->Lookup(vb).dblock == b) oldest = std::min(oldest, w->id);
    }
    if (oldest != v.id) ++reserved;
  });
  return reserved;
}

Status Pool::SetActiveStateLocked(Volume& v, bool pinned, uint32_t writable_connections) {
  Guarantee from = GuaranteeOfLocked(v);
  Guarantee to = GuaranteeFor(v.strategy, v.read_only, pinned || writable_connections > 0);
  int64_t delta = ChangeGuaranteeLocked(v, from, to, /*apply=*/false);
  THINSIM_RETURN_IF_ERROR(AdmitLocked(delta, "activating '" + v.name + "' (strategy " +
                                                 std::string(StrategyName(v.strategy)) + ")"));
  ChangeGuaranteeLocked(v, from, to, /*apply=*/true);
  bool pin_changed = v.pinned != pinned;
  v.pinned = pinned;
  v.writable_connections = writable_connections;
  if (pin_changed) NoteVolumeLocked(v);
  return Status::OK();
}

Status Pool::SetStrategy(std::string_view name, Strategy strategy) {
  std::unique_lock lock(meta_mu_);
  Volume* v = FindLocked(name);
  if (v == nullptr) return Status::NotFound("no volume named '" + std::string(name) + "'");
  Guarantee from = GuaranteeOfLocked(*v);
  Guarantee to = GuaranteeFor(strategy, v->read_only, v->writable_connections > 0 || v->pinned);
  THINSIM_RETURN_IF_ERROR(RefuseIfReadOnlyLocked());
  int64_t delta = ChangeGuaranteeLocked(*v, from, to, false);
  THINSIM_RETURN_IF_ERROR(AdmitLocked(delta, "strategy " + std::string(StrategyName(strategy)) +
                                                 " for '" + v->name + "'"));
  ChangeGuaranteeLocked(*v, from, to, true);
  v->strategy = strategy;
  NoteVolumeLocked(*v);
  return Status::OK();
}

Status Pool::Activate(std::string_view name) {
  std::unique_lock lock(meta_mu_);
  Volume* v = FindLocked(name);
  if (v == nullptr) return Status::NotFound("no volume named '" + std::string(name) + "'");
  if (v->read_only) return Status::ReadOnly("'" + v->name + "' is a read-only snapshot");
  return SetActiveStateLocked(*v, true, v->writable_connections);
}

Status Pool::Deactivate(std::string_view name) {
  std::unique_lock lock(meta_mu_);
  Volume* v = FindLocked(name);
  if (v == nullptr) return Status::NotFound("no volume named '" + std::string(name) + "'");
  return SetActiveStateLocked(*v, false, v->writable_connections);
}

}  // namespace thinsim
