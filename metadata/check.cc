#include "metadata/check.h"

#include <bit>
#include <map>
#include <set>

#include "pool/sizes.h"

namespace thinsim::metadata {

namespace {

constexpr uint64_t kChunk = 64;

std::string VolName(const VolumeImage& v) {
  return "volume '" + v.attrs.name + "' (id " + std::to_string(v.attrs.id) + ")";
}

// True when following origins from `start` comes back to it.
bool InCycle(const Image& image, uint64_t start) {
  std::set<uint64_t> seen;
  uint64_t id = start;
  while (id != 0) {
    if (!seen.insert(id).second) return id == start;
    auto it = image.volumes.find(id);
    if (it == image.volumes.end()) return false;
    id = it->second.attrs.origin_id;
  }
  return false;
}

void CheckPool(const Image& image, CheckResult* r) {
  uint32_t bs = image.block_size;
  if (bs < 4096 || bs > (1u << 30) || (bs & (bs - 1)) != 0) {
    r->damage.push_back({true, "pool block size " + std::to_string(bs) + " is not a power of two 4K..1G"});
  }
  if (image.nr_blocks == 0) r->damage.push_back({true, "pool has no data blocks"});
}

void CheckVolume(const Image& image, const VolumeImage& v, std::set<std::string>* names, CheckResult* r) {
  const VolumeRecord& a = v.attrs;
  if (!ValidateVolumeName(a.name).ok()) r->damage.push_back({true, VolName(v) + " has an invalid name"});
  if (!names->insert(a.name).second) r->damage.push_back({true, VolName(v) + ": name is used twice"});
  if (a.size == 0 || a.size % 512 != 0) r->damage.push_back({true, VolName(v) + " has a bad size " + std::to_string(a.size)});
  if (a.strategy > 3) r->damage.push_back({false, VolName(v) + " has an unknown strategy " + std::to_string(a.strategy)});
  if (a.origin_id != 0 && image.volumes.count(a.origin_id) == 0) {
    r->damage.push_back({false, VolName(v) + ": snapshot relation dangles (origin id " +
                                    std::to_string(a.origin_id) + " does not exist)"});
  } else if (a.origin_id != 0 && InCycle(image, a.id)) {
    r->damage.push_back({false, VolName(v) + ": snapshot relations form a cycle"});
  }
  uint64_t vblocks = image.block_size ? (a.size + image.block_size - 1) / image.block_size : 0;
  for (const auto& [index, c] : v.chunks) {
    if (index * kChunk >= vblocks) {
      r->damage.push_back({true, VolName(v) + " maps chunk " + std::to_string(index) + " beyond its size"});
    }
    if (static_cast<size_t>(std::popcount(c->mapped)) != c->dblocks.size() || (c->provisioned & ~c->mapped)) {
      r->damage.push_back({true, VolName(v) + ": chunk " + std::to_string(index) + " is malformed"});
    }
    for (uint32_t b : c->dblocks) {
      if (b >= image.nr_blocks) {
        r->damage.push_back({true, VolName(v) + " maps data block " + std::to_string(b) +
                                       ", beyond the pool's " + std::to_string(image.nr_blocks) + " blocks"});
      }
    }
  }
}

// A data block may only be shared at one vblock (sharing comes from
// snapshots), else copy-on-write and ownership would go wrong.
void CheckSharing(const Image& image, CheckResult* r) {
  std::map<uint32_t, uint64_t> vblock_of;
  for (const auto& [id, v] : image.volumes) {
    for (const auto& [index, c] : v.chunks) {
      uint32_t rank = 0;
      for (uint64_t m = c->mapped; m != 0; m &= m - 1) {
        uint64_t vb = index * kChunk + std::countr_zero(m);
        uint32_t b = c->dblocks.size() > rank ? c->dblocks[rank] : 0;
        ++rank;
        auto [it, fresh] = vblock_of.emplace(b, vb);
        if (!fresh && it->second != vb) {
          r->damage.push_back({true, "data block " + std::to_string(b) + " is mapped at vblocks " +
                                         std::to_string(it->second) + " and " + std::to_string(vb)});
        }
      }
    }
  }
}

void CheckRefcounts(const Image& image, CheckResult* r) {
  std::map<uint32_t, uint32_t> derived = image.DerivedRefcounts();
  size_t reported = 0, mismatches = 0;
  auto report = [&](uint32_t b, uint32_t stored, uint32_t want) {
    ++mismatches;
    if (reported++ < 20) {
      r->damage.push_back({false, "refcount mismatch: data block " + std::to_string(b) + " has count " +
                                      std::to_string(stored) + ", its mappings say " + std::to_string(want)});
    }
  };
  for (const auto& [b, want] : derived) {
    auto it = image.refcounts.find(b);
    uint32_t stored = it == image.refcounts.end() ? 0 : it->second;
    if (stored != want) report(b, stored, want);
  }
  for (const auto& [b, stored] : image.refcounts) {
    if (derived.count(b) == 0) report(b, stored, 0);
  }
  if (mismatches > reported) {
    r->damage.push_back({false, std::to_string(mismatches - reported) + " more refcount mismatches"});
  }
}

}  // namespace

bool CheckResult::fatal() const {
  for (const Damage& d : damage) {
    if (d.fatal) return true;
  }
  return false;
}

CheckResult CheckImage(const Image& image, const LoadReport& report) {
  CheckResult r;
  for (const std::string& f : report.fatal) r.damage.push_back({true, f});
  r.notes = report.warnings;
  CheckPool(image, &r);
  std::set<std::string> names;
  for (const auto& [id, v] : image.volumes) CheckVolume(image, v, &names, &r);
  CheckSharing(image, &r);
  CheckRefcounts(image, &r);
  return r;
}

void RepairImage(Image* image, std::vector<std::string>* fixed, std::vector<std::string>* lost) {
  for (auto& [id, v] : image->volumes) {
    VolumeRecord& a = v.attrs;
    if (a.origin_id != 0 && (image->volumes.count(a.origin_id) == 0 || InCycle(*image, id))) {
      fixed->push_back("volume '" + a.name + "': cleared its snapshot relation (origin id " +
                       std::to_string(a.origin_id) + ")");
      a.origin_id = 0;
    }
    uint64_t vblocks = image->block_size ? (a.size + image->block_size - 1) / image->block_size : 0;
    for (auto it = v.chunks.begin(); it != v.chunks.end();) {
      const ChunkImage& c = *it->second;
      if (it->first * kChunk >= vblocks) {
        lost->push_back("volume '" + a.name + "': dropped chunk " + std::to_string(it->first) + " beyond its size");
        it = v.chunks.erase(it);
        continue;
      }
      auto copy = std::make_shared<ChunkImage>();
      uint32_t rank = 0;
      for (uint64_t m = c.mapped; m != 0; m &= m - 1) {
        int i = std::countr_zero(m);
        uint32_t b = rank < c.dblocks.size() ? c.dblocks[rank] : UINT32_MAX;
        ++rank;
        if (b >= image->nr_blocks) {
          lost->push_back("volume '" + a.name + "': vblock " + std::to_string(it->first * kChunk + i) +
                          " mapped to block " + std::to_string(b) + " outside the pool: unmapped (reads zero)");
          continue;
        }
        copy->mapped |= uint64_t{1} << i;
        copy->provisioned |= c.provisioned & (uint64_t{1} << i);
        copy->dblocks.push_back(b);
      }
      if (copy->mapped != c.mapped || copy->dblocks != c.dblocks || copy->provisioned != (c.provisioned & c.mapped)) {
        it->second = copy;
      }
      ++it;
    }
  }
  std::map<uint32_t, uint32_t> derived = image->DerivedRefcounts();
  if (derived != image->refcounts) {
    fixed->push_back("rebuilt reference counts of " + std::to_string(derived.size()) + " data blocks from the mappings");
    image->refcounts = derived;
  }
}

}  // namespace thinsim::metadata
