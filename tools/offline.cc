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

#include "metadata/check.h"
#include "metadata/journal.h"
#include "base/sizes.h"
#include "base/types.h"

namespace thinsim::offline {
namespace {

using metadata::ChunkImage;
using metadata::DataPath;
using metadata::Image;
using metadata::LoadReport;
using metadata::VolumeImage;
using metadata::kChunkEntries;
using nlohmann::json;
using nlohmann::ordered_json;

constexpr const char* kDumpFormat = "thinsim-metadata-dump";
constexpr uint64_t kDumpVersion = 1;


std::string Compact(const ordered_json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

int Fail(std::ostream& err, int code, const std::string& message) {
  err << "thinsim: " << message << "\n";
  return code;
}

// Calls fn(entry, dblock, provisioned) for each mapped entry of a chunk, in
// order. A malformed chunk (fewer dblocks than mapped bits) stops early.
template <typename Fn>
void ForEachEntry(const ChunkImage& c, Fn fn) {
  size_t rank = 0;
  for (uint64_t m = c.mapped; m != 0 && rank < c.dblocks.size(); m &= m - 1, ++rank) {
    uint32_t i = static_cast<uint32_t>(std::countr_zero(m));
    fn(i, c.dblocks[rank], ((c.provisioned >> i) & 1) != 0);
  }
}

// The dblock entry `i` of a chunk maps, or false when it is unmapped.
bool EntryOf(const ChunkImage* c, uint32_t i, uint32_t* dblock) {
  if (c == nullptr || ((c->mapped >> i) & 1) == 0) return false;
  size_t rank = static_cast<size_t>(std::popcount(c->mapped & ((uint64_t{1} << i) - 1)));
  if (rank >= c->dblocks.size()) return false;
  *dblock = c->dblocks[rank];
  return true;
}

// A stored enum as its name, or as a number when it has none.
ordered_json ModeJson(uint8_t mode) {
  if (mode > static_cast<uint8_t>(PoolMode::kFail)) return mode;
  return std::string(PoolModeName(static_cast<PoolMode>(mode)));
}
ordered_json StrategyJson(uint8_t strategy) {
  if (strategy > static_cast<uint8_t>(Strategy::kFull)) return strategy;
  return std::string(StrategyName(static_cast<Strategy>(strategy)));
}
std::string Text(const ordered_json& name_or_number) {
  return name_or_number.is_string() ? name_or_number.get<std::string>() : Compact(name_or_number);
}

// "5" or "5..9".
std::string Span(uint64_t first, uint64_t count) {
  return count == 1 ? std::to_string(first) : std::to_string(first) + ".." + std::to_string(first + count - 1);
}

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

// Reads typed fields of one JSON object. The first problem is kept, naming
// `where`; later reads return zero values.
class Fields {
 public:
  Fields(const json& object, std::string where) : object_(object), where_(std::move(where)) {
    if (!object_.is_object()) Error("is not an object");
  }
  const Status& status() const { return status_; }

  const json* Get(const char* key) {
    if (!status_.ok()) return nullptr;
    auto it = object_.find(key);
    if (it == object_.end()) {
      Error(std::string("has no \"") + key + "\"");
      return nullptr;
    }
    return &*it;
  }
  uint64_t U64(const char* key, uint64_t max = UINT64_MAX) {
    const json* v = Get(key);
    if (v == nullptr) return 0;
    if (!v->is_number_unsigned() || v->get<uint64_t>() > max) {
      Error(std::string("\"") + key + "\" must be an integer 0.." + std::to_string(max));
      return 0;
    }
    return v->get<uint64_t>();
  }
  bool Bool(const char* key) {
    const json* v = Get(key);
    if (v == nullptr) return false;
    if (!v->is_boolean()) {
      Error(std::string("\"") + key + "\" must be true or false");
      return false;
    }
    return v->get<bool>();
  }
  std::string String(const char* key) {
    const json* v = Get(key);
    if (v == nullptr) return {};
    if (!v->is_string()) {
      Error(std::string("\"") + key + "\" must be a string");
      return {};
    }
    return v->get<std::string>();
  }
  const json& Array(const char* key) {
    static const json kEmpty = json::array();
    const json* v = Get(key);
    if (v == nullptr) return kEmpty;
    if (!v->is_array()) {
      Error(std::string("\"") + key + "\" must be a list");
      return kEmpty;
    }
    return *v;
  }
  // A name from `names` (index = value), or a number 0..255.
  uint8_t Enum(const char* key, const std::vector<std::string_view>& names) {
    const json* v = Get(key);
    if (v == nullptr) return 0;
    if (v->is_string()) {
      for (size_t i = 0; i < names.size(); ++i) {
        if (v->get<std::string>() == names[i]) return static_cast<uint8_t>(i);
      }
    } else if (v->is_number_unsigned() && v->get<uint64_t>() <= 255) {
      return static_cast<uint8_t>(v->get<uint64_t>());
    }
    Error(std::string("\"") + key + "\" has an unknown value " + v->dump());
    return 0;
  }
  void Error(const std::string& what) {
    if (status_.ok()) status_ = Status::Invalid(where_ + " " + what);
  }

 private:
  const json& object_;
  std::string where_;
  Status status_;
};

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

// ---- Pool directories -------------------------------------------------------

bool IsDirectory(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// True when DIR has any of a pool's files (so that a tool run on some
// other directory does not leave a lock file in it).
bool LooksLikePool(const std::string& dir) {
  return !IsDirectory(dir) || metadata::InspectPoolDir(dir).any();
}

int NotAPool(const std::string& dir, std::ostream& err) {
  return Fail(err, kExitUsage, dir + " is not a thinsim pool (it has no metadata file)");
}

// Takes DIR's lock for an offline command; returns kExitOk or the exit
// status after printing why not.
int LockPool(const std::string& dir, std::unique_ptr<PoolDirLock>* lock, std::ostream& err) {
  if (!IsDirectory(dir)) return Fail(err, kExitUsage, "pool directory " + dir + " does not exist");
  Status s = PoolDirLock::Acquire(dir, /*create_dir=*/false, lock);
  if (s.ok()) return kExitOk;
  return Fail(err, s.code() == ErrorCode::kBusy ? kExitFailure : kExitUsage, s.message());
}

// Locks DIR and loads its metadata. Returns kExitOk, or the exit status
// after printing why nothing could be read. *loaded is Load's status: not
// OK (with report->fatal saying why) when the metadata is too damaged to
// replay.
int LockAndLoad(const std::string& dir, std::unique_ptr<PoolDirLock>* lock, Image* image, LoadReport* report,
                Status* loaded, std::ostream& err) {
  if (!LooksLikePool(dir)) return NotAPool(dir, err);
  int code = LockPool(dir, lock, err);
  if (code != kExitOk) return code;
  if (metadata::PoolDirState st = metadata::InspectPoolDir(dir); !st.has_superblock && st.has_checkpoint) {
    // A pool whose superblock is gone: damage, for repair to salvage.
    *loaded = Status::Corruption("the superblock " + dir + "/metadata is missing");
    report->fatal.push_back(loaded->message());
    return kExitOk;
  }
  if (!metadata::Journal::Exists(dir)) return NotAPool(dir, err);
  *loaded = metadata::Journal::Load(dir, image, report);
  if (!loaded->ok() && report->fatal.empty()) {
    return Fail(err, kExitUsage, "cannot read the metadata of " + dir + ": " + loaded->message());
  }
  return kExitOk;
}

// Damage outside the metadata: the data file must hold every block.
void CheckDataFile(const std::string& dir, const Image& image, metadata::CheckResult* r) {
  struct stat st;
  uint64_t want = image.nr_blocks * image.block_size;
  if (stat(DataPath(dir).c_str(), &st) != 0) {
    r->damage.push_back({true, DataPath(dir) + " is missing: the mappings point at data that is not there"});
  } else if (static_cast<uint64_t>(st.st_size) < want) {
    r->damage.push_back({false, DataPath(dir) + " is " + std::to_string(st.st_size) + " bytes, shorter than the pool's " +
                                    std::to_string(want) + ": blocks past its end read as zero"});
  }
}

// Every check of a loaded pool: the metadata's and the data file's.
metadata::CheckResult CheckLoaded(const std::string& dir, const Image& image, const LoadReport& report,
                                  const Status& loaded) {
  metadata::CheckResult r;
  if (!loaded.ok()) {
    // Nothing was replayed: only the reason means anything.
    for (const std::string& f : report.fatal) r.damage.push_back({true, f});
    r.notes = report.warnings;
    return r;
  }
  r = metadata::CheckImage(image, report);
  CheckDataFile(dir, image, &r);
  return r;
}

// Makes DIR/data at least the pool's size (sparse). *created says whether
// it was missing.
Status EnsureDataFile(const std::string& dir, const Image& image, bool* created) {
  struct stat st;
  *created = stat(DataPath(dir).c_str(), &st) != 0;
  int fd = open(DataPath(dir).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return Status::IOError("cannot open " + DataPath(dir) + ": " + std::strerror(errno));
  uint64_t want = image.nr_blocks * image.block_size;
  Status s;
  if (fstat(fd, &st) != 0) {
    s = Status::IOError("cannot stat " + DataPath(dir) + ": " + std::strerror(errno));
  } else if (static_cast<uint64_t>(st.st_size) < want && ftruncate(fd, static_cast<off_t>(want)) != 0) {
    s = Status::IOError("cannot extend " + DataPath(dir) + ": " + std::strerror(errno));
  } else if (fsync(fd) != 0) {
    s = Status::IOError("cannot sync " + DataPath(dir) + ": " + std::strerror(errno));
  }
  close(fd);
  return s;
}

// Writes `image` as DIR's metadata, a new generation.
Status WriteImage(const std::string& dir, const Image& image, uint64_t commit_seq, uint64_t* generation) {
  std::string checkpoint;
  image.Encode(&checkpoint);
  return metadata::Journal::Rewrite(dir, checkpoint, commit_seq, generation);
}

ordered_json DamageJson(const metadata::CheckResult& r) {
  ordered_json damage = ordered_json::array();
  for (const metadata::Damage& d : r.damage) damage.push_back({{"fatal", d.fatal}, {"what", d.what}});
  return damage;
}

void PrintDamage(const metadata::CheckResult& r, const std::string& indent, std::ostream& out) {
  for (const metadata::Damage& d : r.damage) out << indent << (d.fatal ? "fatal: " : "non-fatal: ") << d.what << "\n";
  for (const std::string& n : r.notes) out << indent << "note: " << n << "\n";
}

uint64_t CountMapped(const VolumeImage& v) {
  uint64_t n = 0;
  for (const auto& [index, c] : v.chunks) n += static_cast<uint64_t>(std::popcount(c->mapped));
  return n;
}

uint64_t CountProvisioned(const VolumeImage& v) {
  uint64_t n = 0;
  for (const auto& [index, c] : v.chunks) n += static_cast<uint64_t>(std::popcount(c->provisioned & c->mapped));
  return n;
}

const VolumeImage* FindVolume(const Image& image, const std::string& name) {
  for (const auto& [id, v] : image.volumes) {
    if (v.attrs.name == name) return &v;
  }
  return nullptr;
}

std::string VolumeLine(const Image& image, const VolumeImage& v) {
  const metadata::VolumeRecord& a = v.attrs;
  std::ostringstream s;
  s << "volume '" << a.name << "' (id " << a.id << "): size " << a.size << " (" << FormatSize(a.size)
    << "), strategy " << Text(StrategyJson(a.strategy)) << ", " << (a.read_only ? "read-only" : "read-write");
  if (a.origin_id == 0) {
    s << ", no origin";
  } else {
    auto origin = image.volumes.find(a.origin_id);
    s << ", snapshot of ";
    if (origin == image.volumes.end()) {
      s << "id " << a.origin_id << " (missing)";
    } else {
      s << "'" << origin->second.attrs.name << "' (id " << a.origin_id << ")";
    }
  }
  s << ", family " << a.family << (a.pinned ? ", pinned" : "") << "\n";
  s << "  " << CountMapped(v) << " vblocks mapped, " << CountProvisioned(v) << " provisioned\n";
  return s.str();
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

std::vector<DeltaRange> ComputeDelta(const Image& image, const VolumeImage& left, const VolumeImage& right) {
  std::vector<DeltaRange> ranges;
  auto note = [&](DeltaType type, uint64_t vb) {
    if (!ranges.empty() && ranges.back().type == type && ranges.back().vblock + ranges.back().nr_vblocks == vb) {
      ++ranges.back().nr_vblocks;
    } else {
      ranges.push_back({type, vb, 1, 0, 0});
    }
  };
  std::set<uint64_t> indices;
  for (const auto& [index, c] : left.chunks) indices.insert(index);
  for (const auto& [index, c] : right.chunks) indices.insert(index);
  for (uint64_t index : indices) {
    auto l = left.chunks.find(index);
    auto r = right.chunks.find(index);
    const ChunkImage* lc = l == left.chunks.end() ? nullptr : l->second.get();
    const ChunkImage* rc = r == right.chunks.end() ? nullptr : r->second.get();
    for (uint32_t i = 0; i < kChunkEntries; ++i) {
      uint32_t lb = 0, rb = 0;
      bool lm = EntryOf(lc, i, &lb);
      bool rm = EntryOf(rc, i, &rb);
      uint64_t vb = index * kChunkEntries + i;
      if (lm && rm) {
        note(lb == rb ? DeltaType::kSame : DeltaType::kDifferent, vb);
      } else if (lm) {
        note(DeltaType::kLeftOnly, vb);
      } else if (rm) {
        note(DeltaType::kRightOnly, vb);
      }
    }
  }
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

// ---- Commands -----------------------------------------------------------------

int Check(const std::string& dir, bool json_output, std::ostream& out, std::ostream& err) {
  std::unique_ptr<PoolDirLock> lock;
  Image image;
  LoadReport report;
  Status loaded;
  int code = LockAndLoad(dir, &lock, &image, &report, &loaded, err);
  if (code != kExitOk) return code;
  metadata::CheckResult r = CheckLoaded(dir, image, report, loaded);
  if (json_output) {
    ordered_json j = {{"dir", dir},
                      {"clean", r.clean()},
                      {"fatal", r.fatal()},
                      {"damage", DamageJson(r)},
                      {"notes", r.notes},
                      {"generation", report.generation},
                      {"transactions", report.transactions},
                      {"volumes", image.volumes.size()}};
    out << Compact(j) << "\n";
  } else if (r.clean()) {
    out << dir << ": clean (generation " << report.generation << ", " << report.transactions
        << " transactions in the log, " << image.volumes.size() << " volumes, " << image.refcounts.size()
        << " data blocks in use)\n";
    PrintDamage(r, "  ", out);
  } else {
    size_t fatal = std::count_if(r.damage.begin(), r.damage.end(), [](const metadata::Damage& d) { return d.fatal; });
    out << dir << ": damaged (" << r.damage.size() << " problems, " << fatal << " fatal)\n";
    PrintDamage(r, "  ", out);
    out << (r.fatal() ? "  the pool will not be served until it is repaired"
                      : "  the pool is served read-only until it is repaired")
        << "; run `thinsim repair " << dir << "`\n";
  }
  out << std::flush;
  return r.clean() ? kExitOk : kExitFailure;
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

namespace {

// What a repair starts from: the loaded (or salvaged) image, the damage
// found, and what loading could not read.
struct RepairInput {
  Image image;
  metadata::CheckResult found;
  std::vector<std::string> lost;
};

// Loads DIR for repair; if the superblock or the checkpoint it names is
// unreadable, salvages. Returns kExitOk, or the exit status after printing
// why there is nothing to repair from.
int LoadForRepair(const std::string& dir, RepairInput* in, std::ostream& err) {
  LoadReport report;
  Status loaded = metadata::Journal::Exists(dir) ? metadata::Journal::Load(dir, &in->image, &report)
                                                 : Status::NotFound("the superblock is missing");
  in->found = CheckLoaded(dir, in->image, report, loaded);
  if (loaded.ok()) {
    for (const std::string& f : report.fatal) in->lost.push_back("could not read: " + f);
    if (report.commit_seq > in->image.commit_seq) {
      in->lost.push_back("commits " + std::to_string(in->image.commit_seq + 1) + ".." +
                         std::to_string(report.commit_seq) +
                         " could not be replayed: their changes are lost (the blocks they wrote are free again)");
    }
    return kExitOk;
  }
  LoadReport salvage;
  in->image = Image();
  Status s = metadata::Journal::Salvage(dir, &in->image, &salvage);
  if (!s.ok() && !metadata::InspectPoolDir(dir).has_superblock && !metadata::InspectPoolDir(dir).has_checkpoint) return NotAPool(dir, err);
  if (!s.ok()) {
    return Fail(err, kExitFailure, "cannot repair " + dir + ": " + loaded.message() +
                                       "; no checkpoint can be read, so no metadata can be saved "
                                       "(`thinsim restore` a dump instead)");
  }
  if (!metadata::Journal::Exists(dir)) in->found.damage.push_back({true, loaded.message()});
  for (const std::string& f : salvage.fatal) {
    in->found.damage.push_back({true, f});
    in->lost.push_back("could not read: " + f);
  }
  for (const std::string& w : salvage.warnings) in->found.notes.push_back(w);
  return kExitOk;
}

void PrintRepair(const std::string& dir, const RepairInput& in, const std::vector<std::string>& fixed,
                 uint64_t generation, const metadata::CheckResult& after, bool json_output, std::ostream& out) {
  if (json_output) {
    out << Compact({{"dir", dir},
                    {"repaired", true},
                    {"found", DamageJson(in.found)},
                    {"fixed", fixed},
                    {"lost", in.lost},
                    {"generation", generation},
                    {"clean", after.clean()},
                    {"damage", DamageJson(after)}})
        << "\n";
    return;
  }
  out << dir << ": found " << in.found.damage.size() << " problems\n";
  PrintDamage(in.found, "  ", out);
  for (const std::string& f : fixed) out << "  fixed: " << f << "\n";
  for (const std::string& l : in.lost) out << "  lost: " << l << "\n";
  out << "wrote metadata generation " << generation << "; " << dir
      << (after.clean() ? " is clean now\n" : " is still damaged:\n");
  PrintDamage(after, "  ", out);
}

}  // namespace

int Repair(const std::string& dir, bool json_output, std::ostream& out, std::ostream& err) {
  if (!LooksLikePool(dir)) return NotAPool(dir, err);
  std::unique_ptr<PoolDirLock> lock;
  int code = LockPool(dir, &lock, err);
  if (code != kExitOk) return code;
  RepairInput in;
  code = LoadForRepair(dir, &in, err);
  if (code != kExitOk) return code;
  if (in.found.clean()) {
    if (json_output) {
      out << Compact({{"dir", dir}, {"repaired", false}, {"clean", true}, {"notes", in.found.notes}}) << "\n";
    } else {
      out << dir << ": clean, nothing to repair\n";
      PrintDamage(in.found, "  ", out);
    }
    return kExitOk;
  }

  std::vector<std::string> fixed;
  metadata::RepairImage(&in.image, &fixed, &in.lost);
  bool created = false;
  uint64_t generation = 0;
  Status s = EnsureDataFile(dir, in.image, &created);
  if (created) in.lost.push_back(DataPath(dir) + " was missing: created an empty one, so every mapped block reads zero");
  if (s.ok()) s = WriteImage(dir, in.image, in.image.commit_seq + 1, &generation);
  if (!s.ok()) return Fail(err, kExitFailure, "repair of " + dir + " failed: " + s.message());

  Image after_image;
  LoadReport after_report;
  Status reloaded = metadata::Journal::Load(dir, &after_image, &after_report);
  metadata::CheckResult after = CheckLoaded(dir, after_image, after_report, reloaded);
  PrintRepair(dir, in, fixed, generation, after, json_output, out);
  out << std::flush;
  return after.clean() ? kExitOk : kExitFailure;
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

int RunOffline(const OfflineCommand& c, std::ostream& out, std::ostream& err) {
  try {
    if (c.command == "check") return Check(c.dir, c.json, out, err);
    if (c.command == "dump") return Dump(c.dir, c.json, out, err);
    if (c.command == "repair") return Repair(c.dir, c.json, out, err);
    if (c.command == "restore" && c.args.size() == 1) return Restore(c.dir, c.args[0], c.force, c.json, out, err);
    if (c.command == "delta" && c.args.size() == 2) return Delta(c.dir, c.args[0], c.args[1], c.json, out, err);
    return Fail(err, kExitUsage, "bad offline command '" + c.command + "'");
  } catch (const std::exception& e) {
    return Fail(err, kExitFailure, e.what());
  }
}

}  // namespace thinsim::offline
