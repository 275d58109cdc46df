// The `thinsim` CLI (SPEC.md section 10). Each online command becomes one
// control request (docs/control-protocol.md); the reply is printed for
// humans, or as one line of JSON with --json. The offline commands (check,
// dump, restore, repair, delta) work on a stopped pool's directory; see
// tools/offline.h.
//
// Exit status: 0 success, 1 server or connection error, 2 usage error
// (offline commands: see tools/offline.h).

#ifndef THINSIM_TOOLS_CLI_H_
#define THINSIM_TOOLS_CLI_H_

#include <chrono>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "tools/control_client.h"
#include "tools/offline.h"

namespace thinsim::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

// What the process environment contributes to the command line.
//
// Thread safety: a plain value type.
struct Environment {
  std::string thinsim_socket;  // $THINSIM_SOCKET, empty when unset

  // Reads the current process environment.
  static Environment FromProcess();
};

// A parsed command line: where to connect, what to send and how to print;
// or, for an offline command, what to run on which pool directory.
//
// Thread safety: a plain value type.
struct Invocation {
  std::string socket_path;
  bool json = false;
  std::chrono::milliseconds timeout{60000};  // 0: wait forever
  Request request;
  std::optional<offline::OfflineCommand> offline;  // set: no socket is used
  bool wait_for_job = false;  // mirror --wait: follow the started job to its end
};

// The outcome of ParseCommandLine: an invocation to run, or the exit status
// when parsing already finished (--help) or failed (usage error).
struct ParseResult {
  std::optional<Invocation> invocation;
  int exit_code = kExitOk;
};

// Parses `args` (the command line without the program name). Help goes to
// `out`, usage errors to `err`.
ParseResult ParseCommandLine(const std::vector<std::string>& args, const Environment& env,
                             std::ostream& out, std::ostream& err);

// Picks the control socket: `socket_flag`, else `pool_flag`/control.sock,
// else $THINSIM_SOCKET. Returns false with *error set when none is given.
bool ResolveSocketPath(const std::string& socket_flag, const std::string& pool_flag,
                       const Environment& env, std::string* path, std::string* error);

// Builds snapshot-create from `thinsim snapshot` arguments: either
// "ORIGIN NAME" (sends origin + name) or one or more "ORIGIN:NAME" pairs
// (sends a snapshots array). Returns false with *error set on bad input.
bool BuildSnapshotRequest(const std::vector<std::string>& args, bool read_only,
                          Request* request, std::string* error);

// Builds volume-set from `thinsim set NAME KEY=VALUE`. Only the key
// `reserve` exists. Returns false with *error set on bad input.
bool BuildSetRequest(const std::string& name, const std::string& key_value, Request* request,
                     std::string* error);

// True for the offline commands: check, dump, restore, repair, delta.
bool IsOfflineCommand(const std::string& command);

// Builds an offline command from its positional arguments (`positionals`:
// DIR first, then FILE for restore, A B for delta) and the global --pool,
// which may stand in for DIR. Returns false with *error set on bad input.
bool BuildOfflineCommand(const std::string& command, const std::vector<std::string>& positionals,
                         const std::string& pool_flag, offline::OfflineCommand* out, std::string* error);

// Connects, sends the request and prints the reply (for `events`, every
// event until the server closes the connection); or runs the offline
// command. Returns the exit status.
int Execute(const Invocation& invocation, std::ostream& out, std::ostream& err);

// The whole CLI: parse, then execute. Never throws. Returns the exit status.
int RunCli(const std::vector<std::string>& args, const Environment& env, std::ostream& out,
           std::ostream& err);

}  // namespace thinsim::cli

#endif  // THINSIM_TOOLS_CLI_H_
