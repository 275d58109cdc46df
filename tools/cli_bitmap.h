// `thinsim bitmap add|remove|clear|enable|disable|merge|ls|extents|cut`
// (SPEC sections 10 and 12): the subcommands, their control requests and
// their tables. Internal to thinsim_cli (tools/cli.cc wires it in).
#ifndef THINSIM_TOOLS_CLI_BITMAP_H_
#define THINSIM_TOOLS_CLI_BITMAP_H_

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tools/control_client.h"

namespace CLI {
class App;
}  // namespace CLI

namespace thinsim::cli {

// What the bitmap subcommands parse into.
struct BitmapArguments {
  std::string volume;
  std::string name;
  std::string into;
  std::string granularity;
  std::string offset;
  std::string length;
  std::vector<std::string> sources;
  bool disabled = false;
  bool persistent = false;
};

void AddBitmapCommands(CLI::App& app, BitmapArguments& a);
// The request for `command` ("bitmap add", ...); false (with *error) for a
// command that is not a bitmap command.
bool BuildBitmapRequest(const std::string& command, const BitmapArguments& a, Request* request,
                        std::string* error);
// query-bitmaps and bitmap-extents as tables; "" for other requests.
std::string FormatBitmapReply(const Request& request, const nlohmann::json& result);

}  // namespace thinsim::cli

#endif  // THINSIM_TOOLS_CLI_BITMAP_H_
