// The dirty bitmaps' reference model (bitmap_model.h).
#include "bitmap/testing/bitmap_model.h"

#include <algorithm>
#include <sstream>

#include "bitmap/volume_bitmaps.h"

namespace thinsim::model {

ByteSet RoundOut(const ByteSet& set, uint64_t unit) {
  ByteSet out;
  for (const ByteRange& r : set) {
    uint64_t lo = r.lower() / unit * unit;
    uint64_t hi = (r.upper() + unit - 1) / unit * unit;
    out.add(ByteRange::right_open(lo, hi));
  }
  return out;
}

ByteSet Clip(const ByteSet& set, uint64_t size) { return set & ByteRange::right_open(0, size); }

std::string ByteSetString(const ByteSet& set) {
  if (set.empty()) return "{}";
  std::ostringstream o;
  for (const ByteRange& r : set) o << (o.tellp() > 0 ? " [" : "[") << r.lower() << "," << r.upper() << ")";
  return o.str();
}

ByteSet MBitmap::IntentBound(uint64_t size) const {
  return Clip(RoundOut(dirty, std::max<uint64_t>(VolumeBitmaps::kIntentBytes, granularity)), size);
}

uint64_t MBitmap::DirtyGranules(uint64_t size) const {
  // Expected() is granule aligned but for an end at `size`: each interval
  // covers whole granules, the last one perhaps partial.
  uint64_t n = 0;
  for (const ByteRange& r : Expected(size)) {
    n += (r.upper() + granularity - 1) / granularity - r.lower() / granularity;
  }
  return n;
}

std::vector<DirtyBitmap::Extent> ExpectedExtents(const ByteSet& expected, uint64_t size, uint64_t offset,
                                                 uint64_t length) {
  std::vector<DirtyBitmap::Extent> out;
  if (offset >= size) return out;
  const uint64_t end = length > size - offset ? size : offset + length;
  uint64_t pos = offset;
  // The set's intervals are maximal, so dirty runs come out coalesced.
  for (const ByteRange& r : expected & ByteRange::right_open(offset, end)) {
    if (r.lower() > pos) out.push_back({pos, r.lower() - pos, false});
    out.push_back({r.lower(), r.upper() - r.lower(), true});
    pos = r.upper();
  }
  if (pos < end) out.push_back({pos, end - pos, false});
  return out;
}

std::string BitmapExtentsString(const std::vector<DirtyBitmap::Extent>& extents) {
  std::ostringstream o;
  for (const auto& e : extents) o << "[" << e.offset << ",+" << e.length << (e.dirty ? " dirty]" : " clean]");
  return o.str();
}

}  // namespace thinsim::model
