// VolumeBitmaps: the named dirty bitmaps of one volume (SPEC section 12),
// attached to it as a RequestObserver.
//
// What dirties: every write, zero, trim and provision marks each granule it
// touches in every enabled bitmap, in BeforeChange, before any data moves -
// so also when the request then fails after it may have changed data, as
// SPEC 12 asks. Write, zero and trim change what the granule reads; a
// provision does not change data, but SPEC 12 lists it too (a bitmap is
// "what may have changed since the last cut", and marking more is never
// falsely clean). Reads never reach an observer. The kind is not looked at.
//
// Cut without stopping writers (SRCU-style epochs). The set of bitmaps a
// request marks is an immutable View, published in one of two slots by
// epoch parity. A request enters the current epoch in BeforeChange (a
// counter per parity, no lock), marks the View of its epoch, and leaves in
// AfterChange. Every change to what requests mark - Cut, Clear, Add,
// Remove, Enable, Disable, Resize - builds a new View (a cut puts fresh bits
// in the cut bitmap's place and keeps the old ones as `into`), stores it in
// the other slot, bumps the epoch, and waits until the requests of the old
// epoch have left: a grace period. New requests never wait: they enter the
// new epoch and mark the new View. A request still in flight when the epoch
// moves marks the new View too in AfterChange, so one that straddles a cut
// is in both the frozen and the live bitmap, never in neither:
//
//   request A: Before(e) mark old View ............ After: epoch moved,
//                                                         mark new View too
//   Cut:              publish new View, epoch e -> e+1, wait for e ... done
//   request B:                          Before(e+1) mark new View, After
//
// Each epoch changes only under mu_ and only after the previous grace
// period ended, so a request sees at most one epoch change, and a View is
// freed only once no request of its epoch remains. A request's epoch is kept
// in a fixed table keyed by the ChangeRequest's address (unique among
// requests in flight, request_observer.h); the hot path takes no lock and
// allocates nothing unless more than kSlots requests are in flight at once.
//
// Persistent bitmaps (pool=DIR; docs/format.md, "Dirty bitmaps") log
// their changes through a BitmapJournal into the pool's transactions, and
// keep the write-intent rule: before a request's data moves, every
// granule it touches is dirty in the *durable* state of every persistent
// bitmap that records it. Each keeps a second bit set, `durable`, of the
// granules a committed record marks. BeforeChange marks the live bits,
// then (ordered through one atomic read-modify-write) tests `durable`; only for a granule not in
// it does the request append a BitmapDirty record - for the whole intent
// chunk around it (kIntentBytes) - and wait for one group commit
// (concurrent first writes share it). So an intent chunk pays one commit
// per epoch (per cut or clear), as md's write-intent bitmap does; the live
// bits stay exact, and only a crash can leave a bitmap dirtier than its
// writes (by whole intent chunks).
// A cut logs the rename of the live instance to `into`, a new instance
// under the old name and a BitmapCopy of the durable set into it (so a
// request in flight across the cut is durable in both); once the grace
// period is over, the new instance's durable set shrinks to exactly its
// live bits (a BitmapDirty with replace), which is safe because requests
// mark before they test and the shrink clears before it reads (the
// shared read-modify-write makes one of the two see the other). A clear
// shrinks the same way.
// Every intent a request appends goes to the persistent bitmaps in its
// View that still exist and to every one recording now, under journal_mu_,
// so that one appended after a cut's records still reaches the new
// instance. A resize reshapes each durable set with the live bits, at the
// resize's point in time (VolumeSize, no request in flight): the pool's
// resize record does the same to the records' state (docs/format.md).
//
// Busy: a bitmap in use by a job (SetBusy) refuses Remove, Clear, Enable,
// Disable, Cut and being the target of Merge, with a Busy error naming it;
// it may still be read and merged from. Resize applies to every bitmap.
//
// Thread safety: thread-safe. BeforeChange/AfterChange run from many request
// threads at once; the control calls serialise on mu_ and may wait for the
// requests in flight (a grace period), so they must not be called from an
// observer callback of this volume (it would wait for itself). Called with
// the volume's io_gate held exclusively (as a transaction does), nothing is
// in flight and they do not wait.
#ifndef THINSIM_BITMAP_VOLUME_BITMAPS_H_
#define THINSIM_BITMAP_VOLUME_BITMAPS_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <set>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <boost/icl/interval_set.hpp>

#include "base/mutex.h"
#include "base/status.h"
#include "base/thread_annotations.h"
#include "bitmap/bitmap_journal.h"
#include "bitmap/dirty_bitmap.h"
#include "metadata/image.h"
#include "pool/request_observer.h"

