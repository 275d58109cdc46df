// CommandTable: the control commands by name (SPEC section 9), for
// ControlCommands (plugin/control_commands.h) to look a request up in. Each
// domain (pool, volumes, events, bitmaps, jobs, ...) has its own file, plugin/commands_*.cc,
// holding its handlers and a Register*Commands() that adds them; a new domain
// is a new file, its Register function declared here and listed in
// command_table.cc.
//
// A handler reads its arguments with CommandArgs (plugin/command_args.h),
// refusing unknown ones, acts on the pool and sets the reply's "return"
// value. It may throw: ControlCommands turns a std::exception into an error
// reply and lets std::bad_alloc through.
//
// Thread safety: Builtin() is built once, on first use (a function-local
// static), and never changes after, so lookups from any thread are safe.
// Handlers are thread-safe because Pool is. A CommandTable being filled is
// used by one thread.
#ifndef THINSIM_PLUGIN_COMMAND_TABLE_H_
#define THINSIM_PLUGIN_COMMAND_TABLE_H_

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"
#include "env/fault_env.h"
#include "pool/pool.h"

namespace thinsim {
class BitmapRegistry;
class JobRegistry;
}  // namespace thinsim

namespace thinsim {

// What a handler works with: one request.
struct CommandCall {
  Pool* pool;
  const nlohmann::json& args;  // the request's "arguments", always an object
  nlohmann::json* result;      // the reply's "return" value, set on success
  bool* subscribe;             // set to true to send the client events
  // The FaultEnv under a pool=DIR pool's files; null for an in-memory pool,
  // whose data layer has no files (SPEC section 15).
  FaultEnv* faults = nullptr;
  // The pool's dirty bitmaps (SPEC section 12); null where none are kept.
  BitmapRegistry* bitmaps = nullptr;
  // The server's jobs (SPEC section 13); null where none run.
  JobRegistry* jobs = nullptr;
};

using CommandHandler = Status (*)(const CommandCall& call);

// What a command with nothing to report answers: {}.
inline Status EmptyReturn(const CommandCall& call) {
  *call.result = nlohmann::json::object();
  return Status::OK();
}

class CommandTable {
 public:
  // Whether a persistent pool commits after the command succeeds. "commit"
  // itself is kReadOnly: it flushes on its own.
  enum class Effect { kReadOnly, kChangesPool };

  struct Entry {
    CommandHandler handler;
    Effect effect;
  };

  // REQUIRES: `name` is not in the table yet (a second one aborts: two
  // domains claiming a name is a programming error, not a runtime one).
  void Add(std::string name, CommandHandler handler, Effect effect);
  // The entry for `name`, or nullptr if there is no such command.
  const Entry* Find(std::string_view name) const;

  // Every command thinsim has.
  static const CommandTable& Builtin();

 private:
  std::map<std::string, Entry, std::less<>> entries_;
};

class CommandArgs;

// The snapshots a snapshot-create (or a transaction's snapshot-create
// action) asks for: `snapshots` [{origin, name}], or `origin` and `name`
// (commands_volume.cc).
Status SnapshotRequests(const CommandArgs& args, std::vector<SnapshotRequest>* requests);

// The arguments of bitmap-add and bitmap-cut, also a transaction's actions
// (commands_bitmap.cc). bitmap-add's granularity defaults to the block size;
// persistent: true needs a pool=DIR pool.
struct BitmapAddArgs {
  std::string volume, name;
  uint64_t granularity = 0;
  bool persistent = false;
  bool disabled = false;
};
Status ParseBitmapAdd(const CommandCall& c, const nlohmann::json& args, BitmapAddArgs* out);
struct BitmapCutArgs {
  std::string volume, name, into;
};
Status ParseBitmapCut(const nlohmann::json& args, BitmapCutArgs* out);

// One per domain; each adds its commands to *table.
void RegisterPoolCommands(CommandTable* table);    // commands_pool.cc
void RegisterVolumeCommands(CommandTable* table);  // commands_volume.cc
void RegisterEventCommands(CommandTable* table);   // commands_events.cc
void RegisterFaultCommands(CommandTable* table);   // commands_fault.cc
void RegisterBitmapCommands(CommandTable* table);  // commands_bitmap.cc
void RegisterTransactionCommands(CommandTable* table);  // commands_transaction.cc
void RegisterJobCommands(CommandTable* table);     // commands_job.cc
void RegisterMirrorCommands(CommandTable* table);  // commands_mirror.cc

}  // namespace thinsim

#endif  // THINSIM_PLUGIN_COMMAND_TABLE_H_
