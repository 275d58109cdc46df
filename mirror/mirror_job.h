// MirrorJob: a mirror job (SPEC section 13) - a volume copied to any NBD
// export, in the background or write-blocking, full, top, none or
// incremental - as a Job (job/job.h) whose data path is a MirrorCopier.
//
// Run(), on the job's thread:
//   1. attaches the copier to the volume (a point in time: the volume's
//      writes drain) and then marks what the sync mode copies (so a write in
//      between is copied twice at worst, never missed);
//   2. copies dirty runs, buf-size at a time, under the speed limit, with a
//      pause point between steps; a failed read applies on-source-error, a
//      failed target write (also one a write-blocking request met)
//      on-target-error; a job stopped by a target error reconnects to the
//      target when resumed;
//   3. with nothing dirty: flushes the target and goes READY (then, in
//      write-blocking mode, actively synced); sleeps until a write dirties
//      something again;
//   4. on job-complete, or job-cancel after READY: inside a point in time
//      (no write of the volume runs) copies what is left, flushes the
//      target and stops mirroring: the target is the volume as of that
//      moment. Success.
// bitmap-mode (incremental): the bitmap is busy while the job runs; on
// success (on-success, always) it is cleared at that same point in time;
// after a failure or cancel, `always` clears the granules the job made
// current on the target (copied and not written since), `on-success` and
// `never` leave it. `never` also leaves it after success: a read-only
// manifest.
//
// Thread safety: as Job. The copier is shared with the volume's request
// threads (a RequestObserver) and outlives its attachment.
#ifndef THINSIM_MIRROR_MIRROR_JOB_H_
#define THINSIM_MIRROR_MIRROR_JOB_H_

#include <memory>
#include <string>

#include "bitmap/bitmap_registry.h"
#include "job/job.h"
#include "mirror/mirror_copier.h"
#include "mirror/sync_mode.h"
#include "pool/pool.h"

namespace thinsim {

enum class BitmapMode { kOnSuccess, kAlways, kNever };
// "on-success", "always", "never".
std::string_view BitmapModeName(BitmapMode mode);
Status ParseBitmapMode(std::string_view name, BitmapMode* out);
// "background", "write-blocking".
std::string_view CopyModeName(MirrorCopier::CopyMode mode);
Status ParseCopyMode(std::string_view name, MirrorCopier::CopyMode* out);

// mirror-start's arguments that are the mirror's own (the job's are
// JobOptions).
struct MirrorOptions {
  std::string volume;
  std::string target;  // an NBD URI
  SyncMode sync = SyncMode::kFull;
  std::string bitmap;  // incremental only: a bitmap of the volume
  BitmapMode bitmap_mode = BitmapMode::kOnSuccess;
  MirrorCopier::CopyMode copy_mode = MirrorCopier::CopyMode::kBackground;
  uint64_t granularity = 0;      // 0: the bitmap's (incremental) or the pool's block size
  uint64_t buf_size = 16 << 20;  // bytes in flight per step
  bool target_is_zero = false;
};

class MirrorJob final : public Job {
 public:
  // Checks everything that can be checked before the job exists - the
  // volume, the bitmap (incremental needs one; others refuse one), the
  // target (reachable, not the volume itself, the volume's size, a
  // granularity no smaller than its preferred block size: the message names
  // both) - connects to the target
  // and opens the volume. The job copies nothing until the registry starts
  // it. `job.volumes` is set to the volume.
  static Status Create(Pool* pool, BitmapRegistry* bitmaps, MirrorOptions options, JobOptions job,
                       std::shared_ptr<MirrorJob>* out);
  ~MirrorJob() override;

 protected:
  Status Run() override;
  Status OnComplete() override { return Status::OK(); }
  // {"copy-mode": "write-blocking"}: background to write-blocking only.
  Status OnChange(const nlohmann::json& args) override;
  void Commit() override;
  void Abort() override;
  void Clean() override;
  nlohmann::json QueryFields() const override;

 private:
  MirrorJob(Pool* pool, MirrorOptions options, JobOptions job, std::shared_ptr<Volume> volume,
            std::shared_ptr<MirrorCopier> copier, std::shared_ptr<VolumeBitmaps> bitmaps);

  // Attaches the copier and marks the sync mode's initial set.
  Status Attach();
  // One step of the copy; false when Run() must return `*result`.
  bool Step(Status* result);
  // A failed operation through the job's error policy; false when Run()
  // must return `*result` (the error, or OK after a cancel).
  bool Handle(const MirrorCopier::Failure& failure, Status* result);
  // Nothing dirty: READY, and the end when asked for.
  bool Idle(Status* result);
  // job-complete or a cancel after READY: the last copy at a point in time.
  Status Finish();
  // Copies every dirty run; with the volume's gate held (Finish).
  Status CopyRest();
  // What the target holds current now: copied, and not dirty since.
  boost::icl::interval_set<uint64_t> Current() const;
  // The bitmap-mode's effect at the end, `success` or not, at a point in
  // time (REQUIRES: the volume's io_gate held).
  Status SettleBitmap(bool success);
  uint64_t StepBudget() const;

  Pool* const pool_;
  const MirrorOptions options_;
  const std::shared_ptr<Volume> volume_;
  const std::shared_ptr<MirrorCopier> copier_;
  const std::shared_ptr<VolumeBitmaps> bitmaps_;  // incremental only
  const uint64_t speed_;  // bytes/s at start, for the step size; 0: none
  bool volume_open_ = true;  // the job's thread only (then the destructor)
  bool attached_ = false;
  bool ready_ = false;
  bool settled_ = false;    // the bitmap's end is done
  uint64_t copied_ = 0;
};

}  // namespace thinsim

#endif  // THINSIM_MIRROR_MIRROR_JOB_H_
