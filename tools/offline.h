// The offline commands of the `thinsim` CLI (SPEC.md sections 8 and 10):
// check, dump, restore, repair and delta. They work on a stopped pool's
// directory through metadata/ (docs/format.md) and never link the engine or
// the plugin. Each takes DIR/lock exclusively first, the lock a running
// server holds, so a pool in use is refused.
//
// Every command prints human text by default and JSON with `json`, and
// returns its exit status:
//   check    0 clean, 1 damaged (or in use), 2 usage or cannot read
//   others   0 done, 1 failed (in use, damaged input, write error),
//            2 usage or cannot read
//
// Thread safety: the functions here keep no state; each call stands alone.

#ifndef THINSIM_TOOLS_OFFLINE_H_
#define THINSIM_TOOLS_OFFLINE_H_

#include <cstdint>
#include <iosfwd>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "metadata/delta.h"
#include "metadata/image.h"
#include "metadata/pool_dir.h"
#include "base/status.h"

namespace thinsim::offline {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // check: damaged
inline constexpr int kExitUsage = 2;    // also: metadata cannot be read

using metadata::PoolDirLock;

// ---- Dump and restore -------------------------------------------------------

// The canonical JSON description of an image (docs/format.md, "Dump
// format"): pool attributes, volumes by id, every chunk object once with an
// id in order of first appearance (volumes by id, slots by index), each
// volume's slots naming chunk ids, and the stored refcounts as runs.
nlohmann::ordered_json DumpJson(const metadata::Image& image);

// DumpJson as text: one line per volume, chunk and refcount run; ends in a
// newline. The same image always gives the same bytes.
std::string FormatDumpJson(const metadata::Image& image);

// The human dump: pool attributes, then per volume its attributes and its
// mappings as runs ("vblocks 0..3 -> dblocks 8..11"), then the refcounts.
std::string FormatDumpText(const metadata::Image& image);

// Builds an image from a dump (DumpJson's shape). Invalid names what is
// wrong and where. Damage that CheckImage finds (a wrong refcount, a block
// out of range) is accepted: it is the caller's to refuse.
Status ImageFromJson(const nlohmann::json& dump, metadata::Image* image);

// ---- Delta ------------------------------------------------------------------

// metadata/delta.h: DeltaType, DeltaTypeName, DeltaRange, ComputeDelta.
using metadata::ComputeDelta;
using metadata::DeltaRange;
using metadata::DeltaType;
using metadata::DeltaTypeName;

// Prints a delta as `thinsim delta` does, offline or online: a table, or
// with json_output a JSON array of {type, offset, length}.
void PrintDelta(const std::string& left, const std::string& right, uint32_t block_size,
                const std::vector<DeltaRange>& ranges, bool json_output, std::ostream& out);

// ---- Commands ---------------------------------------------------------------

// One offline command as parsed by the CLI.
struct OfflineCommand {
  std::string command;            // check, dump, restore, repair, delta
  std::string dir;                // the pool directory
  std::vector<std::string> args;  // restore: FILE; delta: A B
  bool json = false;
  bool force = false;             // restore: accept fatally damaged input
};

// Runs one command; returns its exit status. Never throws.
int RunOffline(const OfflineCommand& command, std::ostream& out, std::ostream& err);

// The commands themselves.
int Check(const std::string& dir, bool json, std::ostream& out, std::ostream& err);
int Dump(const std::string& dir, bool json, std::ostream& out, std::ostream& err);
// FILE "-" reads standard input.
int Restore(const std::string& dir, const std::string& file, bool force, bool json, std::ostream& out,
            std::ostream& err);
int Repair(const std::string& dir, bool json, std::ostream& out, std::ostream& err);
int Delta(const std::string& dir, const std::string& left, const std::string& right, bool json,
          std::ostream& out, std::ostream& err);

}  // namespace thinsim::offline

#endif  // THINSIM_TOOLS_OFFLINE_H_
