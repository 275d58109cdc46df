// VolumeBitmaps: named bitmaps, the request hook and epoch-based cuts
// (volume_bitmaps.h has the design).
#include "bitmap/volume_bitmaps.h"

#include <cassert>
#include <utility>

#include "base/sizes.h"

namespace thinsim {
namespace {

// Fibonacci hashing of a request's address into the slot table.
size_t SlotOf(uintptr_t key) {
  static_assert((VolumeBitmaps::kSlots & (VolumeBitmaps::kSlots - 1)) == 0);
  return static_cast<size_t>(((key >> 4) * 0x9E3779B97F4A7C15ull) >> 54) & (VolumeBitmaps::kSlots - 1);
}

}  // namespace

VolumeBitmaps::VolumeBitmaps(std::string volume, uint64_t size, std::unique_ptr<BitmapJournal> journal)
    : volume_(std::move(volume)), journal_(std::move(journal)), size_(size), view_(std::make_unique<View>()),
      slots_(std::make_unique<Slot[]>(kSlots)) {
  views_[0].store(view_.get(), std::memory_order_release);
  views_[1].store(view_.get(), std::memory_order_release);
}

// Detached first (no request in flight), so nothing waits here.
VolumeBitmaps::~VolumeBitmaps() = default;

Status VolumeBitmaps::Add(std::string_view name, uint64_t granularity, bool persistent,
                          bool disabled) {
  MutexLock lock(&mu_);
  THINSIM_RETURN_IF_ERROR(CheckNewName(name));
  if (persistent) THINSIM_RETURN_IF_ERROR(RefusePersistent());
  Entry entry;
  THINSIM_RETURN_IF_ERROR(DirtyBitmap::Make(size_, granularity, &entry.bits));
  entry.enabled = !disabled;
  Status logged;
  if (persistent) {
    entry.persisted = std::make_shared<Persisted>(next_id_, size_, granularity);
    std::string records;
    metadata::AppendBitmap(&records, RecordOf(std::string(name), entry));
    {
      MutexLock j(&journal_mu_);
      THINSIM_RETURN_IF_ERROR(journal_->Append(records));
      existing_[next_id_] = entry.persisted;
      if (entry.enabled) recording_.insert(next_id_);
    }
    ++next_id_;
    logged = journal_->Sync();
  }
  entries_.emplace(std::string(name), std::move(entry));
  if (!disabled) PublishLocked();
  return logged;
}

Status VolumeBitmaps::Remove(std::string_view name) {
  MutexLock lock(&mu_);
  Entry* e = nullptr;
  THINSIM_RETURN_IF_ERROR(Find(name, /*change=*/true, &e));
  Status logged;
  if (e->persisted) {
    std::string records;
    metadata::AppendBitmapRemove(&records, {journal_->volume_id(), e->persisted->id});
    MutexLock j(&journal_mu_);
    THINSIM_RETURN_IF_ERROR(journal_->Append(records));
    existing_.erase(e->persisted->id);
    recording_.erase(e->persisted->id);
  }
  if (e->persisted) logged = journal_->Sync();
  // Requests of the old epoch may still mark it: free it after them.
  std::unique_ptr<DirtyBitmap> gone = std::move(e->bits);
  entries_.erase(entries_.find(name));
  PublishLocked();
  return logged;
}

Status VolumeBitmaps::Clear(std::string_view name) {
  boost::icl::interval_set<uint64_t> everything;
  everything += boost::icl::interval<uint64_t>::right_open(0, UINT64_MAX);  // clipped to the size
  return ClearRanges(name, everything);
}

Status VolumeBitmaps::ClearRanges(std::string_view name, const boost::icl::interval_set<uint64_t>& bytes) {
  MutexLock lock(&mu_);
  Entry* e = nullptr;
  THINSIM_RETURN_IF_ERROR(Find(name, /*change=*/true, &e));
  THINSIM_RETURN_IF_ERROR(RefuseInconsistent(name, *e));
  // Fresh bits rather than clearing in place, so that a request in flight
  // across the change marks them in AfterChange; once the old epoch has
  // drained, the old bits are still and what they hold outside `bytes` is
  // added back.
  std::unique_ptr<DirtyBitmap> old =
      std::exchange(e->bits, std::make_unique<DirtyBitmap>(size_, e->bits->granularity()));
  PublishLocked();
  DirtyBitmap kept(size_, old->granularity());
  kept.Merge(*old);
  for (const auto& r : bytes) kept.Clear(boost::icl::first(r), boost::icl::length(r));
  e->bits->Merge(kept);
  if (e->persisted) return ShrinkDurableLocked(*e->persisted, *e->bits);
  return Status::OK();
}

Status VolumeBitmaps::Enable(std::string_view name) { return SetEnabled(name, true); }

// Once Disable returns, no request marks the bitmap.
Status VolumeBitmaps::Disable(std::string_view name) { return SetEnabled(name, false); }

Status VolumeBitmaps::SetEnabled(std::string_view name, bool enabled) {
  MutexLock lock(&mu_);
  Entry* e = nullptr;
  THINSIM_RETURN_IF_ERROR(Find(name, /*change=*/true, &e));
  if (e->enabled == enabled) return Status::OK();
  if (enabled) THINSIM_RETURN_IF_ERROR(RefuseInconsistent(name, *e));
  e->enabled = enabled;
  Status logged;
  if (e->persisted) {
    std::string records;
    metadata::AppendBitmap(&records, RecordOf(std::string(name), *e));
    {
      MutexLock j(&journal_mu_);
      Status s = journal_->Append(records);
      if (!s.ok()) {
        e->enabled = !enabled;
        return s;
      }
      if (enabled) {
        recording_.insert(e->persisted->id);
      } else {
        recording_.erase(e->persisted->id);
      }
    }
    logged = journal_->Sync();
  }
  PublishLocked();
  return logged;
}

Status VolumeBitmaps::Merge(const std::vector<std::string>& sources, std::string_view target) {
  MutexLock lock(&mu_);
  Entry* dst = nullptr;
  THINSIM_RETURN_IF_ERROR(Find(target, /*change=*/true, &dst));
  std::vector<const DirtyBitmap*> from;
  for (const std::string& name : sources) {
    const Entry* src = nullptr;
    THINSIM_RETURN_IF_ERROR(FindConst(name, &src));
    from.push_back(src->bits.get());
  }
  THINSIM_RETURN_IF_ERROR(RefuseInconsistent(target, *dst));
  // Nothing below can fail, but for the log of a persistent target.
  for (const DirtyBitmap* src : from) dst->bits->Merge(*src);
  if (!dst->persisted) return Status::OK();
  return LogMergedLocked(*dst);
}

Status VolumeBitmaps::Cut(std::string_view name, std::string_view into) {
  MutexLock lock(&mu_);
  Entry* src = nullptr;
  THINSIM_RETURN_IF_ERROR(Find(name, /*change=*/true, &src));
  THINSIM_RETURN_IF_ERROR(CheckNewName(into));
  THINSIM_RETURN_IF_ERROR(RefuseInconsistent(name, *src));
  Entry frozen;
  frozen.bits = std::exchange(src->bits, std::make_unique<DirtyBitmap>(size_, src->bits->granularity()));
  frozen.enabled = false;
  frozen.persisted = src->persisted;
  Status logged;
  if (frozen.persisted) {
    // The live instance keeps its id under the new name; a new instance,
    // durably dirty wherever the old one is, takes the old name.
    auto fresh = std::make_shared<Persisted>(next_id_, size_, src->bits->granularity());
    fresh->durable.Merge(frozen.persisted->durable);
    src->persisted = fresh;
    std::string records;
    metadata::AppendBitmap(&records, RecordOf(std::string(into), frozen));
    metadata::AppendBitmap(&records, RecordOf(std::string(name), *src));
    metadata::AppendBitmapCopy(&records, {journal_->volume_id(), frozen.persisted->id, fresh->id});
    {
      MutexLock j(&journal_mu_);
      Status s = journal_->Append(records);
      if (!s.ok()) {
        src->bits = std::move(frozen.bits);
        src->persisted = std::move(frozen.persisted);
        return s;
      }
      existing_[fresh->id] = fresh;
      recording_.erase(frozen.persisted->id);
      if (src->enabled) recording_.insert(fresh->id);
    }
    ++next_id_;
    logged = journal_->Sync();
  }
  // Requests of the old epoch finish marking the frozen bits (and, if they
  // straddle the cut, the fresh ones too) before `into` appears.
  PublishLocked();
  entries_.emplace(std::string(into), std::move(frozen));
  if (logged.ok() && src->persisted) logged = ShrinkDurableLocked(*src->persisted, *src->bits);
  return logged;
}

Status VolumeBitmaps::SetBusy(std::string_view name, bool busy) {
  MutexLock lock(&mu_);
  Entry* e = nullptr;
  THINSIM_RETURN_IF_ERROR(Find(name, /*change=*/false, &e));
  e->busy = busy;
  return Status::OK();
}

std::vector<BitmapInfo> VolumeBitmaps::Query() const {
  MutexLock lock(&mu_);
  std::vector<BitmapInfo> out;
  for (const auto& [name, e] : entries_) {
    out.push_back({name, e.bits->granularity(), e.bits->CountGranules(), e.bits->DirtyBytes(),
                   e.enabled, e.busy, e.persisted != nullptr, e.inconsistent});
  }
  return out;
}

Status VolumeBitmaps::Query(std::string_view name, BitmapInfo* out) const {
  MutexLock lock(&mu_);
  const Entry* e = nullptr;
  THINSIM_RETURN_IF_ERROR(FindConst(name, &e));
  *out = {std::string(name), e->bits->granularity(), e->bits->CountGranules(), e->bits->DirtyBytes(),
          e->enabled, e->busy, e->persisted != nullptr, e->inconsistent};
  return Status::OK();
}

Status VolumeBitmaps::Extents(std::string_view name, uint64_t offset, uint64_t length,
                              std::vector<DirtyBitmap::Extent>* out) const {
  MutexLock lock(&mu_);
  const Entry* e = nullptr;
  THINSIM_RETURN_IF_ERROR(FindConst(name, &e));
  *out = e->bits->Extents(offset, length);
  return Status::OK();
}

Status VolumeBitmaps::DirtyRanges(std::string_view name,
                                  boost::icl::interval_set<uint64_t>* out) const {
  MutexLock lock(&mu_);
  const Entry* e = nullptr;
  THINSIM_RETURN_IF_ERROR(FindConst(name, &e));
  *out = e->bits->DirtyRanges();
  return Status::OK();
}

void VolumeBitmaps::Resize(uint64_t new_size) {
  MutexLock lock(&mu_);
  if (new_size == size_) return;
  // Requests mark fresh bits of the new size from the new epoch on; once the
  // old epoch has drained, the old bits are still and are folded in.
  std::vector<std::pair<DirtyBitmap*, std::unique_ptr<DirtyBitmap>>> old;
  for (auto& [name, e] : entries_) {
    auto fresh = std::make_unique<DirtyBitmap>(new_size, e.bits->granularity());
    DirtyBitmap* now = fresh.get();
    old.emplace_back(now, std::exchange(e.bits, std::move(fresh)));
    if (e.persisted) ResizeDurableLocked(e, new_size);
  }
  size_ = new_size;
  PublishLocked();
  for (auto& [now, before] : old) {
    before->Resize(new_size);
    now->Merge(*before);
  }
}

uint64_t VolumeBitmaps::size() const {
  MutexLock lock(&mu_);
  return size_;
}

Status VolumeBitmaps::BeforeChange(const ChangeRequest& request) {
  uint64_t epoch = EnterEpoch();
  Remember(&request, epoch);
  const View& view = *views_[epoch & 1].load(std::memory_order_acquire);
  MarkView(view, request);
  if (view.persisted.empty()) return Status::OK();
  return MakeDurable(view, request);
}

Status VolumeBitmaps::AfterChange(const ChangeRequest& request, const Status& /*result*/) {
  // Marked whatever the result: a failed request may have changed data.
  uint64_t epoch = 0;
  if (!Forget(&request, &epoch)) {
    // Not seen by BeforeChange (cannot happen when attached through the
    // io_gate): mark what is recording now, to be safe.
    assert(false && "AfterChange without BeforeChange");
    epoch = EnterEpoch();
    MarkView(*views_[epoch & 1].load(std::memory_order_acquire), request);
    LeaveEpoch(epoch);
    return Status::OK();
  }
  // The epoch moved at most once since BeforeChange: mark the new View too.
  uint64_t now = epoch_.load(std::memory_order_seq_cst);
  if (now != epoch) MarkView(*views_[now & 1].load(std::memory_order_acquire), request);
  LeaveEpoch(epoch);
  return Status::OK();
}

Status VolumeBitmaps::Find(std::string_view name, bool change, Entry** out) {
  const Entry* e = nullptr;
  THINSIM_RETURN_IF_ERROR(FindConst(name, &e));
  if (change && e->busy) return BusyError(name);
  *out = const_cast<Entry*>(e);  // mu_ is held: the entry is ours to change
  return Status::OK();
}

Status VolumeBitmaps::BusyError(std::string_view name) const {
  return Status::Busy("bitmap '" + std::string(name) + "' on volume '" + volume_ + "' is busy (in use by a job)");
}

Status VolumeBitmaps::CheckAdd(std::string_view name, uint64_t granularity) const {
  MutexLock lock(&mu_);
  THINSIM_RETURN_IF_ERROR(CheckNewName(name));
  return DirtyBitmap::ValidateGranularity(granularity);
}

Status VolumeBitmaps::CheckCut(std::string_view name, std::string_view into) const {
  MutexLock lock(&mu_);
  const Entry* e = nullptr;
  THINSIM_RETURN_IF_ERROR(FindConst(name, &e));
  if (e->busy) return BusyError(name);
  return CheckNewName(into);
}

Status VolumeBitmaps::FindConst(std::string_view name, const Entry** out) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) {
    return Status::NotFound("no bitmap named '" + std::string(name) + "' on volume '" + volume_ + "'");
  }
  *out = &it->second;
  return Status::OK();
}

