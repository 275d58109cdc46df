// Pool: a thin pool of refcounted data blocks and the volumes and snapshots
// that map them. This is the engine; it knows nothing of NBD or nbdkit.
//
// A Pool has `total_blocks` data blocks of `block_size` bytes. Each volume
// has a virtual size and maps its vblocks to dblocks (pool/mapping.h). A
// write to an unmapped vblock allocates a block (the rest of it reads as
// zero); a write to a block shared with a snapshot copies the block first
// (copy-on-write); a write to an exclusive block overwrites it in place.
// Snapshots share all of the origin's blocks at creation and cost no
// per-block work. Blocks are freed when no volume maps them.
//
// Every operation returns a Status; on failure nothing has changed, except
// for an IO error from the data store in the middle of a data operation,
// which may leave that request's range partly written (like a disk).
//
// Thread safety: a Pool is safe for concurrent use without external
// synchronisation. Locking (docs/concurrency.md):
//   - meta_mu_ (SharedMutex) guards the volume table, every mapping, the
//     space map, the counters and the parts Pool delegates to
//     (Reservations, FreedBlocks, Transaction): the members are
//     GUARDED_BY(meta_mu_), the *Locked functions REQUIRE it (shared or
//     exclusive), and space_freed_ (CondVarAny) waits with it held
//     exclusively. Volume's fields it guards are not annotated (a Volume
//     does not know its pool's lock). Held briefly: no data is copied, synced
//     or discarded under it, except by an allocation that can only be
//     satisfied that way (freed blocks not yet committed or discarded) and
//     by checkpoints.
//     Reads and overwrites of exclusive blocks do not take it: they look up
//     their volume's mapping under that volume's map_mu (shared), which
//     every mapping change of the volume also takes (exclusively).
//   - each volume's RangeLock serialises overlapping data requests over
//     whole vblocks: reads share, writes, zeroes, trims and provisions are
//     exclusive.
//   - each volume's io_gate (shared_mutex) is held shared by every request
//     that changes the volume's data or mapping, and exclusively by snapshot,
//     resize and delete of that volume, so a snapshot is a point-in-time
//     image. Reads do not take it: they never wait for a snapshot.
//   - commit_mu_ (Mutex) serialises metadata commits (persistence.cc):
//     capturing, syncing and finishing a commit REQUIRE it.
//   - the Committer's own Mutex guards only its stop flag.
// scripts/test stage e checks the annotations (clang -Wthread-safety).
// Lock order: io_gate (several: by volume id) -> RangeLock -> commit_mu_ ->
// meta_mu_ -> a volume's map_mu.
#ifndef THINSIM_POOL_POOL_H_
#define THINSIM_POOL_POOL_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>
#include <functional>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "base/mutex.h"
#include "base/status.h"
#include "base/types.h"
#include "env/env.h"
#include "metadata/image.h"
#include "metadata/pool_dir.h"
#include "pool/committer.h"
#include "pool/freed_blocks.h"
#include "pool/request_observer.h"
#include "pool/reservations.h"
#include "pool/space_policy.h"
#include "pool/transaction.h"

