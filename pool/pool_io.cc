// Pool: the data plane. Every request that changes data or mappings goes
// through one pipeline (ApplyRange):
//   1. plan, under a shared metadata lock: what each touched block needs
//      (overwrite in place, a fresh block for a hole, a copy of a shared
//      block, an unmap, a provisioned mark);
//   2. allocate every block the request needs at once, or fail with NoSpace
//      having changed nothing;
//   3. move data with no pool lock held (the volume's range lock keeps
//      overlapping requests out);
//   4. install the new mappings and counters under the exclusive lock.
#include <algorithm>
#include <cassert>
#include <chrono>
#include <cstring>
#include <mutex>

#include "pool/data_store.h"
#include "pool/pool.h"
#include "base/sizes.h"
#include "pool/space_map.h"
#include "pool/volume.h"

namespace thinsim {

struct Pool::Step {
  enum Kind { kInPlace, kFresh, kBreak };
  vblock_t vb;
  uint32_t off;            // byte range inside the block
  uint32_t len;
  const uint8_t* src;      // the bytes to write; nullptr writes zeroes
  Kind kind;
  bool write_data = false;
  bool copy_old = false;   // copy the whole old block before writing
  bool provision = false;  // set the provisioned mark
  bool old_provisioned = false;
  dblock_t old = kNoDblock;
  dblock_t fresh = kNoDblock;
  // Change in reserved blocks that installing this step makes, counted when
  // its block was allocated (see AllocateBlocks).
  int64_t reserved_delta = 0;

