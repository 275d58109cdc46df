#include "tools/cli_job.h"

#include <CLI/CLI.hpp>

#include "tools/format.h"

namespace thinsim::cli {

using nlohmann::json;

namespace {

// The verbs whose only argument is the job's id, and what they print.
struct IdVerb {
  const char* verb;
  const char* help;
  const char* done;  // "<done> job ID"
};
constexpr IdVerb kIdVerbs[] = {
    {"pause", "Pause a job at its next pause point (job-pause)", "pausing"},
    {"resume", "Resume a paused job (job-resume)", "resumed"},
    {"complete", "End a ready job, its target identical to the source (job-complete)", "completing"},
    {"finalize", "Finalise a pending job (auto-finalize off; job-finalize)", "finalized"},
    {"dismiss", "Remove a concluded job (auto-dismiss off; job-dismiss)", "dismissed"},
};

CLI::App* AddVerb(CLI::App* job, const std::string& verb, const std::string& help, JobArguments& a) {
  CLI::App* sub = job->add_subcommand(verb, help);
  sub->add_option("ID", a.id, "Job id (from thinsim jobs)")->required();
  return sub;
}

// "12K/1G (1.2%)", or "-" before the job knows its total.
std::string ProgressText(const json& j) {
  const auto current = j.at("current-progress").get<std::uint64_t>();
  const auto total = j.at("total-progress").get<std::uint64_t>();
  if (total == 0) return "-";
  return HumanSize(current) + "/" + HumanSize(total) + " (" + Percent(current, total) + ")";
}

std::string SpeedText(std::uint64_t speed) { return speed == 0 ? "-" : HumanSize(speed) + "/s"; }

std::string FormatJobTable(const json& jobs) {
  std::vector<std::vector<std::string>> rows = {{"ID", "TYPE", "STATUS", "PROGRESS", "SPEED", "ERROR"}};
  for (const json& j : jobs) {
    rows.push_back({j.at("id").get<std::string>(), j.at("type").get<std::string>(), j.at("status").get<std::string>(),
                    ProgressText(j), SpeedText(j.at("speed").get<std::uint64_t>()), j.value("error", "-")});
  }
  return RenderTable(rows, {false, false, false, true, true, false});
}

std::string Confirmation(const Request& request) {
  const std::string& command = request.execute;
  const std::string id = request.arguments.value("id", "");
  for (const IdVerb& v : kIdVerbs) {
    if (command == std::string("job-") + v.verb) return std::string(v.done) + " job " + id + "\n";
  }
  if (command == "job-cancel") {
    return "cancelling job " + id + (request.arguments.value("force", false) ? " (force)" : "") + "\n";
  }
  if (command == "job-set-speed") {
    const std::string speed = request.arguments.value("speed", "");
    return "job " + id + ": speed " + (speed == "0" ? std::string("unlimited") : speed + "/s") + "\n";
  }
  if (command == "job-change") return "changed job " + id + "\n";
  return "";
}

}  // namespace

void AddJobCommands(CLI::App& app, JobArguments& a) {
  app.add_subcommand("jobs", "List jobs: status, progress, speed (query-jobs)");
  CLI::App* job = app.add_subcommand("job", "Pause, resume, cancel, complete... a job (SPEC section 13)");
  job->require_subcommand(1);
  for (const IdVerb& v : kIdVerbs) AddVerb(job, v.verb, v.help, a);
  AddVerb(job, "cancel", "Cancel a job; after READY it ends COMPLETED unless --force (job-cancel)", a)
      ->add_flag("--force", a.force, "Abandon it at once, also after READY");
  AddVerb(job, "set-speed", "Limit a job's copy rate (job-set-speed)", a)
      ->add_option("SPEED", a.speed, "Bytes per second, e.g. 10M; 0: no limit")
      ->required();
  AddVerb(job, "change", "Change a running job's options, e.g. copy-mode=write-blocking (job-change)", a)
      ->add_option("KEY=VALUE", a.options, "Options to change")
      ->required();
}

bool IsJobCommand(const std::string& command) { return command == "jobs" || command.rfind("job ", 0) == 0; }

bool BuildJobRequest(const std::string& command, const JobArguments& a, Request* request, std::string* error) {
  if (command == "jobs") {
    *request = Request{"query-jobs", json::object()};
    return true;
  }
  if (!IsJobCommand(command)) {
    *error = "unknown command '" + command + "'";
    return false;
  }
  const std::string verb = command.substr(4);
  json args = {{"id", a.id}};
  if (verb == "cancel" && a.force) args["force"] = true;
  if (verb == "set-speed") args["speed"] = a.speed;
  if (verb == "change") {
    for (const std::string& kv : a.options) {
      const std::size_t eq = kv.find('=');
      if (eq == std::string::npos || eq == 0 || kv.substr(0, eq) == "id") {
        *error = "expected KEY=VALUE (not id), got '" + kv + "'";
        return false;
      }
      args[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
  }
  *request = Request{"job-" + verb, std::move(args)};
  return true;
}

std::string FormatJobReply(const Request& request, const json& result) {
  if (request.execute == "query-jobs") return FormatJobTable(result);
  // Only the job verbs: other commands' "id" may be a number (fault-remove).
  if (request.execute.rfind("job-", 0) != 0) return "";
  return Confirmation(request);
}

}  // namespace thinsim::cli