namespace thinsim {

class Chunk;
class DataStore;
class SpaceMap;
struct Volume;
namespace metadata {
class Journal;
struct Image;
}  // namespace metadata

struct PoolOptions {
  uint64_t size = 0;  // data capacity in bytes; 0 reopens a pool at its size
  uint32_t block_size = kDefaultBlockSize;
  std::string dir;                         // empty: an in-memory pool
  Strategy default_strategy = Strategy::kNone;
  WhenFull when_full = WhenFull::kError;
  uint32_t no_space_timeout_seconds = 60;  // queue mode; 0 = wait forever
  uint32_t low_water_percent = 10;
  // Keep no data (reads return zeroes): metadata-only simulations and
  // benchmarks of pools larger than memory.
  bool null_data = false;
  // Called by a write queued for space (when_full = kQueue) every 100 ms;
  // returning true makes it give up with an IO error. The plugin uses it
  // so that a server shutting down is not held up by queued writes.
  std::function<bool()> abandon_queued_write;
  // Wraps the data store the pool opened, to observe or delay its calls
  // (tests) or to inject faults.
  std::function<std::unique_ptr<DataStore>(std::unique_ptr<DataStore>)> wrap_store;
  // Where a persistent pool's files (metadata and data) are read and
  // written: the real file system, or a FaultEnv (env/fault_env.h) that
  // injects faults or simulates power cuts. Must outlive the pool.
  Env* env = Env::Default();
};

struct PoolInfo {
  uint32_t block_size = 0;
  uint64_t total_blocks = 0;
  uint64_t used_blocks = 0;
  uint64_t reserved_blocks = 0;
  uint64_t free_blocks = 0;  // total - used
  PoolMode mode = PoolMode::kWrite;
  WhenFull when_full = WhenFull::kError;
  uint32_t low_water_percent = 0;
  uint64_t nr_volumes = 0;
  bool persistent = false;
};

struct VolumeInfo {
  std::string name;
  uint64_t size = 0;  // bytes
  Strategy strategy = Strategy::kNone;
  bool active = false;
  bool read_only = false;
  std::optional<std::string> origin;  // the snapshot's origin, if it still exists
  uint64_t mapped_blocks = 0;
  uint64_t exclusive_blocks = 0;
  uint64_t shared_blocks = 0;
  uint64_t provisioned_blocks = 0;
  uint64_t reserved_blocks = 0;
  uint32_t connections = 0;
  uint32_t writable_connections = 0;
  bool pinned = false;
};

// Something the pool reports as it happens (SPEC section 6).
struct SnapshotRequest {
  std::string origin;
  std::string name;
};

// One extent of Pool::Extents; `type` uses NBD's base:allocation bits.
struct Extent {
  static constexpr uint32_t kHole = 1;
  static constexpr uint32_t kZero = 2;
  uint64_t offset;
  uint64_t length;
  uint32_t type;
};

// What Pool::Extents reports for a mapped block (SPEC section 4, plugin
// parameter `extents=`).
enum class ExtentsMode {
  // Mapped blocks are data (HOLE and ZERO clear): what QEMU and nbdcopy need
  // to read an export right (they treat HOLE as "not allocated").
  kAllocation,
  // A mapped block that a write could still fail on for lack of space
  // (shared and not covered by a reservation) is HOLE without ZERO, the NBD
  // spec's reading of HOLE: an extent with HOLE clear never fails a write
  // with ENOSPC.
  kSpace,
};

class Pool {
 public:
  // Creates an in-memory pool, or a pool in options.dir.
  static Status Open(const PoolOptions& options, std::unique_ptr<Pool>* out);
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  uint32_t block_size() const { return block_size_; }
  // A random token chosen when this Pool object was made (16 hex digits),
  // the same for the life of the process and different in every other
  // one: it tells an export of this running pool from an export of any
  // other, so that a mirror can refuse a target that is its own source.
  const std::string& instance_id() const { return instance_id_; }

  // Receives events, in the order they happen. It is called with meta_mu_
  // held (from inside data and control operations): it must not call back
  // into the Pool, must not block and must not throw. It should only queue
  // the event (ControlServer::Publish does) and leave formatting and
  // delivery to another thread. A null handler drops events.
  void SetEventHandler(std::function<void(const PoolEvent&)> handler);