Status VolumeBitmaps::CheckNewName(std::string_view name) const {
  THINSIM_RETURN_IF_ERROR(ValidateName(name, "bitmap"));
  if (entries_.find(name) != entries_.end()) {
    return Status::Exists("volume '" + volume_ + "' already has a bitmap named '" + std::string(name) + "'");
  }
  return Status::OK();
}

void VolumeBitmaps::PublishLocked() {
  auto view = std::make_unique<View>();
  for (auto& [name, e] : entries_) {
    if (!e.enabled) continue;
    view->live.push_back(e.bits.get());
    if (e.persisted) view->persisted.push_back(e.persisted);
  }
  // No request of the other parity is in flight (the last grace period saw
  // to that), so that slot is free to change before the epoch moves.
  const uint64_t epoch = epoch_.load(std::memory_order_relaxed);  // only mu_'s holder changes it
  views_[(epoch + 1) & 1].store(view.get(), std::memory_order_release);
  epoch_.store(epoch + 1, std::memory_order_seq_cst);
  WaitForReaders(epoch);
  views_[epoch & 1].store(view.get(), std::memory_order_release);
  view_ = std::move(view);  // frees the old View: nobody of its epoch is left
}

void VolumeBitmaps::WaitForReaders(uint64_t epoch) {
  std::atomic<int64_t>& readers = readers_[epoch & 1].n;
  MutexLock lock(&wait_mu_);
  waiting_.store(true, std::memory_order_seq_cst);
  while (readers.load(std::memory_order_seq_cst) != 0) wait_cv_.Wait(&wait_mu_);
  waiting_.store(false, std::memory_order_relaxed);
}

