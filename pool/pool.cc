// Pool: construction, queries and the control plane. The data plane is in
// pool_io.cc; the mapping changes with exact counters that both share are
// in mapping_changes.cc.
#include "pool/pool.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <random>
#include <set>

#include "metadata/journal.h"
#include "pool/data_store.h"
#include "base/sizes.h"
#include "pool/space_map.h"
#include "pool/volume.h"

namespace thinsim {

namespace {

// Pool::instance_id(): 64 random bits, enough that two running pools never
// draw the same.
std::string RandomInstanceId() {
  std::random_device rd;
  uint64_t v = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(v));
  return hex;
}

// The chunk-pointer array costs 8 bytes per 64 vblocks; cap it at 256 MiB.
constexpr vblock_t kMaxVolumeBlocks = vblock_t{1} << 31;

Status ValidateBlockSize(uint32_t bs) {
  if (bs < kMinBlockSize || bs > kMaxBlockSize || (bs & (bs - 1)) != 0) {
    return Status::Invalid("block-size must be a power of two from 4K to 1G, got " +
                           std::to_string(bs));
  }
  return Status::OK();
}

Status PoolBlocks(uint64_t size, uint32_t bs, uint64_t* out) {
  uint64_t n = size / bs;
  if (n == 0) {
    return Status::Invalid("size " + std::to_string(size) + " is smaller than one block (" +
                           FormatSize(bs) + ")");
  }
  if (n > kMaxPoolBlocks) {
    return Status::Invalid("size is too large: a pool holds at most 2^32-2 blocks of " +
                           FormatSize(bs));
  }
  *out = n;
  return Status::OK();
}

}  // namespace

// ---- Construction -----------------------------------------------------------

Status Pool::Open(const PoolOptions& o, std::unique_ptr<Pool>* out) {
  THINSIM_RETURN_IF_ERROR(ValidateBlockSize(o.block_size));
  if (o.low_water_percent > 100) return Status::Invalid("low-water must be 0-100 percent");
  uint64_t nr_blocks = 0;
  if (!o.dir.empty()) {
    std::unique_ptr<metadata::PoolDirLock> lock;
    THINSIM_RETURN_IF_ERROR(metadata::PoolDirLock::Acquire(o.dir, /*create_dir=*/true, &lock));
    metadata::PoolDirState state = metadata::InspectPoolDir(o.dir);
    bool fresh = !state.has_superblock;
    Status s = fresh ? PoolBlocks(o.size, o.block_size, &nr_blocks) : Status::OK();
    if (state.orphaned_data()) {
      s = Status::Corruption(o.dir + "/data exists but its metadata superblock " + o.dir +
                             "/metadata does not: run `thinsim check " + o.dir +
                             "` and `thinsim repair " + o.dir + "`");
    }
    if (s.ok() && fresh && o.size == 0) s = Status::Invalid("size: a new pool needs size=SIZE, its data capacity");
    if (s.ok()) s = OpenDir(o, std::move(lock), out);
    if (!s.ok()) out->reset();
    return s;
  }
  THINSIM_RETURN_IF_ERROR(PoolBlocks(o.size, o.block_size, &nr_blocks));
  std::unique_ptr<DataStore> store;
  if (o.null_data) {
    store = NewNullStore(o.block_size);
  } else {
    THINSIM_RETURN_IF_ERROR(NewMemoryStore(o.block_size, nr_blocks, &store));
  }
  out->reset(new Pool(o, std::move(store), nullptr));
  WriterLock lock(&(*out)->meta_mu_);  // no other thread has the pool yet
  (*out)->space_map_ = std::make_unique<SpaceMap>(nr_blocks);
  (*out)->reservations_.Reset(nr_blocks);
  return Status::OK();
}