  // ---- Control plane -------------------------------------------------------
  // `strategy` defaults to PoolOptions::default_strategy.
  Status CreateVolume(std::string_view name, uint64_t size, std::optional<Strategy> strategy);
  // Fails with Busy while the volume has open connections. Its snapshots
  // survive; blocks only it mapped are freed.
  Status DeleteVolume(std::string_view name);
  // Shrinking unmaps the tail and fails with Busy while connections are
  // open; growing is allowed online. The volume's observers follow the new
  // size (RequestObserver::VolumeSize) at the same point in time.
  Status ResizeVolume(std::string_view name, uint64_t size);
  // All-or-nothing across the requests.
  Status CreateSnapshots(const std::vector<SnapshotRequest>& requests, bool read_only);
  // Runs `fn` at one point in time for the volumes named (each once or
  // more): their io_gates are held exclusively while it runs, so their
  // changes in flight have drained and new ones wait; reads go on. NotFound
  // if a volume does not exist ("no volume named 'x'" + `purpose`). For
  // `transaction` (SPEC section 9): `fn`
  // takes snapshots of them with CreateSnapshotsHeld and cuts their bitmaps.
  // `fn` must not attach or detach observers of those volumes, or delete or
  // resize them: those take the same gates.
  Status AtPointInTime(const std::vector<std::string>& names, const std::function<Status()>& fn,
                       std::string_view purpose = "") EXCLUDES(meta_mu_);
  // CreateSnapshots inside AtPointInTime. REQUIRES: this thread holds the
  // io_gate of every origin (AtPointInTime over them).
  Status CreateSnapshotsHeld(const std::vector<SnapshotRequest>& requests, bool read_only) EXCLUDES(meta_mu_);
  // REQ_PROVISION: allocates and marks provisioned every block touching the
  // range, without changing the data.
  Status Provision(std::string_view name, uint64_t offset, uint64_t length);
  // Grows the data capacity to `new_size` bytes.
  Status Grow(uint64_t new_size);
  // Changes a volume's reservation strategy; NoSpace if the new guarantee
  // does not fit.
  Status SetStrategy(std::string_view name, Strategy strategy);
  // Pins a volume active (as if a writable connection were open), or drops
  // the pin. Activation may need a reservation (NoSpace).
  Status Activate(std::string_view name);
  Status Deactivate(std::string_view name);

  PoolInfo QueryPool() const;
  Status QueryVolume(std::string_view name, VolumeInfo* out) const;
  // In creation order.
  std::vector<VolumeInfo> QueryVolumes() const;
  // The default export: the oldest existing volume, or "" when none.
  std::string DefaultVolumeName() const;

  // ---- Data plane ----------------------------------------------------------
  // Opens a volume for an NBD connection. While a handle is open the volume
  // cannot be deleted or shrunk. A writable open activates the volume, which
  // fails with NoSpace when its guarantee does not fit.
  Status OpenVolume(std::string_view name, bool writable, std::shared_ptr<Volume>* out);
  // REQUIRES: `writable` as passed to OpenVolume.
  void CloseVolume(const std::shared_ptr<Volume>& volume, bool writable);
  uint64_t VolumeSize(const Volume& volume) const;
  bool VolumeReadOnly(const Volume& volume) const;

  // Byte-granular I/O. REQUIRES: offset + len <= the volume's size.
  Status Read(Volume& volume, void* buf, uint64_t len, uint64_t offset);
  // A read for a background copy (a mirror job): reads the range and, when
  // that succeeded, calls `while_locked` before the range lock is released,
  // so that the job can clear its own dirty state for exactly the bytes it
  // read: a write to the range waits for it, and its observers mark the
  // range again. `while_locked` must not call into this volume.
  Status CopyRead(Volume& volume, void* buf, uint64_t len, uint64_t offset,
                  const std::function<void()>& while_locked);
  // Attaches the request hook (request_observer.h) to volume `name`, after
  // the observers already attached. A point in time, like a snapshot: the
  // volume's in-flight changes drain first, and every change that starts
  // later is observed; reads never wait. NotFound for no such volume.
  Status AttachObserver(std::string_view name, std::shared_ptr<RequestObserver> observer);
  // Detaches it (drains the same way); NotFound when it is not attached.
  Status DetachObserver(std::string_view name, const RequestObserver* observer);
  // Whether `observer` is attached to the volume now named `name`.
  bool HasObserver(std::string_view name, const RequestObserver* observer) const;
  Status Write(Volume& volume, const void* buf, uint64_t len, uint64_t offset);
  // Unmaps every block fully inside the range; partial blocks are ignored.
  Status Trim(Volume& volume, uint64_t len, uint64_t offset);
  enum ZeroFlags : unsigned { kMayTrim = 1, kFastZero = 2 };
  // kMayTrim: unmap whole blocks, zero partial edges. Without it: provision
  // every block touching the range and zero the range. kFastZero: fail with
  // Unsupported, changing nothing, unless no data needs writing and nothing
  // needs allocating.
  Status Zero(Volume& volume, uint64_t len, uint64_t offset, unsigned flags);
  // Makes every completed write durable: data, then (for a persistent pool)
  // a metadata commit.
  Status Flush();

