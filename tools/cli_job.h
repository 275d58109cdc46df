// `thinsim jobs` and `thinsim job pause|resume|cancel|complete|finalize|
// dismiss|set-speed|change ID ...` (SPEC sections 10 and 13): the
// subcommands, their control requests, the jobs table and the verbs'
// confirmations. Internal to thinsim_cli (tools/cli.cc wires it in).
#ifndef THINSIM_TOOLS_CLI_JOB_H_
#define THINSIM_TOOLS_CLI_JOB_H_

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tools/control_client.h"

namespace CLI {
class App;
}  // namespace CLI

namespace thinsim::cli {

// What the job subcommands parse into.
struct JobArguments {
  std::string id;
  std::string speed;                // set-speed: bytes/s, "10M" (the server parses it)
  std::vector<std::string> options;  // change: KEY=VALUE ...
  bool force = false;               // cancel --force
};

void AddJobCommands(CLI::App& app, JobArguments& a);
// Whether `command` ("jobs", "job pause", ...) is one of these.
bool IsJobCommand(const std::string& command);
// The request for `command`; false (with *error) on bad input.
bool BuildJobRequest(const std::string& command, const JobArguments& a, Request* request, std::string* error);
// query-jobs as a table, a verb as a one-line confirmation; "" for other
// requests.
std::string FormatJobReply(const Request& request, const nlohmann::json& result);

}  // namespace thinsim::cli

#endif  // THINSIM_TOOLS_CLI_JOB_H_