Pool::Pool(const PoolOptions& options, std::unique_ptr<DataStore> store,
           std::unique_ptr<metadata::PoolDirLock> dir_lock)
    : block_size_(options.block_size), instance_id_(RandomInstanceId()), options_(options),
      store_(options.wrap_store ? options.wrap_store(std::move(store)) : std::move(store)),
      dir_lock_(std::move(dir_lock)),
      space_policy_(options.when_full, options.low_water_percent),
      txn_([this](uint64_t volume_id, size_t index, std::string* out) {
        meta_mu_.AssertHeldShared();  // a lambda run under it: the analysis cannot see that
        EncodeChunkLocked(volume_id, index, out);
      }) {}

Pool::~Pool() {
  StopCommitter();
  if (journal_) Commit();  // best effort: a clean shutdown loses nothing
  volumes_.clear();
}

void Pool::SetEventHandler(std::function<void(const PoolEvent&)> handler) {
  WriterLock lock(&meta_mu_);
  event_handler_ = std::move(handler);
}

// ---- Queries ----------------------------------------------------------------

Volume* Pool::FindLocked(std::string_view name) const {
  auto it = names_.find(name);
  if (it == names_.end()) return nullptr;
  return volumes_.at(it->second).get();
}

VolumeInfo Pool::InfoLocked(const Volume& v) const {
  VolumeInfo info;
  info.name = v.name;
  info.size = v.size;
  info.strategy = v.strategy;
  info.active = v.writable_connections > 0 || v.pinned;
  info.read_only = v.read_only;
  auto origin = volumes_.find(v.origin_id);
  if (origin != volumes_.end()) info.origin = origin->second->name;
  info.mapped_blocks = v.nr_mapped;
  info.exclusive_blocks = v.nr_exclusive;
  info.shared_blocks = v.nr_mapped - v.nr_exclusive;
  info.provisioned_blocks = v.nr_provisioned;
  info.reserved_blocks = VolumeReservedLocked(v);
  info.connections = v.connections;
  info.writable_connections = v.writable_connections;
  info.pinned = v.pinned;
  return info;
}

PoolInfo Pool::QueryPool() const {
  ReaderLock lock(&meta_mu_);
  PoolInfo info;
  info.block_size = block_size_;
  info.total_blocks = space_map_->nr_blocks();
  info.free_blocks = FreeLocked();
  info.used_blocks = info.total_blocks - info.free_blocks;
  info.reserved_blocks = static_cast<uint64_t>(reservations_.reserved());
  info.mode = space_policy_.mode();
  info.when_full = options_.when_full;
  info.low_water_percent = options_.low_water_percent;
  info.nr_volumes = volumes_.size();
  info.persistent = !options_.dir.empty();
  return info;
}

Status Pool::QueryVolume(std::string_view name, VolumeInfo* out) const {
  ReaderLock lock(&meta_mu_);
  Volume* v = FindLocked(name);
  if (v == nullptr) return Status::NotFound("no volume named '" + std::string(name) + "'");
  *out = InfoLocked(*v);
  return Status::OK();
}

std::vector<VolumeInfo> Pool::QueryVolumes() const {
  ReaderLock lock(&meta_mu_);
  std::vector<VolumeInfo> out;
  for (const auto& [id, v] : volumes_) out.push_back(InfoLocked(*v));
  return out;
}

std::string Pool::DefaultVolumeName() const {
  ReaderLock lock(&meta_mu_);
  return volumes_.empty() ? std::string() : volumes_.begin()->second->name;
}

size_t Pool::MetadataMemoryUsage() const {
  ReaderLock lock(&meta_mu_);
  size_t bytes = space_map_->MemoryUsage() + reservations_.MemoryUsage();
  std::unordered_set<const Chunk*> counted;  // a chunk shared by snapshots counts once
  for (const auto& [id, v] : volumes_) bytes += sizeof(Volume) + v->map->MemoryUsage(&counted);
  bytes += freed_.MemoryUsage();
  return bytes;
}

// ---- Volume life cycle --------------------------------------------------------

