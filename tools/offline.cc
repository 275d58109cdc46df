#include "tools/offline.h"

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
#include <set>
#include <sstream>
#include <unordered_map>

#include "base/sizes.h"
#include "base/types.h"
#include "metadata/check.h"
#include "metadata/journal.h"
#include "tools/offline_internal.h"

namespace thinsim::offline {

namespace internal {

using metadata::DataPath;

std::string Compact(const ordered_json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

int Fail(std::ostream& err, int code, const std::string& message) {
  err << "thinsim: " << message << "\n";
  return code;
}

// A stored enum as its name, or as a number when it has none.
ordered_json ModeJson(uint8_t mode) {
  if (mode > static_cast<uint8_t>(PoolMode::kFail)) return mode;
  return std::string(PoolModeName(static_cast<PoolMode>(mode)));
}
ordered_json StrategyJson(uint8_t strategy) {
  if (strategy > static_cast<uint8_t>(Strategy::kFull)) return strategy;
  return std::string(StrategyName(static_cast<Strategy>(strategy)));
}
std::string Text(const ordered_json& name_or_number) {
  return name_or_number.is_string() ? name_or_number.get<std::string>() : Compact(name_or_number);
}

// "5" or "5..9".
std::string Span(uint64_t first, uint64_t count) {
  return count == 1 ? std::to_string(first) : std::to_string(first) + ".." + std::to_string(first + count - 1);
}

// ---- Pool directories -------------------------------------------------------

bool IsDirectory(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// True when DIR has any of a pool's files (so that a tool run on some
// other directory does not leave a lock file in it).
bool LooksLikePool(const std::string& dir) {
  return !IsDirectory(dir) || metadata::InspectPoolDir(dir).any();
}

int NotAPool(const std::string& dir, std::ostream& err) {
  return Fail(err, kExitUsage, dir + " is not a thinsim pool (it has no metadata file)");
}

// Takes DIR's lock for an offline command; returns kExitOk or the exit
// status after printing why not.
int LockPool(const std::string& dir, std::unique_ptr<PoolDirLock>* lock, std::ostream& err) {
  if (!IsDirectory(dir)) return Fail(err, kExitUsage, "pool directory " + dir + " does not exist");
  Status s = PoolDirLock::Acquire(dir, /*create_dir=*/false, lock);
  if (s.ok()) return kExitOk;
  return Fail(err, s.code() == ErrorCode::kBusy ? kExitFailure : kExitUsage, s.message());
}

// Locks DIR and loads its metadata. Returns kExitOk, or the exit status
// after printing why nothing could be read. *loaded is Load's status: not
// OK (with report->fatal saying why) when the metadata is too damaged to
// replay.
int LockAndLoad(const std::string& dir, std::unique_ptr<PoolDirLock>* lock, Image* image, LoadReport* report,
                Status* loaded, std::ostream& err) {
  if (!LooksLikePool(dir)) return NotAPool(dir, err);
  int code = LockPool(dir, lock, err);
  if (code != kExitOk) return code;
  if (metadata::PoolDirState st = metadata::InspectPoolDir(dir); !st.has_superblock && st.has_checkpoint) {
    // A pool whose superblock is gone: damage, for repair to salvage.
    *loaded = Status::Corruption("the superblock " + dir + "/metadata is missing");
    report->fatal.push_back(loaded->message());
    return kExitOk;
  }
  if (!metadata::Journal::Exists(dir)) return NotAPool(dir, err);
  *loaded = metadata::Journal::Load(dir, image, report);
  if (!loaded->ok() && report->fatal.empty()) {
    return Fail(err, kExitUsage, "cannot read the metadata of " + dir + ": " + loaded->message());
  }
  return kExitOk;
}

// Damage outside the metadata: the data file must hold every block.
void CheckDataFile(const std::string& dir, const Image& image, metadata::CheckResult* r) {
  struct stat st;
  uint64_t want = image.nr_blocks * image.block_size;
  if (stat(DataPath(dir).c_str(), &st) != 0) {
    r->damage.push_back({true, DataPath(dir) + " is missing: the mappings point at data that is not there"});
  } else if (static_cast<uint64_t>(st.st_size) < want) {
    r->damage.push_back({false, DataPath(dir) + " is " + std::to_string(st.st_size) + " bytes, shorter than the pool's " +
                                    std::to_string(want) + ": blocks past its end read as zero"});
  }
}

// Every check of a loaded pool: the metadata's and the data file's.
metadata::CheckResult CheckLoaded(const std::string& dir, const Image& image, const LoadReport& report,
                                  const Status& loaded) {
  metadata::CheckResult r;
  if (!loaded.ok()) {
    // Nothing was replayed: only the reason means anything.
    for (const std::string& f : report.fatal) r.damage.push_back({true, f});
    r.notes = report.warnings;
    return r;
  }
  r = metadata::CheckImage(image, report);
  CheckDataFile(dir, image, &r);
  return r;
}

// Makes DIR/data at least the pool's size (sparse). *created says whether
// it was missing.
Status EnsureDataFile(const std::string& dir, const Image& image, bool* created) {
  struct stat st;
  *created = stat(DataPath(dir).c_str(), &st) != 0;
  int fd = open(DataPath(dir).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return Status::IOError("cannot open " + DataPath(dir) + ": " + std::strerror(errno));
  uint64_t want = image.nr_blocks * image.block_size;
  Status s;
  if (fstat(fd, &st) != 0) {
    s = Status::IOError("cannot stat " + DataPath(dir) + ": " + std::strerror(errno));
  } else if (static_cast<uint64_t>(st.st_size) < want && ftruncate(fd, static_cast<off_t>(want)) != 0) {
    s = Status::IOError("cannot extend " + DataPath(dir) + ": " + std::strerror(errno));
  } else if (fsync(fd) != 0) {
    s = Status::IOError("cannot sync " + DataPath(dir) + ": " + std::strerror(errno));
  }
  close(fd);
  return s;
}

// Writes `image` as DIR's metadata, a new generation.
Status WriteImage(const std::string& dir, const Image& image, uint64_t commit_seq, uint64_t* generation) {
  std::string checkpoint;
  image.Encode(&checkpoint);
  return metadata::Journal::Rewrite(dir, checkpoint, commit_seq, generation);
}

ordered_json DamageJson(const metadata::CheckResult& r) {
  ordered_json damage = ordered_json::array();
  for (const metadata::Damage& d : r.damage) damage.push_back({{"fatal", d.fatal}, {"what", d.what}});
  return damage;
}

void PrintDamage(const metadata::CheckResult& r, const std::string& indent, std::ostream& out) {
  for (const metadata::Damage& d : r.damage) out << indent << (d.fatal ? "fatal: " : "non-fatal: ") << d.what << "\n";
  for (const std::string& n : r.notes) out << indent << "note: " << n << "\n";
}

uint64_t CountMapped(const VolumeImage& v) {
  uint64_t n = 0;
  for (const auto& [index, c] : v.chunks) n += static_cast<uint64_t>(std::popcount(c->mapped));
  return n;
}

uint64_t CountProvisioned(const VolumeImage& v) {
  uint64_t n = 0;
  for (const auto& [index, c] : v.chunks) n += static_cast<uint64_t>(std::popcount(c->provisioned & c->mapped));
  return n;
}

const VolumeImage* FindVolume(const Image& image, const std::string& name) {
  for (const auto& [id, v] : image.volumes) {
    if (v.attrs.name == name) return &v;
  }
  return nullptr;
}

std::string VolumeLine(const Image& image, const VolumeImage& v) {
  const metadata::VolumeRecord& a = v.attrs;
  std::ostringstream s;
  s << "volume '" << a.name << "' (id " << a.id << "): size " << a.size << " (" << FormatSize(a.size)
    << "), strategy " << Text(StrategyJson(a.strategy)) << ", " << (a.read_only ? "read-only" : "read-write");
  if (a.origin_id == 0) {
    s << ", no origin";
  } else {
    auto origin = image.volumes.find(a.origin_id);
    s << ", snapshot of ";
    if (origin == image.volumes.end()) {
      s << "id " << a.origin_id << " (missing)";
    } else {
      s << "'" << origin->second.attrs.name << "' (id " << a.origin_id << ")";
    }
  }
  s << ", family " << a.family << (a.pinned ? ", pinned" : "") << "\n";
  s << "  " << CountMapped(v) << " vblocks mapped, " << CountProvisioned(v) << " provisioned\n";
  return s.str();
}

}  // namespace internal

using namespace internal;  // NOLINT: this library's own helpers
using metadata::DataPath;
using metadata::kChunkEntries;

// ---- Commands -----------------------------------------------------------------

int Check(const std::string& dir, bool json_output, std::ostream& out, std::ostream& err) {
  std::unique_ptr<PoolDirLock> lock;
  Image image;
  LoadReport report;
  Status loaded;
  int code = LockAndLoad(dir, &lock, &image, &report, &loaded, err);
  if (code != kExitOk) return code;
  metadata::CheckResult r = CheckLoaded(dir, image, report, loaded);
  if (json_output) {
    ordered_json j = {{"dir", dir},
                      {"clean", r.clean()},
                      {"fatal", r.fatal()},
                      {"damage", DamageJson(r)},
                      {"notes", r.notes},
                      {"generation", report.generation},
                      {"transactions", report.transactions},
                      {"volumes", image.volumes.size()}};
    out << Compact(j) << "\n";
  } else if (r.clean()) {
    out << dir << ": clean (generation " << report.generation << ", " << report.transactions
        << " transactions in the log, " << image.volumes.size() << " volumes, " << image.refcounts.size()
        << " data blocks in use)\n";
    PrintDamage(r, "  ", out);
  } else {
    size_t fatal = std::count_if(r.damage.begin(), r.damage.end(), [](const metadata::Damage& d) { return d.fatal; });
    out << dir << ": damaged (" << r.damage.size() << " problems, " << fatal << " fatal)\n";
    PrintDamage(r, "  ", out);
    out << (r.fatal() ? "  the pool will not be served until it is repaired"
                      : "  the pool is served read-only until it is repaired")
        << "; run `thinsim repair " << dir << "`\n";
  }
  out << std::flush;
  return r.clean() ? kExitOk : kExitFailure;
}

namespace {

// What a repair starts from: the loaded (or salvaged) image, the damage
// found, and what loading could not read.
struct RepairInput {
  Image image;
  metadata::CheckResult found;
  std::vector<std::string> lost;
};

// Loads DIR for repair; if the superblock or the checkpoint it names is
// unreadable, salvages. Returns kExitOk, or the exit status after printing
// why there is nothing to repair from.
int LoadForRepair(const std::string& dir, RepairInput* in, std::ostream& err) {
  LoadReport report;
  Status loaded = metadata::Journal::Exists(dir) ? metadata::Journal::Load(dir, &in->image, &report)
                                                 : Status::NotFound("the superblock is missing");
  in->found = CheckLoaded(dir, in->image, report, loaded);
  if (loaded.ok()) {
    for (const std::string& f : report.fatal) in->lost.push_back("could not read: " + f);
    if (report.commit_seq > in->image.commit_seq) {
      in->lost.push_back("commits " + std::to_string(in->image.commit_seq + 1) + ".." +
                         std::to_string(report.commit_seq) +
                         " could not be replayed: their changes are lost (the blocks they wrote are free again)");
    }
    return kExitOk;
  }
  LoadReport salvage;
  in->image = Image();
  Status s = metadata::Journal::Salvage(dir, &in->image, &salvage);
  if (!s.ok() && !metadata::InspectPoolDir(dir).has_superblock && !metadata::InspectPoolDir(dir).has_checkpoint) return NotAPool(dir, err);
  if (!s.ok()) {
    return Fail(err, kExitFailure, "cannot repair " + dir + ": " + loaded.message() +
                                       "; no checkpoint can be read, so no metadata can be saved "
                                       "(`thinsim restore` a dump instead)");
  }
  if (!metadata::Journal::Exists(dir)) in->found.damage.push_back({true, loaded.message()});
  for (const std::string& f : salvage.fatal) {
    in->found.damage.push_back({true, f});
    in->lost.push_back("could not read: " + f);
  }
  for (const std::string& w : salvage.warnings) in->found.notes.push_back(w);
  return kExitOk;
}

void PrintRepair(const std::string& dir, const RepairInput& in, const std::vector<std::string>& fixed,
                 uint64_t generation, const metadata::CheckResult& after, bool json_output, std::ostream& out) {
  if (json_output) {
    out << Compact({{"dir", dir},
                    {"repaired", true},
                    {"found", DamageJson(in.found)},
                    {"fixed", fixed},
                    {"lost", in.lost},
                    {"generation", generation},
                    {"clean", after.clean()},
                    {"damage", DamageJson(after)}})
        << "\n";
    return;
  }
  out << dir << ": found " << in.found.damage.size() << " problems\n";
  PrintDamage(in.found, "  ", out);
  for (const std::string& f : fixed) out << "  fixed: " << f << "\n";
  for (const std::string& l : in.lost) out << "  lost: " << l << "\n";
  out << "wrote metadata generation " << generation << "; " << dir
      << (after.clean() ? " is clean now\n" : " is still damaged:\n");
  PrintDamage(after, "  ", out);
}

}  // namespace

int Repair(const std::string& dir, bool json_output, std::ostream& out, std::ostream& err) {
  if (!LooksLikePool(dir)) return NotAPool(dir, err);
  std::unique_ptr<PoolDirLock> lock;
  int code = LockPool(dir, &lock, err);
  if (code != kExitOk) return code;
  RepairInput in;
  code = LoadForRepair(dir, &in, err);
  if (code != kExitOk) return code;
  if (in.found.clean()) {
    if (json_output) {
      out << Compact({{"dir", dir}, {"repaired", false}, {"clean", true}, {"notes", in.found.notes}}) << "\n";
    } else {
      out << dir << ": clean, nothing to repair\n";
      PrintDamage(in.found, "  ", out);
    }
    return kExitOk;
  }

  std::vector<std::string> fixed;
  metadata::RepairImage(&in.image, &fixed, &in.lost);
  DistrustBitmaps(&in.image, &fixed);
  bool created = false;
  uint64_t generation = 0;
  Status s = EnsureDataFile(dir, in.image, &created);
  if (created) in.lost.push_back(DataPath(dir) + " was missing: created an empty one, so every mapped block reads zero");
  if (s.ok()) s = WriteImage(dir, in.image, in.image.commit_seq + 1, &generation);
  if (!s.ok()) return Fail(err, kExitFailure, "repair of " + dir + " failed: " + s.message());

  Image after_image;
  LoadReport after_report;
  Status reloaded = metadata::Journal::Load(dir, &after_image, &after_report);
  metadata::CheckResult after = CheckLoaded(dir, after_image, after_report, reloaded);
  PrintRepair(dir, in, fixed, generation, after, json_output, out);
  out << std::flush;
  return after.clean() ? kExitOk : kExitFailure;
}

int RunOffline(const OfflineCommand& c, std::ostream& out, std::ostream& err) {
  try {
    if (c.command == "check") return Check(c.dir, c.json, out, err);
    if (c.command == "dump") return Dump(c.dir, c.json, out, err);
    if (c.command == "repair") return Repair(c.dir, c.json, out, err);
    if (c.command == "restore" && c.args.size() == 1) return Restore(c.dir, c.args[0], c.force, c.json, out, err);
    if (c.command == "delta" && c.args.size() == 2) return Delta(c.dir, c.args[0], c.args[1], c.json, out, err);
    return Fail(err, kExitUsage, "bad offline command '" + c.command + "'");
  } catch (const std::exception& e) {
    return Fail(err, kExitFailure, e.what());
  }
}

}  // namespace thinsim::offline
