// thinsim dump and restore: a pool's metadata as canonical JSON and back
// (docs/format.md, "Dump format").
#include "tools/offline.h"

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
#include <set>
#include <sstream>
#include <unordered_map>

#include "base/sizes.h"
#include "base/types.h"
#include "metadata/check.h"
#include "metadata/journal.h"
#include "tools/dump_fields.h"
#include "tools/offline_internal.h"

namespace thinsim::offline {

using namespace internal;  // NOLINT: this library's own helpers
using metadata::DataPath;
using metadata::kChunkEntries;

namespace {

constexpr const char* kDumpFormat = "thinsim-metadata-dump";
constexpr uint64_t kDumpVersion = 1;

// ---- Runs -------------------------------------------------------------------

// A run of consecutive vblocks (or chunk entries) mapped to consecutive
// dblocks with one provisioned flag.
struct MappingRun {
  uint64_t first = 0;
  uint32_t dblock = 0;
  uint64_t length = 0;
  bool provisioned = false;

  // Extends the run by (pos -> b) if it continues it.
  bool Extend(uint64_t pos, uint32_t b, bool prov) {
    if (length == 0 || pos != first + length || uint64_t{b} != uint64_t{dblock} + length || prov != provisioned) {
      return false;
    }
    ++length;
    return true;
  }
};

std::vector<MappingRun> ChunkRuns(const ChunkImage& c) {
  std::vector<MappingRun> runs;
  ForEachEntry(c, [&](uint32_t i, uint32_t b, bool prov) {
    if (runs.empty() || !runs.back().Extend(i, b, prov)) runs.push_back({i, b, 1, prov});
  });
  return runs;
}

std::vector<MappingRun> VolumeRuns(const VolumeImage& v) {
  std::vector<MappingRun> runs;
  for (const auto& [chunk_index, c] : v.chunks) {
    const uint64_t index = chunk_index;  // clang 14 cannot capture a structured binding
    ForEachEntry(*c, [&](uint32_t i, uint32_t b, bool prov) {
      uint64_t vb = index * kChunkEntries + i;
      if (runs.empty() || !runs.back().Extend(vb, b, prov)) runs.push_back({vb, b, 1, prov});
    });
  }
  return runs;
}

// Consecutive dblocks with one count.
struct CountRun {
  uint32_t dblock = 0;
  uint64_t length = 0;
  uint32_t count = 0;
};

std::vector<CountRun> RefcountRuns(const std::map<uint32_t, uint32_t>& refcounts) {
  std::vector<CountRun> runs;
  for (const auto& [b, count] : refcounts) {
    CountRun* last = runs.empty() ? nullptr : &runs.back();
    if (last != nullptr && uint64_t{b} == uint64_t{last->dblock} + last->length && count == last->count) {
      ++last->length;
    } else {
      runs.push_back({b, 1, count});
    }
  }
  return runs;
}

// ---- Reading a dump ---------------------------------------------------------

std::vector<std::string_view> ModeNames() {
  return {PoolModeName(PoolMode::kWrite), PoolModeName(PoolMode::kOutOfDataSpace),
          PoolModeName(PoolMode::kReadOnly), PoolModeName(PoolMode::kFail)};
}
std::vector<std::string_view> StrategyNames() {
  return {StrategyName(Strategy::kNone), StrategyName(Strategy::kProvision), StrategyName(Strategy::kVolume),
          StrategyName(Strategy::kFull)};
}

Status ReadPool(const json& dump, Image* image) {
  Fields top(dump, "the dump");
  std::string format = top.String("format");
  uint64_t version = top.U64("version");
  THINSIM_RETURN_IF_ERROR(top.status());
  if (format != kDumpFormat || version != kDumpVersion) {
    return Status::Invalid("not a " + std::string(kDumpFormat) + " version " + std::to_string(kDumpVersion) +
                           " (format \"" + format + "\", version " + std::to_string(version) + ")");
  }
  const json* pool_object = top.Get("pool");
  THINSIM_RETURN_IF_ERROR(top.status());
  Fields pool(*pool_object, "\"pool\"");
  image->block_size = static_cast<uint32_t>(pool.U64("block_size", UINT32_MAX));
  image->nr_blocks = pool.U64("nr_blocks");
  image->mode = pool.Enum("mode", ModeNames());
  image->commit_seq = pool.U64("commit_seq");
  return pool.status();
}

// Reads the chunk objects, by id.
Status ReadChunks(const json& list, std::map<uint64_t, std::shared_ptr<ChunkImage>>* chunks) {
  for (size_t n = 0; n < list.size(); ++n) {
    Fields f(list[n], "chunk #" + std::to_string(n));
    uint64_t id = f.U64("id");
    const json& runs = f.Array("runs");
    THINSIM_RETURN_IF_ERROR(f.status());
    std::string where = "chunk " + std::to_string(id);
    if (chunks->count(id) != 0) return Status::Invalid(where + " is listed twice");
    std::vector<std::pair<uint32_t, bool>> entries(kChunkEntries);
    uint64_t mapped = 0;
    for (size_t r = 0; r < runs.size(); ++r) {
      Fields run(runs[r], where + ", run #" + std::to_string(r));
      uint64_t entry = run.U64("entry", kChunkEntries - 1);
      uint64_t dblock = run.U64("dblock", UINT32_MAX);
      uint64_t length = run.U64("length", kChunkEntries);
      bool prov = run.Bool("provisioned");
      THINSIM_RETURN_IF_ERROR(run.status());
      if (length == 0 || entry + length > kChunkEntries || dblock + length - 1 > UINT32_MAX) {
        return Status::Invalid(where + ", run #" + std::to_string(r) + " does not fit in a chunk");
      }
      for (uint64_t i = entry; i < entry + length; ++i) {
        if ((mapped >> i) & 1) return Status::Invalid(where + " maps entry " + std::to_string(i) + " twice");
        mapped |= uint64_t{1} << i;
        entries[i] = {static_cast<uint32_t>(dblock + (i - entry)), prov};
      }
    }
    if (mapped == 0) return Status::Invalid(where + " maps nothing");
    auto c = std::make_shared<ChunkImage>();
    c->mapped = mapped;
    for (uint64_t m = mapped; m != 0; m &= m - 1) {
      int i = std::countr_zero(m);
      c->dblocks.push_back(entries[i].first);
      if (entries[i].second) c->provisioned |= uint64_t{1} << i;
    }
    chunks->emplace(id, std::move(c));
  }
  return Status::OK();
}

Status ReadVolumes(const json& list, const std::map<uint64_t, std::shared_ptr<ChunkImage>>& chunks,
                   Image* image) {
  std::set<uint64_t> used;
  for (size_t n = 0; n < list.size(); ++n) {
    Fields f(list[n], "volume #" + std::to_string(n));
    VolumeImage v;
    metadata::VolumeRecord& a = v.attrs;
    a.id = f.U64("id");
    a.name = f.String("name");
    a.size = f.U64("size");
    a.strategy = f.Enum("strategy", StrategyNames());
    a.read_only = f.Bool("read_only");
    const json* origin = f.Get("origin_id");  // null: none
    if (origin != nullptr && !origin->is_null()) a.origin_id = f.U64("origin_id");
    a.family = f.U64("family");
    a.pinned = f.Bool("pinned");
    const json& slots = f.Array("chunks");
    THINSIM_RETURN_IF_ERROR(f.status());
    std::string where = "volume " + std::to_string(a.id);
    if (a.id == 0) return Status::Invalid(where + ": id 0 means 'none'");
    if (image->volumes.count(a.id) != 0) return Status::Invalid(where + " is listed twice");
    for (size_t s = 0; s < slots.size(); ++s) {
      Fields slot(slots[s], where + ", slot #" + std::to_string(s));
      uint64_t index = slot.U64("index");
      uint64_t id = slot.U64("chunk");
      THINSIM_RETURN_IF_ERROR(slot.status());
      auto c = chunks.find(id);
      if (c == chunks.end()) return Status::Invalid(where + " refers to chunk " + std::to_string(id) + ", which is not listed");
      if (!v.chunks.emplace(index, c->second).second) {
        return Status::Invalid(where + " fills chunk slot " + std::to_string(index) + " twice");
      }
      used.insert(id);
    }
    THINSIM_RETURN_IF_ERROR(ReadBitmaps(list[n], where, &v));
    image->volumes.emplace(a.id, std::move(v));
  }
  for (const auto& [id, c] : chunks) {
    if (used.count(id) == 0) return Status::Invalid("chunk " + std::to_string(id) + " is not used by any volume");
  }
  return Status::OK();
}

Status ReadRefcounts(const json& list, Image* image) {
  for (size_t n = 0; n < list.size(); ++n) {
    Fields f(list[n], "refcount run #" + std::to_string(n));
    uint64_t dblock = f.U64("dblock", UINT32_MAX);
    uint64_t length = f.U64("length", uint64_t{UINT32_MAX} + 1);
    uint64_t count = f.U64("count", UINT32_MAX);
    THINSIM_RETURN_IF_ERROR(f.status());
    std::string where = "refcount run #" + std::to_string(n);
    if (length == 0 || count == 0 || dblock + length - 1 > UINT32_MAX) {
      return Status::Invalid(where + " needs length >= 1, count >= 1 and blocks below 2^32");
    }
    for (uint64_t b = dblock; b < dblock + length; ++b) {
      if (!image->refcounts.emplace(static_cast<uint32_t>(b), static_cast<uint32_t>(count)).second) {
        return Status::Invalid(where + " counts data block " + std::to_string(b) + " twice");
      }
    }
  }
  return Status::OK();
}

}  // namespace

// ---- Dump ---------------------------------------------------------------------

ordered_json DumpJson(const Image& image) {
  ordered_json dump;
  dump["format"] = kDumpFormat;
  dump["version"] = kDumpVersion;
  dump["pool"] = {{"block_size", image.block_size},
                  {"nr_blocks", image.nr_blocks},
                  {"mode", ModeJson(image.mode)},
                  {"commit_seq", image.commit_seq}};
  ordered_json volumes = ordered_json::array();
  ordered_json chunks = ordered_json::array();
  std::unordered_map<const ChunkImage*, uint64_t> ids;
  for (const auto& [id, v] : image.volumes) {
    ordered_json slots = ordered_json::array();
    for (const auto& [index, c] : v.chunks) {
      auto [it, fresh] = ids.emplace(c.get(), ids.size() + 1);
      if (fresh) {
        ordered_json runs = ordered_json::array();
        for (const MappingRun& r : ChunkRuns(*c)) {
          runs.push_back({{"entry", r.first}, {"dblock", r.dblock}, {"length", r.length}, {"provisioned", r.provisioned}});
        }
        chunks.push_back({{"id", it->second}, {"runs", std::move(runs)}});
      }
      slots.push_back({{"index", index}, {"chunk", it->second}});
    }
    const metadata::VolumeRecord& a = v.attrs;
    ordered_json vol;
    vol["id"] = a.id;
    vol["name"] = a.name;
    vol["size"] = a.size;
    vol["strategy"] = StrategyJson(a.strategy);
    vol["read_only"] = a.read_only;
    vol["origin_id"] = a.origin_id == 0 ? ordered_json(nullptr) : ordered_json(a.origin_id);
    vol["family"] = a.family;
    vol["pinned"] = a.pinned;
    vol["chunks"] = std::move(slots);
    vol["bitmaps"] = BitmapsJson(v);
    volumes.push_back(std::move(vol));
  }
  ordered_json refcounts = ordered_json::array();
  for (const CountRun& r : RefcountRuns(image.refcounts)) {
    refcounts.push_back({{"dblock", r.dblock}, {"length", r.length}, {"count", r.count}});
  }
  dump["volumes"] = std::move(volumes);
  dump["chunks"] = std::move(chunks);
  dump["refcounts"] = std::move(refcounts);
  return dump;
}

std::string FormatDumpJson(const Image& image) {
  ordered_json dump = DumpJson(image);
  std::string out = "{\n";
  bool first = true;
  for (const auto& [key, value] : dump.items()) {
    out += first ? "" : ",\n";
    first = false;
    out += "  " + Compact(key) + ": ";
    if (!value.is_array() || value.empty()) {
      out += Compact(value);
      continue;
    }
    out += "[\n";
    for (size_t i = 0; i < value.size(); ++i) out += "    " + Compact(value[i]) + (i + 1 < value.size() ? ",\n" : "\n");
    out += "  ]";
  }
  return out + "\n}\n";
}

std::string FormatDumpText(const Image& image) {
  std::ostringstream s;
  s << "pool: block size " << image.block_size << " (" << FormatSize(image.block_size) << "), " << image.nr_blocks
    << " blocks (" << FormatSize(image.nr_blocks * image.block_size) << "), mode " << Text(ModeJson(image.mode))
    << ", commit " << image.commit_seq << "\n";
  for (const auto& [id, v] : image.volumes) {
    s << VolumeLine(image, v);
    for (const MappingRun& r : VolumeRuns(v)) {
      s << "  " << (r.length == 1 ? "vblock " : "vblocks ") << Span(r.first, r.length) << " -> "
        << (r.length == 1 ? "dblock " : "dblocks ") << Span(r.dblock, r.length)
        << (r.provisioned ? " provisioned" : "") << "\n";
    }
    AppendBitmapsText(v, s);
  }
  s << "refcounts: " << image.refcounts.size() << " data blocks in use\n";
  for (const CountRun& r : RefcountRuns(image.refcounts)) {
    s << "  " << (r.length == 1 ? "dblock " : "dblocks ") << Span(r.dblock, r.length) << ": " << r.count << "\n";
  }
  return s.str();
}

Status ImageFromJson(const json& dump, Image* image) {
  *image = Image();
  THINSIM_RETURN_IF_ERROR(ReadPool(dump, image));
  Fields top(dump, "the dump");
  const json& chunk_list = top.Array("chunks");
  const json& volume_list = top.Array("volumes");
  const json& refcount_list = top.Array("refcounts");
  THINSIM_RETURN_IF_ERROR(top.status());
  std::map<uint64_t, std::shared_ptr<ChunkImage>> chunks;
  THINSIM_RETURN_IF_ERROR(ReadChunks(chunk_list, &chunks));
  THINSIM_RETURN_IF_ERROR(ReadVolumes(volume_list, chunks, image));
  return ReadRefcounts(refcount_list, image);
}

int Dump(const std::string& dir, bool json_output, std::ostream& out, std::ostream& err) {
  std::unique_ptr<PoolDirLock> lock;
  Image image;
  LoadReport report;
  Status loaded;
  int code = LockAndLoad(dir, &lock, &image, &report, &loaded, err);
  if (code != kExitOk) return code;
  if (!loaded.ok()) {
    return Fail(err, kExitUsage, "cannot read the metadata of " + dir + ": " + report.fatal.front() +
                                     "; run `thinsim repair " + dir + "`");
  }
  for (const std::string& f : report.fatal) err << "thinsim: warning: damaged metadata, dumping what could be read: " << f << "\n";
  out << (json_output ? FormatDumpJson(image) : FormatDumpText(image)) << std::flush;
  return out ? kExitOk : Fail(err, kExitFailure, "cannot write output");
}

int Restore(const std::string& dir, const std::string& file, bool force, bool json_output, std::ostream& out,
            std::ostream& err) {
  // An existing pool is locked first, so that a pool in use is refused
  // whatever FILE holds.
  std::unique_ptr<PoolDirLock> lock;
  if (IsDirectory(dir)) {
    int code = LockPool(dir, &lock, err);
    if (code != kExitOk) return code;
  }
  std::string text;
  if (file == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  } else {
    std::ifstream in(file, std::ios::binary);
    if (!in) return Fail(err, kExitUsage, "cannot read " + file + ": " + std::strerror(errno));
    text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  json dump = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (dump.is_discarded()) return Fail(err, kExitUsage, file + " is not JSON");
  Image image;
  Status s = ImageFromJson(dump, &image);
  if (!s.ok()) return Fail(err, kExitUsage, file + " is not a valid thinsim dump: " + s.message());

  metadata::CheckResult r = metadata::CheckImage(image, LoadReport());
  if (r.fatal() && !force) {
    err << "thinsim: " << file << " describes damaged metadata:\n";
    PrintDamage(r, "  ", err);
    return Fail(err, kExitFailure, "refusing to restore it (--force restores it anyway)");
  }
  if (lock == nullptr) {
    if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
      return Fail(err, kExitFailure, "cannot create " + dir + ": " + std::strerror(errno));
    }
    int code = LockPool(dir, &lock, err);
    if (code != kExitOk) return code;
  }
  bool created = false;
  uint64_t generation = 0;
  s = EnsureDataFile(dir, image, &created);
  if (s.ok()) s = WriteImage(dir, image, image.commit_seq, &generation);
  if (!s.ok()) return Fail(err, kExitFailure, "restore into " + dir + " failed: " + s.message());
  if (!r.clean()) {
    err << "thinsim: warning: the restored metadata is damaged; the pool "
        << (r.fatal() ? "will not be served" : "is served read-only") << " until `thinsim repair " << dir << "`:\n";
    PrintDamage(r, "  ", err);
  }
  if (json_output) {
    out << Compact({{"dir", dir}, {"volumes", image.volumes.size()}, {"generation", generation},
                    {"clean", r.clean()}, {"damage", DamageJson(r)}})
        << "\n";
  } else {
    out << "restored " << image.volumes.size() << " volumes into " << dir << " (metadata generation " << generation
        << (created ? ", new empty data file" : "") << ")\n";
  }
  out << std::flush;
  return kExitOk;
}

}  // namespace thinsim::offline
