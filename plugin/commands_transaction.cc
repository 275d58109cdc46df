// transaction (SPEC section 9): snapshot-create, bitmap-add and bitmap-cut
// actions, all or nothing, at one point in time - the step of an incremental
// backup takes a snapshot and cuts the bitmap that tracks the volume with no
// write between them. Every action is checked before any is done; then the
// io_gates of every volume involved close at once (Pool::AtPointInTime:
// their writes in flight drain, new ones wait, reads go on) and the actions
// run in order. Should one fail all the same, the ones done are undone.
#include <map>
#include <set>
#include <string>
#include <vector>

#include "bitmap/bitmap_registry.h"
#include "plugin/command_args.h"
#include "plugin/command_table.h"

namespace thinsim {

using nlohmann::json;

namespace {

struct Action {
  std::string type;  // snapshot-create, bitmap-add, bitmap-cut
  std::vector<SnapshotRequest> snapshots;
  bool read_only = false;
  std::string volume, name, into;
  uint64_t granularity = 0;
  bool persistent = false;
  bool disabled = false;
  std::shared_ptr<VolumeBitmaps> set;  // bitmap actions
};

Status ParseAction(const CommandCall& c, size_t index, const json& item, Action* out) {
  const std::string where = "action #" + std::to_string(index);
  if (!item.is_object() || !item.contains("type") || !item["type"].is_string()) {
    return Status::Invalid(where + " must be an object {type, data}");
  }
  CommandArgs outer(item, {"type", "data"});
  THINSIM_RETURN_IF_ERROR(outer.status());
  out->type = item["type"].get<std::string>();
  const json& data = item.contains("data") ? item["data"] : json::object();
  if (!data.is_object()) return Status::Invalid(where + ": 'data' must be an object");
  if (out->type == "snapshot-create") {
    CommandArgs a(data, {"snapshots", "origin", "name", "read-only"});
    THINSIM_RETURN_IF_ERROR(a.status());
    THINSIM_RETURN_IF_ERROR(a.Bool("read-only", &out->read_only));
    return SnapshotRequests(a, &out->snapshots);
  }
  if (out->type == "bitmap-add") {
    BitmapAddArgs a;
    THINSIM_RETURN_IF_ERROR(ParseBitmapAdd(c, data, &a));
    out->volume = std::move(a.volume);
    out->name = std::move(a.name);
    out->granularity = a.granularity;
    out->persistent = a.persistent;
    out->disabled = a.disabled;
    return Status::OK();
  }
  if (out->type == "bitmap-cut") {
    BitmapCutArgs a;
    THINSIM_RETURN_IF_ERROR(ParseBitmapCut(data, &a));
    out->volume = std::move(a.volume);
    out->name = std::move(a.name);
    out->into = std::move(a.into);
    return Status::OK();
  }
  return Status::Invalid(where + ": unknown type '" + out->type +
                         "' (a transaction takes snapshot-create, bitmap-add and bitmap-cut)");
}

// Checks the bitmap actions against the bitmaps as they are and against each
// other (two actions making one name). Sets each action's bitmap set,
// creating (attached, empty) sets for bitmap-add; `made` lists those.
Status CheckBitmapActions(const CommandCall& c, std::vector<Action>* actions, std::vector<std::string>* made) {
  std::map<std::string, std::set<std::string>> new_names;  // by volume
  for (Action& a : *actions) {
    if (a.type == "snapshot-create") continue;
    const bool add = a.type == "bitmap-add";
    std::shared_ptr<VolumeBitmaps> before;
    THINSIM_RETURN_IF_ERROR(c.bitmaps->Get(a.volume, false, &before));
    if (!add && before == nullptr) return Status::NotFound("no bitmap '" + a.name + "' on volume '" + a.volume + "'");
    THINSIM_RETURN_IF_ERROR(c.bitmaps->Get(a.volume, add, &a.set));
    if (before == nullptr) made->push_back(a.volume);
    THINSIM_RETURN_IF_ERROR(add ? a.set->CheckAdd(a.name, a.granularity) : a.set->CheckCut(a.name, a.into));
    const std::string& created = add ? a.name : a.into;
    if (!new_names[a.volume].insert(created).second) {
      return Status::Invalid("two actions of the transaction make bitmap '" + created + "' on volume '" + a.volume + "'");
    }
    if (!add && new_names[a.volume].count(a.name) != 0) {
      return Status::Invalid("bitmap-cut of '" + a.name + "', which this transaction makes");
    }
  }
  return Status::OK();
}

// Runs the actions in order; on a failure undoes the ones done (snapshots
// deleted, bitmaps added removed, cuts merged back) and returns it.
// REQUIRES: inside Pool::AtPointInTime over every volume involved.
Status RunActions(const CommandCall& c, std::vector<Action>& actions) {
  std::vector<std::string> snapshots;
  std::vector<const Action*> done;
  Status s;
  for (const Action& a : actions) {
    if (a.type == "snapshot-create") {
      s = c.pool->CreateSnapshotsHeld(a.snapshots, a.read_only);
      if (s.ok()) for (const SnapshotRequest& r : a.snapshots) snapshots.push_back(r.name);
    } else if (a.type == "bitmap-add") {
      s = a.set->Add(a.name, a.granularity, a.persistent, a.disabled);
    } else {
      s = a.set->Cut(a.name, a.into);
    }
    if (!s.ok()) break;
    done.push_back(&a);
  }
  if (s.ok()) return s;
  for (auto it = done.rbegin(); it != done.rend(); ++it) {
    const Action& a = **it;
    if (a.type == "bitmap-add") (void)a.set->Remove(a.name);
    if (a.type == "bitmap-cut" && a.set->Merge({a.into}, a.name).ok()) (void)a.set->Remove(a.into);
  }
  for (const std::string& name : snapshots) (void)c.pool->DeleteVolume(name);
  return s;
}

Status RunTransaction(const CommandCall& c) {
  if (c.bitmaps == nullptr) return Status::Unsupported("this server keeps no dirty bitmaps");
  CommandArgs args(c.args, {"actions"});
  THINSIM_RETURN_IF_ERROR(args.status());
  if (!args.Has("actions") || !args.Get("actions").is_array() || args.Get("actions").empty()) {
    return Status::Invalid("argument 'actions' must be a non-empty list of {type, data}");
  }
  std::vector<Action> actions;
  std::vector<std::string> volumes;
  for (const json& item : args.Get("actions")) {
    Action a;
    THINSIM_RETURN_IF_ERROR(ParseAction(c, actions.size(), item, &a));
    for (const SnapshotRequest& r : a.snapshots) volumes.push_back(r.origin);
    if (!a.volume.empty()) volumes.push_back(a.volume);
    actions.push_back(std::move(a));
  }
  std::vector<std::string> made;
  Status s = CheckBitmapActions(c, &actions, &made);
  if (s.ok()) s = c.pool->AtPointInTime(volumes, [&] { return RunActions(c, actions); });
  for (const std::string& v : made) c.bitmaps->ReleaseIfEmpty(v);  // sets made for nothing
  THINSIM_RETURN_IF_ERROR(s);
  return EmptyReturn(c);
}

}  // namespace

void RegisterTransactionCommands(CommandTable* table) {
  // Its snapshots change the pool's metadata.
  table->Add("transaction", RunTransaction, CommandTable::Effect::kChangesPool);
}

}  // namespace thinsim