namespace thinsim {

// One bitmap as query-bitmaps reports it.
struct BitmapInfo {
  std::string name;
  uint64_t granularity = 0;
  uint64_t dirty_granules = 0;
  uint64_t dirty_bytes = 0;  // SPEC's `count`: dirty bytes within the volume
  bool enabled = false;      // SPEC's `recording`
  bool busy = false;
  bool persistent = false;
  bool inconsistent = false;  // persistent, and its bits cannot be trusted
};

class VolumeBitmaps : public RequestObserver {
 public:
  // `volume` names the volume in error messages; `size` is its size in
  // bytes. Without a journal, a persistent bitmap is refused (Unsupported).
  VolumeBitmaps(std::string volume, uint64_t size, std::unique_ptr<BitmapJournal> journal = nullptr);
  ~VolumeBitmaps() override;
  VolumeBitmaps(const VolumeBitmaps&) = delete;
  VolumeBitmaps& operator=(const VolumeBitmaps&) = delete;

  // A new, clean bitmap. Invalid for a bad name or granularity, Exists if
  // the name is taken. An enabled one records from when Add returns.
  Status Add(std::string_view name, uint64_t granularity, bool persistent, bool disabled)
      EXCLUDES(mu_);
  Status Remove(std::string_view name) EXCLUDES(mu_);
  // Forgets what the bitmap holds; requests in flight across the clear are
  // kept in it.
  Status Clear(std::string_view name) EXCLUDES(mu_);
  // Forgets the granules lying wholly inside `bytes` (what a mirror job
  // with bitmap-mode always has made current on its target), keeping the
  // rest; requests in flight across it are kept, as with Clear.
  Status ClearRanges(std::string_view name, const boost::icl::interval_set<uint64_t>& bytes) EXCLUDES(mu_);
  Status Enable(std::string_view name) EXCLUDES(mu_);
  Status Disable(std::string_view name) EXCLUDES(mu_);
  // ORs every source into `target` (granularities may differ). All or
  // nothing: any missing source, a missing or busy target changes nothing.
  Status Merge(const std::vector<std::string>& sources, std::string_view target) EXCLUDES(mu_);
  // Moves what `name` holds, plus every request that entered before the cut,
  // into a new disabled bitmap `into` (same granularity and persistence);
  // `name` starts again empty and goes on recording if it was. Waits only
  // for the requests in flight when it started.
  Status Cut(std::string_view name, std::string_view into) EXCLUDES(mu_);
  // Whether Add / Cut would succeed now, changing nothing: `transaction`
  // checks every action before it does any.
  Status CheckAdd(std::string_view name, uint64_t granularity) const EXCLUDES(mu_);
  Status CheckCut(std::string_view name, std::string_view into) const EXCLUDES(mu_);
  // Rebuilds persistent bitmap `id` as the pool's files hold it (after an
  // open), before any request is observed. Invalid for a bad image.
  Status Restore(uint64_t id, const metadata::BitmapImage& image) EXCLUDES(mu_);
  // Marks a bitmap as in use by a job (or no longer).
  Status SetBusy(std::string_view name, bool busy) EXCLUDES(mu_);

  // Every bitmap, by name.
  std::vector<BitmapInfo> Query() const EXCLUDES(mu_);
  Status Query(std::string_view name, BitmapInfo* out) const EXCLUDES(mu_);
  // DirtyBitmap::Extents / DirtyRanges of one bitmap; NotFound if none.
  Status Extents(std::string_view name, uint64_t offset, uint64_t length,
                 std::vector<DirtyBitmap::Extent>* out) const EXCLUDES(mu_);
  Status DirtyRanges(std::string_view name, boost::icl::interval_set<uint64_t>* out) const
      EXCLUDES(mu_);

  // Follows a volume resize: every bitmap drops its tail or marks the grown
  // range (DirtyBitmap::Resize). Requests in flight meanwhile are kept.
  // REQUIRES: with persistent bitmaps, no request in flight (their intents
  // are cut to the volume's geometry): Pool::ResizeVolume calls it through
  // VolumeSize with the volume's io_gate held exclusively.
  void Resize(uint64_t new_size) EXCLUDES(mu_);
  uint64_t size() const EXCLUDES(mu_);

  Status BeforeChange(const ChangeRequest& request) override;
  Status AfterChange(const ChangeRequest& request, const Status& result) override;
  void VolumeSize(uint64_t size) override { Resize(size); }

  // For tests: the current epoch (a grace period has begun once it moves).
  uint64_t TEST_epoch() const { return epoch_.load(std::memory_order_seq_cst); }

  // A persistent bitmap's write intents cover whole chunks of this many
  // bytes (or of one granule, if larger): docs/format.md.
  static constexpr uint64_t kIntentBytes = 1 << 20;

  // Requests in flight at once before the epoch table spills into a map.
  static constexpr size_t kSlots = 1024;

