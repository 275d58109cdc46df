// `thinsim mirror VOLUME URI [options] [--wait]` (SPEC sections 10 and 13):
// the subcommand, its mirror-start request, and --wait: the job's progress
// until it is READY, then job-complete, then its end. Internal to
// thinsim_cli (tools/cli.cc wires it in).
#ifndef THINSIM_TOOLS_CLI_MIRROR_H_
#define THINSIM_TOOLS_CLI_MIRROR_H_

#include <chrono>
#include <ostream>
#include <string>

#include <nlohmann/json.hpp>

#include "tools/control_client.h"

namespace CLI {
class App;
}  // namespace CLI

namespace thinsim::cli {

struct MirrorArguments {
  std::string volume;
  std::string uri;
  std::string sync = "full";
  std::string bitmap;
  std::string bitmap_mode;
  std::string copy_mode;
  std::string granularity;  // sizes as strings: the server parses "64K"
  std::string buf_size;
  std::string speed;
  std::string on_source_error;
  std::string on_target_error;
  std::string job_id;
  bool target_is_zero = false;
  bool wait = false;
};

void AddMirrorCommands(CLI::App& app, MirrorArguments& a);
// The mirror-start request. With --wait the job is started with
// auto-dismiss off, so that its end (and error) can be read before it goes.
Request BuildMirrorRequest(const MirrorArguments& a);
// One progress report: "job0: ready  4M/4M (100%)  12M/s  ETA 0s" for a
// terminal, a JSON object with the same facts for --json. `rate` in
// bytes/s (negative: not known yet).
std::string ProgressLine(const nlohmann::json& job, double rate, bool json_output);
// --wait, after mirror-start answered with the job's id: reports progress
// every `interval`, completes the job once it is READY, and waits for its
// end. 0 when it completed; 1 (the job's error on `err`) otherwise.
// `tty`: progress as one line rewritten in place, else a line per change.
int WaitForMirror(ControlClient* client, const std::string& id, bool json_output, bool tty,
                  std::chrono::milliseconds interval, std::ostream& out, std::ostream& err);

}  // namespace thinsim::cli

#endif  // THINSIM_TOOLS_CLI_MIRROR_H_
