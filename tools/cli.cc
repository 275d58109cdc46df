#include "tools/cli.h"

#include <algorithm>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <ostream>
#include <stdexcept>

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "tools/cli_bitmap.h"
#include "tools/cli_job.h"
#include "tools/cli_mirror.h"
#include "tools/format.h"
#include "tools/fs_test/launch.h"

namespace thinsim::cli {
namespace {

using nlohmann::json;

// Everything the command line parser fills in; each subcommand uses a part.
struct Arguments {
  std::string socket;
  std::string pool;
  bool json = false;
  double timeout_seconds = 60;
  std::string name;
  std::string size;
  std::string reserve;
  std::string offset;
  std::string length;
  std::string key_value;
  std::vector<std::string> snapshot_args;
  bool read_only = false;
  std::vector<std::string> offline_args;
  bool force = false;
  // fault add (strings: checked here or by the server, as other sizes are).
  std::string fault_layer;
  std::string fault_op;
  std::string fault_errno;
  std::string probability;
  std::string count;
  std::uint64_t fault_id = 0;
  BitmapArguments bitmap;
  JobArguments job;
  MirrorArguments mirror;
};

void AddGlobalOptions(CLI::App& app, Arguments& a) {
  CLI::Option* socket =
      app.add_option("--socket", a.socket, "Control socket of the running plugin")
          ->type_name("PATH");
  CLI::Option* pool =
      app.add_option("--pool", a.pool, "Pool directory (its socket is DIR/control.sock)")
          ->type_name("DIR");
  socket->excludes(pool);
  app.add_flag("--json", a.json, "Print the server's reply as one line of JSON");
  app.add_option("--timeout", a.timeout_seconds, "Seconds to wait for a reply (0: forever)")
      ->type_name("SECONDS")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
}

CLI::App* AddCommand(CLI::App& app, const std::string& name, const std::string& help) {
  return app.add_subcommand(name, help);
}

void AddName(CLI::App* sub, Arguments& a, const std::string& help) {
  sub->add_option("NAME", a.name, help)->required();
}

void AddSize(CLI::App* sub, Arguments& a, const std::string& help) {
  sub->add_option("SIZE", a.size, help)->required();
}

void AddQueryCommands(CLI::App& app, Arguments& a) {
  AddCommand(app, "status", "Show pool usage (query-pool)");
  AddCommand(app, "ls", "List volumes (query-volumes)")
      ->add_option("NAME", a.name, "Only this volume");
  AddCommand(app, "events", "Print events as they arrive (events-subscribe)");
}

void AddVolumeCommands(CLI::App& app, Arguments& a) {
  CLI::App* create = AddCommand(app, "create", "Create an empty volume (volume-create)");
  AddName(create, a, "Volume name");
  AddSize(create, a, "Virtual size, e.g. 1G");
  create->add_option("--reserve", a.reserve, "Reservation: none, provision, volume or full")
      ->type_name("STRATEGY");
  AddName(AddCommand(app, "delete", "Delete a volume (volume-delete)"), a, "Volume name");
  CLI::App* resize = AddCommand(app, "resize", "Change a volume's size (volume-resize)");
  AddName(resize, a, "Volume name");
  AddSize(resize, a, "New virtual size");
  CLI::App* set = AddCommand(app, "set", "Change a volume setting (volume-set)");
  AddName(set, a, "Volume name");
  set->add_option("KEY=VALUE", a.key_value, "reserve=none|provision|volume|full")->required();
  AddName(AddCommand(app, "activate", "Pin a volume active (volume-activate)"), a,
          "Volume name");
  AddName(AddCommand(app, "deactivate", "Unpin a volume (volume-deactivate)"), a,
          "Volume name");
  CLI::App* provision =
      AddCommand(app, "provision", "Allocate and provision a byte range (provision)");
  AddName(provision, a, "Volume name");
  provision->add_option("OFFSET", a.offset, "Start of the range, e.g. 0 or 1M")->required();
  provision->add_option("LENGTH", a.length, "Length of the range, e.g. 64K")->required();
}

void AddPoolCommands(CLI::App& app, Arguments& a) {
  CLI::App* snapshot =
      AddCommand(app, "snapshot", "Snapshot volumes, all or nothing (snapshot-create)");
  snapshot->add_option("ARGS", a.snapshot_args, "ORIGIN NAME, or ORIGIN:NAME ...")->required();
  snapshot->add_flag("--read-only", a.read_only, "Make the snapshots read-only");
  AddSize(AddCommand(app, "grow", "Grow the pool's data capacity (pool-grow)"), a,
          "New total data capacity");
  AddCommand(app, "commit", "Commit metadata now (commit)");
  // Listed for --help; RunCli hands `fs-test` to the harness before parsing.
  AddCommand(app, "fs-test",
             "Run a real filesystem through an ENOSPC scenario (root; docs/fs-testing.md)")
      ->prefix_command();
}

// fault add|remove|ls and power-cut (SPEC section 15).
void AddFaultCommands(CLI::App& app, Arguments& a) {
  CLI::App* fault = AddCommand(app, "fault", "Inject I/O faults into a pool=DIR pool's files");
  fault->require_subcommand(1);
  CLI::App* add = fault->add_subcommand("add", "Add a fault rule (fault-add)");
  add->add_option("--layer", a.fault_layer, "data or metadata")->required();
  add->add_option("--op", a.fault_op, "read, write, flush, discard, sync or any")->required();
  add->add_option("--errno", a.fault_errno, "EIO, ENOSPC, EDQUOT, EROFS, EOPNOTSUPP, ...")
      ->required();
  add->add_option("--offset", a.offset, "Start of the byte range in the layer's file, e.g. 1M");
  add->add_option("--length", a.length, "Length of the byte range, e.g. 64K (absent: all bytes)");
  add->add_option("--probability", a.probability, "Chance that a matching operation fails (0..1)");
  add->add_option("--count", a.count, "Remove the rule after this many failures");
  fault->add_subcommand("remove", "Remove a fault rule (fault-remove)")
      ->add_option("ID", a.fault_id, "Fault id (from fault add or fault ls)")
      ->required();
  fault->add_subcommand("ls", "List fault rules (query-faults)");
  AddCommand(app, "power-cut",
             "Drop every write not yet flushed (volatile-cache=on); restart the server after");
}

// Offline commands: DIR may come from --pool instead.
void AddOfflineCommands(CLI::App& app, Arguments& a) {
  AddCommand(app, "check", "Check a stopped pool's metadata (exit 0 clean, 1 damaged)")
      ->add_option("DIR", a.offline_args, "Pool directory (or --pool DIR)")
      ->expected(0, 1);
  AddCommand(app, "dump", "Print a stopped pool's metadata (--json: for restore)")
      ->add_option("DIR", a.offline_args, "Pool directory (or --pool DIR)")
      ->expected(0, 1);
  CLI::App* restore = AddCommand(app, "restore", "Write a pool's metadata from a JSON dump");
  restore->add_option("DIR FILE", a.offline_args, "Pool directory (or --pool DIR), dump file ('-': stdin)")
      ->expected(1, 2);
  restore->add_flag("--force", a.force, "Restore even a dump that describes fatally damaged metadata");
  AddCommand(app, "repair", "Repair a stopped pool's metadata")
      ->add_option("DIR", a.offline_args, "Pool directory (or --pool DIR)")
      ->expected(0, 1);
  AddCommand(app, "delta",
             "Compare two volumes' mappings (same, different, left_only, right_only); "
             "A B alone asks the running server (--socket or THINSIM_SOCKET)")
      ->add_option("DIR A B", a.offline_args, "Pool directory (or --pool DIR), two volume names")
      ->expected(2, 3);
}

Request MakeRequest(const std::string& execute, json arguments = json::object()) {
  Request request;
  request.execute = execute;
  request.arguments = std::move(arguments);
  return request;
}

Request BuildCreateRequest(const Arguments& a) {
  json arguments = {{"name", a.name}, {"size", a.size}};
  if (!a.reserve.empty()) arguments["reserve"] = a.reserve;
  return MakeRequest("volume-create", std::move(arguments));
}

bool BuildFaultAddRequest(const Arguments& a, Request* request, std::string* error) {
  json arguments = {{"layer", a.fault_layer}, {"op", a.fault_op}, {"errno", a.fault_errno}};
  if (!a.offset.empty()) arguments["offset"] = a.offset;
  if (!a.length.empty()) arguments["length"] = a.length;
  try {
    std::size_t used = 0;
    if (!a.probability.empty()) {
      arguments["probability"] = std::stod(a.probability, &used);
      if (used != a.probability.size()) throw std::invalid_argument(a.probability);
    }
    if (!a.count.empty()) {
      if (a.count[0] == '-') throw std::invalid_argument(a.count);
      arguments["count"] = static_cast<std::uint64_t>(std::stoull(a.count, &used));
      if (used != a.count.size()) throw std::invalid_argument(a.count);
    }
  } catch (const std::exception&) {
    *error = "--probability needs a number from 0 to 1 and --count a non-negative integer";
    return false;
  }
  *request = MakeRequest("fault-add", std::move(arguments));
  return true;
}

// The control request for subcommand `command`; false with *error set when
// the arguments cannot make one.
bool BuildRequest(const std::string& command, const Arguments& a, Request* request,
                  std::string* error) {
  const json name = {{"name", a.name}};
  if (command == "status") {
    *request = MakeRequest("query-pool");
  } else if (command == "ls") {
    *request = MakeRequest("query-volumes", a.name.empty() ? json::object() : name);
  } else if (command == "create") {
    *request = BuildCreateRequest(a);
  } else if (command == "delete") {
    *request = MakeRequest("volume-delete", name);
  } else if (command == "resize") {
    *request = MakeRequest("volume-resize", {{"name", a.name}, {"size", a.size}});
  } else if (command == "snapshot") {
    return BuildSnapshotRequest(a.snapshot_args, a.read_only, request, error);
  } else if (command == "set") {
    return BuildSetRequest(a.name, a.key_value, request, error);
  } else if (command == "activate") {
    *request = MakeRequest("volume-activate", name);
  } else if (command == "deactivate") {
    *request = MakeRequest("volume-deactivate", name);
  } else if (command == "provision") {
    *request = MakeRequest("provision",
                           {{"name", a.name}, {"offset", a.offset}, {"length", a.length}});
  } else if (command == "grow") {
    *request = MakeRequest("pool-grow", {{"size", a.size}});
  } else if (command == "commit") {
    *request = MakeRequest("commit");
  } else if (command == "events") {
    *request = MakeRequest("events-subscribe");
  } else if (command == "fault add") {
    return BuildFaultAddRequest(a, request, error);
  } else if (command == "fault remove") {
    *request = MakeRequest("fault-remove", {{"id", a.fault_id}});
  } else if (command == "fault ls") {
    *request = MakeRequest("query-faults");
  } else if (command == "power-cut") {
    *request = MakeRequest("power-cut");
  } else if (command.rfind("bitmap ", 0) == 0) {
    return BuildBitmapRequest(command, a.bitmap, request, error);
  } else if (IsJobCommand(command)) {
    return BuildJobRequest(command, a.job, request, error);
  } else if (command == "mirror") {
    *request = BuildMirrorRequest(a.mirror);
  } else {
    *error = "unknown command '" + command + "'";
    return false;
  }
  return true;
}

// Parses "ORIGIN:NAME" into {"origin", "name"}.
bool ParseSnapshotPair(const std::string& arg, json* pair, std::string* error) {
  const std::size_t colon = arg.find(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == arg.size() ||
      arg.find(':', colon + 1) != std::string::npos) {
    *error = "bad snapshot pair '" + arg + "': expected ORIGIN:NAME";
    return false;
  }
  *pair = {{"origin", arg.substr(0, colon)}, {"name", arg.substr(colon + 1)}};
  return true;
}

int Fail(std::ostream& err, const std::string& message) {
  err << "thinsim: " << message << "\n";
  return kExitFailure;
}

// The human form of a successful reply.
std::string HumanReply(const Request& request, const json& result) {
  if (request.execute == "query-pool") return FormatStatus(result);
  if (request.execute == "query-volumes") return FormatVolumeTable(result);
  if (request.execute == "query-faults") return FormatFaultTable(result);
  if (std::string table = FormatBitmapReply(request, result); !table.empty()) return table;
  if (std::string text = FormatJobReply(request, result); !text.empty()) return text;
  if (request.execute == "mirror-start") return "started mirror job " + result.value("id", "") + "\n";
  return FormatConfirmation(request, result) + "\n";
}

// Prints events until the server closes the connection.
int StreamEvents(ControlClient* client, bool as_json, std::ostream& out, std::ostream& err) {
  for (;;) {
    Event event;
    Status status = client->ReadEvent(&event);
    if (status.code() == ErrorCode::kUnavailable) return kExitOk;
    if (!status.ok()) return Fail(err, status.message());
    std::string line = event.line;
    if (!as_json) {
      try {
        line = FormatEvent(event.json);
      } catch (const json::exception&) {
        // An event of unexpected shape: show it as received.
      }
    }
    out << line << std::endl;  // flush: a reader may be waiting on a pipe
  }
}

}  // namespace

Environment Environment::FromProcess() {
  Environment env;
  if (const char* socket = std::getenv("THINSIM_SOCKET")) env.thinsim_socket = socket;
  return env;
}

bool ResolveSocketPath(const std::string& socket_flag, const std::string& pool_flag,
                       const Environment& env, std::string* path, std::string* error) {
  if (!socket_flag.empty()) {
    *path = socket_flag;
  } else if (!pool_flag.empty()) {
    *path = pool_flag + (pool_flag.back() == '/' ? "" : "/") + "control.sock";
  } else if (!env.thinsim_socket.empty()) {
    *path = env.thinsim_socket;
  } else {
    *error = "no control socket: use --socket PATH, --pool DIR or THINSIM_SOCKET";
    return false;
  }
  return true;
}

bool IsOfflineCommand(const std::string& command) {
  return command == "check" || command == "dump" || command == "restore" || command == "repair" ||
         command == "delta";
}

bool BuildOfflineCommand(const std::string& command, const std::vector<std::string>& positionals,
                         const std::string& pool_flag, offline::OfflineCommand* out, std::string* error) {
  const std::size_t want = command == "restore" ? 2 : command == "delta" ? 3 : 1;
  const std::string usage = command == "restore" ? "restore DIR FILE"
                            : command == "delta" ? "delta DIR A B"
                                                 : command + " DIR";
  std::vector<std::string> args = positionals;
  if (!pool_flag.empty() && args.size() + 1 == want) {
    args.insert(args.begin(), pool_flag);
  } else if (!pool_flag.empty() && args.size() == want && args[0] != pool_flag) {
    *error = "two pool directories given: --pool " + pool_flag + " and " + args[0];
    return false;
  }
  if (args.size() != want) {
    *error = "usage: thinsim " + usage + " (or --pool DIR in place of DIR)";
    return false;
  }
  if (args[0].empty()) {
    *error = "the pool directory is empty";
    return false;
  }
  out->command = command;
  out->dir = args[0];
  out->args.assign(args.begin() + 1, args.end());
  return true;
}

bool BuildSnapshotRequest(const std::vector<std::string>& args, bool read_only,
                          Request* request, std::string* error) {
  const bool pair_form = std::any_of(args.begin(), args.end(), [](const std::string& arg) {
    return arg.find(':') != std::string::npos;
  });
  json arguments;
  if (!pair_form) {
    if (args.size() != 2) {
      *error = "snapshot needs ORIGIN NAME, or one or more ORIGIN:NAME pairs";
      return false;
    }
    arguments = {{"origin", args[0]}, {"name", args[1]}};
  } else {
    json pairs = json::array();
    for (const std::string& arg : args) {
      json pair;
      if (!ParseSnapshotPair(arg, &pair, error)) return false;
      pairs.push_back(std::move(pair));
    }
    arguments = {{"snapshots", std::move(pairs)}};
  }
  if (read_only) arguments["read-only"] = true;
  *request = MakeRequest("snapshot-create", std::move(arguments));
  return true;
}

bool BuildSetRequest(const std::string& name, const std::string& key_value, Request* request,
                     std::string* error) {
  const std::size_t eq = key_value.find('=');
  if (eq == std::string::npos || eq == 0) {
    *error = "expected KEY=VALUE, got '" + key_value + "'";
    return false;
  }
  const std::string key = key_value.substr(0, eq);
  const std::string value = key_value.substr(eq + 1);
  if (key != "reserve") {
    *error = "unknown setting '" + key + "': the only setting is reserve";
    return false;
  }
  if (value.empty()) {
    *error = "reserve needs a value: none, provision, volume or full";
    return false;
  }
  *request = MakeRequest("volume-set", {{"name", name}, {"reserve", value}});
  return true;
}

ParseResult ParseCommandLine(const std::vector<std::string>& args, const Environment& env,
                             std::ostream& out, std::ostream& err) {
  Arguments a;
  CLI::App app{"Control a running thinsim pool through its control socket, or check, dump, "
               "restore, repair and compare a stopped pool's metadata.",
               "thinsim"};
  app.fallthrough();  // global options may also follow the subcommand
  app.require_subcommand(1);
  AddGlobalOptions(app, a);
  AddQueryCommands(app, a);
  AddVolumeCommands(app, a);
  AddPoolCommands(app, a);
  AddOfflineCommands(app, a);
  AddFaultCommands(app, a);
  AddBitmapCommands(app, a.bitmap);
  AddJobCommands(app, a.job);
  AddMirrorCommands(app, a.mirror);

  std::vector<const char*> argv = {"thinsim"};
  for (const std::string& arg : args) argv.push_back(arg.c_str());
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::ParseError& e) {
    app.exit(e, out, err);
    return {std::nullopt, e.get_exit_code() == 0 ? kExitOk : kExitUsage};
  }

