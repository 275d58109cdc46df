// MirrorJob (mirror_job.h): a mirror job's life on the job framework.
#include "mirror/mirror_job.h"

#include <algorithm>
#include <chrono>
#include <utility>

namespace thinsim {
namespace {

using namespace std::chrono_literals;
using CopyMode = MirrorCopier::CopyMode;

// How long a job with nothing to copy sleeps before it looks again (a write
// wakes it sooner), and how long it backs off after an ignored error.
constexpr auto kIdleWait = 1s;
constexpr auto kIgnoredErrorBackoff = 10ms;

Status CheckBitmapArgs(BitmapRegistry* bitmaps, const MirrorOptions& o, std::shared_ptr<VolumeBitmaps>* set,
                       uint64_t* granularity) {
  if (o.sync != SyncMode::kIncremental) {
    if (!o.bitmap.empty()) return Status::Invalid("a bitmap is only for sync 'incremental'");
    return Status::OK();
  }
  if (o.bitmap.empty()) return Status::Invalid("sync 'incremental' needs a bitmap");
  if (bitmaps == nullptr) return Status::Unsupported("this server keeps no bitmaps");
  THINSIM_RETURN_IF_ERROR(bitmaps->Get(o.volume, /*create=*/false, set));
  if (!*set) return Status::NotFound("volume '" + o.volume + "' has no bitmap '" + o.bitmap + "'");
  BitmapInfo info;
  THINSIM_RETURN_IF_ERROR((*set)->Query(o.bitmap, &info));
  if (info.busy) return Status::Busy("bitmap '" + o.bitmap + "' is in use by another job");
  if (info.inconsistent) {
    return Status::Invalid("bitmap '" + o.bitmap + "' is inconsistent: mirror with sync 'full' instead");
  }
  if (*granularity == 0) *granularity = info.granularity;  // the 2024 series' rule: the bitmap's
  return Status::OK();
}

// iotest 041's "mirror to self": a target that is the source volume itself
// (the same running pool - its instance_id in the export's description -
// and the same export, however the URI spells it) would copy every block
// onto itself, and a write-blocking write would wait for itself.
Status RefuseOwnSource(const Pool& pool, const std::string& volume, const NbdTarget& target) {
  const NbdTarget::Info& t = target.info();
  if (t.export_name != volume || t.description.find(pool.instance_id()) == std::string::npos) return Status::OK();
  return Status::Invalid("mirror target '" + target.uri() + "' is the source volume '" + volume +
                         "' itself: mirror onto another export");
}

}  // namespace

std::string_view BitmapModeName(BitmapMode mode) {
  switch (mode) {
    case BitmapMode::kOnSuccess:
      return "on-success";
    case BitmapMode::kAlways:
      return "always";
    case BitmapMode::kNever:
      return "never";
  }
  return "?";
}

Status ParseBitmapMode(std::string_view name, BitmapMode* out) {
  for (BitmapMode m : {BitmapMode::kOnSuccess, BitmapMode::kAlways, BitmapMode::kNever}) {
    if (name == BitmapModeName(m)) {
      *out = m;
      return Status::OK();
    }
  }
  return Status::Invalid("unknown bitmap-mode '" + std::string(name) + "': on-success, always or never");
}

std::string_view CopyModeName(CopyMode mode) {
  return mode == CopyMode::kBackground ? "background" : "write-blocking";
}

Status ParseCopyMode(std::string_view name, CopyMode* out) {
  for (CopyMode m : {CopyMode::kBackground, CopyMode::kWriteBlocking}) {
    if (name == CopyModeName(m)) {
      *out = m;
      return Status::OK();
    }
  }
  return Status::Invalid("unknown copy-mode '" + std::string(name) + "': background or write-blocking");
}

Status MirrorJob::Create(Pool* pool, BitmapRegistry* bitmaps, MirrorOptions options, JobOptions job,
                         std::shared_ptr<MirrorJob>* out) {
  VolumeInfo info;
  THINSIM_RETURN_IF_ERROR(pool->QueryVolume(options.volume, &info));
  std::shared_ptr<VolumeBitmaps> set;
  THINSIM_RETURN_IF_ERROR(CheckBitmapArgs(bitmaps, options, &set, &options.granularity));
  if (options.granularity == 0) options.granularity = pool->block_size();
  std::unique_ptr<NbdTarget> target;
  THINSIM_RETURN_IF_ERROR(NbdTarget::Connect(options.target, 4, &target));
  THINSIM_RETURN_IF_ERROR(RefuseOwnSource(*pool, options.volume, *target));
  MirrorCopier::Options copy;
  copy.granularity = options.granularity;
  copy.buf_size = std::max<uint64_t>(options.buf_size, options.granularity);  // rounded up, as QEMU's
  copy.target_is_zero = options.target_is_zero;
  copy.copy_mode = options.copy_mode;
  THINSIM_RETURN_IF_ERROR(MirrorCopier::Check(info.size, target->info(), copy));
  if (copy.copy_mode == CopyMode::kWriteBlocking) {
    THINSIM_RETURN_IF_ERROR(MirrorCopier::CheckWriteBlocking(pool->block_size(), target->info()));
  }
  std::shared_ptr<Volume> volume;
  THINSIM_RETURN_IF_ERROR(pool->OpenVolume(options.volume, /*writable=*/false, &volume));
  auto copier = std::make_shared<MirrorCopier>(pool, volume, std::move(target), copy);
  if (set) {
    Status busy = set->SetBusy(options.bitmap, true);
    if (!busy.ok()) {
      pool->CloseVolume(volume, false);
      return busy;
    }
  }
  job.volumes = {options.volume};
  out->reset(new MirrorJob(pool, std::move(options), std::move(job), std::move(volume), std::move(copier),
                           std::move(set)));
  return Status::OK();
}

MirrorJob::MirrorJob(Pool* pool, MirrorOptions options, JobOptions job, std::shared_ptr<Volume> volume,
                     std::shared_ptr<MirrorCopier> copier, std::shared_ptr<VolumeBitmaps> bitmaps)
    : Job("mirror", job),
      pool_(pool),
      options_(std::move(options)),
      volume_(std::move(volume)),
      copier_(std::move(copier)),
      bitmaps_(std::move(bitmaps)),
      speed_(job.speed) {
  copier_->set_wake([this] { Wake(); });
}

MirrorJob::~MirrorJob() { Clean(); }

Status MirrorJob::Run() {
  THINSIM_RETURN_IF_ERROR(Attach());
  Status result;
  while (Step(&result)) {
  }
  return result;
}

Status MirrorJob::Attach() {
  THINSIM_RETURN_IF_ERROR(copier_->ProbeTargetZero());
  THINSIM_RETURN_IF_ERROR(pool_->AttachObserver(options_.volume, copier_));
  attached_ = true;
  boost::icl::interval_set<uint64_t> bitmap_dirty;
  if (bitmaps_) THINSIM_RETURN_IF_ERROR(bitmaps_->DirtyRanges(options_.bitmap, &bitmap_dirty));
  THINSIM_RETURN_IF_ERROR(MarkInitial(*pool_, options_.volume, options_.sync, bitmap_dirty, &copier_->dirty()));
  SetTotalProgress(copier_->dirty_bytes());
  return Status::OK();
}

bool MirrorJob::Step(Status* result) {
  if (PausePoint()) return false;  // a hard cancel: the result does not matter
  if (completion_requested() || soft_cancelled()) {
    *result = Finish();
    return false;
  }
  if (std::optional<MirrorCopier::Failure> active = copier_->TakeActiveFailure()) {
    if (!Handle(*active, result)) return false;
  }
  uint64_t copied = 0;
  std::optional<MirrorCopier::Failure> failure;
  copier_->CopySome(&copied, &failure, StepBudget());
  copied_ += copied;
  AddProgress(copied);
  SetTotalProgress(copied_ + copier_->dirty_bytes());
  if (copied > 0 && Throttle(copied)) return false;
  if (failure) return Handle(*failure, result);
  if (copier_->dirty_bytes() == 0) return Idle(result);
  return true;
}

bool MirrorJob::Handle(const MirrorCopier::Failure& failure, Status* result) {
  const JobOperation op = failure.side == MirrorCopier::Side::kSource ? JobOperation::kRead : JobOperation::kWrite;
  switch (HandleError(op, failure.status)) {
    case JobErrorAction::kReport:
      *result = failure.status;
      return false;
    case JobErrorAction::kIgnore:
      WaitForWakeup(kIgnoredErrorBackoff);  // the run is dirty again: retried later
      return true;
    case JobErrorAction::kStop:
      if (cancelled()) return false;
      // Resumed: retry, on new connections if the target went away and
      // came back (a failure again pauses again).
      if (failure.side == MirrorCopier::Side::kTarget) (void)copier_->ReconnectTarget();
      return true;
  }
  return true;
}

bool MirrorJob::Idle(Status* result) {
  if (!ready_) {
    Status flushed = copier_->FlushTarget();
    if (!flushed.ok()) return Handle({MirrorCopier::Side::kTarget, flushed}, result);
    ready_ = true;
    SetReady();
  }
  copier_->MarkActivelySynced();
  // Armed before the last look, so that a write after it wakes the wait.
  copier_->WakeOnNextChange();
  if (copier_->dirty_bytes() == 0 && !completion_requested() && !soft_cancelled()) WaitForWakeup(kIdleWait);
  return true;
}

Status MirrorJob::Finish() {
  return pool_->AtPointInTime(
      {options_.volume},
      [this] {
        // No write of the volume runs now: what is copied is the volume as
        // of this moment.
        THINSIM_RETURN_IF_ERROR(CopyRest());
        THINSIM_RETURN_IF_ERROR(copier_->FlushTarget());
        copier_->Stop();
        return SettleBitmap(/*success=*/true);
      },
      "mirror job completion");
}

Status MirrorJob::CopyRest() {
  while (copier_->dirty_bytes() > 0) {
    uint64_t copied = 0;
    std::optional<MirrorCopier::Failure> failure;
    copier_->CopySome(&copied, &failure);
    copied_ += copied;
    AddProgress(copied);
    if (failure) return failure->status;
  }
  SetTotalProgress(copied_);
  return Status::OK();
}

boost::icl::interval_set<uint64_t> MirrorJob::Current() const {
  boost::icl::interval_set<uint64_t> current = copier_->done();
  current -= copier_->dirty().DirtyRanges();
  return current;
}

Status MirrorJob::SettleBitmap(bool success) {
  if (!bitmaps_ || settled_) return Status::OK();
  settled_ = true;
  THINSIM_RETURN_IF_ERROR(bitmaps_->SetBusy(options_.bitmap, false));
  if (options_.bitmap_mode == BitmapMode::kNever) return Status::OK();
  if (success) return bitmaps_->Clear(options_.bitmap);
  if (options_.bitmap_mode == BitmapMode::kAlways) return bitmaps_->ClearRanges(options_.bitmap, Current());
  return Status::OK();
}

uint64_t MirrorJob::StepBudget() const {
  // Under a speed limit, steps small enough for the throttle to be smooth.
  if (speed_ == 0) return 0;  // the copier's buf-size
  return std::min<uint64_t>(std::max<uint64_t>(copier_->granularity(), 1 << 20), options_.buf_size);
}

Status MirrorJob::OnChange(const nlohmann::json& args) {
  if (!args.is_object()) return Status::Invalid("job-change takes an object");
  for (const auto& [key, value] : args.items()) {
    if (key != "copy-mode" && key != "type") return Status::Invalid("job-change: unknown argument '" + key + "'");
  }
  if (!args.contains("copy-mode")) return Status::OK();
  if (!args["copy-mode"].is_string()) return Status::Invalid("job-change: copy-mode must be a string");
  CopyMode mode;
  THINSIM_RETURN_IF_ERROR(ParseCopyMode(args["copy-mode"].get<std::string>(), &mode));
  if (mode == CopyMode::kBackground && copier_->copy_mode() == CopyMode::kWriteBlocking) {
    return Status::Invalid("job-change: a mirror changes from background to write-blocking only");
  }
  if (mode == CopyMode::kWriteBlocking) {
    THINSIM_RETURN_IF_ERROR(MirrorCopier::CheckWriteBlocking(pool_->block_size(), copier_->target().info()));
  }
  copier_->set_copy_mode(mode);
  Wake();  // a ready job may be actively synced from now on
  return Status::OK();
}

void MirrorJob::Commit() {}

void MirrorJob::Abort() {
  // At a point in time, so that no write lands between what is judged
  // current and the bitmap's change.
  (void)pool_->AtPointInTime(
      {options_.volume},
      [this] {
        copier_->Stop();
        return SettleBitmap(/*success=*/false);
      },
      "mirror job end");
}

void MirrorJob::Clean() {
  copier_->Stop();
  if (attached_) {
    (void)pool_->DetachObserver(options_.volume, copier_.get());
    attached_ = false;
  }
  if (bitmaps_ && !settled_) {
    settled_ = true;
    (void)bitmaps_->SetBusy(options_.bitmap, false);
  }
  if (volume_open_) {
    pool_->CloseVolume(volume_, /*writable=*/false);
    volume_open_ = false;
  }
}

nlohmann::json MirrorJob::QueryFields() const {
  return {{"actively-synced", copier_->actively_synced()},
          {"copy-mode", std::string(CopyModeName(copier_->copy_mode()))},
          {"sync", std::string(SyncModeName(options_.sync))},
          {"volume", options_.volume},
          {"target", options_.target},
          {"granularity", copier_->granularity()},
          {"dirty-bytes", copier_->dirty_bytes()}};
}

}  // namespace thinsim
