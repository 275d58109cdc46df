// Internal to thinsim_offline: helpers shared by its command files
// (offline.cc: check, repair; offline_dump.cc: dump, restore;
// offline_delta.cc: delta). Not for other libraries.
#ifndef THINSIM_TOOLS_OFFLINE_INTERNAL_H_
#define THINSIM_TOOLS_OFFLINE_INTERNAL_H_

#include <bit>
#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"
#include "metadata/check.h"
#include "metadata/image.h"
#include "metadata/pool_dir.h"

namespace thinsim::offline::internal {

using metadata::ChunkImage;
using metadata::Image;
using metadata::LoadReport;
using metadata::PoolDirLock;
using metadata::VolumeImage;
using nlohmann::json;
using nlohmann::ordered_json;

// One line of JSON (invalid UTF-8 in names replaced, never thrown).
std::string Compact(const ordered_json& value);
// Prints "thinsim: MESSAGE" to err; returns `code`.
int Fail(std::ostream& err, int code, const std::string& message);

// Calls fn(entry, dblock, provisioned) for each mapped entry of a chunk, in
// order. A malformed chunk (fewer dblocks than mapped bits) stops early.
template <typename Fn>
void ForEachEntry(const ChunkImage& c, Fn fn) {
  size_t rank = 0;
  for (uint64_t m = c.mapped; m != 0 && rank < c.dblocks.size(); m &= m - 1, ++rank) {
    uint32_t i = static_cast<uint32_t>(std::countr_zero(m));
    fn(i, c.dblocks[rank], ((c.provisioned >> i) & 1) != 0);
  }
}

// A stored enum as its name, or as a number when it has none.
ordered_json ModeJson(uint8_t mode);
ordered_json StrategyJson(uint8_t strategy);
std::string Text(const ordered_json& name_or_number);
// "5" or "5..9".
std::string Span(uint64_t first, uint64_t count);

// ---- Pool directories ----
bool IsDirectory(const std::string& path);
// True when DIR has any of a pool's files.
bool LooksLikePool(const std::string& dir);
int NotAPool(const std::string& dir, std::ostream& err);
// Takes DIR's lock for an offline command; returns kExitOk or the exit
// status after printing why not.
int LockPool(const std::string& dir, std::unique_ptr<PoolDirLock>* lock, std::ostream& err);
// Locks DIR and loads its metadata. Returns kExitOk, or the exit status
// after printing why nothing could be read. *loaded is Load's status.
int LockAndLoad(const std::string& dir, std::unique_ptr<PoolDirLock>* lock, Image* image, LoadReport* report,
                Status* loaded, std::ostream& err);
// Damage outside the metadata: the data file must hold every block.
void CheckDataFile(const std::string& dir, const Image& image, metadata::CheckResult* r);
metadata::CheckResult CheckLoaded(const std::string& dir, const Image& image, const LoadReport& report,
                                  const Status& loaded);
Status EnsureDataFile(const std::string& dir, const Image& image, bool* created);
Status WriteImage(const std::string& dir, const Image& image, uint64_t commit_seq, uint64_t* generation);
ordered_json DamageJson(const metadata::CheckResult& r);
void PrintDamage(const metadata::CheckResult& r, const std::string& indent, std::ostream& out);
uint64_t CountMapped(const VolumeImage& v);
uint64_t CountProvisioned(const VolumeImage& v);
const VolumeImage* FindVolume(const Image& image, const std::string& name);
std::string VolumeLine(const Image& image, const VolumeImage& v);

// ---- Dirty bitmaps in dumps (offline_bitmaps.cc) ----
// A volume's "bitmaps" list: {id, name, granularity, recording,
// inconsistent, dirty: [{first, count}] in granules}.
ordered_json BitmapsJson(const VolumeImage& v);
// Reads `volume`'s "bitmaps" (absent: none) into v->bitmaps, checking what
// Image::Apply would: ids, names, granularities, granules within v's size.
// REQUIRES: v->attrs read already.
Status ReadBitmaps(const json& volume, const std::string& where, VolumeImage* v);
// One line per bitmap, indented, for the text dump.
void AppendBitmapsText(const VolumeImage& v, std::ostream& out);
// For repair: whatever was damaged or lost, no bitmap may be left falsely
// clean, so every one becomes all dirty and inconsistent (a backup tool
// then copies everything once). Says so in `fixed`, one line per bitmap.
void DistrustBitmaps(Image* image, std::vector<std::string>* fixed);

}  // namespace thinsim::offline::internal

#endif  // THINSIM_TOOLS_OFFLINE_INTERNAL_H_
