// mirror-start (SPEC section 13): a MirrorJob (mirror/mirror_job.h) of a
// volume onto any NBD export, started in the server's JobRegistry. The
// job's own arguments (job-id, speed, the error policies, auto-finalize,
// auto-dismiss) go to the job framework; the rest to the mirror. Every
// argument is checked, and the target reached, before the job exists: a
// refused mirror-start leaves nothing behind.
#include <string>

#include "job/job_registry.h"
#include "mirror/mirror_job.h"
#include "plugin/command_args.h"
#include "plugin/command_table.h"

namespace thinsim {
namespace {

Status Policy(const CommandArgs& a, const char* key, JobErrorPolicy* out) {
  std::string name;
  THINSIM_RETURN_IF_ERROR(a.String(key, &name, /*required=*/false));
  if (!a.Has(key)) return Status::OK();
  if (!ParseJobErrorPolicy(name, out)) {
    return Status::Invalid(std::string(key) + ": unknown policy '" + name + "': report, ignore, stop or enospc");
  }
  return Status::OK();
}

// The mirror's arguments.
Status MirrorArgs(const CommandArgs& a, MirrorOptions* o) {
  THINSIM_RETURN_IF_ERROR(a.String("volume", &o->volume));
  THINSIM_RETURN_IF_ERROR(a.String("target", &o->target));
  std::string sync, bitmap_mode, copy_mode;
  THINSIM_RETURN_IF_ERROR(a.String("sync", &sync));
  THINSIM_RETURN_IF_ERROR(ParseSyncMode(sync, &o->sync));
  THINSIM_RETURN_IF_ERROR(a.String("bitmap", &o->bitmap, false));
  THINSIM_RETURN_IF_ERROR(a.String("bitmap-mode", &bitmap_mode, false));
  if (a.Has("bitmap-mode")) THINSIM_RETURN_IF_ERROR(ParseBitmapMode(bitmap_mode, &o->bitmap_mode));
  THINSIM_RETURN_IF_ERROR(a.String("copy-mode", &copy_mode, false));
  if (a.Has("copy-mode")) THINSIM_RETURN_IF_ERROR(ParseCopyMode(copy_mode, &o->copy_mode));
  THINSIM_RETURN_IF_ERROR(a.Size("granularity", &o->granularity, false));
  THINSIM_RETURN_IF_ERROR(a.Size("buf-size", &o->buf_size, false));
  if (o->buf_size == 0) return Status::Invalid("buf-size must be positive");
  return a.Bool("target-is-zero", &o->target_is_zero);
}

// The job framework's arguments.
Status JobArgs(const CommandArgs& a, JobOptions* j) {
  THINSIM_RETURN_IF_ERROR(a.String("job-id", &j->id, false));
  THINSIM_RETURN_IF_ERROR(a.Size("speed", &j->speed, false));
  THINSIM_RETURN_IF_ERROR(Policy(a, "on-source-error", &j->on_source_error));
  THINSIM_RETURN_IF_ERROR(Policy(a, "on-target-error", &j->on_target_error));
  THINSIM_RETURN_IF_ERROR(a.Bool("auto-finalize", &j->auto_finalize));
  return a.Bool("auto-dismiss", &j->auto_dismiss);
}

Status MirrorStart(const CommandCall& c) {
  if (c.jobs == nullptr) return Status::Unsupported("this server runs no jobs");
  CommandArgs a(c.args, {"job-id", "volume", "target", "sync", "bitmap", "bitmap-mode", "copy-mode", "granularity",
                         "buf-size", "speed", "on-source-error", "on-target-error", "target-is-zero",
                         "auto-finalize", "auto-dismiss"});
  THINSIM_RETURN_IF_ERROR(a.status());
  MirrorOptions mirror;
  JobOptions job;
  THINSIM_RETURN_IF_ERROR(MirrorArgs(a, &mirror));
  THINSIM_RETURN_IF_ERROR(JobArgs(a, &job));
  std::shared_ptr<MirrorJob> created;
  THINSIM_RETURN_IF_ERROR(MirrorJob::Create(c.pool, c.bitmaps, mirror, job, &created));
  std::string id;
  THINSIM_RETURN_IF_ERROR(c.jobs->Start(created, &id));
  *c.result = {{"id", id}};
  return Status::OK();
}

}  // namespace

void RegisterMirrorCommands(CommandTable* table) {
  // Starting a job changes no metadata of the pool: nothing to commit.
  table->Add("mirror-start", MirrorStart, CommandTable::Effect::kReadOnly);
}

}  // namespace thinsim