  Invocation invocation;
  invocation.json = a.json;
  invocation.timeout = std::chrono::milliseconds(static_cast<std::int64_t>(a.timeout_seconds * 1000));
  std::string error;
  const CLI::App* sub = app.get_subcommands().front();
  std::string command = sub->get_name();
  // Two-word commands (fault add|remove|ls, bitmap ..., job ...) go by both words.
  if (!sub->get_subcommands().empty()) command += " " + sub->get_subcommands().front()->get_name();
  // delta A B without a pool directory asks the running server (query-delta).
  const bool online_delta = command == "delta" && a.offline_args.size() == 2 && a.pool.empty();
  if (online_delta) {
    invocation.request = Request{"query-delta", {{"left", a.offline_args[0]}, {"right", a.offline_args[1]}}};
    if (!ResolveSocketPath(a.socket, a.pool, env, &invocation.socket_path, &error)) {
      err << "thinsim: " << error << " (or give the pool directory: delta DIR A B, on a stopped pool)\n";
      return {std::nullopt, kExitUsage};
    }
    return {std::move(invocation), kExitOk};
  }
  if (IsOfflineCommand(command)) {
    offline::OfflineCommand offline;
    if (!a.socket.empty()) {
      error = command + " works on a stopped pool's directory, not on a control socket";
    } else if (BuildOfflineCommand(command, a.offline_args, a.pool, &offline, &error)) {
      offline.json = a.json;
      offline.force = a.force;
      invocation.offline = std::move(offline);
      return {std::move(invocation), kExitOk};
    }
    err << "thinsim: " << error << "\n";
    return {std::nullopt, kExitUsage};
  }
  invocation.wait_for_job = command == "mirror" && a.mirror.wait;
  if (!BuildRequest(command, a, &invocation.request, &error) ||
      !ResolveSocketPath(a.socket, a.pool, env, &invocation.socket_path, &error)) {
    err << "thinsim: " << error << "\n";
    return {std::nullopt, kExitUsage};
  }
  return {std::move(invocation), kExitOk};
}