  // The named volumes' mappings at one point in time, as the metadata
  // layer's images (attrs: id, name and size only), for
  // metadata::ComputeDelta on a running pool. NotFound for a missing one.
  Status VolumeImagesOf(const std::vector<std::string>& names, std::vector<metadata::VolumeImage>* out) const
      EXCLUDES(meta_mu_);

  // ---- Persistent dirty bitmaps (bitmap/ keeps them; docs/format.md) ----
  // Appends framed bitmap records (metadata/records.h, types 9 to 12) of
  // volume `name` to the open transaction; a commit (Flush) makes them
  // durable, with the mapping changes made meanwhile. The records are also
  // applied to the volume's durable bitmap state, which checkpoints encode.
  // Invalid when a record does not fit that state (nothing is logged),
  // Unsupported for an in-memory pool, NotFound for no such volume.
  Status LogBitmapRecords(std::string_view name, const std::string& records) EXCLUDES(meta_mu_);
  // The volume's persistent bitmaps as logged so far (after an open: as
  // the pool's files hold them), and its id, which their records name.
  Status PersistentBitmaps(std::string_view name, uint64_t* volume_id,
                           std::map<uint64_t, metadata::BitmapImage>* out) const EXCLUDES(meta_mu_);
  // Commits metadata changes (no-op for an in-memory pool).
  Status Commit() EXCLUDES(commit_mu_);
  // Puts the pool in fail mode, as a failed commit does: every request and
  // change is refused with an IO error until the pool is reopened. For a
  // pool whose in-core state is ahead of files that can no longer be
  // trusted (after a simulated power cut).
  void Fail(const std::string& reason) EXCLUDES(meta_mu_);
  // Commits every `seconds` from a background thread while changes are
  // pending (SPEC commit-interval). Stop before destruction.
  void StartCommitter(uint32_t seconds);
  void StopCommitter();
  bool persistent() const { return !options_.dir.empty(); }
  // Why the pool refuses changes (damaged metadata), or "".
  std::string read_only_reason() const;
  // Allocation status of [offset, offset + len), in order and contiguous.
  // Unmapped blocks are kHole|kZero; mapped ones are data, except under
  // ExtentsMode::kSpace (see there).
  Status Extents(Volume& volume, uint64_t len, uint64_t offset, std::vector<Extent>* out,
                 ExtentsMode mode = ExtentsMode::kAllocation);

  // Heap bytes used by mapping metadata: tables, chunks (each once, however
  // many volumes share it), the space map and the per-block reservation
  // counts. Not the allocator's overhead per allocation (bench/README.md
  // compares it with the real heap).
  size_t MetadataMemoryUsage() const;
  // Test hook: checks every counter against a full walk; returns Corruption
  // naming the first mismatch (pool_counters_check.cc).
  Status TEST_CheckCounters() const;

