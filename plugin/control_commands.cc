#include "plugin/control_commands.h"

#include <initializer_list>
#include <map>
#include <new>
#include <optional>

#include "plugin/control_request.h"
#include "base/sizes.h"

namespace thinsim {

using nlohmann::json;

namespace {

// Reads typed arguments out of the request's "arguments" object, refusing
// unknown keys so that a typo never silently does something else.
class Args {
 public:
  Args(const json& args, std::initializer_list<const char*> allowed) : args_(args) {
    for (const auto& [key, value] : args_.items()) {
      bool known = false;
      for (const char* a : allowed) known = known || key == a;
      if (!known && status_.ok()) status_ = Status::Invalid("unknown argument '" + key + "'");
    }
  }
  const Status& status() const { return status_; }

  Status String(const char* key, std::string* out, bool required = true) const {
    auto it = args_.find(key);
    if (it == args_.end()) return Missing(key, required);
    if (!it->is_string()) return Status::Invalid(std::string("argument '") + key + "' must be a string");
    *out = it->get<std::string>();
    return Status::OK();
  }
  // A size or offset: a JSON integer or a string with a suffix ("64K").
  Status Size(const char* key, uint64_t* out, bool required = true) const {
    auto it = args_.find(key);
    if (it == args_.end()) return Missing(key, required);
    if (it->is_number_unsigned()) {
      *out = it->get<uint64_t>();
      return Status::OK();
    }
    if (it->is_string()) return ParseSize(it->get<std::string>(), key, out);
    return Status::Invalid(std::string("argument '") + key +
                           "' must be a non-negative integer or a size string like \"64K\"");
  }
  Status Bool(const char* key, bool* out) const {
    auto it = args_.find(key);
    if (it == args_.end()) return Status::OK();
    if (!it->is_boolean()) return Status::Invalid(std::string("argument '") + key + "' must be true or false");
    *out = it->get<bool>();
    return Status::OK();
  }
  bool Has(const char* key) const { return args_.contains(key); }
  const json& Get(const char* key) const { return args_.at(key); }

 private:
  static Status Missing(const char* key, bool required) {
    if (!required) return Status::OK();
    return Status::Invalid(std::string("missing argument '") + key + "'");
  }

