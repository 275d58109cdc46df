// MirrorCopier: the data path of one mirror job (SPEC section 13) - what is
// left to copy, the background copy, and the write-blocking writes - without
// the job's states and policies (the job drives it).
//
// State:
//   - `dirty`: a DirtyBitmap of the job's granularity over the volume: the
//     granules whose bytes the target may not hold yet. The sync mode fills
//     it at start (MarkAll for full; the ranges of top or of an incremental
//     bitmap); in background copy mode every request the volume then takes
//     marks it (BeforeChange, so also one that fails afterwards).
//   - `in_flight`: the byte ranges being written to the target (one writer
//     per byte: InFlightRanges).
//   - `done`: the ranges copied to the target by this job (an ICL set), and
//     `target_zero`: ranges known to read zero on the target (target-is-zero
//     or its block status at start, then every zero written, minus every
//     data write), so zero chunks are skipped where the target already reads
//     zero.
//
// The background copy (CopySome) takes the next runs of dirty granules (as
// many at once as the target has connections, each on its own thread),
// reads it with Pool::CopyRead, which clears the run's dirty bits while it
// still holds the volume's range lock - so a request that changes those
// bytes either came before the read (its bytes are in the copy) or marks
// them dirty again after it - and writes it to the target: as zeroes when
// the bytes read all zero (FAST_ZERO first, so no zero bytes cross the wire
// where the server can avoid it; nothing at all where the target already
// reads zero), else as data. A failed target write marks the run dirty again.
//
// Write-blocking mode (a client's write is acknowledged only once the target
// has it): AfterChange writes the request's own bytes (or zeroes, for zero
// and trim) to the target, after any copy in flight over them - widened to
// whole blocks of the target's minimum block size, with the volume's bytes
// around the request, where the target takes nothing smaller - and clears
// the granules the request covered entirely; a granule it covers only in
// part keeps its state (dirty ones are left to the background copy; clean
// ones stay in sync, as the same bytes changed on both sides). The job's
// granularity must be at least the target's preferred block size, so such
// a partial write never leaves a target block half written by a mirror
// that thinks it whole (the rule of the 2024 bitmap-mirror thread). A
// target error there does not fail the client's request (its data is in
// the volume): the request's granules are marked dirty again, the copier
// is no longer actively synced, and the failure is queued for the job's
// on-target-error policy (TakeActiveFailure).
//
// A mode change background -> write-blocking is safe at any time: a request
// that marked in BeforeChange and writes through in AfterChange is merely
// copied twice.
//
// Thread safety: thread-safe. BeforeChange/AfterChange run on request
// threads; CopySome on the job's thread (one at a time).
#ifndef THINSIM_MIRROR_MIRROR_COPIER_H_
#define THINSIM_MIRROR_MIRROR_COPIER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include <boost/icl/interval_set.hpp>

#include "base/mutex.h"
#include "base/status.h"
#include "base/thread_annotations.h"
#include "bitmap/dirty_bitmap.h"
#include "mirror/in_flight_ranges.h"
#include "mirror/nbd_target.h"
#include "pool/pool.h"
#include "pool/request_observer.h"

namespace thinsim {

class MirrorCopier final : public RequestObserver {
 public:
  enum class CopyMode { kBackground, kWriteBlocking };
  // Which side of a copy failed: for on-source-error / on-target-error.
  enum class Side { kSource, kTarget };
  struct Failure {
    Side side;
    Status status;
  };
  struct Options {
    uint64_t granularity = 0;      // power of two; 0: the pool's block size
    uint64_t buf_size = 16 << 20;  // bytes one CopySome call moves at most
    bool target_is_zero = false;   // the caller vouches the target reads zero
    CopyMode copy_mode = CopyMode::kBackground;
  };

  // Why a mirror of `volume` onto `target` with these options cannot run:
  // sizes differ, a granularity that is no power of two in [512 B, 64 MiB]
  // or smaller than the target's preferred block size (named both), a
  // read-only target. OK otherwise.
  static Status Check(uint64_t volume_size, const NbdTarget::Info& target, const Options& options);
  // Why write-blocking mode cannot run onto `target`: a minimum block size
  // larger than the pool's block size (both named). A write-through widens
  // an unaligned request to whole target blocks with the volume's bytes
  // around it, read back from the request's own range-locked pool blocks
  // (ChangeRequest::applied), which must therefore contain them.
  static Status CheckWriteBlocking(uint32_t pool_block_size, const NbdTarget::Info& target);

  // REQUIRES: Check passed; options.granularity resolved (non-zero).
  MirrorCopier(Pool* pool, std::shared_ptr<Volume> volume, std::unique_ptr<NbdTarget> target, Options options);

  // ---- Set-up (before the copier is attached to the volume) ----
  // Learns which ranges the target reads as zero: all of it with
  // target_is_zero, else what its block status says.
  Status ProbeTargetZero();
  DirtyBitmap& dirty() { return dirty_; }

