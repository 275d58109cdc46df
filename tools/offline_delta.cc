// thinsim delta (offline): how two volumes of a stopped pool differ, block
// by block, from their mappings alone.
#include "tools/offline.h"

#include <boost/icl/interval_set.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <unordered_map>

#include "base/sizes.h"
#include "base/types.h"
#include "metadata/check.h"
#include "metadata/journal.h"
#include "tools/offline_internal.h"

namespace thinsim::offline {

using namespace internal;  // NOLINT: this library's own helpers
using metadata::DataPath;
using metadata::kChunkEntries;

// ---- Delta --------------------------------------------------------------------

int Delta(const std::string& dir, const std::string& left, const std::string& right, bool json_output,
          std::ostream& out, std::ostream& err) {
  std::unique_ptr<PoolDirLock> lock;
  Image image;
  LoadReport report;
  Status loaded;
  int code = LockAndLoad(dir, &lock, &image, &report, &loaded, err);
  if (code != kExitOk) return code;
  if (!loaded.ok()) {
    return Fail(err, kExitUsage, "cannot read the metadata of " + dir + ": " + report.fatal.front());
  }
  for (const std::string& f : report.fatal) err << "thinsim: warning: damaged metadata: " << f << "\n";
  const VolumeImage* l = FindVolume(image, left);
  const VolumeImage* r = FindVolume(image, right);
  if (l == nullptr || r == nullptr) {
    return Fail(err, kExitFailure, "no volume named '" + (l == nullptr ? left : right) + "' in " + dir);
  }
  PrintDelta(left, right, image.block_size, ComputeDelta(image.block_size, *l, *r), json_output, out);
  return kExitOk;
}

void PrintDelta(const std::string& left, const std::string& right, uint32_t block_size,
                const std::vector<DeltaRange>& ranges, bool json_output, std::ostream& out) {
  if (json_output) {
    out << "[";
    for (size_t i = 0; i < ranges.size(); ++i) {
      const DeltaRange& d = ranges[i];
      out << (i ? ",\n " : "\n ")
          << Compact({{"type", std::string(DeltaTypeName(d.type))}, {"offset", d.offset}, {"length", d.length}});
    }
    out << (ranges.empty() ? "]\n" : "\n]\n");
  } else {
    out << "left '" << left << "', right '" << right << "', block size " << block_size << "\n";
    for (const DeltaRange& d : ranges) {
      std::string type(DeltaTypeName(d.type));
      type.resize(10, ' ');
      out << type << " " << (d.nr_vblocks == 1 ? "vblock  " : "vblocks ") << Span(d.vblock, d.nr_vblocks)
          << "  offset " << d.offset << " length " << d.length << "\n";
    }
  }
  out << std::flush;
}

}  // namespace thinsim::offline
