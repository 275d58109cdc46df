#include "metadata/check.h"

#include <algorithm>
#include <bit>
#include <map>
#include <set>

#include "base/sizes.h"
#include "metadata/pool_dir.h"
#include "base/types.h"

namespace thinsim::metadata {

namespace {

constexpr uint64_t kChunk = kChunkEntries;
// As the pool: at most 2^31 vblocks per volume.
constexpr uint64_t kMaxVolumeBlocks = uint64_t{1} << 31;
// Lines of one repetitive kind of damage before the rest are summed up.
constexpr size_t kMaxReported = 20;
// PoolMode values (pool/types.h) that may be stored.
constexpr uint8_t kMaxMode = static_cast<uint8_t>(PoolMode::kFail);
constexpr uint8_t kMaxStrategy = static_cast<uint8_t>(Strategy::kFull);

std::string VolName(const VolumeImage& v) {
  return "volume '" + v.attrs.name + "' (id " + std::to_string(v.attrs.id) + ")";
}

uint64_t VblocksOf(const Image& image, uint64_t size) {
  // Not (size + block_size - 1) / block_size, which wraps for a huge size.
  return image.block_size ? size / image.block_size + (size % image.block_size != 0) : 0;
}

// Whether chunk slot `index` lies past a volume of `vblocks` blocks
// (comparing slots, not index * 64, which wraps for a damaged index).
bool ChunkBeyond(uint64_t index, uint64_t vblocks) { return index >= vblocks / kChunk + (vblocks % kChunk != 0); }

bool SizeTooLarge(const Image& image, uint64_t size) {
  return size > kMaxVolumeSize || VblocksOf(image, size) > kMaxVolumeBlocks;
}

// Reports up to kMaxReported damages of one kind, then how many more.
class CappedReporter {
 public:
  CappedReporter(CheckResult* r, bool fatal, std::string more)
      : r_(r), fatal_(fatal), more_(std::move(more)) {}
  ~CappedReporter() {
    if (count_ > kMaxReported) {
      r_->damage.push_back({fatal_, std::to_string(count_ - kMaxReported) + " more " + more_});
    }
  }
  void Add(std::string what) {
    if (count_++ < kMaxReported) r_->damage.push_back({fatal_, std::move(what)});
  }