namespace {

Status ValidateVolumeSize(uint64_t size, uint32_t bs) {
  if (size == 0 || size % kSectorSize != 0) {
    return Status::Invalid("volume size must be a positive multiple of 512 bytes, got " +
                           std::to_string(size));
  }
  if (size > kMaxVolumeSize || (size + bs - 1) / bs > kMaxVolumeBlocks) {
    return Status::Invalid("volume size " + FormatSize(size) + " is too large: at most 2^31 blocks of " +
                           FormatSize(bs));
  }
  return Status::OK();
}

vblock_t BlocksFor(uint64_t bytes, uint32_t bs) { return (bytes + bs - 1) / bs; }

}  // namespace

Status Pool::CreateVolume(std::string_view name, uint64_t size, std::optional<Strategy> strategy) {
  THINSIM_RETURN_IF_ERROR(ValidateVolumeName(name));
  THINSIM_RETURN_IF_ERROR(ValidateVolumeSize(size, block_size_));
  Strategy s = strategy.value_or(options_.default_strategy);

  WriterLock lock(&meta_mu_);
  THINSIM_RETURN_IF_ERROR(RefuseIfReadOnlyLocked());
  if (FindLocked(name) != nullptr) {
    return Status::Exists("a volume named '" + std::string(name) + "' already exists");
  }
  // A new volume is inactive: only `full` guarantees (all of) it already.
  if (Reservations::GuaranteeFor(s, false, false).all) {
    THINSIM_RETURN_IF_ERROR(AdmitLocked(static_cast<int64_t>(BlocksFor(size, block_size_)),
                                        "volume '" + std::string(name) + "' (strategy full)"));
  }
  auto v = std::make_shared<Volume>();
  v->id = next_volume_id_++;
  v->name = std::string(name);
  v->family = v->id;
  v->size = size;
  v->strategy = s;
  v->map = std::make_unique<MappingTable>(BlocksFor(size, block_size_));
  families_[v->family].push_back(v.get());
  reservations_.Add(static_cast<int64_t>(UnmappedNeedLocked(*v)));
  NoteVolumeLocked(*v);
  names_.emplace(v->name, v->id);
  volumes_.emplace(v->id, std::move(v));
  return Status::OK();
}

Status Pool::DeleteVolume(std::string_view name) {
  DiscardAtExit discard(this);
  std::shared_ptr<Volume> v;
  {
    ReaderLock lock(&meta_mu_);
    Volume* found = FindLocked(name);
    if (found == nullptr) return Status::NotFound("no volume named '" + std::string(name) + "'");
    v = volumes_.at(found->id);
  }
  // Wait for writers that are not connections (control-socket provision).
  std::unique_lock gate(v->io_gate);
  WriterLock lock(&meta_mu_);
  if (volumes_.count(v->id) == 0) return Status::NotFound("no volume named '" + std::string(name) + "'");
  THINSIM_RETURN_IF_ERROR(RefuseIfReadOnlyLocked());
  if (v->connections > 0) {
    return Status::Busy("volume '" + v->name + "' has " + std::to_string(v->connections) +
                        " open connection(s)");
  }
  {
    std::unique_lock vlock(v->map_mu);
    ReleaseVolumeLocked(*v);
    v->deleted = true;
  }
  NoteDeleteLocked(v->id);
  // Its snapshots no longer have an origin.
  for (auto& [id, w] : volumes_) {
    if (w->origin_id == v->id) w->origin_id = 0;
  }
  RecycleLocked();
  return Status::OK();
}

// Drops every mapping of `v` and removes it from the tables.
void Pool::ReleaseVolumeLocked(Volume& v) {
  OwnerChangeLocked(v, GuaranteeOfLocked(v), /*leave=*/true, /*apply=*/true);
  reservations_.Add(-static_cast<int64_t>(UnmappedNeedLocked(v)));
  auto& family = families_[v.family];
  family.erase(std::find(family.begin(), family.end(), &v));
  for (size_t idx = 0; idx < v.map->nr_chunks(); ++idx) {
    const Chunk* c = v.map->chunk(idx);
    if (c == nullptr) continue;
    std::unique_ptr<Chunk> dead = v.map->DetachChunk(idx);
    vblock_t base = static_cast<vblock_t>(idx) << kChunkShift;
    if (dead == nullptr) {
      // Others still hold the chunk. If one holder is left, the blocks only
      // this chunk maps are now that holder's alone.
      if (c->refs() != 1) continue;
      for (Volume* w : family) {
        if (w->map->nr_chunks() <= idx || w->map->chunk(idx) != c) continue;
        c->ForEach([&](uint32_t, dblock_t b, bool) {
          meta_mu_.AssertHeld();  // a lambda run under it: the analysis cannot see that
          if (space_map_->RefCount(b) == 1) ++w->nr_exclusive;
        });
        NoteUnsharedLocked(*w);
        break;
      }
      continue;
    }
    dead->ForEach([&](uint32_t i, dblock_t b, bool) {
      meta_mu_.AssertHeld();  // a lambda run under it: the analysis cannot see that
      DropBlockRefLocked(v.family, base + i, b);
    });
  }
  if (family.empty()) families_.erase(v.family);
  names_.erase(v.name);
  volumes_.erase(v.id);
}