uint64_t VolumeBitmaps::EnterEpoch() {
  for (;;) {
    uint64_t epoch = epoch_.load(std::memory_order_seq_cst);
    readers_[epoch & 1].n.fetch_add(1, std::memory_order_seq_cst);
    // Counted before the epoch moved: the grace period will wait for us.
    // Otherwise the grace period may have looked already; enter the new one.
    if (epoch_.load(std::memory_order_seq_cst) == epoch) return epoch;
    LeaveEpoch(epoch);
  }
}

void VolumeBitmaps::LeaveEpoch(uint64_t epoch) {
  // Either the waiter sees our decrement, or we see it waiting (both
  // seq_cst); taking wait_mu_ to signal means it is asleep or not yet looking.
  if (readers_[epoch & 1].n.fetch_sub(1, std::memory_order_seq_cst) == 1 &&
      waiting_.load(std::memory_order_seq_cst)) {
    MutexLock lock(&wait_mu_);
    wait_cv_.SignalAll();
  }
}

void VolumeBitmaps::Remember(const ChangeRequest* request, uint64_t epoch) {
  const uintptr_t key = reinterpret_cast<uintptr_t>(request);
  const size_t home = SlotOf(key);
  for (size_t i = 0; i < kSlots; ++i) {
    Slot& slot = slots_[(home + i) & (kSlots - 1)];
    uintptr_t free = 0;
    if (slot.key.load(std::memory_order_relaxed) == 0 &&
        slot.key.compare_exchange_strong(free, key, std::memory_order_acquire)) {
      slot.epoch.store(epoch, std::memory_order_relaxed);
      return;
    }
  }
  MutexLock lock(&overflow_mu_);
  overflow_[request] = epoch;
}

bool VolumeBitmaps::Forget(const ChangeRequest* request, uint64_t* epoch) {
  const uintptr_t key = reinterpret_cast<uintptr_t>(request);
  const size_t home = SlotOf(key);
  // Only this request put `key` in the table, and it is in one place: scan
  // until found (a freed slot on the way does not end the search).
  for (size_t i = 0; i < kSlots; ++i) {
    Slot& slot = slots_[(home + i) & (kSlots - 1)];
    if (slot.key.load(std::memory_order_relaxed) == key) {
      *epoch = slot.epoch.load(std::memory_order_relaxed);
      slot.key.store(0, std::memory_order_release);
      return true;
    }
  }
  MutexLock lock(&overflow_mu_);
  auto it = overflow_.find(request);
  if (it == overflow_.end()) return false;
  *epoch = it->second;
  overflow_.erase(it);
  return true;
}

void VolumeBitmaps::MarkView(const View& view, const ChangeRequest& request) {
  for (DirtyBitmap* bits : view.live) bits->Mark(request.offset, request.length);
}

}  // namespace thinsim
