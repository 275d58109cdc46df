// The reference model of a volume's dirty bitmaps (SPEC section 12) for
// bitmap/testing/bitmap_model_driver.h: per bitmap its granularity, flags
// and the bytes it must hold dirty, as a Boost.ICL interval set, from which
// what the engine must report follows by rounding, independently of
// DirtyBitmap's word arithmetic. Test-only code.
//
// Thread safety: values; no shared state.
#ifndef THINSIM_BITMAP_TESTING_BITMAP_MODEL_H_
#define THINSIM_BITMAP_TESTING_BITMAP_MODEL_H_

#include <cstdint>
#include <string>
#include <vector>

#include <boost/icl/interval_set.hpp>

#include "bitmap/dirty_bitmap.h"

namespace thinsim::model {

using ByteSet = boost::icl::interval_set<uint64_t>;
using ByteRange = ByteSet::interval_type;

// `set` with every interval widened to whole `unit`s.
// REQUIRES: unit is a power of two.
ByteSet RoundOut(const ByteSet& set, uint64_t unit);

// `set` & [0, size).
ByteSet Clip(const ByteSet& set, uint64_t size);

// "[a,b) [c,d)", or "{}".
std::string ByteSetString(const ByteSet& set);

struct MBitmap {
  uint64_t granularity = 0;
  bool enabled = true;
  bool persistent = false;
  bool busy = false;
  // Bytes requests and resizes marked (merges add the source's granules).
  // The engine's bits are exactly these rounded out to granules.
  ByteSet dirty;

  // What DirtyRanges must say for a volume of `size` bytes.
  ByteSet Expected(uint64_t size) const { return Clip(RoundOut(dirty, granularity), size); }
  // What a reopen may find at most: the write-intent rule makes whole
  // intent chunks durable (VolumeBitmaps::kIntentBytes, or the granule if
  // larger; docs/format.md), clipped to the volume.
  ByteSet IntentBound(uint64_t size) const;
  // Granules with a dirty byte below `size` (BitmapInfo::dirty_granules).
  uint64_t DirtyGranules(uint64_t size) const;
};

// DirtyBitmap::Extents of a bitmap whose dirty bytes are `expected` (granule
// aligned, within [0, size)): [offset, offset + length) clipped to size as
// alternating dirty and clean runs.
std::vector<DirtyBitmap::Extent> ExpectedExtents(const ByteSet& expected, uint64_t size, uint64_t offset,
                                                 uint64_t length);

std::string BitmapExtentsString(const std::vector<DirtyBitmap::Extent>& extents);

}  // namespace thinsim::model

#endif  // THINSIM_BITMAP_TESTING_BITMAP_MODEL_H_
