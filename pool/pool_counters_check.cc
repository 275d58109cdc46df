// Pool::TEST_CheckCounters: recounts every counter the pool keeps
// incrementally (reference counts, sole marks, used blocks, guarantors,
// reservations, per-volume mapped/exclusive/provisioned) by walking all the
// mappings, and names the first that disagrees.
//
// Why a file of its own: it is a test hook, not part of the engine's
// behaviour; it repeats as one full walk what the bookkeeping in pool.cc
// does step by step, and kept there it pushed pool.cc past ~600 lines.
// It stays in the thinsim_pool library (not a test library) because the
// unit tests, plugin/ tests and the fuzz/ targets all call it on a Pool.
#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>

#include "pool/mapping.h"
#include "pool/pool.h"
#include "pool/space_map.h"
#include "pool/volume.h"

namespace thinsim {

Status Pool::TEST_CheckCounters() const {
  ReaderLock lock(&meta_mu_);
  // Owners of each block: sum of refs of the distinct chunks mapping it.
  std::unordered_map<dblock_t, uint64_t> owners;
  std::unordered_map<dblock_t, uint32_t> chunk_refs;
  std::set<const Chunk*> seen;
  for (const auto& [id, v] : volumes_) {
    for (size_t idx = 0; idx < v->map->nr_chunks(); ++idx) {
      const Chunk* c = v->map->chunk(idx);
      if (c == nullptr || !seen.insert(c).second) continue;
      c->ForEach([&](uint32_t, dblock_t b, bool) {
        owners[b] += c->refs();
        ++chunk_refs[b];
      });
      std::string bad;
      c->ForEach([&](uint32_t i, dblock_t b, bool) {
        meta_mu_.AssertHeldShared();  // a lambda run under it: the analysis cannot see that
        if (c->sole(i) != (space_map_->RefCount(b) == 1) && bad.empty()) {
          bad = "dblock " + std::to_string(b) + " (count " + std::to_string(space_map_->RefCount(b)) +
                ") has its sole mark " + (c->sole(i) ? "set" : "clear");
        }
      });
      if (!bad.empty()) return Status::Corruption(bad);
    }
  }
  for (const auto& [b, n] : chunk_refs) {
    if (space_map_->RefCount(b) != n) {
      return Status::Corruption("dblock " + std::to_string(b) + " has count " +
                                std::to_string(space_map_->RefCount(b)) + ", mapped by " +
                                std::to_string(n) + " chunks");
    }
  }
  uint64_t used = 0;
  for (uint64_t b = 0; b < space_map_->nr_blocks(); ++b) {
    if (space_map_->RefCount(static_cast<dblock_t>(b)) > 0) ++used;
  }
  // Blocks freed since the last commit stay used until it (persistent pools).
  if (used != chunk_refs.size() || used + freed_.pending() != space_map_->nr_used()) {
    return Status::Corruption("used blocks: " + std::to_string(space_map_->nr_used()) +
                              " counted, " + std::to_string(used) + " referenced, " +
                              std::to_string(chunk_refs.size()) + " mapped, " +
                              std::to_string(freed_.pending()) + " freed, not yet reusable");
  }
  // Reservations: g(b) from every owner's guarantee, then the SPEC formula.
  std::unordered_map<dblock_t, uint64_t> guarantors;
  int64_t reserved = 0;
  for (const auto& [id, v] : volumes_) {
    Guarantee g = GuaranteeOfLocked(*v);
    reserved += static_cast<int64_t>(UnmappedNeedLocked(*v));
    for (size_t idx = 0; idx < v->map->nr_chunks(); ++idx) {
      const Chunk* c = v->map->chunk(idx);
      if (c == nullptr) continue;
      c->ForEach([&](uint32_t, dblock_t b, bool prov) { guarantors[b] += g.Covers(prov); });
    }
  }
  for (const auto& [b, o] : owners) {
    if (reservations_.guarantors(b) != guarantors[b]) {
      return Status::Corruption("dblock " + std::to_string(b) + " has " +
                                std::to_string(reservations_.guarantors(b)) + " guarantors counted, " +
                                std::to_string(guarantors[b]) + " walked");
    }
    reserved += Reservations::Need(o, guarantors[b]);
  }
  const int64_t counted = reservations_.reserved();
  if (reserved != counted) {
    return Status::Corruption("reserved blocks: " + std::to_string(counted) + " counted, " +
                              std::to_string(reserved) + " walked");
  }
  if (counted > static_cast<int64_t>(FreeLocked())) {
    return Status::Corruption("reserved " + std::to_string(counted) + " > free " +
                              std::to_string(FreeLocked()));
  }
  uint64_t reserved_by_volumes = 0;
  for (const auto& [id, v] : volumes_) reserved_by_volumes += VolumeReservedLocked(*v);
  if (static_cast<int64_t>(reserved_by_volumes) != counted) {
    return Status::Corruption("per-volume reserved blocks add up to " +
                              std::to_string(reserved_by_volumes) + ", pool has " +
                              std::to_string(counted));
  }
  for (const auto& [id, v] : volumes_) {
    uint64_t mapped = 0, exclusive = 0, provisioned = 0;
    for (size_t idx = 0; idx < v->map->nr_chunks(); ++idx) {
      const Chunk* c = v->map->chunk(idx);
      if (c == nullptr) continue;
      c->ForEach([&](uint32_t, dblock_t b, bool prov) {
        ++mapped;
        if (owners[b] == 1) ++exclusive;
        if (prov) ++provisioned;
      });
    }
    if (mapped != v->nr_mapped || exclusive != v->nr_exclusive || provisioned != v->nr_provisioned) {
      return Status::Corruption(
          "volume " + v->name + ": mapped/exclusive/provisioned counted " +
          std::to_string(v->nr_mapped) + "/" + std::to_string(v->nr_exclusive) + "/" +
          std::to_string(v->nr_provisioned) + ", walked " + std::to_string(mapped) + "/" +
          std::to_string(exclusive) + "/" + std::to_string(provisioned));
    }
  }
  return Status::OK();
}

}  // namespace thinsim