Status Pool::ResizeVolume(std::string_view name, uint64_t size) {
  THINSIM_RETURN_IF_ERROR(ValidateVolumeSize(size, block_size_));
  DiscardAtExit discard(this);  // blocks a shrink frees
  std::shared_ptr<Volume> v;
  {
    ReaderLock lock(&meta_mu_);
    Volume* found = FindLocked(name);
    if (found == nullptr) return Status::NotFound("no volume named '" + std::string(name) + "'");
    v = volumes_.at(found->id);
  }
  // No write of this volume runs while it moves its end, nor until its
  // observers follow it.
  std::unique_lock gate(v->io_gate);
  THINSIM_RETURN_IF_ERROR(ResizeGated(*v, size));
  for (const auto& observer : v->observers) observer->VolumeSize(size);
  return Status::OK();
}

Status Pool::ResizeGated(Volume& v, uint64_t size) {
  uint64_t old_size;
  {
    WriterLock lock(&meta_mu_);
    THINSIM_RETURN_IF_ERROR(RefuseResizeLocked(v, size));
    old_size = v.size;
    if (size <= old_size || old_size % block_size_ == 0) return SetSizeLocked(v, size);
    // The vblocks past the old end are claimed (and, if guaranteed,
    // reserved) first, so that nothing can fail once the tail is zeroed.
    THINSIM_RETURN_IF_ERROR(ResizeMapLocked(v, BlocksFor(size, block_size_)));
  }
  // The old last block's tail may hold bytes from before an earlier shrink;
  // they must read as zero once they are inside the volume again. The zero
  // may need a block (the tail block may be shared); if it cannot get one,
  // the claim is undone and nothing has changed.
  const uint64_t tail_end = std::min<uint64_t>(size, BlocksFor(old_size, block_size_) * block_size_);
  Status zeroed = ApplyRange(v, tail_end - old_size, old_size, Intent::kZeroData, nullptr,
                             /*fast=*/false, /*gated=*/false);
  WriterLock lock(&meta_mu_);
  if (volumes_.count(v.id) == 0) return Status::NotFound("no volume named '" + v.name + "'");
  if (!zeroed.ok()) {
    Status undone = ResizeMapLocked(v, BlocksFor(old_size, block_size_));
    assert(undone.ok());  // giving back vblocks that hold no block always fits
    (void)undone;
    return zeroed;
  }
  SetSizeAndBitmapsLocked(v, size);
  NoteVolumeLocked(v);
  return Status::OK();
}

Status Pool::RefuseResizeLocked(const Volume& v, uint64_t size) const {
  // DeleteVolume may have removed it while we waited for the gate.
  if (volumes_.count(v.id) == 0) return Status::NotFound("no volume named '" + v.name + "'");
  THINSIM_RETURN_IF_ERROR(RefuseIfReadOnlyLocked());
  if (v.read_only) return Status::ReadOnly("'" + v.name + "' is a read-only snapshot");
  if (size < v.size && v.connections > 0) {
    return Status::Busy("cannot shrink volume '" + v.name + "' while it has " +
                        std::to_string(v.connections) + " open connection(s)");
  }
  return Status::OK();
}