  bool needs_block() const { return kind != kInPlace; }
};

Status Pool::CheckRange(const Volume& v, uint64_t len, uint64_t offset) const {
  if (offset > v.size || len > v.size - offset) {
    return Status::Invalid("range [" + std::to_string(offset) + ", +" + std::to_string(len) +
                           ") is beyond the end of volume '" + v.name + "' (" +
                           std::to_string(v.size) + " bytes)");
  }
  return Status::OK();
}

// ---- Planning ---------------------------------------------------------------

void Pool::PlanLocked(const Volume& v, vblock_t vb, uint32_t off, uint32_t len, Intent intent,
                      const uint8_t* src, std::vector<Step>* steps) const {
  MappingTable::Entry e = v.map->Lookup(vb);
  bool mapped = e.dblock != kNoDblock;
  bool exclusive = e.exclusive;
  bool full = off == 0 && len == block_size_;

  Step st{};
  st.vb = vb;
  st.off = off;
  st.len = len;
  st.src = src;
  st.old = e.dblock;
  st.old_provisioned = e.provisioned;
  switch (intent) {
    case Intent::kZeroData:
      if (!mapped) return;  // a hole already reads as zeroes
      [[fallthrough]];
    case Intent::kWriteData:
      st.write_data = true;
      st.kind = exclusive ? Step::kInPlace : mapped ? Step::kBreak : Step::kFresh;
      st.copy_old = st.kind == Step::kBreak && !full;
#ifdef THINSIM_PLANTED_BUG_COW_NO_COPY
      st.copy_old = false;  // the planted bug: see THINSIM_PLANTED_BUG in CMakeLists.txt
#endif
      break;
    case Intent::kProvision:
    case Intent::kProvisionZero:
      st.provision = true;
      st.write_data = intent == Intent::kProvisionZero;
      if (exclusive) {
        st.kind = Step::kInPlace;
        if (!st.write_data && e.provisioned) return;
      } else if (!mapped) {
        st.kind = Step::kFresh;
        st.write_data = false;  // a fresh block is zeroes already
      } else {
        st.kind = Step::kBreak;
        st.copy_old = !(full && st.write_data);
      }
      break;
    case Intent::kTrim:
    case Intent::kZeroMayTrim:
      assert(false && "unmapping is not planned per block");
      return;
  }
  steps->push_back(st);
}

// ---- Allocation -------------------------------------------------------------

// What installing `st` will do to the reserved blocks: a guaranteed hole
// stops needing its block; a shared block loses v as an owner.
int64_t Pool::StepReservedDeltaLocked(const Volume& v, const Step& st) const {
  Guarantee g = GuaranteeOfLocked(v);
  if (st.kind == Step::kFresh) return g.all ? -1 : 0;
  // Nobody guarantees it: need(b) is 0 before and after.
  if (reservations_.guarantors(st.old) == 0) return 0;
  uint32_t owners = OwnersLocked(v.family, st.vb, st.old, nullptr);
  return reservations_.OwnerDelta(st.old, owners, g.Covers(st.old_provisioned), /*leave=*/true);
}

// Takes one block for each step that needs one. The request fits when,
// after it, reserved <= free still holds; so writes to guaranteed vblocks
// (whose blocks are reserved) always fit, and others may not take the
// reserved ones. The reservation change is counted now, so that other
// requests see it while this one moves its data.
Status Pool::AllocateBlocks(const Volume& v, std::vector<Step>* steps) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::seconds(options_.no_space_timeout_seconds);
  const size_t n = std::count_if(steps->begin(), steps->end(), [](const Step& s) { return s.needs_block(); });
  auto fits = [&]() -> bool {
    meta_mu_.AssertHeld();  // a lambda run under it: the analysis cannot see that
    int64_t delta = 0;
    for (const Step& st : *steps) {
      if (st.needs_block()) delta += StepReservedDeltaLocked(v, st);
    }
    int64_t free_after = static_cast<int64_t>(FreeLocked()) - static_cast<int64_t>(n);
    return free_after >= 0 && reservations_.reserved() + delta <= free_after;
  };
  for (;;) {
    // A commit may have failed while this request waited.
    THINSIM_RETURN_IF_ERROR(RefuseIfReadOnlyLocked());
    if (fits()) {
      if (space_map_->nr_free() >= n) break;
      // There is room, but some of it is freed blocks not allocatable yet.
      if (freed_.has_discards()) {
        DiscardFreedBlocksLocked();
      } else if (freed_.has_uncommitted() && commit_mu_.TryLock()) {
        // Blocks freed since the last commit become allocatable by
        // committing, as dm-thin commits when it runs out of free blocks.
        Status committed = CommitLocked();
        commit_mu_.Unlock();
        THINSIM_RETURN_IF_ERROR(committed);
      } else {
        // A commit or a discard running without the lock frees them soon
        // (and notifies; the timeout covers a commit that has yet to
        // release commit_mu_).
        space_freed_.WaitFor(&meta_mu_, std::chrono::milliseconds(10));
      }
      continue;
    }
    SetModeLocked(PoolMode::kOutOfDataSpace);
    // After one queued write timed out, the pool errors instead of queueing
    // until space appears (dm-thin: no_space_timeout switches the pool to
    // error mode), so a stream of writes does not wait one timeout each.
    bool can_wait = space_policy_.MayQueue();
    if (can_wait && options_.abandon_queued_write && options_.abandon_queued_write()) {
      return Status::IOError("write abandoned while waiting for space: its client disconnected or "
                             "the server is shutting down");
    }
    bool forever = options_.no_space_timeout_seconds == 0;
    if (can_wait && (forever || Clock::now() < deadline)) {
      // Wake up now and then to notice a shutdown.
      auto slice = std::min(deadline, Clock::now() + std::chrono::milliseconds(100));
      if (forever) slice = Clock::now() + std::chrono::milliseconds(100);
      space_freed_.WaitUntil(&meta_mu_, slice);
      continue;
    }
    if (fits()) continue;
    if (can_wait) {
      space_policy_.NoteQueueTimedOut();
      space_freed_.SignalAll();  // the other queued writes fail now too
    }
    uint64_t free = FreeLocked();
    const int64_t reserved = reservations_.reserved();
    uint64_t unreserved = free > static_cast<uint64_t>(reserved) ? free - reserved : 0;
    return Status::NoSpace("pool out of data space: need " + std::to_string(n) + " block(s), " +
                           std::to_string(free) + " free, " + std::to_string(unreserved) +
                           " of them unreserved" +
                           (can_wait ? "; waited " +
                                           std::to_string(options_.no_space_timeout_seconds) + "s"
                                     : ""));
  }
  for (Step& st : *steps) {
    if (!st.needs_block()) continue;
    st.reserved_delta = StepReservedDeltaLocked(v, st);
    reservations_.Add(st.reserved_delta);
    st.fresh = space_map_->Allocate();
    if (journal_) in_flight_.insert(st.fresh);
  }
  LeaveOutOfSpaceIfRoomLocked();
  CheckLowWaterLocked();
  return Status::OK();
}