// A query-delta reply printed exactly as the offline delta prints.
int PrintOnlineDelta(const json& reply, bool json_output, std::ostream& out, std::ostream& err) {
  std::vector<offline::DeltaRange> ranges;
  try {
    for (const json& r : reply.at("ranges")) {
      const std::string type = r.at("type").get<std::string>();
      offline::DeltaType t = type == "same"        ? offline::DeltaType::kSame
                             : type == "left_only"  ? offline::DeltaType::kLeftOnly
                             : type == "right_only" ? offline::DeltaType::kRightOnly
                                                    : offline::DeltaType::kDifferent;
      ranges.push_back({t, r.at("vblock").get<uint64_t>(), r.at("nr_vblocks").get<uint64_t>(),
                        r.at("offset").get<uint64_t>(), r.at("length").get<uint64_t>()});
    }
    offline::PrintDelta(reply.at("left").get<std::string>(), reply.at("right").get<std::string>(),
                        reply.at("block_size").get<uint32_t>(), ranges, json_output, out);
  } catch (const json::exception& e) {
    return Fail(err, std::string("unexpected reply to query-delta: ") + e.what());
  }
  return out ? kExitOk : Fail(err, "cannot write output");
}

int Execute(const Invocation& invocation, std::ostream& out, std::ostream& err) {
  if (invocation.offline) return offline::RunOffline(*invocation.offline, out, err);
  ControlClient client;
  client.set_timeout(invocation.timeout);
  Status status = client.Connect(invocation.socket_path);
  if (!status.ok()) return Fail(err, status.message());
  Reply reply;
  status = client.Call(invocation.request, &reply);
  if (!status.ok()) return Fail(err, status.message());
  if (!reply.ok) return Fail(err, FormatServerError(reply.value));
  if (invocation.request.execute == "events-subscribe") {
    return StreamEvents(&client, invocation.json, out, err);
  }
  if (invocation.request.execute == "query-delta") return PrintOnlineDelta(reply.value, invocation.json, out, err);
  if (invocation.wait_for_job) {
    const bool tty = &out == &std::cout && isatty(STDOUT_FILENO) == 1;
    return WaitForMirror(&client, reply.value.value("id", ""), invocation.json, tty, std::chrono::milliseconds(200),
                         out, err);
  }
  std::string text;
  try {
    text = invocation.json ? CompactJson(reply.value) + "\n"
                           : HumanReply(invocation.request, reply.value);
  } catch (const json::exception& e) {
    return Fail(err, "unexpected reply to " + invocation.request.execute + " from " +
                         invocation.socket_path + ": " + e.what());
  }
  out << text << std::flush;
  return out ? kExitOk : Fail(err, "cannot write output");
}

int RunCli(const std::vector<std::string>& args, const Environment& env, std::ostream& out,
           std::ostream& err) {
  try {
    std::vector<std::string> fs_args;
    if (IsFsTestCommand(args, &fs_args)) {  // execs tools/fs_test (tools/fs_test/launch.h)
      return RunFsTest(fs_args, FsTestEnvironment::FromProcess(), err);
    }
    ParseResult parsed = ParseCommandLine(args, env, out, err);
    if (!parsed.invocation) return parsed.exit_code;
    return Execute(*parsed.invocation, out, err);
  } catch (const std::exception& e) {
    return Fail(err, e.what());
  } catch (...) {
    return Fail(err, "unknown internal error");
  }
}

}  // namespace thinsim::cli
