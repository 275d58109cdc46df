// VolatileCache: what a disk's volatile write cache would lose in a power
// cut, for FaultEnv (env/fault_env.h).
//
// Before a file's bytes change, the cache saves the durable bytes they
// replace (once per byte between syncs) and the file's durable size; a
// Sync drops what was saved. PowerCutLocked() writes the saved bytes back and
// truncates each file to its durable size: every file holds exactly what
// its last Sync made durable. Files created since their directory's last
// SyncDir are removed.
//
// Thread safety: Created and DirSynced take the cache's mutex; the others
// REQUIRE it (Lock()). Callers that change a file hold it across
// BeforeChange and the change, so that a concurrent Sync cannot fall
// between them; FaultEnv holds it across a whole power cut, so that no
// change or sync falls inside one.
#ifndef THINSIM_ENV_VOLATILE_CACHE_H_
#define THINSIM_ENV_VOLATILE_CACHE_H_

#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>

#include <boost/icl/interval_set.hpp>

#include "base/status.h"
#include "env/env.h"

namespace thinsim {

class VolatileCache {
 public:
  std::unique_lock<std::mutex> Lock() { return std::unique_lock(mu_); }

  // Saves the durable bytes of [offset, offset + len) of `file` that are
  // not saved yet. len may reach past the end of the file.
  // REQUIRES: Lock() held.
  Status BeforeChange(File* file, uint64_t offset, uint64_t len);
  // `file` is durable: nothing of it is saved any more.
  // REQUIRES: Lock() held, and the file's Sync succeeded.
  void Synced(const std::string& path) { files_.erase(path); }

  // `path` did not exist and was created; undone by PowerCutLocked() unless its
  // directory is synced first.
  void Created(const std::string& path);
  void DirSynced(const std::string& dir);

  // Restores every file's durable state through `base`.
  // REQUIRES: Lock() held.
  Status PowerCutLocked(Env* base);

 private:
  struct Pending {
    uint64_t durable_size = 0;
    boost::icl::interval_set<uint64_t> saved;  // offsets held in old_bytes
    std::map<uint64_t, std::string> old_bytes;  // disjoint runs by offset
  };

  std::mutex mu_;
  std::map<std::string, Pending> files_;  // changed since their last Sync
  std::set<std::string> created_;         // not yet made durable by SyncDir
};

}  // namespace thinsim

#endif  // THINSIM_ENV_VOLATILE_CACHE_H_