// ---- Moving data ------------------------------------------------------------

Status Pool::MoveData(const std::vector<Step>& steps) {
  for (const Step& st : steps) {
    dblock_t target = st.kind == Step::kInPlace ? st.old : st.fresh;
    if (st.copy_old) THINSIM_RETURN_IF_ERROR(store_->Copy(st.old, target));
    if (!st.write_data) continue;
    if (st.src != nullptr) {
      THINSIM_RETURN_IF_ERROR(store_->Write(target, st.off, st.src, st.len));
    } else if (st.kind == Step::kInPlace || st.copy_old) {
      // A fresh block without a copy reads as zeroes already.
      THINSIM_RETURN_IF_ERROR(store_->Zero(target, st.off, st.len));
    }
  }
  return Status::OK();
}

void Pool::InstallLocked(Volume& v, const std::vector<Step>& steps) {
  for (const Step& st : steps) {
    if (st.kind != Step::kInPlace) {
      reservations_.Add(-st.reserved_delta);  // counted at allocation; the change below makes it
      MapFreshLocked(v, st.vb, st.fresh, st.provision || st.old_provisioned);
      if (journal_) {
        in_flight_.erase(st.fresh);
        space_map_->MarkChanged(st.fresh);  // its count goes in the next commit
      }
      continue;
    }
    MappingTable::Entry e = v.map->Lookup(st.vb);
    if (!st.provision || e.provisioned) continue;
    v.map->MutableChunk(st.vb, space_map_.get()).SetProvisioned(st.vb & (kChunkSize - 1), true);
    NoteChunkLocked(v, st.vb);
    ++v.nr_provisioned;
    // A provision-strategy volume now guarantees this block too.
    Guarantee g = GuaranteeOfLocked(v);
    uint32_t gv_before = g.Covers(false), gv_after = g.Covers(true);
    if (gv_after != gv_before) {
      uint32_t owners = OwnersLocked(v.family, st.vb, e.dblock, nullptr);
      reservations_.ChangeGuarantor(e.dblock, owners, /*from=*/false, /*to=*/true, /*apply=*/true);
    }
  }
}

// ---- The pipeline -----------------------------------------------------------

// The blocks one request touches.
struct Pool::Span {
  uint64_t offset;
  uint64_t len;
  uint64_t end;  // offset + len
  vblock_t first;
  vblock_t last;  // inclusive: the range-locked blocks
  // Whole blocks an unmapping request removes: [unmap_first, unmap_end).
  bool unmaps;
  vblock_t unmap_first;
  vblock_t unmap_end;
  bool has_unmap;
};

Pool::Span Pool::SpanOf(uint64_t len, uint64_t offset, Intent intent) const {
  Span s;
  s.offset = offset;
  s.len = len;
  s.end = offset + len;
  s.unmaps = intent == Intent::kTrim || intent == Intent::kZeroMayTrim;
  s.unmap_first = (offset + block_size_ - 1) / block_size_;
  s.unmap_end = s.end / block_size_;
  s.has_unmap = s.unmaps && s.unmap_first < s.unmap_end;
  s.first = offset / block_size_;
  s.last = (s.end - 1) / block_size_;
  if (intent == Intent::kTrim) {
    s.first = s.unmap_first;
    s.last = s.unmap_end - 1;  // only meaningful when has_unmap
  }
  return s;
}