 private:
  struct Step;
  // What a data operation does to each block it touches.
  enum class Intent {
    kWriteData,      // write the caller's bytes
    kZeroData,       // zero bytes of mapped blocks; holes stay holes
    kProvision,      // allocate and mark provisioned, data unchanged
    kProvisionZero,  // allocate, mark provisioned and zero the bytes
    kTrim,           // unmap whole blocks; partial blocks untouched
    kZeroMayTrim,    // unmap whole blocks, zero the partial edges
  };

  Pool(const PoolOptions& options, std::unique_ptr<DataStore> store,
       std::unique_ptr<metadata::PoolDirLock> dir_lock);

  // ---- Persistence (persistence.cc) ----
  static Status OpenDir(const PoolOptions& options, std::unique_ptr<metadata::PoolDirLock> dir_lock,
                        std::unique_ptr<Pool>* out);
  // Builds volumes, mappings and every counter from a loaded image.
  Status LoadImageLocked(const metadata::Image& image) REQUIRES(meta_mu_);
  void RebuildCountersLocked() REQUIRES(meta_mu_);
  // Records that v's chunk holding vb changed in this transaction.
  void NoteChunkLocked(const Volume& v, vblock_t vb) REQUIRES(meta_mu_);
  // Records a volume's attributes (create or change), after the chunk
  // changes made so far, so that replay applies them in order.
  void NoteVolumeLocked(const Volume& v) REQUIRES(meta_mu_);
  void NoteSnapshotLocked(const Volume& snapshot) REQUIRES(meta_mu_);
  void NoteDeleteLocked(uint64_t id) REQUIRES(meta_mu_);
  // The open transaction's ChunkEncoder: the chunk's record as it is now.
  void EncodeChunkLocked(uint64_t volume_id, size_t index, std::string* out) const REQUIRES_SHARED(meta_mu_);
  void EncodeCheckpointLocked(std::string* out) const REQUIRES_SHARED(meta_mu_);
  void ImageOfLocked(const Volume* v, metadata::VolumeImage* out) const REQUIRES_SHARED(meta_mu_);
  // Sets v.size; its bitmaps' durable state follows (bitmap_state.cc).
  void SetSizeAndBitmapsLocked(Volume& v, uint64_t size) REQUIRES(meta_mu_);
  // Commits with every pool lock held across the syncs: for a checkpoint,
  // which must see the state stand still, and for an allocation that needs
  // the blocks the transaction freed.
  // REQUIRES: meta_mu_ exclusive and commit_mu_ held.
  Status CommitLocked() REQUIRES(meta_mu_, commit_mu_);
  // Commits holding meta_mu_ only to capture the transaction and to finish:
  // requests go on while the data and the log are synced.
  // REQUIRES: commit_mu_ held, meta_mu_ not held.
  Status CommitConcurrently() REQUIRES(commit_mu_);
  // Encodes the open transaction into `records`, starts a new one, and
  // moves the blocks it freed to the committing step. Returns the commit's number.
  uint64_t CaptureTxnLocked(std::string* records) REQUIRES(meta_mu_, commit_mu_);
  // Data first, then the log: a committed mapping must never point at
  // unwritten data. Empty `records`: only the data sync (a FLUSH).
  Status SyncAndLog(const std::string& records) REQUIRES(commit_mu_);
  // After SyncAndLog of commit `number`.
  void FinishCommitLocked(const Status& s, uint64_t number) REQUIRES(meta_mu_, commit_mu_);
  // Fail mode (Fail), for a failed commit too. REQUIRES: meta_mu_ exclusive.
  void FailLocked(const std::string& reason) REQUIRES(meta_mu_);
  // IOError once a commit has failed.
  Status RefuseIfFailedLocked() const REQUIRES_SHARED(meta_mu_);
  Status RefuseIfReadOnlyLocked() const REQUIRES_SHARED(meta_mu_);

