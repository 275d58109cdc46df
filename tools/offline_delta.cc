// thinsim delta (offline): how two volumes of a stopped pool differ, block
// by block, from their mappings alone.
#include "tools/offline.h"

#include <boost/icl/interval_set.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <unordered_map>

#include "base/sizes.h"
#include "base/types.h"
#include "metadata/check.h"
#include "metadata/journal.h"
#include "tools/offline_internal.h"

namespace thinsim::offline {

using namespace internal;  // NOLINT: this library's own helpers
using metadata::DataPath;
using metadata::kChunkEntries;

// ---- Delta --------------------------------------------------------------------

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
  bool lm = EntryOf(lc, i, &lb);
  bool rm = EntryOf(rc, i, &rb);
  if (lm && rm) return lb == rb ? DeltaType::kSame : DeltaType::kDifferent;
  if (lm) return DeltaType::kLeftOnly;
  if (rm) return DeltaType::kRightOnly;
  return std::nullopt;
}

}  // namespace

std::vector<DeltaRange> ComputeDelta(const Image& image, const VolumeImage& left, const VolumeImage& right) {
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
  const uint64_t bs = image.block_size;
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

int Delta(const std::string& dir, const std::string& left, const std::string& right, bool json_output,
          std::ostream& out, std::ostream& err) {
  std::unique_ptr<PoolDirLock> lock;
  Image image;
  LoadReport report;
  Status loaded;
  int code = LockAndLoad(dir, &lock, &image, &report, &loaded, err);
  if (code != kExitOk) return code;
  if (!loaded.ok()) {
    return Fail(err, kExitUsage, "cannot read the metadata of " + dir + ": " + report.fatal.front());
  }
  for (const std::string& f : report.fatal) err << "thinsim: warning: damaged metadata: " << f << "\n";
  const VolumeImage* l = FindVolume(image, left);
  const VolumeImage* r = FindVolume(image, right);
  if (l == nullptr || r == nullptr) {
    return Fail(err, kExitFailure, "no volume named '" + (l == nullptr ? left : right) + "' in " + dir);
  }
  std::vector<DeltaRange> ranges = ComputeDelta(image, *l, *r);
  if (json_output) {
    out << "[";
    for (size_t i = 0; i < ranges.size(); ++i) {
      const DeltaRange& d = ranges[i];
      out << (i ? ",\n " : "\n ")
          << Compact({{"type", std::string(DeltaTypeName(d.type))}, {"offset", d.offset}, {"length", d.length}});
    }
    out << (ranges.empty() ? "]\n" : "\n]\n");
  } else {
    out << "left '" << left << "', right '" << right << "', block size " << image.block_size << "\n";
    for (const DeltaRange& d : ranges) {
      std::string type(DeltaTypeName(d.type));
      type.resize(10, ' ');
      out << type << " " << (d.nr_vblocks == 1 ? "vblock  " : "vblocks ") << Span(d.vblock, d.nr_vblocks)
          << "  offset " << d.offset << " length " << d.length << "\n";
    }
  }
  out << std::flush;
  return kExitOk;
}

}  // namespace thinsim::offline
