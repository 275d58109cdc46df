// Pool: persistence. A persistent pool (PoolOptions::dir) keeps its data in
// DIR/data and its metadata in a metadata::Journal. Changes are gathered
// into one Transaction (transaction.h: volume changes in order, mapping
// changes as the chunks they touched) and committed on FLUSH, FUA, the
// commit timer and control commands:
//   1. the transaction is captured under meta_mu_ and a new one begins;
//   2. with no pool lock held, the data file is synced (data before
//      metadata, as dm-thin does), then the transaction goes to the log and
//      the superblock is rewritten;
//   3. only then are the blocks freed in it discarded and reused.
// Requests keep running during step 2; commits are serialised by
// commit_mu_, and concurrent FLUSHes share one commit when they can.
// Reopening replays the metadata and rebuilds every counter from the
// mappings, so reference counts and reservations are exact.
#include <algorithm>
#include <cassert>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <unordered_map>
#include <vector>

#include "metadata/check.h"
#include "metadata/image.h"
#include "metadata/pool_dir.h"
#include "metadata/journal.h"
#include "metadata/records.h"
#include "env/env.h"
#include "pool/data_store.h"
#include "pool/pool.h"
#include "base/sizes.h"
#include "pool/space_map.h"
#include "pool/volume.h"

namespace thinsim {

namespace {

// A log longer than this is folded into a new checkpoint at the next commit.
constexpr uint64_t kCheckpointLogBytes = 64ull << 20;

metadata::VolumeRecord RecordOf(const Volume& v) {
  metadata::VolumeRecord r;
  r.id = v.id;
  r.name = v.name;
  r.size = v.size;
  r.strategy = static_cast<uint8_t>(v.strategy);
  r.read_only = v.read_only;
  r.origin_id = v.origin_id;
  r.family = v.family;
  r.pinned = v.pinned;
  return r;
}

metadata::ChunkRecord ChunkRecordOf(uint64_t volume_id, size_t index, const Chunk* c, uint64_t chunk_id) {
  metadata::ChunkRecord r;
  r.volume_id = volume_id;
  r.index = index;
  r.chunk_id = chunk_id;
  if (c == nullptr) return r;
  c->ForEach([&](uint32_t i, dblock_t b, bool prov) {
    r.mapped |= uint64_t{1} << i;
    if (prov) r.provisioned |= uint64_t{1} << i;
    r.dblocks.push_back(b);
  });
  return r;
}

Status OpenDataFile(const PoolOptions& o, uint64_t nr_blocks, bool must_exist, std::unique_ptr<DataStore>* out) {
  std::string data = metadata::DataPath(o.dir);
  uint64_t size = 0;
  bool exists = o.env->FileSize(data, &size).ok();
  if (must_exist && !exists) {
    return Status::Corruption(data + " is missing: the metadata refers to data that is not there");
  }
  if (!must_exist && exists && size > 0) {
    return Status::Corruption(data + " exists but " + o.dir +
                              "/metadata does not: not a thinsim pool, or its metadata was lost; "
                              "refusing to overwrite it (`thinsim check " + o.dir + "` tells, `thinsim repair " +
                              o.dir + "` rebuilds lost metadata from its checkpoint files)");
  }
  return OpenFileStore(data, o.block_size, nr_blocks, out, o.env);
}

// A fresh block must read as zeroes (the pool never zeroes one), but after
// a crash a free block may hold bytes written by a transaction that never
// committed, or freed by the last commit before it was discarded. So every
// block the loaded mappings do not use is discarded before serving.
Status DiscardUnusedBlocks(Env* env, const std::string& path, const metadata::Image& image) {
  std::unique_ptr<File> file;
  THINSIM_RETURN_IF_ERROR(env->OpenFile(path, OpenMode::kReadWrite, &file));
  const uint64_t bs = image.block_size;
  uint64_t next = 0;  // first block not known to be in use
  for (const auto& [b, count] : image.DerivedRefcounts()) {
    if (b >= image.nr_blocks) break;
    if (b > next) THINSIM_RETURN_IF_ERROR(ZeroFileRange(file.get(), next * bs, (b - next) * bs));
    next = uint64_t{b} + 1;
  }
  if (next < image.nr_blocks) {
    THINSIM_RETURN_IF_ERROR(ZeroFileRange(file.get(), next * bs, (image.nr_blocks - next) * bs));
  }
  return Status::OK();
}

}  // namespace

// ---- Opening ----------------------------------------------------------------

Status Pool::OpenDir(const PoolOptions& options, std::unique_ptr<metadata::PoolDirLock> dir_lock,
                     std::unique_ptr<Pool>* out) {
  PoolOptions o = options;
  if (!metadata::Journal::Exists(o.dir, o.env)) {
    uint64_t nr_blocks = o.size / o.block_size;
    std::unique_ptr<DataStore> store;
    THINSIM_RETURN_IF_ERROR(OpenDataFile(o, nr_blocks, false, &store));
    out->reset(new Pool(o, std::move(store), std::move(dir_lock)));
    Pool& p = **out;
    WriterLock lock(&p.meta_mu_);  // no other thread has the pool yet
    p.space_map_ = std::make_unique<SpaceMap>(nr_blocks);
    p.space_map_->set_track_changes(true);
    p.reservations_.Reset(nr_blocks);
    std::string checkpoint;
    p.EncodeCheckpointLocked(&checkpoint);
    return metadata::Journal::Create(o.dir, checkpoint, &p.journal_, o.env);
  }

  metadata::Image image;
  metadata::LoadReport report;
  Status loaded = metadata::Journal::Load(o.dir, &image, &report, o.env);
  metadata::CheckResult check = metadata::CheckImage(image, report);
  if (!loaded.ok() || check.fatal()) {
    std::string first = !check.damage.empty() ? check.damage.front().what : loaded.message();
    return Status::Corruption("metadata of pool " + o.dir + " is damaged (" + first +
                              "); not serving it. Run `thinsim check " + o.dir +
                              "` to see the damage and `thinsim repair " + o.dir + "` to fix it");
  }
  if (image.block_size != o.block_size && o.block_size != kDefaultBlockSize) {
    return Status::Invalid("block-size: the pool in " + o.dir + " has block size " +
                           FormatSize(image.block_size) + "; it cannot change");
  }
  o.block_size = image.block_size;
  uint64_t nr_blocks = image.nr_blocks;
  std::unique_ptr<DataStore> store;
  THINSIM_RETURN_IF_ERROR(OpenDataFile(o, nr_blocks, true, &store));
  THINSIM_RETURN_IF_ERROR(DiscardUnusedBlocks(o.env, metadata::DataPath(o.dir), image));
  out->reset(new Pool(o, std::move(store), std::move(dir_lock)));
  Pool& p = **out;
  bool refused;
  {
    WriterLock lock(&p.meta_mu_);
    p.space_map_ = std::make_unique<SpaceMap>(nr_blocks);
    p.reservations_.Reset(nr_blocks);
    THINSIM_RETURN_IF_ERROR(p.LoadImageLocked(image));
    p.space_map_->set_track_changes(true);
    if (!check.clean()) {
      // Every volume's data is right, but the metadata needs repair before
      // anything may change.
      p.read_only_reason_ = "pool metadata needs repair (" + check.damage.front().what +
                            "); run `thinsim repair " + o.dir + "`";
      p.changes_refused_ = true;
      p.space_policy_.SetMode(PoolMode::kReadOnly, 0, 0);  // no event: nobody subscribed yet
    }
    refused = !p.read_only_reason_.empty();
  }
  THINSIM_RETURN_IF_ERROR(metadata::Journal::OpenForAppend(o.dir, &p.journal_, o.env));
  // size= larger than the pool grows it.
  if (options.size / o.block_size > nr_blocks && !refused) {
    THINSIM_RETURN_IF_ERROR(p.Grow(options.size));
  }
  return Status::OK();
}

Status Pool::LoadImageLocked(const metadata::Image& image) {
  space_policy_.Restore(image.mode);
  std::unordered_map<const metadata::ChunkImage*, Chunk*> chunks;
  for (const auto& [id, vi] : image.volumes) {
    auto v = std::make_shared<Volume>();
    const metadata::VolumeRecord& a = vi.attrs;
    v->id = a.id;
    v->name = a.name;
    v->read_only = a.read_only;
    v->origin_id = a.origin_id;
    v->family = a.family;
    v->size = a.size;
    v->strategy = a.strategy <= 3 ? static_cast<Strategy>(a.strategy) : Strategy::kNone;
    v->pinned = a.pinned;
    v->bitmaps = vi.bitmaps;
    v->map = std::make_unique<MappingTable>((a.size + block_size_ - 1) / block_size_);
    for (const auto& [index, ci] : vi.chunks) {
      auto known = chunks.find(ci.get());
      if (known != chunks.end()) {
        v->map->ShareChunk(index, known->second);
        continue;
      }
      Chunk& c = v->map->MutableChunk(index << kChunkShift, space_map_.get());
      uint32_t rank = 0;
      for (uint64_t m = ci->mapped; m != 0; m &= m - 1) {
        uint32_t i = std::countr_zero(m);
        c.Set(i, ci->dblocks[rank++], (ci->provisioned >> i) & 1);
      }
      chunks.emplace(ci.get(), &c);
    }
    next_volume_id_ = std::max(next_volume_id_, a.id + 1);
    families_[v->family].push_back(v.get());
    names_.emplace(v->name, v->id);
    volumes_.emplace(v->id, std::move(v));
  }
  // Reference counts: one per distinct chunk object mapping a block.
  for (const auto& [chunk_image, c] : chunks) {
    c->ForEach([&](uint32_t, dblock_t b, bool) {
      meta_mu_.AssertHeld();  // a lambda run under it: the analysis cannot see that
      if (space_map_->RefCount(b) == 0) {
        space_map_->SetInitialCount(b, 1);
      } else {
        space_map_->Inc(b);
      }
    });
  }
  for (const auto& entry : chunks) {
    Chunk* c = entry.second;  // not a structured binding: clang 14 cannot capture one
    c->ForEach([&](uint32_t i, dblock_t b, bool) {
      meta_mu_.AssertHeld();  // a lambda run under it: the analysis cannot see that
      c->SetSole(i, space_map_->RefCount(b) == 1);
    });
  }
  RebuildCountersLocked();
  return Status::OK();
}

void Pool::RebuildCountersLocked() {
  reservations_.Reset(space_map_->nr_blocks());
  for (auto& entry : volumes_) {
    Volume* v = entry.second.get();  // not a structured binding: clang 14 cannot capture one
    v->nr_mapped = v->nr_exclusive = v->nr_provisioned = 0;
    Guarantee g = GuaranteeOfLocked(*v);
    for (size_t idx = 0; idx < v->map->nr_chunks(); ++idx) {
      const Chunk* c = v->map->chunk(idx);
      if (c == nullptr) continue;
      c->ForEach([&](uint32_t i, dblock_t b, bool prov) {
        ++v->nr_mapped;
        if (prov) ++v->nr_provisioned;
        if (c->refs() == 1 && c->sole(i)) ++v->nr_exclusive;
        meta_mu_.AssertHeld();  // a lambda run under it: the analysis cannot see that
        reservations_.CountGuarantor(b, g.Covers(prov));
      });
    }
  }
  for (auto& [id, v] : volumes_) reservations_.Add(static_cast<int64_t>(UnmappedNeedLocked(*v)));
  std::vector<bool> seen(space_map_->nr_blocks(), false);
  for (auto& entry : volumes_) {
    Volume* v = entry.second.get();
    for (size_t idx = 0; idx < v->map->nr_chunks(); ++idx) {
      const Chunk* c = v->map->chunk(idx);
      if (c == nullptr) continue;
      vblock_t base = static_cast<vblock_t>(idx) << kChunkShift;
      c->ForEach([&](uint32_t i, dblock_t b, bool) {
        if (seen[b]) return;
        seen[b] = true;
        meta_mu_.AssertHeld();  // a lambda run under it: the analysis cannot see that
        reservations_.Add(Reservations::Need(OwnersLocked(v->family, base + i, b, c),
                                             reservations_.guarantors(b)));
      });
    }
  }
}

// ---- Recording a transaction ------------------------------------------------

void Pool::NoteChunkLocked(const Volume& v, vblock_t vb) {
  if (journal_) txn_.NoteChunk(v.id, vb >> kChunkShift);
}

void Pool::EncodeChunkLocked(uint64_t volume_id, size_t index, std::string* out) const {
  auto it = volumes_.find(volume_id);
  if (it == volumes_.end() || index >= it->second->map->nr_chunks()) return;
  metadata::AppendChunk(out, ChunkRecordOf(volume_id, index, it->second->map->chunk(index), 0));
}

void Pool::NoteVolumeLocked(const Volume& v) {
  if (journal_) txn_.AppendVolume(RecordOf(v));
}

void Pool::NoteSnapshotLocked(const Volume& s) {
  if (journal_) txn_.AppendSnapshot(metadata::SnapshotRecord{s.id, s.origin_id, s.name, s.read_only});
}

void Pool::NoteDeleteLocked(uint64_t id) {
  if (journal_) txn_.AppendDelete(id);
}

void Pool::EncodeCheckpointLocked(std::string* out) const {
  metadata::AppendPool(out, block_size_, space_map_->nr_blocks(), static_cast<uint8_t>(space_policy_.mode()));
  std::unordered_map<const Chunk*, uint64_t> ids;
  std::vector<std::pair<uint32_t, uint32_t>> counts;
  for (const auto& [id, v] : volumes_) {
    metadata::AppendVolume(out, RecordOf(*v));
    for (size_t idx = 0; idx < v->map->nr_chunks(); ++idx) {
      const Chunk* c = v->map->chunk(idx);
      if (c == nullptr || c->empty()) continue;
      auto known = ids.find(c);
      if (known != ids.end()) {
        metadata::AppendShareChunk(out, metadata::ShareChunkRecord{id, idx, known->second});
        continue;
      }
      uint64_t chunk_id = ids.size() + 1;
      ids.emplace(c, chunk_id);
      metadata::AppendChunk(out, ChunkRecordOf(id, idx, c, chunk_id));
    }
    metadata::AppendBitmapImages(out, id, v->bitmaps);
  }
  for (uint64_t b = 0; b < space_map_->nr_blocks(); ++b) {
    uint32_t n = space_map_->RefCount(static_cast<dblock_t>(b)) - in_flight_.count(static_cast<dblock_t>(b));
    if (n > 0) counts.emplace_back(static_cast<uint32_t>(b), n);
  }
  metadata::AppendRefcounts(out, counts);
}

// ---- Committing -------------------------------------------------------------

uint64_t Pool::CaptureTxnLocked(std::string* records) {
  txn_.MaterializeChunks();
  const uint64_t number = commits_captured_.load() + 1;
  commits_captured_.store(number);
  std::vector<dblock_t> changed = space_map_->TakeChanged();
  if (txn_.empty() && changed.empty()) return number;
  txn_.TakeRecords(records, [this](std::string* out) {
    meta_mu_.AssertHeld();  // a lambda run under it: the analysis cannot see that
    metadata::AppendPool(out, block_size_, space_map_->nr_blocks(), static_cast<uint8_t>(space_policy_.mode()));
  });
  std::vector<std::pair<uint32_t, uint32_t>> counts;
  counts.reserve(changed.size());
  for (dblock_t b : changed) {
    // A block still being filled is not mapped by anything committed yet.
    uint32_t count = space_map_->RefCount(b) - (in_flight_.count(b) ? 1 : 0);
    counts.emplace_back(b, count);
  }
  std::sort(counts.begin(), counts.end());
  metadata::AppendRefcounts(records, counts);
  freed_.CaptureForCommit();
  return number;
}

void Pool::FinishCommitLocked(const Status& s, uint64_t number) {
  if (!s.ok()) {
    // The in-core state is ahead of the disk and cannot be written: stop
    // changing anything (dm-thin's fail mode). The blocks the lost
    // transaction freed stay out of use, and no longer count as free.
    freed_.FinishCommit(/*ok=*/false);
    FailLocked("metadata commit failed: " + s.message());
    return;
  }
  commits_succeeded_.store(number);
  // The transaction that freed these blocks is durable: they may be reused
  // once discarded.
  freed_.FinishCommit(/*ok=*/true);
}

void Pool::Fail(const std::string& reason) {
  WriterLock lock(&meta_mu_);
  FailLocked(reason);
}

void Pool::FailLocked(const std::string& reason) {
  read_only_reason_ = reason;
  SetModeLocked(PoolMode::kFail);
  changes_refused_ = true;
  space_freed_.SignalAll();  // allocations waiting for space fail now
}

Status Pool::SyncAndLog(const std::string& records) {
  Status s = store_->Flush();
  if (s.ok() && !records.empty()) s = journal_->Commit(records);
  return s;
}

Status Pool::RefuseIfFailedLocked() const {
  if (space_policy_.failed()) return Status::IOError("pool failed: " + read_only_reason_);
  return Status::OK();
}

Status Pool::CommitLocked() {
  if (!journal_) return store_->Flush();
  THINSIM_RETURN_IF_ERROR(RefuseIfFailedLocked());
  std::string records;
  uint64_t number = CaptureTxnLocked(&records);
  Status s = SyncAndLog(records);
  FinishCommitLocked(s, number);
  if (!s.ok()) return s;
  if (journal_->log_bytes() > kCheckpointLogBytes) {
    std::string checkpoint;
    EncodeCheckpointLocked(&checkpoint);
    THINSIM_RETURN_IF_ERROR(journal_->Checkpoint(checkpoint));
  }
  return Status::OK();
}

Status Pool::CommitConcurrently() {
  std::string records;
  uint64_t number;
  {
    WriterLock lock(&meta_mu_);
    // A checkpoint encodes the whole in-core state, which must then be the
    // committed state: it cannot run while requests change it.
    if (journal_->log_bytes() > kCheckpointLogBytes) return CommitLocked();
    THINSIM_RETURN_IF_ERROR(RefuseIfFailedLocked());
    number = CaptureTxnLocked(&records);
  }
  // Every mapping captured points at data written before the capture (data
  // moves before its mapping is installed), so this sync covers it; what
  // requests write from now on belongs to the next transaction.
  Status s = SyncAndLog(records);
  WriterLock lock(&meta_mu_);
  FinishCommitLocked(s, number);
  return s;
}

Status Pool::Commit() {
  DiscardAtExit discard(this);
  if (!journal_) return store_->Flush();
  // Group commit: a commit captured after this call began covers every
  // request completed before it, data and metadata.
  const uint64_t wanted = commits_captured_.load() + 1;
  MutexLock serial(&commit_mu_);
  if (commits_succeeded_.load() >= wanted) return Status::OK();
  return CommitConcurrently();
}

Status Pool::Flush() { return Commit(); }

Status Pool::RefuseIfReadOnlyLocked() const {
  THINSIM_RETURN_IF_ERROR(RefuseIfFailedLocked());
  if (!read_only_reason_.empty()) return Status::ReadOnly(read_only_reason_);
  return Status::OK();
}

std::string Pool::read_only_reason() const {
  ReaderLock lock(&meta_mu_);
  return read_only_reason_;
}

void Pool::StartCommitter(uint32_t seconds) {
  if (!journal_) return;
  // A failed commit has already put the pool in fail mode.
  committer_.Start(std::chrono::seconds(seconds), [this] { Commit(); });
}

void Pool::StopCommitter() { committer_.Stop(); }

}  // namespace thinsim
