// The files of a persistent pool directory and who may open them.
//
// A pool directory DIR holds (docs/format.md):
//   DIR/metadata          superblock: which generation is current, how much
//                         of its log is committed
//   DIR/metadata.ckpt.GEN checkpoint of generation GEN
//   DIR/metadata.log.GEN  log of generation GEN
//   DIR/data              the data blocks
//   DIR/lock              flock'ed by whoever has the pool open
//
// Every layer that names these files (the journal, the engine's open path,
// the offline tools) takes the names from here.
#ifndef THINSIM_METADATA_POOL_DIR_H_
#define THINSIM_METADATA_POOL_DIR_H_

#include <cstdint>
#include <memory>
#include <string>

#include "base/status.h"

namespace thinsim::metadata {

// A chunk maps this many consecutive vblocks: the unit of a kChunk record,
// of the engine's mapping table and of copy-on-write sharing between
// snapshots. Part of the on-disk format.
inline constexpr uint32_t kChunkShift = 6;
inline constexpr uint32_t kChunkEntries = 1u << kChunkShift;

std::string SuperblockPath(const std::string& dir);
std::string CheckpointPath(const std::string& dir, uint64_t generation);
std::string LogPath(const std::string& dir, uint64_t generation);
std::string DataPath(const std::string& dir);
std::string LockPath(const std::string& dir);

// What a directory holds, as far as opening it as a pool is concerned.
struct PoolDirState {
  bool has_superblock = false;   // DIR/metadata exists
  bool has_checkpoint = false;   // some DIR/metadata.ckpt.* exists
  bool has_data = false;         // DIR/data exists and is not empty
  bool has_lock_file = false;    // DIR/lock exists
  // A new pool may be created here: no superblock and no data. (A
  // checkpoint without a superblock is left for `thinsim check` to judge.)
  bool fresh() const { return !has_superblock && !has_data; }
  // Data without metadata: refuse to create a pool over it.
  bool orphaned_data() const { return !has_superblock && has_data; }
  // Any trace of a pool at all.
  bool any() const { return has_superblock || has_checkpoint || has_lock_file; }
};
PoolDirState InspectPoolDir(const std::string& dir);

// An exclusive hold on a pool directory: flock(DIR/lock, LOCK_EX|LOCK_NB),
// so that two processes (a server, an offline tool) never have one pool open
// at once. Released when destroyed.
//
// Thread safety: a lock object is owned by one thread at a time.
class PoolDirLock {
 public:
  ~PoolDirLock();
  PoolDirLock(const PoolDirLock&) = delete;
  PoolDirLock& operator=(const PoolDirLock&) = delete;

  // Takes the lock, creating DIR/lock if absent, and DIR itself when
  // `create_dir` (a server creating a new pool). Busy, naming DIR, when
  // another process holds it.
  static Status Acquire(const std::string& dir, bool create_dir, std::unique_ptr<PoolDirLock>* out);

 private:
  explicit PoolDirLock(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace thinsim::metadata

#endif  // THINSIM_METADATA_POOL_DIR_H_
