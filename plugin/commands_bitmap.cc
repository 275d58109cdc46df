// Dirty bitmap commands (SPEC section 12): bitmap-add, bitmap-remove,
// bitmap-clear, bitmap-enable, bitmap-disable, bitmap-merge, bitmap-cut,
// query-bitmaps, bitmap-extents. They act on the pool's BitmapRegistry
// (bitmap/bitmap_registry.h). `persistent: true` keeps a bitmap in a
// pool=DIR pool's metadata (VolumeBitmaps logs it); an in-memory pool
// refuses it.
#include <string>
#include <vector>

#include "bitmap/bitmap_registry.h"
#include "plugin/command_args.h"
#include "plugin/command_table.h"

namespace thinsim {

using nlohmann::json;

namespace {

Status NeedBitmaps(const CommandCall& c) {
  if (c.bitmaps == nullptr) return Status::Unsupported("this server keeps no dirty bitmaps");
  return Status::OK();
}

// The bitmaps of `volume`, which must have bitmap `name`: NotFound naming
// both when it has no bitmaps at all (VolumeBitmaps names them otherwise).
Status SetWith(const CommandCall& c, const std::string& volume, const std::string& name,
               std::shared_ptr<VolumeBitmaps>* set) {
  THINSIM_RETURN_IF_ERROR(c.bitmaps->Get(volume, /*create=*/false, set));
  if (*set == nullptr) return Status::NotFound("no bitmap '" + name + "' on volume '" + volume + "'");
  return Status::OK();
}

// The {volume, name} of most bitmap commands, and the volume's bitmaps.
Status VolumeAndName(const CommandCall& c, std::string* volume, std::string* name,
                     std::shared_ptr<VolumeBitmaps>* set) {
  THINSIM_RETURN_IF_ERROR(NeedBitmaps(c));
  CommandArgs a(c.args, {"volume", "name"});
  THINSIM_RETURN_IF_ERROR(a.status());
  THINSIM_RETURN_IF_ERROR(a.String("volume", volume));
  THINSIM_RETURN_IF_ERROR(a.String("name", name));
  return SetWith(c, *volume, *name, set);
}

json BitmapJson(const std::string& volume, const BitmapInfo& b) {
  return {{"volume", volume},          {"name", b.name},       {"granularity", b.granularity},
          {"count", b.dirty_bytes},    {"recording", b.enabled}, {"busy", b.busy},
          {"persistent", b.persistent}, {"inconsistent", b.inconsistent}};
}

Status BitmapAdd(const CommandCall& c) {
  THINSIM_RETURN_IF_ERROR(NeedBitmaps(c));
  BitmapAddArgs a;
  THINSIM_RETURN_IF_ERROR(ParseBitmapAdd(c, c.args, &a));
  std::shared_ptr<VolumeBitmaps> set;
  THINSIM_RETURN_IF_ERROR(c.bitmaps->Get(a.volume, /*create=*/true, &set));
  Status s = set->Add(a.name, a.granularity, a.persistent, a.disabled);
  if (!s.ok()) {
    c.bitmaps->ReleaseIfEmpty(a.volume);
    return s;
  }
  BitmapInfo info;
  THINSIM_RETURN_IF_ERROR(set->Query(a.name, &info));
  *c.result = BitmapJson(a.volume, info);
  return Status::OK();
}

Status BitmapRemove(const CommandCall& c) {
  std::string volume, name;
  std::shared_ptr<VolumeBitmaps> set;
  THINSIM_RETURN_IF_ERROR(VolumeAndName(c, &volume, &name, &set));
  THINSIM_RETURN_IF_ERROR(set->Remove(name));
  c.bitmaps->ReleaseIfEmpty(volume);
  return EmptyReturn(c);
}

// bitmap-clear, -enable, -disable: one call on the named bitmap.
template <Status (VolumeBitmaps::*kVerb)(std::string_view)>
Status OnOne(const CommandCall& c) {
  std::string volume, name;
  std::shared_ptr<VolumeBitmaps> set;
  THINSIM_RETURN_IF_ERROR(VolumeAndName(c, &volume, &name, &set));
  THINSIM_RETURN_IF_ERROR(((*set).*kVerb)(name));
  return EmptyReturn(c);
}

Status BitmapMerge(const CommandCall& c) {
  THINSIM_RETURN_IF_ERROR(NeedBitmaps(c));
  CommandArgs a(c.args, {"volume", "target", "sources"});
  THINSIM_RETURN_IF_ERROR(a.status());
  std::string volume, target;
  THINSIM_RETURN_IF_ERROR(a.String("volume", &volume));
  THINSIM_RETURN_IF_ERROR(a.String("target", &target));
  if (!a.Has("sources")) return Status::Invalid("missing argument 'sources'");
  const json& list = a.Get("sources");
  std::vector<std::string> sources;
  if (!list.is_array() || list.empty()) return Status::Invalid("argument 'sources' must be a non-empty list of names");
  for (const json& s : list) {
    if (!s.is_string()) return Status::Invalid("argument 'sources' must be a non-empty list of names");
    sources.push_back(s.get<std::string>());
  }
  std::shared_ptr<VolumeBitmaps> set;
  THINSIM_RETURN_IF_ERROR(SetWith(c, volume, target, &set));
  THINSIM_RETURN_IF_ERROR(set->Merge(sources, target));
  return EmptyReturn(c);
}

Status BitmapCut(const CommandCall& c) {
  THINSIM_RETURN_IF_ERROR(NeedBitmaps(c));
  BitmapCutArgs a;
  THINSIM_RETURN_IF_ERROR(ParseBitmapCut(c.args, &a));
  const std::string &volume = a.volume, &name = a.name, &into = a.into;
  std::shared_ptr<VolumeBitmaps> set;
  THINSIM_RETURN_IF_ERROR(SetWith(c, volume, name, &set));
  THINSIM_RETURN_IF_ERROR(set->Cut(name, into));
  BitmapInfo info;
  THINSIM_RETURN_IF_ERROR(set->Query(into, &info));
  *c.result = BitmapJson(volume, info);
  return Status::OK();
}

Status QueryBitmaps(const CommandCall& c) {
  THINSIM_RETURN_IF_ERROR(NeedBitmaps(c));
  CommandArgs a(c.args, {"volume"});
  THINSIM_RETURN_IF_ERROR(a.status());
  std::string volume;
  THINSIM_RETURN_IF_ERROR(a.String("volume", &volume, false));
  *c.result = json::array();
  if (!volume.empty()) {
    std::shared_ptr<VolumeBitmaps> set;
    THINSIM_RETURN_IF_ERROR(c.bitmaps->Get(volume, /*create=*/false, &set));
    if (set == nullptr) return Status::OK();  // a volume without bitmaps: an empty list
    for (const BitmapInfo& b : set->Query()) c.result->push_back(BitmapJson(volume, b));
    return Status::OK();
  }
  for (const auto& [name, set] : c.bitmaps->All()) {
    for (const BitmapInfo& b : set->Query()) c.result->push_back(BitmapJson(name, b));
  }
  return Status::OK();
}

Status BitmapExtents(const CommandCall& c) {
  THINSIM_RETURN_IF_ERROR(NeedBitmaps(c));
  CommandArgs a(c.args, {"volume", "name", "offset", "length"});
  THINSIM_RETURN_IF_ERROR(a.status());
  std::string volume, name;
  uint64_t offset = 0, length = UINT64_MAX;
  THINSIM_RETURN_IF_ERROR(a.String("volume", &volume));
  THINSIM_RETURN_IF_ERROR(a.String("name", &name));
  THINSIM_RETURN_IF_ERROR(a.Size("offset", &offset, false));
  THINSIM_RETURN_IF_ERROR(a.Size("length", &length, false));
  std::shared_ptr<VolumeBitmaps> set;
  THINSIM_RETURN_IF_ERROR(SetWith(c, volume, name, &set));
  const uint64_t size = set->size();
  if (offset > size) return Status::Invalid("offset " + std::to_string(offset) + " is past the end of the volume");
  length = std::min(length, size - offset);
  std::vector<DirtyBitmap::Extent> extents;
  THINSIM_RETURN_IF_ERROR(set->Extents(name, offset, length, &extents));
  *c.result = json::array();
  for (const auto& e : extents) c.result->push_back({{"offset", e.offset}, {"length", e.length}, {"dirty", e.dirty}});
  return Status::OK();
}

}  // namespace

Status ParseBitmapAdd(const CommandCall& c, const json& args, BitmapAddArgs* out) {
  CommandArgs a(args, {"volume", "name", "granularity", "persistent", "disabled"});
  THINSIM_RETURN_IF_ERROR(a.status());
  out->granularity = c.pool->QueryPool().block_size;  // SPEC: default block-size
  THINSIM_RETURN_IF_ERROR(a.String("volume", &out->volume));
  THINSIM_RETURN_IF_ERROR(a.String("name", &out->name));
  THINSIM_RETURN_IF_ERROR(a.Size("granularity", &out->granularity, false));
  THINSIM_RETURN_IF_ERROR(a.Bool("persistent", &out->persistent));
  THINSIM_RETURN_IF_ERROR(a.Bool("disabled", &out->disabled));
  if (out->persistent && !c.pool->persistent()) {
    return Status::Unsupported("persistent bitmaps need a pool=DIR pool; this one is in memory");
  }
  return Status::OK();
}

Status ParseBitmapCut(const json& args, BitmapCutArgs* out) {
  CommandArgs a(args, {"volume", "name", "into"});
  THINSIM_RETURN_IF_ERROR(a.status());
  THINSIM_RETURN_IF_ERROR(a.String("volume", &out->volume));
  THINSIM_RETURN_IF_ERROR(a.String("name", &out->name));
  return a.String("into", &out->into);
}

void RegisterBitmapCommands(CommandTable* table) {
  using Effect = CommandTable::Effect;
  // In-memory bitmaps change no pool metadata: nothing to commit after them.
  table->Add("bitmap-add", BitmapAdd, Effect::kReadOnly);
  table->Add("bitmap-remove", BitmapRemove, Effect::kReadOnly);
  table->Add("bitmap-clear", OnOne<&VolumeBitmaps::Clear>, Effect::kReadOnly);
  table->Add("bitmap-enable", OnOne<&VolumeBitmaps::Enable>, Effect::kReadOnly);
  table->Add("bitmap-disable", OnOne<&VolumeBitmaps::Disable>, Effect::kReadOnly);
  table->Add("bitmap-merge", BitmapMerge, Effect::kReadOnly);
  table->Add("bitmap-cut", BitmapCut, Effect::kReadOnly);
  table->Add("query-bitmaps", QueryBitmaps, Effect::kReadOnly);
  table->Add("bitmap-extents", BitmapExtents, Effect::kReadOnly);
}

}  // namespace thinsim