 private:
  // One persistent bitmap instance, by its id: what its committed records
  // mark dirty. Shared by the Entry, the Views and the journal side, so that
  // a request may still test it after the bitmap was removed or cut.
  struct Persisted {
    Persisted(uint64_t id, uint64_t size, uint64_t granularity) : id(id), durable(size, granularity) {}
    const uint64_t id;
    DirtyBitmap durable;
    uint64_t shrinks = 0;  // replaces logged so far; guarded by journal_mu_
  };
  struct Entry {
    std::unique_ptr<DirtyBitmap> bits;
    bool enabled = true;
    bool busy = false;
    bool inconsistent = false;
    std::shared_ptr<Persisted> persisted;  // null unless persistent
  };
  // What a request marks: the bits of the enabled bitmaps, and the durable
  // state of the persistent ones among them.
  struct View {
    std::vector<DirtyBitmap*> live;
    std::vector<std::shared_ptr<Persisted>> persisted;
  };
  struct Slot {
    std::atomic<uintptr_t> key{0};  // a ChangeRequest*, 0 when free
    std::atomic<uint64_t> epoch{0};
  };
  struct alignas(64) ReaderCount {
    std::atomic<int64_t> n{0};
  };

  // Finds a bitmap, NotFound naming it and the volume otherwise; with
  // `change`, also Busy if it is in use by a job.
  Status Find(std::string_view name, bool change, Entry** out) REQUIRES(mu_);
  Status FindConst(std::string_view name, const Entry** out) const REQUIRES(mu_);
  Status BusyError(std::string_view name) const;
  Status CheckNewName(std::string_view name) const REQUIRES(mu_);
  Status SetEnabled(std::string_view name, bool enabled) EXCLUDES(mu_);
  // Makes requests mark what entries_ now says, after a grace period.
  void PublishLocked() REQUIRES(mu_);
  void WaitForReaders(uint64_t epoch) REQUIRES(mu_) EXCLUDES(wait_mu_);

  uint64_t EnterEpoch();
  void LeaveEpoch(uint64_t epoch);
  void Remember(const ChangeRequest* request, uint64_t epoch) EXCLUDES(overflow_mu_);
  bool Forget(const ChangeRequest* request, uint64_t* epoch) EXCLUDES(overflow_mu_);
  static void MarkView(const View& view, const ChangeRequest& request);

  // The write-intent rule for one request (see the header comment).
  Status MakeDurable(const View& view, const ChangeRequest& request) EXCLUDES(journal_mu_);
  // Logs `records` (appended under journal_mu_ with `update`, which
  // changes the journal side to match) and waits until they are durable.
  Status LogLocked(const std::string& records) REQUIRES(mu_) EXCLUDES(journal_mu_);
  // p's durable set becomes exactly `bits` (a cut's or clear's fresh live
  // bits, after the grace period).
  Status ShrinkDurableLocked(Persisted& p, const DirtyBitmap& bits) REQUIRES(mu_) EXCLUDES(journal_mu_);
  // e's durable set follows a resize to `new_size` (a new instance object).
  void ResizeDurableLocked(Entry& e, uint64_t new_size) REQUIRES(mu_) EXCLUDES(journal_mu_);
  // Logs a persistent merge target's whole dirty set after a merge.
  Status LogMergedLocked(Entry& dst) REQUIRES(mu_) EXCLUDES(journal_mu_);
  Status RefusePersistent() const;
  Status RefuseInconsistent(std::string_view name, const Entry& e) const;
  metadata::BitmapRecord RecordOf(const std::string& name, const Entry& e) const;

  const std::string volume_;

  const std::unique_ptr<BitmapJournal> journal_;  // null: none may persist

  mutable Mutex mu_;  // control calls; before journal_mu_ and wait_mu_
  uint64_t size_ GUARDED_BY(mu_);
  uint64_t next_id_ GUARDED_BY(mu_) = 1;  // persistent ids are never reused in a run
  std::map<std::string, Entry, std::less<>> entries_ GUARDED_BY(mu_);
  std::unique_ptr<View> view_ GUARDED_BY(mu_);  // the View both slots hold between cuts

  // The request side: lock-free.
  alignas(64) std::atomic<uint64_t> epoch_{0};
  std::atomic<const View*> views_[2];  // by epoch parity
  ReaderCount readers_[2];             // requests in flight, by epoch parity
  std::unique_ptr<Slot[]> slots_;

  Mutex overflow_mu_;
  std::unordered_map<const ChangeRequest*, uint64_t> overflow_ GUARDED_BY(overflow_mu_);

  // The journal side: which persistent instances exist and which record,
  // as the records appended so far say. Requests take it to append intents.
  Mutex journal_mu_;
  std::map<uint64_t, std::shared_ptr<Persisted>> existing_ GUARDED_BY(journal_mu_);
  std::set<uint64_t> recording_ GUARDED_BY(journal_mu_);
  // Orders a request's mark-then-test against a shrink's clear-then-read
  // (volume_bitmaps_persist.cc).
  alignas(64) std::atomic<uint64_t> order_{0};

  // A grace period sleeps here until its readers have left.
  Mutex wait_mu_;
  CondVar wait_cv_;
  std::atomic<bool> waiting_{false};
};

}  // namespace thinsim

#endif  // THINSIM_BITMAP_VOLUME_BITMAPS_H_