  // ---- The job's thread ----
  // Copies the next dirty runs after the last one copied (wrapping around),
  // up to `budget` bytes (0: buf_size); *copied says how many. On a failure
  // the run stays (or is again) dirty and *failure says which side failed.
  void CopySome(uint64_t* copied, std::optional<Failure>* failure, uint64_t budget = 0);
  // Granules left to copy, in bytes.
  uint64_t dirty_bytes() const { return dirty_.DirtyBytes(); }
  // Reconnects the target's dead connections (NbdTarget::Reconnect).
  Status ReconnectTarget() { return target_->Reconnect(); }
  // Flushes the target (what READY and completion need).
  Status FlushTarget() { return target_->Flush(); }
  // Waits until no target write is in flight.
  void WaitIdle() { in_flight_.WaitIdle(); }

  void set_copy_mode(CopyMode mode) { mode_.store(mode); }
  CopyMode copy_mode() const { return mode_.load(); }
  // Write-blocking and nothing dirty, and no target error since: the target
  // stays identical as long as that holds. Cleared by any active target
  // error; set again only by the job (MarkActivelySynced).
  bool actively_synced() const { return actively_synced_.load(); }
  // Sets actively_synced if in write-blocking mode with nothing dirty.
  void MarkActivelySynced();
  // The oldest target error a write-blocking write met that the job has not
  // taken yet.
  std::optional<Failure> TakeActiveFailure() EXCLUDES(mu_);
  // Stops mirroring requests (they pass untouched from now on): for the
  // job's end, inside a point in time, before it detaches.
  void Stop() { stopped_.store(true); }
  // Calls `wake` (once) when the next request dirties something: a job with
  // nothing to copy sleeps until then. Set before the copier is attached.
  void set_wake(std::function<void()> wake) { wake_ = std::move(wake); }
  void WakeOnNextChange() { wake_armed_.store(true); }

  const NbdTarget& target() const { return *target_; }
  uint64_t granularity() const { return dirty_.granularity(); }
  boost::icl::interval_set<uint64_t> done() const EXCLUDES(mu_);

  // ---- RequestObserver ----
  Status BeforeChange(const ChangeRequest& request) override;
  Status AfterChange(const ChangeRequest& request, const Status& result) override;

 private:
  using Interval = boost::icl::interval_set<uint64_t>::interval_type;

  // Writes [offset, offset + length) of `data` (nullptr: zeroes) to the
  // target, holding the range in flight; keeps target_zero and done.
  Status WriteTarget(const uint8_t* data, uint64_t offset, uint64_t length) EXCLUDES(mu_);
  // Zeroes on the target: fast if it can, else a plain zero, else zero bytes.
  Status ZeroTarget(uint64_t offset, uint64_t length);
  bool TargetReadsZero(uint64_t offset, uint64_t length) const EXCLUDES(mu_);
  // The target now holds [offset, offset + length): done, and zero or not.
  void NoteWritten(uint64_t offset, uint64_t length, bool zero) EXCLUDES(mu_);
  struct Run {
    uint64_t offset = 0;
    uint64_t length = 0;
  };
  // The next dirty runs from cursor_ (wrapping around for the first), in
  // order and disjoint, at most one per target connection and `budget`
  // bytes in all.
  std::vector<Run> NextBatch(uint64_t budget) const;
  // One run of the background copy; several may run at once (disjoint).
  std::optional<Failure> CopyRun(uint64_t offset, uint64_t length);
  // A write-blocking request's target write, and what it means for the bits.
  void WriteThrough(const ChangeRequest& request) EXCLUDES(mu_);
  // The target write itself, over [*offset, *offset + *length): the
  // request's range, or the whole target blocks around it (see above).
  Status WriteThroughTarget(const ChangeRequest& request, uint64_t* offset, uint64_t* length) EXCLUDES(mu_);
  // Something became dirty: wakes the job if it asked (WakeOnNextChange).
  void Dirtied();

  Pool* const pool_;
  const std::shared_ptr<Volume> volume_;
  const std::unique_ptr<NbdTarget> target_;
  const Options options_;
  const uint64_t max_io_;    // bytes per target call
  const size_t parallel_;    // runs copied at once: the target's connections

  DirtyBitmap dirty_;
  InFlightRanges in_flight_;
  std::atomic<CopyMode> mode_;
  std::atomic<bool> actively_synced_{false};
  std::atomic<bool> stopped_{false};
  std::function<void()> wake_;
  std::atomic<bool> wake_armed_{false};
  uint64_t cursor_ = 0;  // where the next CopySome looks first; the job's thread only

  mutable Mutex mu_;
  boost::icl::interval_set<uint64_t> done_ GUARDED_BY(mu_);
  boost::icl::interval_set<uint64_t> target_zero_ GUARDED_BY(mu_);
  std::optional<Failure> active_failure_ GUARDED_BY(mu_);
};

}  // namespace thinsim

#endif  // THINSIM_MIRROR_MIRROR_COPIER_H_
