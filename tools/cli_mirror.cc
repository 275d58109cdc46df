#include "tools/cli_mirror.h"

#include <CLI/CLI.hpp>

#include <thread>

#include "tools/format.h"

namespace thinsim::cli {

using nlohmann::json;

namespace {

// The job `id` in a query-jobs reply, or null.
const json* FindJob(const json& jobs, const std::string& id) {
  for (const json& j : jobs) {
    if (j.value("id", "") == id) return &j;
  }
  return nullptr;
}

Status Call(ControlClient* client, Request request, json* result) {
  Reply reply;
  THINSIM_RETURN_IF_ERROR(client->Call(request, &reply));
  if (!reply.ok) return Status::IOError(FormatServerError(reply.value));
  *result = std::move(reply.value);
  return Status::OK();
}

std::string EtaText(double seconds) {
  if (seconds < 0) return "-";
  const auto s = static_cast<uint64_t>(seconds + 0.5);
  return s < 60 ? std::to_string(s) + "s" : std::to_string(s / 60) + "m" + std::to_string(s % 60) + "s";
}

// Measures the copy rate between two reports.
class RateMeter {
 public:
  double Update(uint64_t progress) {
    const auto now = std::chrono::steady_clock::now();
    double rate = -1;
    if (started_) {
      const double dt = std::chrono::duration<double>(now - last_time_).count();
      if (dt > 0 && progress >= last_progress_) rate = static_cast<double>(progress - last_progress_) / dt;
    }
    started_ = true;
    last_time_ = now;
    last_progress_ = progress;
    return rate;
  }

 private:
  bool started_ = false;
  std::chrono::steady_clock::time_point last_time_;
  uint64_t last_progress_ = 0;
};

int Failed(std::ostream& err, const std::string& message) {
  err << "thinsim: " << message << "\n";
  return 1;
}

}  // namespace

void AddMirrorCommands(CLI::App& app, MirrorArguments& a) {
  CLI::App* m = app.add_subcommand("mirror", "Copy a volume to any NBD export in the background (mirror-start)");
  m->add_option("VOLUME", a.volume, "The volume to copy")->required();
  m->add_option("URI", a.uri, "The target: nbd+unix:///EXPORT?socket=PATH or nbd://HOST[:PORT]/EXPORT")->required();
  m->add_option("--sync", a.sync, "full (default), top, none or incremental");
  m->add_option("--bitmap", a.bitmap, "incremental: the dirty bitmap of VOLUME to copy");
  m->add_option("--bitmap-mode", a.bitmap_mode, "on-success (default), always or never");
  m->add_option("--copy-mode", a.copy_mode, "background (default) or write-blocking");
  m->add_option("--granularity", a.granularity, "Bytes per dirty granule (default: the block size)");
  m->add_option("--buf-size", a.buf_size, "Bytes in flight per step (default 16M)");
  m->add_option("--speed", a.speed, "Bytes per second at most, e.g. 10M");
  m->add_option("--on-source-error", a.on_source_error, "report (default), ignore, stop or enospc");
  m->add_option("--on-target-error", a.on_target_error, "report (default), ignore, stop or enospc");
  m->add_option("--job-id", a.job_id, "The job's id (default: jobN)");
  m->add_flag("--target-is-zero", a.target_is_zero, "The target reads zero: skip zero writes (not checked)");
  m->add_flag("--wait", a.wait, "Show progress, complete the job once READY, and wait for its end");
}

Request BuildMirrorRequest(const MirrorArguments& a) {
  json args = {{"volume", a.volume}, {"target", a.uri}, {"sync", a.sync}};
  const std::pair<const char*, const std::string*> optional[] = {
      {"bitmap", &a.bitmap},           {"bitmap-mode", &a.bitmap_mode},         {"copy-mode", &a.copy_mode},
      {"granularity", &a.granularity}, {"buf-size", &a.buf_size},               {"speed", &a.speed},
      {"job-id", &a.job_id},           {"on-source-error", &a.on_source_error}, {"on-target-error", &a.on_target_error}};
  for (const auto& [key, value] : optional) {
    if (!value->empty()) args[key] = *value;
  }
  if (a.target_is_zero) args["target-is-zero"] = true;
  if (a.wait) args["auto-dismiss"] = false;
  return Request{"mirror-start", std::move(args)};
}

std::string ProgressLine(const json& job, double rate, bool json_output) {
  const uint64_t current = job.value("current-progress", uint64_t{0});
  const uint64_t total = job.value("total-progress", uint64_t{0});
  const double eta = rate > 0 && total >= current ? static_cast<double>(total - current) / rate : -1;
  const std::string status = job.value("status", "");
  if (json_output) {
    json line = {{"id", job.value("id", "")}, {"status", status},       {"current-progress", current},
                 {"total-progress", total},   {"rate", rate < 0 ? 0 : rate}, {"eta-seconds", eta < 0 ? json() : json(eta)},
                 {"actively-synced", job.value("actively-synced", false)}};
    return CompactJson(line);
  }
  std::string progress = total == 0 ? "-" : HumanSize(current) + "/" + HumanSize(total) + " (" + Percent(current, total) + ")";
  std::string speed = rate < 0 ? "-" : HumanSize(static_cast<uint64_t>(rate)) + "/s";
  return job.value("id", "") + ": " + status + "  " + progress + "  " + speed + "  ETA " + EtaText(eta);
}

int WaitForMirror(ControlClient* client, const std::string& id, bool json_output, bool tty,
                  std::chrono::milliseconds interval, std::ostream& out, std::ostream& err) {
  RateMeter meter;
  bool completing = false;
  std::string last;
  for (;;) {
    json jobs;
    Status s = Call(client, Request{"query-jobs", json::object()}, &jobs);
    if (!s.ok()) return Failed(err, s.message());
    const json* job = FindJob(jobs, id);
    if (job == nullptr) return Failed(err, "job " + id + " is gone (dismissed by someone else)");
    const std::string status = job->value("status", "");
    std::string line = ProgressLine(*job, meter.Update(job->value("current-progress", uint64_t{0})), json_output);
    if (tty && !json_output) {
      out << "\r" << line << "\033[K" << std::flush;
    } else if (line != last) {
      out << line << "\n" << std::flush;
    }
    last = line;
    if (status == "concluded") {
      if (tty && !json_output) out << "\n";
      const std::string error = job->value("error", "");
      json ignored;
      (void)Call(client, Request{"job-dismiss", {{"id", id}}}, &ignored);
      if (!error.empty()) return Failed(err, "mirror job " + id + " failed: " + error);
      return 0;
    }
    if (status == "ready" && !completing) {
      s = Call(client, Request{"job-complete", {{"id", id}}}, &jobs);
      if (!s.ok()) return Failed(err, s.message());
      completing = true;
    }
    std::this_thread::sleep_for(interval);
  }
}

}  // namespace thinsim::cli
