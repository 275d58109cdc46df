// ControlCommands: executes control-socket requests (docs/control-protocol.md)
// against a Pool. One JSON request line in, one JSON reply line out; no
// sockets here, so tests drive it directly.
//
// Malformed input, unknown commands and bad arguments produce an error reply
// and change nothing. No exception escapes Execute().
//
// Thread safety: thread-safe (Pool is).
#ifndef THINSIM_PLUGIN_CONTROL_COMMANDS_H_
#define THINSIM_PLUGIN_CONTROL_COMMANDS_H_

#include <functional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "pool/pool.h"

namespace thinsim {

class ControlCommands {
 public:
  explicit ControlCommands(Pool* pool) : pool_(pool) {}

  struct Reply {
    std::string line;        // the JSON reply, without a newline
    bool subscribe = false;  // the client asked for events
  };
  Reply Execute(std::string_view request_line);

  // JSON shapes shared with the CLI (SPEC section 10).
  static nlohmann::json PoolJson(const PoolInfo& info);
  static nlohmann::json VolumeJson(const VolumeInfo& info);
  // {"event": name, "data": data, "timestamp": {...}}
  static std::string EventLine(std::string_view name, const nlohmann::json& data);

 private:
  Status Dispatch(const std::string& command, const nlohmann::json& args, nlohmann::json* result,
                  bool* subscribe);

  Pool* const pool_;
};

}  // namespace thinsim

#endif  // THINSIM_PLUGIN_CONTROL_COMMANDS_H_
