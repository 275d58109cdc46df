// ComputeDelta: how two volumes differ, block by block, from their mappings
// alone (metadata/delta.h).
#include "metadata/delta.h"

#include <algorithm>
#include <bit>
#include <map>
#include <optional>
#include <set>

#include <boost/icl/interval_set.hpp>

#include "metadata/pool_dir.h"

namespace thinsim::metadata {

bool MappedEntry(const ChunkImage* c, uint32_t i, uint32_t* dblock) {
  if (c == nullptr || ((c->mapped >> i) & 1) == 0) return false;
  size_t rank = static_cast<size_t>(std::popcount(c->mapped & ((uint64_t{1} << i) - 1)));
  if (rank >= c->dblocks.size()) return false;
  *dblock = c->dblocks[rank];
  return true;
}

std::string_view DeltaTypeName(DeltaType type) {
  switch (type) {
    case DeltaType::kSame: return "same";
    case DeltaType::kDifferent: return "different";
    case DeltaType::kLeftOnly: return "left_only";
    case DeltaType::kRightOnly: return "right_only";
  }
  return "different";
}

namespace {

using VblockSet = boost::icl::interval_set<uint64_t>;

// Which of the four classes vblock `i` of a chunk pair falls in, if any.
std::optional<DeltaType> Classify(const ChunkImage* lc, const ChunkImage* rc, uint32_t i) {
  uint32_t lb = 0, rb = 0;
  bool lm = MappedEntry(lc, i, &lb);
  bool rm = MappedEntry(rc, i, &rb);
  if (lm && rm) return lb == rb ? DeltaType::kSame : DeltaType::kDifferent;
  if (lm) return DeltaType::kLeftOnly;
  if (rm) return DeltaType::kRightOnly;
  return std::nullopt;
}

}  // namespace

std::vector<DeltaRange> ComputeDelta(uint32_t block_size, const VolumeImage& left, const VolumeImage& right) {
  // One interval set per class: adjacent vblocks of a class join into one
  // interval as they are added, which is the coalescing delta reports.
  constexpr DeltaType kTypes[] = {DeltaType::kSame, DeltaType::kDifferent, DeltaType::kLeftOnly,
                                  DeltaType::kRightOnly};
  std::map<DeltaType, VblockSet> sets;
  std::set<uint64_t> indices;
  for (const auto& [index, c] : left.chunks) indices.insert(index);
  for (const auto& [index, c] : right.chunks) indices.insert(index);
  for (uint64_t index : indices) {
    auto l = left.chunks.find(index);
    auto r = right.chunks.find(index);
    const ChunkImage* lc = l == left.chunks.end() ? nullptr : l->second.get();
    const ChunkImage* rc = r == right.chunks.end() ? nullptr : r->second.get();
    for (uint32_t i = 0; i < kChunkEntries; ++i) {
      if (std::optional<DeltaType> t = Classify(lc, rc, i)) {
        uint64_t vb = index * kChunkEntries + i;
        sets[*t] += boost::icl::interval<uint64_t>::right_open(vb, vb + 1);
      }
    }
  }
  std::vector<DeltaRange> ranges;
  for (DeltaType t : kTypes) {
    for (const auto& run : sets[t]) {
      ranges.push_back({t, boost::icl::first(run), boost::icl::length(run), 0, 0});
    }
  }
  std::sort(ranges.begin(), ranges.end(),
            [](const DeltaRange& a, const DeltaRange& b) { return a.vblock < b.vblock; });
  const uint64_t bs = block_size;
  for (DeltaRange& d : ranges) {
    uint64_t end_of = d.type == DeltaType::kLeftOnly    ? left.attrs.size
                      : d.type == DeltaType::kRightOnly ? right.attrs.size
                                                        : std::max(left.attrs.size, right.attrs.size);
    d.offset = d.vblock * bs;
    uint64_t end = (d.vblock + d.nr_vblocks) * bs;
    if (end > end_of && end_of > d.offset) end = end_of;
    d.length = end - d.offset;
  }
  return ranges;
}

}  // namespace thinsim::metadata
