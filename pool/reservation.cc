// Pool: reservation accounting (SPEC section 5). Reservations
// (reservations.h) keeps g(b) per block, the reserved sum and admission;
// the pool walks its volumes for what only it knows: o(b), derived from the
// chunk reference counts (pool/mapping.h), with a walk of the family only
// for blocks that more than one chunk maps, and which of a volume's blocks
// a change of owners or guarantees touches.
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

Pool::Guarantee Pool::GuaranteeOfLocked(const Volume& v) const {
  return Reservations::GuaranteeFor(v.strategy, v.read_only, v.writable_connections > 0 || v.pinned);
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
  return reservations_.Admit(delta, FreeLocked(), what);
}

int64_t Pool::ChangeGuaranteeLocked(Volume& v, Guarantee from, Guarantee to, bool apply) {
  int64_t delta = 0;
  if (from.all != to.all || from.provisioned != to.provisioned) {
    ForEachMapped(v, [&](vblock_t vb, dblock_t b, bool prov, const Chunk* c) {
      bool gf = from.Covers(prov), gt = to.Covers(prov);
      if (gf == gt) return;
      meta_mu_.AssertHeld();  // a lambda run under it: the analysis cannot see that
      uint32_t o = OwnersLocked(v.family, vb, b, c);
      delta += reservations_.ChangeGuarantor(b, o, gf, gt, apply);
    });
  }
  const int64_t unmapped = static_cast<int64_t>(v.map->nr_vblocks() - v.nr_mapped);
  const int64_t unmapped_delta = (to.all ? unmapped : 0) - (from.all ? unmapped : 0);
  if (apply) reservations_.Add(unmapped_delta);
  return delta + unmapped_delta;
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
    meta_mu_.AssertHeld();  // a lambda run under it: the analysis cannot see that
    uint32_t o = OwnersLocked(v.family, vb, b, c);
    delta += reservations_.ChangeOwner(b, o, g.Covers(prov), leave, apply);
  });
  return delta;
}

uint64_t Pool::VolumeReservedLocked(const Volume& v) const {
  Guarantee gv = GuaranteeOfLocked(v);
  uint64_t reserved = UnmappedNeedLocked(v);
  if (!gv.all && !(gv.provisioned && v.nr_provisioned > 0)) return reserved;
  ForEachMapped(v, [&](vblock_t vb, dblock_t b, bool prov, const Chunk* c) {
    if (!gv.Covers(prov)) return;
    meta_mu_.AssertHeldShared();  // a lambda run under it: the analysis cannot see that
    uint32_t o = OwnersLocked(v.family, vb, b, c);
    if (o > reservations_.guarantors(b)) {
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
  Guarantee to = Reservations::GuaranteeFor(v.strategy, v.read_only, pinned || writable_connections > 0);
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
  WriterLock lock(&meta_mu_);
  Volume* v = FindLocked(name);
  if (v == nullptr) return Status::NotFound("no volume named '" + std::string(name) + "'");
  Guarantee from = GuaranteeOfLocked(*v);
  const bool active = v->writable_connections > 0 || v->pinned;
  Guarantee to = Reservations::GuaranteeFor(strategy, v->read_only, active);
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
  WriterLock lock(&meta_mu_);
  Volume* v = FindLocked(name);
  if (v == nullptr) return Status::NotFound("no volume named '" + std::string(name) + "'");
  if (v->read_only) return Status::ReadOnly("'" + v->name + "' is a read-only snapshot");
  return SetActiveStateLocked(*v, true, v->writable_connections);
}

Status Pool::Deactivate(std::string_view name) {
  WriterLock lock(&meta_mu_);
  Volume* v = FindLocked(name);
  if (v == nullptr) return Status::NotFound("no volume named '" + std::string(name) + "'");
  return SetActiveStateLocked(*v, false, v->writable_connections);
}

}  // namespace thinsim
