// Volume commands: query-volumes, volume-create, volume-delete,
// volume-resize, volume-set, volume-activate, volume-deactivate, provision,
// snapshot-create. Most answer with the volume as it is afterwards.
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bitmap/bitmap_registry.h"
#include "job/job_registry.h"
#include "metadata/delta.h"
#include "plugin/command_args.h"
#include "plugin/command_table.h"
#include "plugin/control_commands.h"

namespace thinsim {

using nlohmann::json;

namespace {

Status ParseStrategyArg(const std::string& name, Strategy* out) {
  if (!ParseStrategy(name, out)) {
    return Status::Invalid("unknown strategy '" + name + "' (use none, provision, volume or full)");
  }
  return Status::OK();
}

// The reply of a command that changed one volume: that volume, as it is now.
Status VolumeResult(const CommandCall& c, const std::string& name) {
  VolumeInfo info;
  Status s = c.pool->QueryVolume(name, &info);
  if (s.ok()) *c.result = ControlCommands::VolumeJson(info);
  return s;
}

// For the commands whose only argument is the volume's name.
Status NameOnly(const CommandCall& c, std::string* name) {
  CommandArgs a(c.args, {"name"});
  THINSIM_RETURN_IF_ERROR(a.status());
  return a.String("name", name);
}

Status QueryVolumes(const CommandCall& c) {
  CommandArgs a(c.args, {"name"});
  THINSIM_RETURN_IF_ERROR(a.status());
  std::string name;
  THINSIM_RETURN_IF_ERROR(a.String("name", &name, false));
  *c.result = json::array();
  if (!name.empty()) {
    VolumeInfo info;
    THINSIM_RETURN_IF_ERROR(c.pool->QueryVolume(name, &info));
    c.result->push_back(ControlCommands::VolumeJson(info));
  } else {
    for (const VolumeInfo& v : c.pool->QueryVolumes()) c.result->push_back(ControlCommands::VolumeJson(v));
  }
  return Status::OK();
}

Status VolumeCreate(const CommandCall& c) {
  CommandArgs a(c.args, {"name", "size", "reserve"});
  THINSIM_RETURN_IF_ERROR(a.status());
  std::string name, reserve;
  uint64_t size;
  THINSIM_RETURN_IF_ERROR(a.String("name", &name));
  THINSIM_RETURN_IF_ERROR(a.Size("size", &size));
  THINSIM_RETURN_IF_ERROR(a.String("reserve", &reserve, false));
  std::optional<Strategy> strategy;  // none given: the pool's default
  if (!reserve.empty()) {
    Strategy st;
    THINSIM_RETURN_IF_ERROR(ParseStrategyArg(reserve, &st));
    strategy = st;
  }
  THINSIM_RETURN_IF_ERROR(c.pool->CreateVolume(name, size, strategy));
  return VolumeResult(c, name);
}

// SPEC 13: a job's volumes cannot be deleted or resized while it runs.
Status RefuseIfAJobUses(const CommandCall& c, const std::string& name, const char* change) {
  if (c.jobs != nullptr && c.jobs->VolumeInUse(name)) {
    return Status::Busy("cannot " + std::string(change) + " volume '" + name + "': a job is using it");
  }
  return Status::OK();
}

Status VolumeDelete(const CommandCall& c) {
  std::string name;
  THINSIM_RETURN_IF_ERROR(NameOnly(c, &name));
  THINSIM_RETURN_IF_ERROR(RefuseIfAJobUses(c, name, "delete"));
  THINSIM_RETURN_IF_ERROR(c.pool->DeleteVolume(name));
  return EmptyReturn(c);
}

Status VolumeResize(const CommandCall& c) {
  CommandArgs a(c.args, {"name", "size"});
  THINSIM_RETURN_IF_ERROR(a.status());
  std::string name;
  uint64_t size;
  THINSIM_RETURN_IF_ERROR(a.String("name", &name));
  THINSIM_RETURN_IF_ERROR(a.Size("size", &size));
  VolumeInfo before;
  THINSIM_RETURN_IF_ERROR(c.pool->QueryVolume(name, &before));
  // Nor grown: a mirror's target must stay the source's size (QEMU's
  // iotest 041 refuses a resize while a mirror runs).
  if (size != before.size) THINSIM_RETURN_IF_ERROR(RefuseIfAJobUses(c, name, size < before.size ? "shrink" : "grow"));
  // Bits follow resizes (SPEC 12): the pool tells the volume's bitmaps
  // (RequestObserver::VolumeSize).
  THINSIM_RETURN_IF_ERROR(c.pool->ResizeVolume(name, size));
  return VolumeResult(c, name);
}

Status VolumeSet(const CommandCall& c) {
  CommandArgs a(c.args, {"name", "reserve"});
  THINSIM_RETURN_IF_ERROR(a.status());
  std::string name, reserve;
  THINSIM_RETURN_IF_ERROR(a.String("name", &name));
  THINSIM_RETURN_IF_ERROR(a.String("reserve", &reserve));
  Strategy strategy;
  THINSIM_RETURN_IF_ERROR(ParseStrategyArg(reserve, &strategy));
  THINSIM_RETURN_IF_ERROR(c.pool->SetStrategy(name, strategy));
  return VolumeResult(c, name);
}

// volume-activate and volume-deactivate differ only in the pool call.
template <Status (Pool::*kChange)(std::string_view)>
Status SetActive(const CommandCall& c) {
  std::string name;
  THINSIM_RETURN_IF_ERROR(NameOnly(c, &name));
  THINSIM_RETURN_IF_ERROR((c.pool->*kChange)(name));
  return VolumeResult(c, name);
}

Status Provision(const CommandCall& c) {
  CommandArgs a(c.args, {"name", "offset", "length"});
  THINSIM_RETURN_IF_ERROR(a.status());
  std::string name;
  uint64_t offset, length;
  THINSIM_RETURN_IF_ERROR(a.String("name", &name));
  THINSIM_RETURN_IF_ERROR(a.Size("offset", &offset));
  THINSIM_RETURN_IF_ERROR(a.Size("length", &length));
  THINSIM_RETURN_IF_ERROR(c.pool->Provision(name, offset, length));
  return VolumeResult(c, name);
}

// snapshot-create takes either one {origin, name} inline or a list of them
// in "snapshots" (taken at one point in time), never both.
Status SnapshotCreate(const CommandCall& c) {
  CommandArgs a(c.args, {"snapshots", "origin", "name", "read-only"});
  THINSIM_RETURN_IF_ERROR(a.status());
  bool read_only = false;
  THINSIM_RETURN_IF_ERROR(a.Bool("read-only", &read_only));
  std::vector<SnapshotRequest> requests;
  THINSIM_RETURN_IF_ERROR(SnapshotRequests(a, &requests));
  THINSIM_RETURN_IF_ERROR(c.pool->CreateSnapshots(requests, read_only));
  *c.result = json::array();
  for (const SnapshotRequest& r : requests) {
    VolumeInfo info;
    if (c.pool->QueryVolume(r.name, &info).ok()) c.result->push_back(ControlCommands::VolumeJson(info));
  }
  return Status::OK();
}

// `thinsim delta` on a running pool: the two volumes' mappings at one point
// in time, compared as the offline tool compares a stopped pool's.
Status QueryDelta(const CommandCall& c) {
  CommandArgs a(c.args, {"left", "right"});
  THINSIM_RETURN_IF_ERROR(a.status());
  std::string left, right;
  THINSIM_RETURN_IF_ERROR(a.String("left", &left));
  THINSIM_RETURN_IF_ERROR(a.String("right", &right));
  std::vector<metadata::VolumeImage> images;
  THINSIM_RETURN_IF_ERROR(c.pool->VolumeImagesOf({left, right}, &images));
  const uint32_t block_size = c.pool->QueryPool().block_size;
  json ranges = json::array();
  for (const metadata::DeltaRange& d : metadata::ComputeDelta(block_size, images[0], images[1])) {
    ranges.push_back({{"type", std::string(metadata::DeltaTypeName(d.type))}, {"vblock", d.vblock},
                      {"nr_vblocks", d.nr_vblocks}, {"offset", d.offset}, {"length", d.length}});
  }
  *c.result = {{"left", left}, {"right", right}, {"block_size", block_size}, {"ranges", std::move(ranges)}};
  return Status::OK();
}

}  // namespace

Status SnapshotRequests(const CommandArgs& a, std::vector<SnapshotRequest>* requests) {
  if (!a.Has("snapshots")) {
    SnapshotRequest r;
    THINSIM_RETURN_IF_ERROR(a.String("origin", &r.origin));
    THINSIM_RETURN_IF_ERROR(a.String("name", &r.name));
    requests->push_back(std::move(r));
    return Status::OK();
  }
  if (a.Has("origin") || a.Has("name")) {
    return Status::Invalid("give either 'snapshots' or 'origin' and 'name', not both");
  }
  const json& list = a.Get("snapshots");
  if (!list.is_array()) return Status::Invalid("'snapshots' must be an array of {origin, name}");
  for (const json& item : list) {
    if (!item.is_object()) return Status::Invalid("each snapshot must be an object {origin, name}");
    CommandArgs pair(item, {"origin", "name"});
    THINSIM_RETURN_IF_ERROR(pair.status());
    SnapshotRequest r;
    THINSIM_RETURN_IF_ERROR(pair.String("origin", &r.origin));
    THINSIM_RETURN_IF_ERROR(pair.String("name", &r.name));
    requests->push_back(std::move(r));
  }
  return Status::OK();
}

void RegisterVolumeCommands(CommandTable* table) {
  using Effect = CommandTable::Effect;
  table->Add("query-volumes", QueryVolumes, Effect::kReadOnly);
  table->Add("query-delta", QueryDelta, Effect::kReadOnly);
  table->Add("volume-create", VolumeCreate, Effect::kChangesPool);
  table->Add("volume-delete", VolumeDelete, Effect::kChangesPool);
  table->Add("volume-resize", VolumeResize, Effect::kChangesPool);
  table->Add("volume-set", VolumeSet, Effect::kChangesPool);
  table->Add("volume-activate", SetActive<&Pool::Activate>, Effect::kChangesPool);
  table->Add("volume-deactivate", SetActive<&Pool::Deactivate>, Effect::kChangesPool);
  table->Add("provision", Provision, Effect::kChangesPool);
  table->Add("snapshot-create", SnapshotCreate, Effect::kChangesPool);
}

}  // namespace thinsim