  const json& args_;
  Status status_;
};

Status ParseStrategyArg(const std::string& name, Strategy* out) {
  if (!ParseStrategy(name, out)) {
    return Status::Invalid("unknown strategy '" + name + "' (use none, provision, volume or full)");
  }
  return Status::OK();
}

// What Execute answers when even building an error reply failed.
constexpr char kInternalErrorLine[] =
    "{\"error\":{\"class\":\"Invalid\",\"errno\":\"EINVAL\",\"desc\":\"internal error\"}}";

// Messages quote the client's input, which may hold anything: dump() would
// throw on invalid UTF-8, so such bytes are replaced (U+FFFD) instead.
std::string Dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

json ErrorJson(const Status& s) {
  return {{"class", ErrorClassName(s.code())},
          {"errno", ErrnoName(s.code())},
          {"desc", SanitizeUtf8(s.message())}};
}

// {"return": result} or {"error": ...}, then the id as the client wrote it.
std::string ReplyLine(const Status& s, const json& result, const std::optional<std::string>& raw_id) {
  std::string line = Dump(s.ok() ? json{{"return", result}} : json{{"error", ErrorJson(s)}});
  if (raw_id) {
    line.pop_back();  // the closing brace
    line += ",\"id\":" + *raw_id + "}";
  }
  return line;
}

}  // namespace

json ControlCommands::PoolJson(const PoolInfo& p) {
  return {{"block_size", p.block_size},
          {"total_blocks", p.total_blocks},
          {"used_blocks", p.used_blocks},
          {"reserved_blocks", p.reserved_blocks},
          {"free_blocks", p.free_blocks},
          {"mode", PoolModeName(p.mode)},
          {"size", p.total_blocks * p.block_size},
          {"when_full", p.when_full == WhenFull::kQueue ? "queue" : "error"},
          {"low_water_percent", p.low_water_percent},
          {"volumes", p.nr_volumes},
          {"persistent", p.persistent}};
}

json ControlCommands::VolumeJson(const VolumeInfo& v) {
  return {{"name", v.name},
          {"size", v.size},
          {"strategy", StrategyName(v.strategy)},
          {"active", v.active},
          {"read_only", v.read_only},
          {"origin", v.origin ? json(*v.origin) : json(nullptr)},
          {"mapped_blocks", v.mapped_blocks},
          {"exclusive_blocks", v.exclusive_blocks},
          {"shared_blocks", v.shared_blocks},
          {"provisioned_blocks", v.provisioned_blocks},
          {"reserved_blocks", v.reserved_blocks},
          {"connections", v.connections},
          {"writable_connections", v.writable_connections},
          {"pinned", v.pinned}};
}

json ControlCommands::PoolEventJson(const PoolEvent& e) {
  json data = {{"mode", PoolModeName(e.mode)},
               {"free_blocks", e.free_blocks},
               {"total_blocks", e.total_blocks}};
  if (e.name == "LOW_WATER") data["threshold_blocks"] = e.threshold_blocks;
  return data;
}

std::string ControlCommands::EventLine(std::string_view name, const json& data, const timeval& when) {
  json event = {{"event", name},
                {"data", data},
                {"timestamp", {{"seconds", when.tv_sec}, {"microseconds", when.tv_usec}}}};
  return Dump(event);
}

ControlCommands::Reply ControlCommands::Execute(std::string_view request_line) noexcept {
  try {
    Reply reply;
    ControlRequest request;
    json result;
    Status s = ParseControlRequest(request_line, &request);
    if (s.ok()) s = Run(request, &result, &reply.subscribe);
    if (!s.ok()) reply.subscribe = false;
    reply.line = ReplyLine(s, result, request.raw_id);
    return reply;
  } catch (...) {
    // Out of memory, most likely: a fixed line needs no allocation to build
    // (the copy into `line` may still fail, hence the second catch).
    try {
      Reply reply;
      reply.line = kInternalErrorLine;
      return reply;
    } catch (...) {
      return Reply{};
    }
  }
}

Status ControlCommands::Run(const ControlRequest& request, json* result, bool* subscribe) {
  const std::string& command = request.execute;
  try {
    THINSIM_RETURN_IF_ERROR(Dispatch(command, request.arguments, result, subscribe));
  } catch (const std::bad_alloc&) {
    throw;
  } catch (const std::exception& e) {
    return Status::Invalid("bad request: " + SanitizeUtf8(e.what()));
  }
  // A persistent pool commits after every command that changes it.
  bool changes = command.rfind("query-", 0) != 0 && command != "events-subscribe" && command != "commit";
  return changes ? pool_->Commit() : Status::OK();
}

Status ControlCommands::Dispatch(const std::string& command, const json& args, json* result,
                                 bool* subscribe) {
  auto volume_result = [&](const std::string& name) {
    VolumeInfo info;
    Status s = pool_->QueryVolume(name, &info);
    if (s.ok()) *result = VolumeJson(info);
    return s;
  };

  if (command == "query-pool") {
    Args a(args, {});
    THINSIM_RETURN_IF_ERROR(a.status());
    *result = PoolJson(pool_->QueryPool());
    return Status::OK();
  }
  if (command == "query-volumes") {
    Args a(args, {"name"});
    THINSIM_RETURN_IF_ERROR(a.status());
    std::string name;
    THINSIM_RETURN_IF_ERROR(a.String("name", &name, false));
    *result = json::array();
    if (!name.empty()) {
      VolumeInfo info;
      THINSIM_RETURN_IF_ERROR(pool_->QueryVolume(name, &info));
      result->push_back(VolumeJson(info));
    } else {
      for (const VolumeInfo& v : pool_->QueryVolumes()) result->push_back(VolumeJson(v));
    }
    return Status::OK();
  }
  if (command == "volume-create") {
    Args a(args, {"name", "size", "reserve"});
    THINSIM_RETURN_IF_ERROR(a.status());
    std::string name, reserve;
    uint64_t size;
    THINSIM_RETURN_IF_ERROR(a.String("name", &name));
    THINSIM_RETURN_IF_ERROR(a.Size("size", &size));
    THINSIM_RETURN_IF_ERROR(a.String("reserve", &reserve, false));
    std::optional<Strategy> strategy;
    if (!reserve.empty()) {
      Strategy st;
      THINSIM_RETURN_IF_ERROR(ParseStrategyArg(reserve, &st));
      strategy = st;
    }
    THINSIM_RETURN_IF_ERROR(pool_->CreateVolume(name, size, strategy));
    return volume_result(name);
  }
  if (command == "volume-delete") {
    Args a(args, {"name"});
    THINSIM_RETURN_IF_ERROR(a.status());
    std::string name;
    THINSIM_RETURN_IF_ERROR(a.String("name", &name));
    THINSIM_RETURN_IF_ERROR(pool_->DeleteVolume(name));
    *result = json::object();
    return Status::OK();
  }
  if (command == "volume-resize") {
    Args a(args, {"name", "size"});
    THINSIM_RETURN_IF_ERROR(a.status());
    std::string name;
    uint64_t size;
    THINSIM_RETURN_IF_ERROR(a.String("name", &name));
    THINSIM_RETURN_IF_ERROR(a.Size("size", &size));
    THINSIM_RETURN_IF_ERROR(pool_->ResizeVolume(name, size));
    return volume_result(name);
  }
  if (command == "snapshot-create") {
    Args a(args, {"snapshots", "origin", "name", "read-only"});
    THINSIM_RETURN_IF_ERROR(a.status());
    bool read_only = false;
    THINSIM_RETURN_IF_ERROR(a.Bool("read-only", &read_only));
    std::vector<SnapshotRequest> requests;
    if (a.Has("snapshots")) {
      if (a.Has("origin") || a.Has("name")) {
        return Status::Invalid("give either 'snapshots' or 'origin' and 'name', not both");
      }
      const json& list = a.Get("snapshots");
      if (!list.is_array()) return Status::Invalid("'snapshots' must be an array of {origin, name}");
      for (const json& item : list) {
        if (!item.is_object()) return Status::Invalid("each snapshot must be an object {origin, name}");
        Args pair(item, {"origin", "name"});
        THINSIM_RETURN_IF_ERROR(pair.status());
        SnapshotRequest r;
        THINSIM_RETURN_IF_ERROR(pair.String("origin", &r.origin));
        THINSIM_RETURN_IF_ERROR(pair.String("name", &r.name));
        requests.push_back(std::move(r));
      }
    } else {
      SnapshotRequest r;
      THINSIM_RETURN_IF_ERROR(a.String("origin", &r.origin));
      THINSIM_RETURN_IF_ERROR(a.String("name", &r.name));
      requests.push_back(std::move(r));
    }
    THINSIM_RETURN_IF_ERROR(pool_->CreateSnapshots(requests, read_only));
    *result = json::array();
    for (const SnapshotRequest& r : requests) {
      VolumeInfo info;
      if (pool_->QueryVolume(r.name, &info).ok()) result->push_back(VolumeJson(info));
    }
    return Status::OK();
  }
  if (command == "provision") {
    Args a(args, {"name", "offset", "length"});
    THINSIM_RETURN_IF_ERROR(a.status());
    std::string name;
    uint64_t offset, length;
    THINSIM_RETURN_IF_ERROR(a.String("name", &name));
    THINSIM_RETURN_IF_ERROR(a.Size("offset", &offset));
    THINSIM_RETURN_IF_ERROR(a.Size("length", &length));
    THINSIM_RETURN_IF_ERROR(pool_->Provision(name, offset, length));
    return volume_result(name);
  }
  if (command == "pool-grow") {
    Args a(args, {"size"});
    THINSIM_RETURN_IF_ERROR(a.status());
    uint64_t size;
    THINSIM_RETURN_IF_ERROR(a.Size("size", &size));
    THINSIM_RETURN_IF_ERROR(pool_->Grow(size));
    *result = PoolJson(pool_->QueryPool());
    return Status::OK();
  }
  if (command == "commit") {
    Args a(args, {});
    THINSIM_RETURN_IF_ERROR(a.status());
    THINSIM_RETURN_IF_ERROR(pool_->Flush());
    *result = json::object();
    return Status::OK();
  }
  if (command == "events-subscribe") {
    Args a(args, {});
    THINSIM_RETURN_IF_ERROR(a.status());
    *subscribe = true;
    *result = json::object();
    return Status::OK();
  }
  if (command == "volume-set") {
    Args a(args, {"name", "reserve"});
    THINSIM_RETURN_IF_ERROR(a.status());
    std::string name, reserve;
    THINSIM_RETURN_IF_ERROR(a.String("name", &name));
    THINSIM_RETURN_IF_ERROR(a.String("reserve", &reserve));
    Strategy strategy;
    THINSIM_RETURN_IF_ERROR(ParseStrategyArg(reserve, &strategy));
    THINSIM_RETURN_IF_ERROR(pool_->SetStrategy(name, strategy));
    return volume_result(name);
  }
  if (command == "volume-activate" || command == "volume-deactivate") {
    Args a(args, {"name"});
    THINSIM_RETURN_IF_ERROR(a.status());
    std::string name;
    THINSIM_RETURN_IF_ERROR(a.String("name", &name));
    THINSIM_RETURN_IF_ERROR(command == "volume-activate" ? pool_->Activate(name)
                                                          : pool_->Deactivate(name));
    return volume_result(name);
  }
  return Status::Invalid("unknown command '" + command + "'");
}

}  // namespace thinsim
