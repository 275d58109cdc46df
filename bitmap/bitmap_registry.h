// BitmapRegistry: the dirty bitmaps of every volume of one pool, for the
// control commands (SPEC section 12). It creates a volume's VolumeBitmaps on
// its first bitmap and attaches it to the volume's request hook
// (Pool::AttachObserver, a point in time like a snapshot), and detaches it
// when the volume's last bitmap goes, so a volume without bitmaps pays
// nothing on its data path.
//
// A volume's bitmaps die with the volume: an entry whose observer is no
// longer attached to a volume of that name (deleted, or deleted and made
// again) is dropped when next looked up.
//
// Thread safety: thread-safe; mu_ is held while attaching and detaching, so
// two commands never attach two sets to one volume. Lock order: mu_ ->
// the volume's io_gate (inside Attach/DetachObserver) -> VolumeBitmaps::mu_.
#ifndef THINSIM_BITMAP_BITMAP_REGISTRY_H_
#define THINSIM_BITMAP_BITMAP_REGISTRY_H_

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/mutex.h"
#include "base/status.h"
#include "base/thread_annotations.h"
#include "bitmap/volume_bitmaps.h"
#include "pool/pool.h"

namespace thinsim {

class BitmapRegistry {
 public:
  explicit BitmapRegistry(Pool* pool) : pool_(pool) {}

  // The bitmaps of volume `volume`: NotFound if there is no such volume.
  // With `create`, a volume without bitmaps gets an (attached) empty set;
  // without, *out is null for it.
  Status Get(std::string_view volume, bool create, std::shared_ptr<VolumeBitmaps>* out) EXCLUDES(mu_);
  // Detaches the set of `volume` if it holds no bitmap any more.
  void ReleaseIfEmpty(std::string_view volume) EXCLUDES(mu_);
  // Every volume with bitmaps, by name.
  std::vector<std::pair<std::string, std::shared_ptr<VolumeBitmaps>>> All() EXCLUDES(mu_);
  // Brings back the persistent bitmaps the pool's files hold, attaching
  // them to their volumes. Called once, after the pool opened and before
  // it serves requests.
  Status LoadPersistent() EXCLUDES(mu_);

 private:
  // Drops entries whose volume is gone. REQUIRES: mu_.
  void PruneLocked() REQUIRES(mu_);
  // A new set for `volume`, attached; persistent bitmaps log through the
  // pool when it persists.
  Status AttachLocked(std::string_view volume, const VolumeInfo& info, std::shared_ptr<VolumeBitmaps>* out)
      REQUIRES(mu_);

  Pool* const pool_;
  Mutex mu_;
  std::map<std::string, std::shared_ptr<VolumeBitmaps>, std::less<>> sets_ GUARDED_BY(mu_);
};

}  // namespace thinsim

#endif  // THINSIM_BITMAP_BITMAP_REGISTRY_H_