Status Pool::ApplyRange(Volume& v, uint64_t len, uint64_t offset, Intent intent,
                        const uint8_t* src, bool fast, bool gated) {
  if (v.read_only) return Status::ReadOnly("'" + v.name + "' is a read-only snapshot");
  if (len == 0) return Status::OK();
  // Declared first, so that blocks this request frees are discarded after
  // its locks are released.
  DiscardAtExit discard(this);
  const Span span = SpanOf(len, offset, intent);
  // Sub-block trims are ignored, as in dm-thin.
  if (intent == Intent::kTrim && !span.has_unmap) return Status::OK();

  std::shared_lock<std::shared_mutex> gate;
  if (gated) gate = std::shared_lock<std::shared_mutex>(v.io_gate);
  ScopedRange range(&v.range_lock, span.first, span.last, /*exclusive=*/true);
  // Observers change only under the exclusive io_gate, which this request
  // holds shared (or its caller exclusively): the list stands still. Without
  // observers the request pays this one test.
  if (v.observers.empty() || !gated) return ApplyHeld(v, span, intent, src, fast);
  return ApplyObserved(v, span, intent, src, fast);
}

class Pool::SpanBytes final : public AppliedBytes {
 public:
  SpanBytes(Pool* pool, Volume& v, const Span& span) : pool_(pool), v_(v), span_(span) {}
  Status Read(void* buf, uint64_t length, uint64_t offset) const override {
    const uint64_t bs = pool_->block_size_;
    if (offset < span_.first * bs || offset + length > (span_.last + 1) * bs || length == 0) {
      return Status::Invalid("a read of the applied bytes outside the request's blocks");
    }
    THINSIM_RETURN_IF_ERROR(pool_->CheckRange(v_, length, offset));
    return pool_->ReadHeld(v_, buf, length, offset);  // the request holds the range lock
  }

 private:
  Pool* const pool_;
  Volume& v_;
  const Span& span_;
};

Status Pool::ApplyObserved(Volume& v, const Span& span, Intent intent, const uint8_t* src, bool fast) {
  SpanBytes applied(this, v, span);
  ChangeRequest request{ChangeKindOf(intent), span.offset, span.len, src, &applied};
  if (intent == Intent::kTrim) {
    request.offset = span.unmap_first * block_size_;
    request.length = (span.unmap_end - span.unmap_first) * block_size_;
  }
  size_t before = 0;
  Status s;
  for (; before < v.observers.size() && s.ok(); ++before) s = v.observers[before]->BeforeChange(request);
  if (s.ok()) s = ApplyHeld(v, span, intent, src, fast);
  // Every observer that saw BeforeChange sees AfterChange, also when a later
  // one refused the request.
  for (size_t i = 0; i < before; ++i) {
    Status after = v.observers[i]->AfterChange(request, s);
    if (s.ok() && !after.ok()) s = after;
  }
  return s;
}

