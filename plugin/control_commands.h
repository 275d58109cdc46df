// ControlCommands: executes control-socket requests (docs/control-protocol.md)
// against a Pool. One JSON request line in, one JSON reply line out; no
// sockets here, so tests drive it directly.
//
// Malformed input of any kind (plugin/control_request.h: invalid UTF-8,
// duplicate keys, deep nesting, trailing bytes), unknown commands and bad
// arguments produce an error reply and change nothing. A request's id comes
// back as the exact text sent. Every reply line is valid UTF-8 JSON. No
// exception escapes Execute(): an unexpected one becomes an error reply.
//
// Thread safety: thread-safe (Pool is).
#ifndef THINSIM_PLUGIN_CONTROL_COMMANDS_H_
#define THINSIM_PLUGIN_CONTROL_COMMANDS_H_

#include <sys/time.h>

#include <functional>
#include <string>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>

#include "env/fault_env.h"
#include "plugin/control_request.h"
#include "bitmap/bitmap_registry.h"
#include "job/job_registry.h"
#include "pool/pool.h"

namespace thinsim {

class ControlCommands {
 public:
  // `faults`: the FaultEnv under the pool's files, or null (an in-memory
  // pool); the fault-* and power-cut commands act on it.
  // The pool's dirty bitmaps live here, one registry per pool.
  explicit ControlCommands(Pool* pool, FaultEnv* faults = nullptr)
      : pool_(pool), faults_(faults), bitmaps_(pool) {}

  struct Reply {
    std::string line;        // the JSON reply, without a newline
    bool subscribe = false;  // the client asked for events
  };
  Reply Execute(std::string_view request_line) noexcept;
  // Brings back the persistent dirty bitmaps of a reopened pool=DIR pool
  // (BitmapRegistry::LoadPersistent). REQUIRES: no request served yet.
  Status LoadBitmaps() { return bitmaps_.LoadPersistent(); }
  // The server's jobs (SPEC section 13): the job-* commands act on them;
  // mirror-start adds to them. Their events go to `sink`
  // (ControlServer::Publish). REQUIRES: no job started yet.
  JobRegistry* jobs() { return &jobs_; }
  void SetJobEventSink(JobEventSink sink) { jobs_.SetEventSink(std::move(sink)); }
  // Cancels every job and waits for its thread (JobRegistry::Shutdown):
  // before the event sink or the pool go away.
  void ShutdownJobs() { jobs_.Shutdown(); }

  // JSON shapes shared with the CLI (SPEC section 10).
  static nlohmann::json PoolJson(const PoolInfo& info);
  static nlohmann::json VolumeJson(const VolumeInfo& info);
  // The "data" of a LOW_WATER or POOL_MODE event.
  static nlohmann::json PoolEventJson(const PoolEvent& event);
  // {"event": name, "data": data, "timestamp": {"seconds", "microseconds"}}
  // for an event that happened at `when` (gettimeofday). Never throws but
  // std::bad_alloc; invalid UTF-8 in `data` is replaced, not thrown.
  static std::string EventLine(std::string_view name, const nlohmann::json& data, const timeval& when);

 private:
  // Runs a parsed request through CommandTable::Builtin() and commits what
  // it changed.
  Status Run(const ControlRequest& request, nlohmann::json* result, bool* subscribe);

  Pool* const pool_;
  FaultEnv* const faults_;
  BitmapRegistry bitmaps_;
  // After bitmaps_, so destroyed before them: a job may use bitmaps.
  JobRegistry jobs_;
};

}  // namespace thinsim

#endif  // THINSIM_PLUGIN_CONTROL_COMMANDS_H_
