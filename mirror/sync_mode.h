// Sync modes of a mirror job (SPEC section 13): what it copies at start.
//   full         every byte: every granule dirty (holes are copied as
//                zeroes, or skipped where the target already reads zero)
//   top          what the volume does not share with its origin, the
//                target already holding the origin (metadata::ComputeDelta
//                of the two mappings); a volume without an origin: its
//                mapped blocks, the target reading zero elsewhere
//   none         nothing: only the writes from the job's start on
//   incremental  the granules a dirty bitmap of the volume holds
// In every mode the writes the volume takes from the job's start are copied
// too (the copier is attached first, then the initial set is marked, so a
// write in between is marked twice at worst, never missed).
#ifndef THINSIM_MIRROR_SYNC_MODE_H_
#define THINSIM_MIRROR_SYNC_MODE_H_

#include <string>
#include <string_view>

#include <boost/icl/interval_set.hpp>

#include "base/status.h"
#include "bitmap/dirty_bitmap.h"
#include "pool/pool.h"

namespace thinsim {

enum class SyncMode { kFull, kTop, kNone, kIncremental };

// "full", "top", "none", "incremental".
std::string_view SyncModeName(SyncMode mode);
// Invalid, naming the modes, for anything else.
Status ParseSyncMode(std::string_view name, SyncMode* out);

// Marks in `dirty` what a job of `mode` on `volume` copies at start.
// `bitmap_dirty`: the incremental bitmap's dirty bytes (used only by
// kIncremental).
Status MarkInitial(const Pool& pool, const std::string& volume, SyncMode mode,
                   const boost::icl::interval_set<uint64_t>& bitmap_dirty, DirtyBitmap* dirty);

}  // namespace thinsim

#endif  // THINSIM_MIRROR_SYNC_MODE_H_