  // REQUIRES: meta_mu_ held (shared or exclusive).
  Volume* FindLocked(std::string_view name) const REQUIRES_SHARED(meta_mu_);
  VolumeInfo InfoLocked(const Volume& v) const REQUIRES_SHARED(meta_mu_);
  Status CheckRange(const Volume& v, uint64_t len, uint64_t offset) const;

  // The data-operation pipeline: plan under a shared metadata lock, allocate,
  // move data with no pool lock, then install mappings.
  // `gated`: take the volume's io_gate (false when the caller holds it).
  Status ApplyRange(Volume& v, uint64_t len, uint64_t offset, Intent intent, const uint8_t* src,
                    bool fast, bool gated = true);
  struct Span;
  Span SpanOf(uint64_t len, uint64_t offset, Intent intent) const;
  // A span's blocks for its observers' AfterChange (ChangeRequest::applied).
  class SpanBytes;
  // REQUIRES: v.io_gate held shared and the span's blocks range-locked
  // exclusively (ApplyRange). ApplyObserved calls v's observers around
  // ApplyHeld, which plans, allocates, moves data and installs.
  Status ApplyObserved(Volume& v, const Span& span, Intent intent, const uint8_t* src, bool fast);
  Status ApplyHeld(Volume& v, const Span& span, Intent intent, const uint8_t* src, bool fast);
  // REQUIRES: the range locked (shared is enough).
  Status ReadHeld(Volume& v, void* buf, uint64_t len, uint64_t offset);
  // The volume named `name`, kept alive; NotFound when none.
  Status FindShared(std::string_view name, std::shared_ptr<Volume>* out) const;
  static ChangeRequest::Kind ChangeKindOf(Intent intent);
  // REQUIRES: v.map_mu held (shared is enough).
  void PlanLocked(const Volume& v, vblock_t vb, uint32_t off, uint32_t len, Intent intent,
                  const uint8_t* src, std::vector<Step>* steps) const;
  Status AllocateBlocks(const Volume& v, std::vector<Step>* steps) REQUIRES(meta_mu_);
  int64_t StepReservedDeltaLocked(const Volume& v, const Step& st) const REQUIRES_SHARED(meta_mu_);
  Status MoveData(const std::vector<Step>& steps);
  void InstallLocked(Volume& v, const std::vector<Step>& steps) REQUIRES(meta_mu_);

  // ---- Reservations (reservation.cc, reservations.h) ----
  // Which vblocks a volume guarantees (SPEC section 5).
  using Guarantee = Reservations::Guarantee;
  Guarantee GuaranteeOfLocked(const Volume& v) const REQUIRES_SHARED(meta_mu_);
  // Number of volumes owning `b`, mapped at `vb` in `family`. `known`, if
  // given, is a chunk that maps b (a fast path when it is the only one).
  uint32_t OwnersLocked(uint64_t family, vblock_t vb, dblock_t b, const Chunk* known) const
      REQUIRES_SHARED(meta_mu_);
  // Reserved blocks a volume's unmapped vblocks need.
  uint64_t UnmappedNeedLocked(const Volume& v) const REQUIRES_SHARED(meta_mu_);
  // Changes v's guarantee from `from` to `to`: with apply=false only
  // returns the change in reserved blocks; with apply=true also makes it.
  int64_t ChangeGuaranteeLocked(Volume& v, Guarantee from, Guarantee to, bool apply) REQUIRES(meta_mu_);
  // Checks that `delta` more reserved blocks fit: reserved <= free
  // (Reservations::Admit over FreeLocked).
  Status AdmitLocked(int64_t delta, const std::string& what) const REQUIRES_SHARED(meta_mu_);
  // Change in reserved blocks if a new owner with guarantee `g` joined (or,
  // with leave, the owner left) every block of v.
  int64_t OwnerChangeLocked(Volume& v, Guarantee g, bool leave, bool apply) REQUIRES(meta_mu_);
  // The reserved blocks charged to v (for VolumeInfo).
  uint64_t VolumeReservedLocked(const Volume& v) const REQUIRES_SHARED(meta_mu_);
  // Activation changes; REQUIRES: meta_mu_ exclusive.
  Status SetActiveStateLocked(Volume& v, bool pinned, uint32_t writable_connections) REQUIRES(meta_mu_);
  // ---- Resize (pool.cc) ----
  // ResizeVolume's work. REQUIRES: v's io_gate held exclusively.
  Status ResizeGated(Volume& v, uint64_t size) EXCLUDES(meta_mu_);
  // Why `v` may not be resized to `size` now, or OK. REQUIRES: meta_mu_.
  Status RefuseResizeLocked(const Volume& v, uint64_t size) const REQUIRES_SHARED(meta_mu_);
  // Gives v's map `new_blocks` vblocks: admits and reserves what a
  // guaranteed volume gains, unmaps what it loses. Leaves v.size (and so
  // the volume's record) alone. REQUIRES: meta_mu_ exclusive.
  Status ResizeMapLocked(Volume& v, vblock_t new_blocks) REQUIRES(meta_mu_);
  // ResizeMapLocked, then v.size = size. REQUIRES: meta_mu_ exclusive.
  Status SetSizeLocked(Volume& v, uint64_t size) REQUIRES(meta_mu_);

