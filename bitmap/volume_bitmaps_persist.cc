// VolumeBitmaps: the persistent side - the write-intent rule on the request
// path and the records the control calls log (volume_bitmaps.h has the
// design, docs/format.md the records).
#include <algorithm>
#include <atomic>
#include <utility>

#include "bitmap/volume_bitmaps.h"
#include "metadata/records.h"

namespace thinsim {
namespace {

using GranuleRanges = std::vector<std::pair<uint64_t, uint64_t>>;  // (first, count)

// The granules of `bits`'s geometry that [offset, offset + length) touches,
// clipped to its size; empty past the end.
GranuleRanges GranulesOf(const DirtyBitmap& bits, uint64_t offset, uint64_t length) {
  if (length == 0 || offset >= bits.size()) return {};
  uint64_t end = length > bits.size() - offset ? bits.size() : offset + length;
  uint64_t first = offset / bits.granularity(), last = (end - 1) / bits.granularity();
  return {{first, last - first + 1}};
}

GranuleRanges GranulesOf(const DirtyBitmap& bits) {
  GranuleRanges out;
  for (const auto& r : bits.DirtyRanges()) {
    GranuleRanges one = GranulesOf(bits, boost::icl::first(r), boost::icl::length(r));
    out.insert(out.end(), one.begin(), one.end());
  }
  return out;
}

void MarkGranules(DirtyBitmap* bits, const GranuleRanges& ranges) {
  for (auto [first, count] : ranges) bits->Mark(first * bits->granularity(), count * bits->granularity());
}

// [first, end) of the intent a request at [offset, offset + length) logs:
// rounded out to kIntentBytes (or the granule, if larger), as md's
// write-intent bitmap uses chunks coarser than its writes: a random writer
// then pays one commit per intent chunk per epoch, not per granule, and a
// crash leaves the bitmap dirtier (never falsely clean) by at most that.
std::pair<uint64_t, uint64_t> IntentRange(uint64_t granularity, uint64_t offset, uint64_t length) {
  const uint64_t unit = std::max<uint64_t>(VolumeBitmaps::kIntentBytes, granularity);
  uint64_t first = offset / unit * unit;
  uint64_t end = offset + length;
  end = end > UINT64_MAX - unit ? UINT64_MAX : (end + unit - 1) / unit * unit;
  return {first, end};
}

}  // namespace

Status VolumeBitmaps::RefusePersistent() const {
  if (journal_ != nullptr) return Status::OK();
  return Status::Unsupported("volume '" + volume_ + "' cannot have persistent bitmaps: the pool is in memory "
                             "(persistent bitmaps need pool=DIR)");
}

Status VolumeBitmaps::RefuseInconsistent(std::string_view name, const Entry& e) const {
  if (!e.inconsistent) return Status::OK();
  return Status::Invalid("bitmap '" + std::string(name) + "' on volume '" + volume_ +
                         "' is inconsistent (its bits cannot be trusted after a repair): remove it and copy in full");
}

metadata::BitmapRecord VolumeBitmaps::RecordOf(const std::string& name, const Entry& e) const {
  uint8_t flags = (e.enabled ? metadata::BitmapRecord::kRecording : 0) |
                  (e.inconsistent ? metadata::BitmapRecord::kInconsistent : 0);
  return {journal_->volume_id(), e.persisted->id, name, static_cast<uint32_t>(e.bits->granularity()), flags};
}

Status VolumeBitmaps::LogLocked(const std::string& records) {
  {
    MutexLock j(&journal_mu_);
    THINSIM_RETURN_IF_ERROR(journal_->Append(records));
  }
  return journal_->Sync();
}

Status VolumeBitmaps::LogMergedLocked(Entry& dst) {
  // The target's whole dirty set, added: idempotent, and what it holds now.
  std::string records;
  metadata::AppendBitmapDirty(&records, {journal_->volume_id(), dst.persisted->id, false, GranulesOf(*dst.bits)});
  THINSIM_RETURN_IF_ERROR(LogLocked(records));
  dst.persisted->durable.Merge(*dst.bits);
  return Status::OK();
}

Status VolumeBitmaps::MakeDurable(const View& view, const ChangeRequest& request) {
#ifdef THINSIM_PLANTED_BUG_MISSING_INTENT
  (void)view;
  (void)request;
  return Status::OK();  // the planted bug: see THINSIM_PLANTED_BUG in CMakeLists.txt
#endif
  // Marked before tested: a shrink that clears `durable` and then reads the
  // live bits sees this request's marks, or this test sees the clear. Both
  // sides order through one read-modify-write of order_ (rather than a
  // fence, which TSan cannot follow): whichever comes second sees what the
  // other did before its own.
  order_.fetch_add(1, std::memory_order_acq_rel);
  if (std::all_of(view.persisted.begin(), view.persisted.end(), [&](const std::shared_ptr<Persisted>& p) {
        return p->durable.Covers(request.offset, request.length);
      })) {
    return Status::OK();  // the common case: no lock, no I/O
  }
  std::vector<std::shared_ptr<Persisted>> targets;
  std::vector<uint64_t> shrinks;  // each target's shrink count when its intent was appended
  std::string records;
  {
    MutexLock j(&journal_mu_);
    // The View's instances that still exist, and every one recording now:
    // after a cut, the new instance too (its records are already logged).
    auto add = [&](const std::shared_ptr<Persisted>& p) {
      if (std::none_of(targets.begin(), targets.end(), [&](const auto& t) { return t->id == p->id; })) {
        targets.push_back(p);
      }
    };
    for (const auto& p : view.persisted) {
      if (existing_.count(p->id) != 0) add(p);
    }
    for (uint64_t id : recording_) add(existing_.at(id));
    for (const auto& t : targets) {
      shrinks.push_back(t->shrinks);
      if (t->durable.Covers(request.offset, request.length)) continue;
      auto [first, end] = IntentRange(t->durable.granularity(), request.offset, request.length);
      GranuleRanges ranges = GranulesOf(t->durable, first, end - first);
      if (ranges.empty()) continue;
      metadata::AppendBitmapDirty(&records, {journal_->volume_id(), t->id, false, std::move(ranges)});
    }
    if (records.empty()) return Status::OK();
    THINSIM_RETURN_IF_ERROR(journal_->Append(records));
  }
  // One group commit, shared with every request that appended meanwhile.
  THINSIM_RETURN_IF_ERROR(journal_->Sync());
  MutexLock j(&journal_mu_);
  for (size_t i = 0; i < targets.size(); ++i) {
    // A shrink logged after this intent replaced it with the live bits,
    // which hold this request's granules but not the rest of its intent
    // chunk; the shrink marks what it made durable itself.
    if (targets[i]->shrinks != shrinks[i]) continue;
    auto [first, end] = IntentRange(targets[i]->durable.granularity(), request.offset, request.length);
    targets[i]->durable.Mark(first, end - first);
  }
  return Status::OK();
}

Status VolumeBitmaps::ShrinkDurableLocked(Persisted& p, const DirtyBitmap& bits) {
  GranuleRanges exact;
  {
    MutexLock j(&journal_mu_);
    if (existing_.count(p.id) == 0) return Status::OK();
    // Cleared before the live bits are read (see MakeDurable): a request
    // that found its granule durable has marked it where this reads.
    p.durable.Clear();
    ++p.shrinks;
    order_.fetch_add(1, std::memory_order_acq_rel);  // see MakeDurable
    exact = GranulesOf(bits);
    std::string records;
    metadata::AppendBitmapDirty(&records, {journal_->volume_id(), p.id, /*replace=*/true, exact});
    THINSIM_RETURN_IF_ERROR(journal_->Append(records));
  }
  THINSIM_RETURN_IF_ERROR(journal_->Sync());
  MarkGranules(&p.durable, exact);
  return Status::OK();
}

void VolumeBitmaps::ResizeDurableLocked(Entry& e, uint64_t new_size) {
  // A new instance object of the new geometry under the same id (a View
  // holds the old one until it is replaced). It keeps what was durable and
  // claims nothing of a grown range: the pool's resize record marks that
  // range dirty in replay (metadata::ResizeBitmapImages) but may not be
  // committed yet, and a set that claims more than the journal holds would
  // let a write skip its intent. The first write there logs one instead.
  auto resized = std::make_shared<Persisted>(e.persisted->id, new_size, e.bits->granularity());
  MutexLock j(&journal_mu_);
  resized->durable.Merge(e.persisted->durable);
  resized->shrinks = e.persisted->shrinks;
  if (existing_.count(resized->id) != 0) existing_[resized->id] = resized;
  e.persisted = std::move(resized);
}

Status VolumeBitmaps::Restore(uint64_t id, const metadata::BitmapImage& image) {
  MutexLock lock(&mu_);
  THINSIM_RETURN_IF_ERROR(RefusePersistent());
  THINSIM_RETURN_IF_ERROR(CheckNewName(image.name));
  Entry e;
  THINSIM_RETURN_IF_ERROR(DirtyBitmap::Make(size_, image.granularity, &e.bits));
  e.enabled = (image.flags & metadata::BitmapRecord::kRecording) != 0;
  e.inconsistent = (image.flags & metadata::BitmapRecord::kInconsistent) != 0;
  e.persisted = std::make_shared<Persisted>(id, size_, image.granularity);
  GranuleRanges ranges;
  for (const auto& r : image.dirty) ranges.emplace_back(boost::icl::first(r), boost::icl::length(r));
  MarkGranules(e.bits.get(), ranges);
  MarkGranules(&e.persisted->durable, ranges);
  {
    MutexLock j(&journal_mu_);
    existing_[id] = e.persisted;
    if (e.enabled) recording_.insert(id);
  }
  next_id_ = std::max(next_id_, id + 1);
  entries_.emplace(image.name, std::move(e));
  PublishLocked();
  return Status::OK();
}

}  // namespace thinsim