Status Pool::ResizeMapLocked(Volume& v, vblock_t new_blocks) {
  std::unique_lock vlock(v.map_mu);
  const bool all = GuaranteeOfLocked(v).all;
  const int64_t added = static_cast<int64_t>(new_blocks) - static_cast<int64_t>(v.map->nr_vblocks());
  if (all) THINSIM_RETURN_IF_ERROR(AdmitLocked(added, "growing '" + v.name + "'"));
  if (added < 0) {
    UnmapRangeLocked(v, new_blocks, v.map->nr_vblocks() - 1);
    RecycleLocked();
  }
  v.map->Resize(new_blocks);
  if (all) reservations_.Add(added);
  return Status::OK();
}

Status Pool::SetSizeLocked(Volume& v, uint64_t size) {
  THINSIM_RETURN_IF_ERROR(ResizeMapLocked(v, BlocksFor(size, block_size_)));
  SetSizeAndBitmapsLocked(v, size);
  NoteVolumeLocked(v);
  return Status::OK();
}

namespace {

Status ValidateSnapshotRequests(const std::vector<SnapshotRequest>& requests) {
  if (requests.empty()) return Status::Invalid("no snapshot requested");
  std::set<std::string, std::less<>> new_names;
  for (const SnapshotRequest& r : requests) {
    THINSIM_RETURN_IF_ERROR(ValidateVolumeName(r.name));
    if (!new_names.insert(r.name).second) {
      return Status::Invalid("snapshot name '" + r.name + "' is given twice");
    }
  }
  return Status::OK();
}

}  // namespace

Status Pool::AtPointInTime(const std::vector<std::string>& names, const std::function<Status()>& fn,
                           std::string_view purpose) {
  // Close the io_gates in id order (no deadlock between two multi-volume
  // calls), as a multi-origin snapshot does.
  std::map<uint64_t, std::shared_ptr<Volume>> volumes;
  {
    ReaderLock lock(&meta_mu_);
    for (const std::string& name : names) {
      Volume* v = FindLocked(name);
      if (v == nullptr) return Status::NotFound("no volume named '" + name + "'" + std::string(purpose));
      volumes.emplace(v->id, volumes_.at(v->id));
    }
  }
  std::vector<std::unique_lock<std::shared_mutex>> gates;
  for (auto& [id, v] : volumes) gates.emplace_back(v->io_gate);
  for (auto& [id, v] : volumes) {
    if (v->deleted) return Status::NotFound("volume '" + v->name + "' was deleted");
  }
  return fn();
}

Status Pool::CreateSnapshots(const std::vector<SnapshotRequest>& requests, bool read_only) {
  THINSIM_RETURN_IF_ERROR(ValidateSnapshotRequests(requests));
  std::vector<std::string> origins;
  for (const SnapshotRequest& r : requests) origins.push_back(r.origin);
  // Each snapshot is a point-in-time image of its origin.
  return AtPointInTime(origins, [&] { return CreateSnapshotsHeld(requests, read_only); }, " to snapshot");
}