  // Mapping changes with exact counters (mapping_changes.cc).
  // REQUIRES: meta_mu_ exclusive.
  void MapFreshLocked(Volume& v, vblock_t vb, dblock_t b, bool provisioned) REQUIRES(meta_mu_);
  void UnmapLocked(Volume& v, vblock_t vb) REQUIRES(meta_mu_);
  void UnmapRangeLocked(Volume& v, vblock_t first, vblock_t last) REQUIRES(meta_mu_);
  void DropBlockRefLocked(uint64_t family, vblock_t vb, dblock_t b) REQUIRES(meta_mu_);
  // Some block of w is exclusive now but shared in the committed state.
  void NoteUnsharedLocked(Volume& w) REQUIRES(meta_mu_);
  // Whether an in-place overwrite of v must wait for a commit (see
  // Volume::unshared_in_txn).
  bool InPlaceNeedsCommit(const Volume& v) const;
  void ReleaseVolumeLocked(Volume& v) REQUIRES(meta_mu_);
  // ---- Freed blocks (freeing.cc, freed_blocks.h) ----
  // A block whose count reaches zero goes through the steps of FreedBlocks
  // before it is allocatable again; every step counts as free space
  // (FreeLocked), so admission sees it at once; only allocation waits.
  // Takes the blocks released since the last call; wakes queued writers.
  void RecycleLocked() REQUIRES(meta_mu_);
  // Discards the blocks waiting for it with no pool lock held, then frees
  // them, so that deleting a volume of many blocks does not stall other
  // requests.
  // REQUIRES: no meta_mu_ or map_mu held. Cheap when there is nothing to do.
  void DiscardFreedBlocks();
  // The same under meta_mu_ (exclusive): an allocation needs them now.
  void DiscardFreedBlocksLocked() REQUIRES(meta_mu_);
  // Whether some freed blocks wait for a discard; needs no lock.
  bool DiscardsPending() const;
  // Puts a discarded batch of `taken` blocks (those in `blocks` discarded
  // right) back in the space map.
  void RecycleDiscardedLocked(const std::vector<dblock_t>& blocks, uint64_t taken) REQUIRES(meta_mu_);
  // Runs DiscardFreedBlocks when the enclosing operation ends. Declared
  // before any lock, it runs after they are all released.
  class DiscardAtExit;
  // Raises LOW_WATER once each time free space falls below the threshold,
  // and POOL_MODE on mode changes.
  void CheckLowWaterLocked() REQUIRES(meta_mu_);
  // Free blocks: allocatable now, plus those freed in the current
  // transaction, which a commit makes allocatable (persistent pools commit
  // when an allocation needs them). The invariant is reserved <= this.
  uint64_t FreeLocked() const REQUIRES_SHARED(meta_mu_);
  // Back to `write` once some free space is unreserved again.
  void LeaveOutOfSpaceIfRoomLocked() REQUIRES(meta_mu_);
  void SetModeLocked(PoolMode mode) REQUIRES(meta_mu_);
  // Hands a policy decision's event to the event handler.
  void PublishLocked(const std::optional<PoolEvent>& event) REQUIRES(meta_mu_);

