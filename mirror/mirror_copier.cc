// MirrorCopier (mirror_copier.h): the background copy and write-blocking
// writes of one mirror job.
#include "mirror/mirror_copier.h"

#include <algorithm>
#include <cstring>
#include <thread>
#include <utility>
#include <vector>

#include "base/sizes.h"

namespace thinsim {
namespace {

constexpr uint64_t kMaxIo = 1 << 20;  // bytes per target call, as QEMU's mirror

bool AllZero(const uint8_t* p, uint64_t n) {
  static const uint8_t kZeroes[4096] = {};
  for (uint64_t done = 0; done < n;) {
    uint64_t step = std::min<uint64_t>(sizeof kZeroes, n - done);
    if (std::memcmp(p + done, kZeroes, step) != 0) return false;
    done += step;
  }
  return true;
}

std::string Bytes(uint64_t n) { return std::to_string(n) + " bytes"; }

}  // namespace

Status MirrorCopier::Check(uint64_t volume_size, const NbdTarget::Info& target, const Options& options) {
  if (target.size != volume_size) {
    return Status::Invalid("source and target have different sizes: the volume is " + Bytes(volume_size) +
                           ", the target " + Bytes(target.size));
  }
  if (target.read_only) return Status::ReadOnly("the target is read-only");
  THINSIM_RETURN_IF_ERROR(DirtyBitmap::ValidateGranularity(options.granularity));
  if (target.preferred_block != 0 && options.granularity < target.preferred_block) {
    return Status::Invalid("granularity " + Bytes(options.granularity) +
                           " is smaller than the target's preferred block size " + Bytes(target.preferred_block) +
                           ": a write-blocking write could leave a target block partly written");
  }
  return Status::OK();
}

Status MirrorCopier::CheckWriteBlocking(uint32_t pool_block_size, const NbdTarget::Info& target) {
  if (target.min_block <= pool_block_size) return Status::OK();
  return Status::Invalid("write-blocking mode needs the target's minimum block size " + Bytes(target.min_block) +
                         " to be no larger than the pool's block size " + Bytes(pool_block_size));
}

MirrorCopier::MirrorCopier(Pool* pool, std::shared_ptr<Volume> volume, std::unique_ptr<NbdTarget> target,
                           Options options)
    : pool_(pool),
      volume_(std::move(volume)),
      target_(std::move(target)),
      options_(options),
      max_io_(std::max<uint64_t>(options.granularity,
                                 target_->info().max_block != 0 ? std::min(kMaxIo, target_->info().max_block)
                                                                 : kMaxIo)),
      parallel_(std::max<size_t>(1, target_->connections())),
      dirty_(target_->info().size, options.granularity),
      mode_(options.copy_mode) {}

Status MirrorCopier::ProbeTargetZero() {
  const uint64_t size = target_->info().size;
  boost::icl::interval_set<uint64_t> zero;
  if (options_.target_is_zero) {
    if (size > 0) zero += Interval::right_open(0, size);
  } else {
    // Chunk by chunk, so that a target zero only in parts still counts.
    for (uint64_t off = 0; off < size; off += max_io_) {
      uint64_t len = std::min(max_io_, size - off);
      bool reads_zero = false;
      THINSIM_RETURN_IF_ERROR(target_->ReadsZero(len, off, &reads_zero));
      if (reads_zero) zero += Interval::right_open(off, off + len);
    }
  }
  MutexLock lock(&mu_);
  target_zero_ = std::move(zero);
  return Status::OK();
}

void MirrorCopier::CopySome(uint64_t* copied, std::optional<Failure>* failure, uint64_t budget) {
  *copied = 0;
  failure->reset();
  if (budget == 0) budget = options_.buf_size;
  while (*copied < budget && !*failure) {
    const std::vector<Run> batch = NextBatch(budget - *copied);
    if (batch.empty()) return;  // nothing dirty
    std::vector<std::optional<Failure>> results(batch.size());
    {
      // One run per target connection at once; this thread copies the first.
      std::vector<std::jthread> helpers;
      for (size_t i = 1; i < batch.size(); ++i) {
        helpers.emplace_back([&, i] { results[i] = CopyRun(batch[i].offset, batch[i].length); });
      }
      results[0] = CopyRun(batch[0].offset, batch[0].length);
    }
    for (size_t i = 0; i < batch.size(); ++i) {
      if (!results[i]) {
        *copied += batch[i].length;
      } else if (!*failure) {
        *failure = std::move(results[i]);
      }
    }
    cursor_ = batch.back().offset + batch.back().length;
  }
}

std::vector<MirrorCopier::Run> MirrorCopier::NextBatch(uint64_t budget) const {
  std::vector<Run> batch;
  uint64_t from = cursor_, planned = 0;
  while (batch.size() < parallel_ && planned < budget) {
    // At most what is left of the budget (at least one granule).
    const uint64_t most = std::min(max_io_, budget - planned);
    Run r;
    if (!dirty_.NextDirtyRun(from, most, &r.offset, &r.length)) {
      // Wrap around only for the first run: later ones must not meet it.
      if (!batch.empty() || from == 0 || !dirty_.NextDirtyRun(0, most, &r.offset, &r.length)) break;
    }
    batch.push_back(r);
    planned += r.length;
    from = r.offset + r.length;
  }
  return batch;
}

std::optional<MirrorCopier::Failure> MirrorCopier::CopyRun(uint64_t offset, uint64_t length) {
  std::vector<uint8_t> buf(length);
  // Cleared and held in flight before the range lock goes: a request that
  // changes these bytes after the read marks them again (background) or
  // writes through after this copy's target write (write-blocking).
  Status read = pool_->CopyRead(*volume_, buf.data(), length, offset, [&] {
    dirty_.Clear(offset, length);
    in_flight_.Acquire(offset, length);
  });
  if (!read.ok()) return Failure{Side::kSource, read};
  const bool zero = AllZero(buf.data(), length);
  Status wrote;
  if (!zero) {
    wrote = target_->Write(buf.data(), length, offset);
  } else if (!TargetReadsZero(offset, length)) {
    wrote = ZeroTarget(offset, length);
  }
  in_flight_.Release(offset, length);
  if (!wrote.ok()) {
    dirty_.Mark(offset, length);
    return Failure{Side::kTarget, wrote};
  }
  NoteWritten(offset, length, zero);
  return std::nullopt;
}

void MirrorCopier::NoteWritten(uint64_t offset, uint64_t length, bool zero) {
  const Interval range = Interval::right_open(offset, offset + length);
  MutexLock lock(&mu_);
  done_ += range;
  if (zero) {
    target_zero_ += range;
  } else {
    target_zero_ -= range;
  }
}

Status MirrorCopier::ZeroTarget(uint64_t offset, uint64_t length) {
  const NbdTarget::Info& info = target_->info();
  if (info.can_fast_zero) {
    Status fast = target_->Zero(length, offset, /*fast=*/true, /*may_trim=*/true);
    if (fast.code() != ErrorCode::kUnsupported) return fast;
  }
  if (info.can_zero) return target_->Zero(length, offset, /*fast=*/false, /*may_trim=*/true);
  std::vector<uint8_t> zeroes(std::min(length, max_io_), 0);
  for (uint64_t done = 0; done < length;) {
    uint64_t step = std::min<uint64_t>(zeroes.size(), length - done);
    THINSIM_RETURN_IF_ERROR(target_->Write(zeroes.data(), step, offset + done));
    done += step;
  }
  return Status::OK();
}

bool MirrorCopier::TargetReadsZero(uint64_t offset, uint64_t length) const {
  MutexLock lock(&mu_);
  return boost::icl::contains(target_zero_, Interval::right_open(offset, offset + length));
}

Status MirrorCopier::WriteTarget(const uint8_t* data, uint64_t offset, uint64_t length) {
  for (uint64_t done = 0; done < length;) {
    uint64_t step = std::min(max_io_, length - done);
    InFlightRanges::Hold hold(&in_flight_, offset + done, step);
    Status s = data != nullptr ? target_->Write(data + done, step, offset + done) : ZeroTarget(offset + done, step);
    THINSIM_RETURN_IF_ERROR(s);
    done += step;
  }
  NoteWritten(offset, length, /*zero=*/data == nullptr);
  return Status::OK();
}

void MirrorCopier::MarkActivelySynced() {
  if (mode_.load() == CopyMode::kWriteBlocking && dirty_.CountGranules() == 0) actively_synced_.store(true);
}

std::optional<MirrorCopier::Failure> MirrorCopier::TakeActiveFailure() {
  MutexLock lock(&mu_);
  return std::exchange(active_failure_, std::nullopt);
}

boost::icl::interval_set<uint64_t> MirrorCopier::done() const {
  MutexLock lock(&mu_);
  return done_;
}

Status MirrorCopier::BeforeChange(const ChangeRequest& request) {
  // A provision moves no data: nothing for the target to learn.
  if (stopped_.load() || request.kind == ChangeRequest::Kind::kProvision) return Status::OK();
  if (mode_.load() == CopyMode::kBackground) {
    dirty_.Mark(request.offset, request.length);
    Dirtied();
  }
  return Status::OK();
}

Status MirrorCopier::AfterChange(const ChangeRequest& request, const Status& result) {
  if (stopped_.load() || request.kind == ChangeRequest::Kind::kProvision) return Status::OK();
  if (!result.ok()) {
    // Some of its bytes may have changed before it failed.
    dirty_.Mark(request.offset, request.length);
    Dirtied();
    return Status::OK();
  }
  if (mode_.load() == CopyMode::kWriteBlocking) WriteThrough(request);
  return Status::OK();
}

Status MirrorCopier::WriteThroughTarget(const ChangeRequest& request, uint64_t* offset, uint64_t* length) {
  const uint64_t align = target_->info().min_block;
  const uint64_t end = request.offset + request.length;
  const uint64_t first = request.offset / align * align;
  const uint64_t last = std::min((end + align - 1) / align * align, target_->info().size);
  if ((first == request.offset && last == end) || request.applied == nullptr) {
    *offset = request.offset;
    *length = request.length;
    return WriteTarget(request.kind == ChangeRequest::Kind::kWrite ? request.data : nullptr, *offset, *length);
  }
  // The target takes whole blocks only: the request's bytes and the
  // volume's around them (CheckWriteBlocking: within its pool blocks).
  std::vector<uint8_t> whole(last - first);
  THINSIM_RETURN_IF_ERROR(request.applied->Read(whole.data(), whole.size(), first));
  *offset = first;
  *length = whole.size();
  return WriteTarget(whole.data(), first, whole.size());
}

void MirrorCopier::WriteThrough(const ChangeRequest& request) {
  uint64_t offset = 0, length = 0;
  Status s = WriteThroughTarget(request, &offset, &length);
  if (s.ok()) {
    // Granules written whole now hold the same bytes on both sides; Clear
    // rounds in, leaving the partly written ones as they were.
    dirty_.Clear(offset, length);
    return;
  }
  dirty_.Mark(request.offset, request.length);
  actively_synced_.store(false);
  {
    MutexLock lock(&mu_);
    if (!active_failure_) active_failure_ = Failure{Side::kTarget, s};
  }
  Dirtied();
}

void MirrorCopier::Dirtied() {
  // One wake-up per sleep, not a lock per request.
  if (wake_armed_.load(std::memory_order_relaxed) && wake_armed_.exchange(false) && wake_) wake_();
}

}  // namespace thinsim
