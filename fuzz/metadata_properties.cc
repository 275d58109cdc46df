#include "fuzz/metadata_properties.h"

#include "fuzz/fuzz_util.h"
#include "base/crc32c.h"
#include "base/encoding.h"
#include "metadata/journal.h"
#include "metadata/records.h"

namespace thinsim::fuzz {

using metadata::CheckImage;
using metadata::CheckResult;
using metadata::Image;
using metadata::LoadReport;

void FixRecordCrcs(std::string* data, size_t from) {
  size_t pos = from;
  while (data->size() - pos >= 8) {
    Reader header(std::string_view(*data).substr(pos, 4));
    uint32_t len = header.U32();
    if (len == 0 || len > data->size() - pos - 8) return;
    uint32_t crc = Crc32c(0, data->data() + pos + 8, len);
    std::string enc;
    PutU32(&enc, crc);
    data->replace(pos + 4, 4, enc);
    pos += 8 + len;
  }
}

std::string DamageText(const CheckResult& r) {
  std::string out;
  for (const metadata::Damage& d : r.damage) out += std::string(d.fatal ? "fatal: " : "non-fatal: ") + d.what + "\n";
  return out;
}

void CheckEncodeRoundTrip(const Image& image) {
  std::string encoded;
  image.Encode(&encoded);
  metadata::AppendCommit(&encoded, image.commit_seq);
  Image replayed;
  metadata::RecordReader reader(encoded);
  std::string_view payload;
  while (reader.Next(&payload)) {
    Status s = replayed.Apply(payload);
    if (!s.ok()) Fail("an encoded image does not replay: " + s.ToString());
  }
  if (!reader.error().empty()) Fail("an encoded image does not frame: " + reader.error());
  replayed.checkpoint_chunks.clear();
  std::string again;
  replayed.Encode(&again);
  metadata::AppendCommit(&again, replayed.commit_seq);
  if (again != encoded) Fail("an image's encoding replays into a different image");
}

void CheckRepairMakesClean(Image image) {
  std::vector<std::string> fixed, lost;
  metadata::RepairImage(&image, &fixed, &lost);
  bool underivable = false;
  for (const std::string& l : lost) {
    underivable = underivable || l.rfind("pool block size", 0) == 0 || l.rfind("pool size", 0) == 0;
  }
  CheckResult after = CheckImage(image, LoadReport{});
  if (!underivable && !after.clean()) {
    std::string what = "repair left damage:\n" + DamageText(after) + "repair said it fixed:\n";
    for (const std::string& f : fixed) what += "  " + f + "\n";
    for (const std::string& l : lost) what += "  lost: " + l + "\n";
    Fail(what);
  }
  CheckEncodeRoundTrip(image);
}

}  // namespace thinsim::fuzz
