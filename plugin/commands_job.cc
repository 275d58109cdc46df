// Job commands (SPEC section 13): query-jobs, job-pause, job-resume,
// job-cancel, job-complete, job-finalize, job-dismiss, job-set-speed,
// job-change. They act on the server's JobRegistry (job/job_registry.h);
// a verb the job's state does not accept fails with QEMU's message ("Job
// 'ID' in state 'STATE' cannot accept command verb 'VERB'"). Jobs are
// started by their own commands (mirror-start).
#include <string>

#include "job/job_registry.h"
#include "plugin/command_args.h"
#include "plugin/command_table.h"

namespace thinsim {

using nlohmann::json;

namespace {

Status NeedJobs(const CommandCall& c) {
  if (c.jobs == nullptr) return Status::Unsupported("this server runs no jobs");
  return Status::OK();
}

// query-jobs' object: QEMU's JobInfo and the job type's own fields.
json JobJson(const JobInfo& info) {
  json j = {{"id", info.id},
            {"type", info.type},
            {"status", JobStatusName(info.status)},
            {"current-progress", info.current_progress},
            {"total-progress", info.total_progress},
            {"speed", info.speed}};
  if (!info.error.empty()) j["error"] = info.error;
  for (const auto& [key, value] : info.fields.items()) j[key] = value;
  return j;
}

Status QueryJobs(const CommandCall& c) {
  THINSIM_RETURN_IF_ERROR(NeedJobs(c));
  CommandArgs a(c.args, {});
  THINSIM_RETURN_IF_ERROR(a.status());
  *c.result = json::array();
  for (const JobInfo& info : c.jobs->Query()) c.result->push_back(JobJson(info));
  return Status::OK();
}

// The verbs whose only argument is the job's id.
template <JobVerb kVerb>
Status IdOnly(const CommandCall& c) {
  THINSIM_RETURN_IF_ERROR(NeedJobs(c));
  CommandArgs a(c.args, {"id"});
  THINSIM_RETURN_IF_ERROR(a.status());
  std::string id;
  THINSIM_RETURN_IF_ERROR(a.String("id", &id));
  THINSIM_RETURN_IF_ERROR(c.jobs->Verb(id, kVerb));
  return EmptyReturn(c);
}

Status JobCancel(const CommandCall& c) {
  THINSIM_RETURN_IF_ERROR(NeedJobs(c));
  CommandArgs a(c.args, {"id", "force"});
  THINSIM_RETURN_IF_ERROR(a.status());
  std::string id;
  JobVerbArgs args;
  THINSIM_RETURN_IF_ERROR(a.String("id", &id));
  THINSIM_RETURN_IF_ERROR(a.Bool("force", &args.force));
  THINSIM_RETURN_IF_ERROR(c.jobs->Verb(id, JobVerb::kCancel, args));
  return EmptyReturn(c);
}

Status JobSetSpeed(const CommandCall& c) {
  THINSIM_RETURN_IF_ERROR(NeedJobs(c));
  CommandArgs a(c.args, {"id", "speed"});
  THINSIM_RETURN_IF_ERROR(a.status());
  std::string id;
  JobVerbArgs args;
  THINSIM_RETURN_IF_ERROR(a.String("id", &id));
  THINSIM_RETURN_IF_ERROR(a.Size("speed", &args.speed));  // bytes/s; "10M" too; 0: no limit
  THINSIM_RETURN_IF_ERROR(c.jobs->Verb(id, JobVerb::kSetSpeed, args));
  return EmptyReturn(c);
}

// job-change {id, copy-mode?}: the options SPEC 13 lets change (a
// mirror's copy-mode), passed on as given; the job refuses what its type
// cannot change.
Status JobChange(const CommandCall& c) {
  THINSIM_RETURN_IF_ERROR(NeedJobs(c));
  CommandArgs a(c.args, {"id", "copy-mode"});
  THINSIM_RETURN_IF_ERROR(a.status());
  std::string id, copy_mode;
  THINSIM_RETURN_IF_ERROR(a.String("id", &id));
  THINSIM_RETURN_IF_ERROR(a.String("copy-mode", &copy_mode, false));
  JobVerbArgs args;
  if (a.Has("copy-mode")) args.change["copy-mode"] = copy_mode;
  THINSIM_RETURN_IF_ERROR(c.jobs->Verb(id, JobVerb::kChange, args));
  return EmptyReturn(c);
}

}  // namespace

void RegisterJobCommands(CommandTable* table) {
  using Effect = CommandTable::Effect;
  // A verb changes a job, not the pool's metadata: nothing to commit.
  table->Add("query-jobs", QueryJobs, Effect::kReadOnly);
  table->Add("job-pause", IdOnly<JobVerb::kPause>, Effect::kReadOnly);
  table->Add("job-resume", IdOnly<JobVerb::kResume>, Effect::kReadOnly);
  table->Add("job-cancel", JobCancel, Effect::kReadOnly);
  table->Add("job-complete", IdOnly<JobVerb::kComplete>, Effect::kReadOnly);
  table->Add("job-finalize", IdOnly<JobVerb::kFinalize>, Effect::kReadOnly);
  table->Add("job-dismiss", IdOnly<JobVerb::kDismiss>, Effect::kReadOnly);
  table->Add("job-set-speed", JobSetSpeed, Effect::kReadOnly);
  table->Add("job-change", JobChange, Effect::kReadOnly);
}

}  // namespace thinsim