  const uint32_t block_size_;
  const std::string instance_id_;
  const PoolOptions options_;
  const std::unique_ptr<DataStore> store_;
  const std::unique_ptr<metadata::PoolDirLock> dir_lock_;  // DIR's lock; null in memory

  mutable SharedMutex meta_mu_;
  CondVarAny space_freed_;  // with meta_mu_ (exclusive)
  // State below is protected by meta_mu_.
  std::unique_ptr<SpaceMap> space_map_ GUARDED_BY(meta_mu_);
  // Pool mode, low water and when-full queueing (space_policy.h).
  SpacePolicy space_policy_ GUARDED_BY(meta_mu_);
  // g(b) of SPEC section 5 per dblock and the reserved blocks, kept exact
  // by every mapping change.
  Reservations reservations_ GUARDED_BY(meta_mu_);
  std::function<void(const PoolEvent&)> event_handler_ GUARDED_BY(meta_mu_);
  // The current metadata transaction (persistent pools): records of
  // volume changes in order, chunks changed since, pool attributes changed.
  std::unique_ptr<metadata::Journal> journal_;
  Transaction txn_ GUARDED_BY(meta_mu_);
  // Blocks freed and not yet allocatable; see RecycleLocked.
  // discards_pending() is read without the lock by DiscardFreedBlocks.
  FreedBlocks freed_ GUARDED_BY(meta_mu_);
  // Blocks allocated by requests that have not installed them yet: a
  // commit records them as free, since no committed mapping uses them.
  std::unordered_set<dblock_t> in_flight_ GUARDED_BY(meta_mu_);
  std::string read_only_reason_ GUARDED_BY(meta_mu_);
  // Whether read_only_reason_ is set or the pool failed: read without the
  // metadata lock by the write path.
  std::atomic<bool> changes_refused_{false};

  // Serialises commits, so transactions reach the log in capture order:
  // capture, sync and finish all require it. Lock order: commit_mu_ ->
  // meta_mu_ (an allocation holding meta_mu_ only ever TryLocks it).
  Mutex commit_mu_;
  // Commits numbered by capture; the last that succeeded. Read without a
  // lock by Commit: a commit captured after a caller arrived covers it.
  std::atomic<uint64_t> commits_captured_{0};
  std::atomic<uint64_t> commits_succeeded_{0};

  // The commit timer's thread (StartCommitter).
  Committer committer_;
  uint64_t next_volume_id_ GUARDED_BY(meta_mu_) = 1;
  std::map<uint64_t, std::shared_ptr<Volume>> volumes_ GUARDED_BY(meta_mu_);  // by id = creation order
  std::map<std::string, uint64_t, std::less<>> names_ GUARDED_BY(meta_mu_);
  // Volumes descending from one created volume through snapshots. Only
  // members of a family can share blocks.
  std::unordered_map<uint64_t, std::vector<Volume*>> families_ GUARDED_BY(meta_mu_);
};

class Pool::DiscardAtExit {
 public:
  explicit DiscardAtExit(Pool* pool) : pool_(pool) {}
  ~DiscardAtExit() { pool_->DiscardFreedBlocks(); }
  DiscardAtExit(const DiscardAtExit&) = delete;
  DiscardAtExit& operator=(const DiscardAtExit&) = delete;

 private:
  Pool* pool_;
};

}  // namespace thinsim

#endif  // THINSIM_POOL_POOL_H_
