// Fuzz target: decoding and replaying metadata records (metadata/records.h,
// image.h, check.h), with no files involved.
//
// Input: one flags byte, then a stream of framed records as a checkpoint
// holds them. Flags bit 0: rewrite each record's CRC first (fuzz/
// metadata_properties.h), so that mutations reach the decoders; without it
// the framing and checksum checks themselves are fuzzed.
//
// The records are applied in order as a checkpoint load does, stopping at
// the first one Image::Apply refuses. Properties, any violation abort()s:
//   - decoding, Apply, CheckImage and RepairImage never crash, hit
//     undefined behaviour or leak, whatever the bytes;
//   - whatever image results, its encoding replays into the same image;
//   - RepairImage leaves an image CheckImage finds clean (unless the block
//     size or pool size could not be derived), which still round-trips.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz/metadata_properties.h"
#include "metadata/check.h"
#include "metadata/image.h"
#include "metadata/journal.h"
#include "metadata/records.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace thinsim;
  if (size == 0) return 0;
  std::string records(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] & 1) fuzz::FixRecordCrcs(&records, 0);
  metadata::Image image;
  metadata::RecordReader reader(records);
  std::string_view payload;
  while (reader.Next(&payload)) {
    if (!image.Apply(payload).ok()) break;
  }
  image.checkpoint_chunks.clear();
  metadata::CheckImage(image, metadata::LoadReport{});
  fuzz::CheckEncodeRoundTrip(image);
  fuzz::CheckRepairMakesClean(image);
  return 0;
}
