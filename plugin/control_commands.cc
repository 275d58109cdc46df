#include "plugin/control_commands.h"

#include <new>
#include <optional>

#include "plugin/command_table.h"
#include "plugin/control_request.h"

namespace thinsim {

using nlohmann::json;

namespace {

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

// Runs the command's handler. A handler may throw on a request it did not
// expect (nlohmann's type errors): that is the client's fault, an error reply.
Status Dispatch(const CommandTable::Entry& command, const CommandCall& call) {
  try {
    return command.handler(call);
  } catch (const std::bad_alloc&) {
    throw;
  } catch (const std::exception& e) {
    return Status::Invalid("bad request: " + SanitizeUtf8(e.what()));
  }
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
  const CommandTable::Entry* command = CommandTable::Builtin().Find(request.execute);
  if (command == nullptr) return Status::Invalid("unknown command '" + request.execute + "'");
  THINSIM_RETURN_IF_ERROR(Dispatch(*command, CommandCall{pool_, request.arguments, result, subscribe, faults_, &bitmaps_, &jobs_}));
  // A persistent pool commits after every command that changes it.
  return command->effect == CommandTable::Effect::kChangesPool ? pool_->Commit() : Status::OK();
}

}  // namespace thinsim
