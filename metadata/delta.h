// Delta: how two volumes of a pool differ, from their mappings alone (SPEC:
// `thinsim delta`), for the offline tool over a stopped pool's Image and for
// the server over its live mappings (Pool::VolumeImageOf).
#ifndef THINSIM_METADATA_DELTA_H_
#define THINSIM_METADATA_DELTA_H_

#include <cstdint>
#include <string_view>
#include <vector>

#include "metadata/image.h"

namespace thinsim::metadata {

// Entry i of chunk c: false when c is null or does not map it.
bool MappedEntry(const ChunkImage* c, uint32_t i, uint32_t* dblock);

enum class DeltaType { kSame, kDifferent, kLeftOnly, kRightOnly };

// "same", "different", "left_only", "right_only" (thin_delta's names).
std::string_view DeltaTypeName(DeltaType type);

// A maximal run of vblocks with one classification. Byte offset and length
// stop at the end of the larger volume that maps the run.
struct DeltaRange {
  DeltaType type;
  uint64_t vblock = 0;
  uint64_t nr_vblocks = 0;
  uint64_t offset = 0;
  uint64_t length = 0;
};

// Compares two volumes' mappings vblock by vblock, as thin_delta does:
// same (both map the same dblock), different (both mapped, to different
// dblocks), left_only, right_only. Vblocks neither maps are left out.
std::vector<DeltaRange> ComputeDelta(uint32_t block_size, const VolumeImage& left, const VolumeImage& right);

}  // namespace thinsim::metadata

#endif  // THINSIM_METADATA_DELTA_H_