Status Pool::CreateSnapshotsHeld(const std::vector<SnapshotRequest>& requests, bool read_only) {
  DiscardAtExit discard(this);
  THINSIM_RETURN_IF_ERROR(ValidateSnapshotRequests(requests));
  WriterLock lock(&meta_mu_);
  THINSIM_RETURN_IF_ERROR(RefuseIfReadOnlyLocked());
  for (const SnapshotRequest& r : requests) {
    if (FindLocked(r.origin) == nullptr) return Status::NotFound("volume '" + r.origin + "' was deleted");
    if (FindLocked(r.name) != nullptr) {
      return Status::Exists("a volume named '" + r.name + "' already exists");
    }
  }
  std::vector<Volume*> created;
  for (const SnapshotRequest& r : requests) {
    Volume* o = FindLocked(r.origin);
    // Admission first: the snapshot's new ownership of every block, and its
    // own unmapped guarantee. All-or-nothing: a refusal undoes the
    // snapshots made so far in this call, which restores every counter.
    Guarantee gs = Reservations::GuaranteeFor(o->strategy, read_only, /*active=*/false);
    const int64_t owner_delta = OwnerChangeLocked(*o, gs, /*leave=*/false, /*apply=*/false);
    int64_t delta = owner_delta;
    if (gs.all) delta += static_cast<int64_t>(o->map->nr_vblocks() - o->nr_mapped);
    Status admitted = AdmitLocked(delta, "snapshot '" + r.name + "' of '" + o->name + "'");
    if (!admitted.ok()) {
      for (auto it = created.rbegin(); it != created.rend(); ++it) ReleaseVolumeLocked(**it);
      RecycleLocked();
      return admitted;
    }
    if (gs.all || (gs.provisioned && o->nr_provisioned > 0)) {
      OwnerChangeLocked(*o, gs, /*leave=*/false, /*apply=*/true);
    } else {
      // The snapshot guarantees none of the blocks, so no g(b) changes: the
      // walk above was the whole change (one walk, not two).
      reservations_.Add(owner_delta);
    }
    auto s = std::make_shared<Volume>();
    s->id = next_volume_id_++;
    s->name = r.name;
    s->read_only = read_only;
    s->origin_id = o->id;
    s->family = o->family;
    s->size = o->size;
    s->strategy = o->strategy;
    s->map = o->map->Clone();
    s->nr_mapped = o->nr_mapped;
    s->nr_provisioned = o->nr_provisioned;
    // Every block of the origin now has at least two owners.
    s->nr_exclusive = 0;
    o->nr_exclusive = 0;
    families_[s->family].push_back(s.get());
    reservations_.Add(static_cast<int64_t>(UnmappedNeedLocked(*s)));
    created.push_back(s.get());
    names_.emplace(s->name, s->id);
    volumes_.emplace(s->id, std::move(s));
  }
  for (const Volume* s : created) NoteSnapshotLocked(*s);
  return Status::OK();
}

Status Pool::Grow(uint64_t new_size) {
  uint64_t nr_blocks;
  THINSIM_RETURN_IF_ERROR(PoolBlocks(new_size, block_size_, &nr_blocks));
  WriterLock lock(&meta_mu_);
  THINSIM_RETURN_IF_ERROR(RefuseIfReadOnlyLocked());
  if (nr_blocks < space_map_->nr_blocks()) {
    return Status::Invalid("a pool cannot shrink: it has " + std::to_string(space_map_->nr_blocks()) +
                           " blocks, " + FormatSize(new_size) + " is " + std::to_string(nr_blocks));
  }
  THINSIM_RETURN_IF_ERROR(store_->Grow(nr_blocks));
  space_map_->Grow(nr_blocks);
  reservations_.Grow(nr_blocks);
  txn_.NotePool();
  RecycleLocked();
  return Status::OK();
}

// ---- Connections ------------------------------------------------------------

Status Pool::OpenVolume(std::string_view name, bool writable, std::shared_ptr<Volume>* out) {
  WriterLock lock(&meta_mu_);
  Volume* v = FindLocked(name);
  if (v == nullptr) return Status::NotFound("no volume named '" + std::string(name) + "'");
  if (writable && v->read_only) {
    return Status::ReadOnly("'" + v->name + "' is a read-only snapshot");
  }
  if (writable) THINSIM_RETURN_IF_ERROR(SetActiveStateLocked(*v, v->pinned, v->writable_connections + 1));
  ++v->connections;
  *out = volumes_.at(v->id);
  return Status::OK();
}

void Pool::CloseVolume(const std::shared_ptr<Volume>& v, bool writable) {
  WriterLock lock(&meta_mu_);
  assert(v->connections > 0);
  --v->connections;
  // Deactivation only ever lowers the reservation, so it cannot fail.
  if (writable) SetActiveStateLocked(*v, v->pinned, v->writable_connections - 1);
}

uint64_t Pool::VolumeSize(const Volume& v) const {
  ReaderLock lock(&meta_mu_);
  return v.size;
}

bool Pool::VolumeReadOnly(const Volume& v) const { return v.read_only; }

}  // namespace thinsim