Status Pool::ApplyHeld(Volume& v, const Span& span, Intent intent, const uint8_t* src, bool fast) {
  const uint64_t offset = span.offset;
  const uint64_t len = span.len;
  const uint64_t end = span.end;
  const bool unmaps = span.unmaps;
  const vblock_t unmap_first = span.unmap_first;
  const vblock_t unmap_end = span.unmap_end;
  const bool has_unmap = span.has_unmap;
  const vblock_t first = span.first;
  const vblock_t last = span.last;

  if (changes_refused_.load(std::memory_order_acquire)) {
    ReaderLock lock(&meta_mu_);
    THINSIM_RETURN_IF_ERROR(RefuseIfReadOnlyLocked());
  }
  std::vector<Step> steps;
  {
    // The plan needs only this volume's mapping: no pool-wide lock, so
    // overwrites of exclusive blocks never touch meta_mu_.
    std::shared_lock vlock(v.map_mu);
    // Provision() looks the volume up before it takes the io_gate, so
    // DeleteVolume may have removed it meanwhile.
    if (v.deleted) return Status::NotFound("volume '" + v.name + "' was deleted");
    // kZeroData comes only from ResizeVolume growing a volume: it zeroes the
    // stale tail of the old last block, which lies beyond the old size.
    if (intent != Intent::kZeroData) THINSIM_RETURN_IF_ERROR(CheckRange(v, len, offset));
    if (intent != Intent::kTrim) {
      for (vblock_t vb = first; vb <= last; ++vb) {
        if (unmaps && vb >= unmap_first && vb < unmap_end) continue;  // whole block: unmapped below
        uint64_t block_start = vb * block_size_;
        uint64_t piece_start = std::max(offset, block_start);
        uint64_t piece_end = std::min(end, block_start + block_size_);
        const uint8_t* piece_src = src == nullptr ? nullptr : src + (piece_start - offset);
        Intent per_block = intent == Intent::kZeroMayTrim ? Intent::kZeroData : intent;
        PlanLocked(v, vb, static_cast<uint32_t>(piece_start - block_start),
                   static_cast<uint32_t>(piece_end - piece_start), per_block, piece_src, &steps);
      }
    }
  }
  size_t needed = std::count_if(steps.begin(), steps.end(), [](const Step& s) { return s.needs_block(); });
  if (fast) {
    bool writes = std::any_of(steps.begin(), steps.end(), [](const Step& s) { return s.write_data; });
    if (needed > 0 || writes) {
      return Status::Unsupported("fast zero refused: the range needs data written or blocks allocated");
    }
  }
  // A block that became exclusive since the last commit is still shared in
  // the committed state (a snapshot's copy-on-write or delete that is not
  // durable yet): overwritten in place, a crash would show this write in
  // the other volume. Commit first; then the block is exclusive on disk too.
  // (dm-thin decides sharing from snapshot times rather than counts, so it
  // copies such blocks instead.)
  if (InPlaceNeedsCommit(v) && std::any_of(steps.begin(), steps.end(), [](const Step& s) {
        return s.kind == Step::kInPlace && s.write_data;
      })) {
    THINSIM_RETURN_IF_ERROR(Commit());
  }
  if (needed > 0) {
    WriterLock lock(&meta_mu_);
    THINSIM_RETURN_IF_ERROR(AllocateBlocks(v, &steps));
  }
  Status moved = MoveData(steps);
  bool installs = has_unmap || std::any_of(steps.begin(), steps.end(), [](const Step& s) {
                    return s.needs_block() || s.provision;
                  });
  if (moved.ok() && !installs) return Status::OK();  // overwrites in place: nothing to record
  WriterLock lock(&meta_mu_);
  std::unique_lock vlock(v.map_mu);
  if (!moved.ok()) {
    for (const Step& st : steps) {
      if (!st.needs_block()) continue;
      reservations_.Add(-st.reserved_delta);
      in_flight_.erase(st.fresh);
      space_map_->Dec(st.fresh);
    }
    RecycleLocked();
    return moved;
  }
  InstallLocked(v, steps);
  if (has_unmap) UnmapRangeLocked(v, unmap_first, unmap_end - 1);
  RecycleLocked();
  return Status::OK();
}

ChangeRequest::Kind Pool::ChangeKindOf(Intent intent) {
  switch (intent) {
    case Intent::kWriteData: return ChangeRequest::Kind::kWrite;
    case Intent::kProvision: return ChangeRequest::Kind::kProvision;
    case Intent::kTrim: return ChangeRequest::Kind::kTrim;
    case Intent::kZeroData:
    case Intent::kProvisionZero:
    case Intent::kZeroMayTrim: return ChangeRequest::Kind::kZero;
  }
  return ChangeRequest::Kind::kZero;
}

// ---- Entry points -----------------------------------------------------------

Status Pool::Write(Volume& v, const void* buf, uint64_t len, uint64_t offset) {
  return ApplyRange(v, len, offset, Intent::kWriteData, static_cast<const uint8_t*>(buf), false);
}

Status Pool::Trim(Volume& v, uint64_t len, uint64_t offset) {
  return ApplyRange(v, len, offset, Intent::kTrim, nullptr, false);
}

Status Pool::Zero(Volume& v, uint64_t len, uint64_t offset, unsigned flags) {
  Intent intent = (flags & kMayTrim) ? Intent::kZeroMayTrim : Intent::kProvisionZero;
  return ApplyRange(v, len, offset, intent, nullptr, (flags & kFastZero) != 0);
}

Status Pool::Provision(std::string_view name, uint64_t offset, uint64_t length) {
  std::shared_ptr<Volume> v;
  {
    ReaderLock lock(&meta_mu_);
    Volume* found = FindLocked(name);
    if (found == nullptr) return Status::NotFound("no volume named '" + std::string(name) + "'");
    v = volumes_.at(found->id);
  }
  return ApplyRange(*v, length, offset, Intent::kProvision, nullptr, false);
}


