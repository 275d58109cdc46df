// Dirty bitmaps in thinsim dump and restore (docs/format.md, "Dump format").
#include <ostream>
#include <set>

#include "base/sizes.h"
#include "tools/dump_fields.h"
#include "tools/offline_internal.h"

namespace thinsim::offline::internal {

namespace {

using Granules = boost::icl::interval<uint64_t>;

uint64_t DirtyGranules(const metadata::BitmapImage& b) {
  uint64_t n = 0;
  for (const auto& r : b.dirty) n += boost::icl::length(r);
  return n;
}

Status ReadOneBitmap(const json& entry, const std::string& where, uint64_t size, VolumeImage* v) {
  Fields f(entry, where);
  uint64_t id = f.U64("id");
  std::string name = f.String("name");
  uint64_t granularity = f.U64("granularity", UINT32_MAX);
  bool recording = f.Bool("recording");
  bool inconsistent = f.Bool("inconsistent");
  const json& dirty = f.Array("dirty");
  THINSIM_RETURN_IF_ERROR(f.status());
  if (id == 0 || name.empty()) return Status::Invalid(where + " has id 0 or an empty name");
  for (const auto& [other_id, other] : v->bitmaps) {
    if (other.name == name) return Status::Invalid(where + ": two bitmaps named " + name);
  }
  if (Status s = ValidateBitmapGranularity(granularity); !s.ok()) return Status::Invalid(where + ": " + s.message());
  metadata::BitmapImage b;
  b.name = name;
  b.granularity = static_cast<uint32_t>(granularity);
  b.flags = (recording ? metadata::BitmapRecord::kRecording : 0) |
            (inconsistent ? metadata::BitmapRecord::kInconsistent : 0);
  const uint64_t granules = GranuleCount(size, granularity);
  for (size_t n = 0; n < dirty.size(); ++n) {
    Fields run(dirty[n], where + ", dirty run #" + std::to_string(n));
    uint64_t first = run.U64("first");
    uint64_t count = run.U64("count");
    THINSIM_RETURN_IF_ERROR(run.status());
    if (count == 0 || first >= granules || count > granules - first) {
      return Status::Invalid(where + ", dirty run #" + std::to_string(n) + " needs count >= 1 and granules below " +
                             std::to_string(granules));
    }
    b.dirty += Granules::right_open(first, first + count);
  }
  if (!v->bitmaps.emplace(id, std::move(b)).second) return Status::Invalid(where + ": id " + std::to_string(id) + " is listed twice");
  return Status::OK();
}

}  // namespace

ordered_json BitmapsJson(const VolumeImage& v) {
  ordered_json list = ordered_json::array();
  for (const auto& [id, b] : v.bitmaps) {
    ordered_json dirty = ordered_json::array();
    for (const auto& r : b.dirty) dirty.push_back({{"first", boost::icl::first(r)}, {"count", boost::icl::length(r)}});
    list.push_back({{"id", id},
                    {"name", b.name},
                    {"granularity", b.granularity},
                    {"recording", (b.flags & metadata::BitmapRecord::kRecording) != 0},
                    {"inconsistent", (b.flags & metadata::BitmapRecord::kInconsistent) != 0},
                    {"dirty", std::move(dirty)}});
  }
  return list;
}

Status ReadBitmaps(const json& volume, const std::string& where, VolumeImage* v) {
  auto it = volume.find("bitmaps");
  if (it == volume.end()) return Status::OK();  // a dump from before bitmaps
  if (!it->is_array()) return Status::Invalid(where + " \"bitmaps\" must be a list");
  for (size_t n = 0; n < it->size(); ++n) {
    THINSIM_RETURN_IF_ERROR(ReadOneBitmap((*it)[n], where + ", bitmap #" + std::to_string(n), v->attrs.size, v));
  }
  return Status::OK();
}

void AppendBitmapsText(const VolumeImage& v, std::ostream& out) {
  for (const auto& [id, b] : v.bitmaps) {
    uint64_t granules = DirtyGranules(b);
    out << "  bitmap '" << b.name << "' (id " << id << "): granularity " << FormatSize(b.granularity) << ", "
        << ((b.flags & metadata::BitmapRecord::kRecording) ? "recording" : "disabled")
        << ((b.flags & metadata::BitmapRecord::kInconsistent) ? ", INCONSISTENT" : "") << ", " << granules
        << " dirty granules (" << FormatSize(granules * b.granularity) << ")\n";
  }
}

void DistrustBitmaps(Image* image, std::vector<std::string>* fixed) {
  for (auto& [id, v] : image->volumes) {
    for (auto& [bitmap_id, b] : v.bitmaps) {
      b.dirty.clear();
      uint64_t granules = GranuleCount(v.attrs.size, b.granularity);
      if (granules != 0) b.dirty += Granules::right_open(0, granules);
      b.flags |= metadata::BitmapRecord::kInconsistent;
      fixed->push_back("bitmap '" + b.name + "' of volume '" + v.attrs.name +
                       "': marked all dirty and inconsistent (the damage may have cost it marks)");
    }
  }
}

}  // namespace thinsim::offline::internal
