// Properties of decoded metadata that the metadata fuzz targets check on
// every image they manage to build, and the checksum fix-up that lets
// mutated bytes get past the CRCs.
#ifndef THINSIM_FUZZ_METADATA_PROPERTIES_H_
#define THINSIM_FUZZ_METADATA_PROPERTIES_H_

#include <string>
#include <string_view>
#include <vector>

#include "metadata/check.h"
#include "metadata/image.h"

namespace thinsim::fuzz {

// Rewrites the CRC of every whole record framed in data[from, end) so that
// a mutated payload reaches the decoder instead of failing its checksum.
// Stops at the first frame whose length does not fit.
void FixRecordCrcs(std::string* data, size_t from);

// The checkpoint encoding of `image` replays (Image::Apply, record by
// record) into an image whose encoding is the same: what a checkpoint
// writes, a reopen reads back.
void CheckEncodeRoundTrip(const metadata::Image& image);

// RepairImage leaves nothing CheckImage reports, unless it said it could
// not derive the pool's block size or size; and the repaired image still
// round-trips.
void CheckRepairMakesClean(metadata::Image image);

// "damage: fatal: ...\n" lines, for messages.
std::string DamageText(const metadata::CheckResult& r);

}  // namespace thinsim::fuzz

#endif  // THINSIM_FUZZ_METADATA_PROPERTIES_H_