Status Pool::Read(Volume& v, void* buf, uint64_t len, uint64_t offset) {
  if (len == 0) return Status::OK();
  ScopedRange range(&v.range_lock, offset / block_size_, (offset + len - 1) / block_size_,
                    /*exclusive=*/false);
  return ReadHeld(v, buf, len, offset);
}

Status Pool::ReadHeld(Volume& v, void* buf, uint64_t len, uint64_t offset) {
  const uint64_t end = offset + len;
  const vblock_t first = offset / block_size_;
  const vblock_t last = (end - 1) / block_size_;
  // No heap allocation for the usual small read.
  dblock_t inline_blocks[16];
  std::vector<dblock_t> many;
  dblock_t* blocks = inline_blocks;
  {
    std::shared_lock vlock(v.map_mu);  // no pool-wide lock on the read path
    THINSIM_RETURN_IF_ERROR(CheckRange(v, len, offset));
    if (last - first + 1 > std::size(inline_blocks)) {
      many.resize(last - first + 1);
      blocks = many.data();
    }
    for (vblock_t vb = first; vb <= last; ++vb) blocks[vb - first] = v.map->Lookup(vb).dblock;
  }
  auto* out = static_cast<uint8_t*>(buf);
  for (vblock_t vb = first; vb <= last; ++vb) {
    uint64_t block_start = vb * block_size_;
    uint64_t piece_start = std::max(offset, block_start);
    uint64_t piece_end = std::min(end, block_start + block_size_);
    uint8_t* dst = out + (piece_start - offset);
    uint32_t piece_len = static_cast<uint32_t>(piece_end - piece_start);
    dblock_t b = blocks[vb - first];
    if (b == kNoDblock) {
      std::memset(dst, 0, piece_len);
    } else {
      THINSIM_RETURN_IF_ERROR(
          store_->Read(b, static_cast<uint32_t>(piece_start - block_start), dst, piece_len));
    }
  }
  return Status::OK();
}

Status Pool::Extents(Volume& v, uint64_t len, uint64_t offset, std::vector<Extent>* out,
                     ExtentsMode mode) {
  // Enough for any client; the NBD server may answer with less than asked.
  constexpr size_t kMaxExtents = 1 << 16;
  out->clear();
  if (len == 0) return Status::OK();
  const uint64_t end = offset + len;
  ReaderLock lock(&meta_mu_);
  THINSIM_RETURN_IF_ERROR(CheckRange(v, len, offset));
  auto add = [&](uint64_t start, uint64_t stop, uint32_t type) {
    start = std::max(start, offset);
    stop = std::min(stop, end);
    if (!out->empty() && out->back().type == type) {
      out->back().length = stop - out->back().offset;
    } else {
      out->push_back(Extent{start, stop - start, type});
    }
  };
  vblock_t vb = offset / block_size_;
  const vblock_t last = (end - 1) / block_size_;
  const bool space = mode == ExtentsMode::kSpace;
  const Guarantee guarantee = space ? GuaranteeOfLocked(v) : Guarantee{};
  while (vb <= last && out->size() < kMaxExtents) {
    const Chunk* c = v.map->chunk(vb >> kChunkShift);
    if (c == nullptr || c->empty()) {  // 64 holes at once
      vblock_t chunk_end = ((vb >> kChunkShift) + 1) << kChunkShift;
      add(vb * block_size_, std::min(chunk_end, last + 1) * block_size_, Extent::kHole | Extent::kZero);
      vb = chunk_end;
      continue;
    }
    MappingTable::Entry e = v.map->Lookup(vb);
    uint32_t type = Extent::kHole | Extent::kZero;
    if (e.dblock != kNoDblock) {
      // Under kSpace, a write to a shared block needs a new one that only a
      // reservation guarantees; without one it is reported as a hole.
      bool may_fail = space && !e.exclusive && !guarantee.Covers(e.provisioned);
      type = may_fail ? Extent::kHole : 0;
    }
    add(vb * block_size_, (vb + 1) * block_size_, type);
    ++vb;
  }
  return Status::OK();
}

}  // namespace thinsim