 private:
  CheckResult* r_;
  bool fatal_;
  std::string more_;
  size_t count_ = 0;
};

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
  if (image.nr_blocks > kMaxPoolBlocks) {
    r->damage.push_back({true, "pool has " + std::to_string(image.nr_blocks) + " blocks, more than 2^32-2"});
  }
  if (image.mode > kMaxMode) {
    r->damage.push_back({false, "pool mode " + std::to_string(image.mode) + " is unknown"});
  }
}

void CheckVolume(const Image& image, const VolumeImage& v, std::set<std::string>* names, CheckResult* r) {
  const VolumeRecord& a = v.attrs;
  if (a.id == 0) r->damage.push_back({true, VolName(v) + " has id 0, which means 'none'"});
  if (!ValidateVolumeName(a.name).ok()) r->damage.push_back({true, VolName(v) + " has an invalid name"});
  if (!names->insert(a.name).second) r->damage.push_back({true, VolName(v) + ": name is used twice"});
  if (a.size == 0 || a.size % 512 != 0) r->damage.push_back({true, VolName(v) + " has a bad size " + std::to_string(a.size)});
  if (SizeTooLarge(image, a.size)) r->damage.push_back({true, VolName(v) + " is too large: " + std::to_string(a.size)});
  if (a.strategy > kMaxStrategy) r->damage.push_back({false, VolName(v) + " has an unknown strategy " + std::to_string(a.strategy)});
  if (a.origin_id != 0 && image.volumes.count(a.origin_id) == 0) {
    r->damage.push_back({false, VolName(v) + ": snapshot relation dangles (origin id " +
                                    std::to_string(a.origin_id) + " does not exist)"});
  } else if (a.origin_id != 0 && InCycle(image, a.id)) {
    r->damage.push_back({false, VolName(v) + ": snapshot relations form a cycle"});
  }
  uint64_t vblocks = VblocksOf(image, a.size);
  for (const auto& [index, c] : v.chunks) {
    if (ChunkBeyond(index, vblocks)) {
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
// snapshots), else copy-on-write and ownership would go wrong. And only
// volumes of one family share: the pool finds a block's owners there.
void CheckSharing(const Image& image, CheckResult* r) {
  struct FirstUse {
    uint64_t vblock;
    const VolumeImage* volume;
  };
  std::map<uint32_t, FirstUse> first_use;
  CappedReporter families(r, false, "blocks shared across families");
  for (const auto& [id, v] : image.volumes) {
    for (const auto& [index, c] : v.chunks) {
      uint32_t rank = 0;
      for (uint64_t m = c->mapped; m != 0; m &= m - 1) {
        uint64_t vb = index * kChunk + std::countr_zero(m);
        uint32_t b = c->dblocks.size() > rank ? c->dblocks[rank] : 0;
        ++rank;
        auto [it, fresh] = first_use.emplace(b, FirstUse{vb, &v});
        if (fresh) continue;
        if (it->second.vblock != vb) {
          r->damage.push_back({true, "data block " + std::to_string(b) + " is mapped at vblocks " +
                                         std::to_string(it->second.vblock) + " and " + std::to_string(vb)});
        } else if (it->second.volume->attrs.family != v.attrs.family) {
          families.Add(VolName(*it->second.volume) + " and " + VolName(v) + " share data block " +
                       std::to_string(b) + " but belong to different families (" +
                       std::to_string(it->second.volume->attrs.family) + ", " +
                       std::to_string(v.attrs.family) + ")");
        }
      }
    }
  }
}

void CheckRefcounts(const Image& image, CheckResult* r) {
  std::map<uint32_t, uint32_t> derived = image.DerivedRefcounts();
  CappedReporter report(r, false, "refcount mismatches");
  auto mismatch = [&](uint32_t b, uint32_t stored, uint32_t want) {
    report.Add("refcount mismatch: data block " + std::to_string(b) + " has count " + std::to_string(stored) +
               ", its mappings say " + std::to_string(want));
  };
  for (const auto& [b, want] : derived) {
    auto it = image.refcounts.find(b);
    uint32_t stored = it == image.refcounts.end() ? 0 : it->second;
    if (stored != want) mismatch(b, stored, want);
  }
  for (const auto& [b, stored] : image.refcounts) {
    if (derived.count(b) == 0) mismatch(b, stored, 0);
  }
}

// ---- Repair -----------------------------------------------------------------

struct RepairLog {
  std::vector<std::string>* fixed;
  std::vector<std::string>* lost;
};

std::string Quoted(const VolumeRecord& a) { return "volume '" + a.name + "' (id " + std::to_string(a.id) + ")"; }

void RepairPool(Image* image, RepairLog log) {
  uint32_t bs = image->block_size;
  if (bs < 4096 || bs > (1u << 30) || (bs & (bs - 1)) != 0) {
    log.lost->push_back("pool block size " + std::to_string(bs) + " is invalid and cannot be derived");
  }
  if (image->nr_blocks == 0 || image->nr_blocks > kMaxPoolBlocks) {
    uint64_t highest = 0;
    for (const auto& [b, count] : image->DerivedRefcounts()) highest = std::max<uint64_t>(highest, b + 1ull);
    highest = std::min(highest, kMaxPoolBlocks);
    if (highest == 0) {
      log.lost->push_back("pool size (" + std::to_string(image->nr_blocks) + " blocks) cannot be derived");
    } else {
      log.fixed->push_back("pool size was " + std::to_string(image->nr_blocks) + " blocks: set to " +
                           std::to_string(highest) + " (the highest mapped block + 1); grow it with size=");
      image->nr_blocks = highest;
    }
  }
  if (image->mode > kMaxMode) {
    log.fixed->push_back("pool mode " + std::to_string(image->mode) + " is unknown: set to write");
    image->mode = static_cast<uint8_t>(PoolMode::kWrite);
  }
}

// Gives a volume with id 0 a fresh id.
void RepairIds(Image* image, RepairLog log) {
  auto zero = image->volumes.find(0);
  if (zero == image->volumes.end()) return;
  uint64_t id = image->volumes.rbegin()->first + 1;
  VolumeImage v = std::move(zero->second);
  image->volumes.erase(zero);
  v.attrs.id = id;
  if (v.attrs.family == 0) v.attrs.family = id;
  log.fixed->push_back("volume '" + v.attrs.name + "' had id 0: now id " + std::to_string(id));
  image->volumes.emplace(id, std::move(v));
}

// Renames volumes with an invalid or already used name; fixes bad sizes
// and unknown strategies.
void RepairAttributes(Image* image, RepairLog log) {
  std::set<std::string> taken;  // every name as found, so a new one is fresh
  for (const auto& [id, v] : image->volumes) taken.insert(v.attrs.name);
  std::set<std::string> names;  // names kept so far
  for (auto& [id, v] : image->volumes) {
    VolumeRecord& a = v.attrs;
    bool valid = ValidateVolumeName(a.name).ok();
    if (!valid || names.count(a.name) != 0) {
      std::string base = (valid ? a.name.substr(0, 40) : "volume") + "-" + std::to_string(id);
      std::string name = base;
      for (int n = 2; taken.count(name) != 0; ++n) name = base + "-" + std::to_string(n);
      taken.insert(name);
      log.fixed->push_back(Quoted(a) + ": name " + (valid ? "used twice" : "invalid") + ", renamed to '" +
                           name + "'");
      a.name = name;
    }
    names.insert(a.name);
    uint64_t size = a.size;
    if (size == 0) {
      uint64_t chunks = v.chunks.empty() ? 0 : v.chunks.rbegin()->first + 1;
      size = std::max<uint64_t>(chunks * kChunk * image->block_size, image->block_size);
    }
    // Clamped first: rounding up a size near 2^64 would wrap to 0.
    size = (std::min(size, kMaxVolumeSize) + 511) / 512 * 512;
    if (SizeTooLarge(*image, size) && image->block_size != 0) {
      size = std::min(kMaxVolumeSize, kMaxVolumeBlocks * image->block_size);
    }
    if (size != a.size && size != 0) {
      log.fixed->push_back(Quoted(a) + ": size " + std::to_string(a.size) + " set to " + std::to_string(size));
      a.size = size;
    }
    if (a.strategy > kMaxStrategy) {
      log.fixed->push_back(Quoted(a) + ": unknown strategy " + std::to_string(a.strategy) + " set to none");
      a.strategy = static_cast<uint8_t>(Strategy::kNone);
    }
  }
}

void RepairOrigins(Image* image, RepairLog log) {
  for (auto& [id, v] : image->volumes) {
    VolumeRecord& a = v.attrs;
    if (a.origin_id != 0 && (image->volumes.count(a.origin_id) == 0 || InCycle(*image, id))) {
      log.fixed->push_back("volume '" + a.name + "': cleared its snapshot relation (origin id " +
                           std::to_string(a.origin_id) + ")");
      a.origin_id = 0;
    }
  }
}

// Drops chunks beyond a volume's size, mappings to blocks outside the pool
// and mappings that reuse a block at a second vblock (the first use, by
// volume id and vblock, keeps it). A chunk object shared by several slots
// stays shared: each (object, index) is filtered once.
void RepairMappings(Image* image, RepairLog log) {
  std::map<uint32_t, uint64_t> vblock_of;  // the one vblock each block may be at
  std::map<std::pair<const ChunkImage*, uint64_t>, std::shared_ptr<const ChunkImage>> filtered;
  for (auto& [id, v] : image->volumes) {
    const VolumeRecord& a = v.attrs;
    uint64_t vblocks = VblocksOf(*image, a.size);
    for (auto it = v.chunks.begin(); it != v.chunks.end();) {
      const uint64_t index = it->first;
      if (ChunkBeyond(index, vblocks)) {
        log.lost->push_back("volume '" + a.name + "': dropped chunk " + std::to_string(index) + " beyond its size");
        it = v.chunks.erase(it);
        continue;
      }
      auto key = std::make_pair(it->second.get(), index);
      auto known = filtered.find(key);
      if (known != filtered.end()) {
        it->second = known->second;
      } else {
        const ChunkImage& c = *it->second;
        auto copy = std::make_shared<ChunkImage>();
        uint32_t rank = 0;
        for (uint64_t m = c.mapped; m != 0; m &= m - 1) {
          int i = std::countr_zero(m);
          uint64_t vb = index * kChunk + i;
          uint32_t b = rank < c.dblocks.size() ? c.dblocks[rank] : UINT32_MAX;
          ++rank;
          if (b >= image->nr_blocks) {
            log.lost->push_back("volume '" + a.name + "': vblock " + std::to_string(vb) + " mapped to block " +
                                std::to_string(b) + " outside the pool: unmapped (reads zero)");
            continue;
          }
          auto [use, fresh] = vblock_of.emplace(b, vb);
          if (!fresh && use->second != vb) {
            log.lost->push_back("volume '" + a.name + "': vblock " + std::to_string(vb) + " mapped to block " +
                                std::to_string(b) + ", which vblock " + std::to_string(use->second) +
                                " also maps: unmapped (reads zero)");
            continue;
          }
          copy->mapped |= uint64_t{1} << i;
          copy->provisioned |= c.provisioned & (uint64_t{1} << i);
          copy->dblocks.push_back(b);
        }
        bool same = copy->mapped == c.mapped && copy->dblocks == c.dblocks && copy->provisioned == c.provisioned;
        std::shared_ptr<const ChunkImage> result = same ? it->second : std::move(copy);
        filtered.emplace(key, result);
        it->second = result;
      }
      if (it->second->mapped == 0) {
        it = v.chunks.erase(it);
      } else {
        ++it;
      }
    }
  }
}

// Volumes that share a block get the same family (the family of the lowest
// volume id among them).
void RepairFamilies(Image* image, RepairLog log) {
  std::map<uint64_t, uint64_t> parent;  // union-find over volume ids
  for (const auto& [id, v] : image->volumes) parent[id] = id;
  auto find = [&](uint64_t x) {
    while (parent[x] != x) x = parent[x] = parent[parent[x]];
    return x;
  };
  std::map<uint32_t, uint64_t> user;  // block -> first volume mapping it
  for (const auto& [id, v] : image->volumes) {
    for (const auto& [index, c] : v.chunks) {
      for (uint32_t b : c->dblocks) {
        auto [it, fresh] = user.emplace(b, id);
        if (fresh) continue;
        uint64_t x = find(it->second), y = find(id);
        if (x != y) parent[std::max(x, y)] = std::min(x, y);
      }
    }
  }
  for (auto& [id, v] : image->volumes) {
    uint64_t family = image->volumes.at(find(id)).attrs.family;
    if (v.attrs.family == family) continue;
    log.fixed->push_back(Quoted(v.attrs) + ": family " + std::to_string(v.attrs.family) + " set to " +
                         std::to_string(family) + ", the family of the volumes it shares blocks with");
    v.attrs.family = family;
  }
}

void RepairRefcounts(Image* image, RepairLog log) {
  std::map<uint32_t, uint32_t> derived = image->DerivedRefcounts();
  if (derived != image->refcounts) {
    log.fixed->push_back("rebuilt reference counts of " + std::to_string(derived.size()) +
                         " data blocks from the mappings");
    image->refcounts = derived;
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
  RepairLog log{fixed, lost};
  RepairPool(image, log);
  RepairIds(image, log);
  RepairAttributes(image, log);
  RepairOrigins(image, log);
  RepairMappings(image, log);
  RepairFamilies(image, log);
  RepairRefcounts(image, log);
}

}  // namespace thinsim::metadata
