// FaultEnv: an Env wrapper that fails chosen operations and can simulate a
// disk with a volatile write cache (SPEC section 15).
//
// Faults. A rule names a layer (the data file, or the metadata files: the
// superblock, checkpoints and logs), an operation, the errno to fail it
// with and optionally a byte range, a probability and a count:
//   read     File::Read, File::Size
//   write    File::Write, File::Truncate
//   discard  File::PunchHole, File::ZeroRange
//   flush    File::Sync (what an NBD FLUSH or FUA becomes)
//   sync     File::Sync and Env::SyncDir (every durability call)
//   any      all of these, and opening, renaming and removing files
// A rule with a range (length > 0) matches only operations on bytes that
// overlap [offset, offset + length): reads, writes and discards. When several
// rules match, the oldest decides; a rule fires with its probability, and a
// rule with a count is removed after firing that many times. A failed
// operation changes nothing. ENOSPC and EDQUOT fail as NoSpace, EROFS as
// ReadOnly, EOPNOTSUPP as Unsupported, anything else as IOError.
//
// Volatile cache (Options::volatile_cache). Bytes written (or discarded, or
// cut off by a truncate) since the file's last Sync are not yet durable;
// FaultEnv saves the durable bytes they replace. PowerCut() restores them,
// and removes files created since their directory's last SyncDir, as a power
// failure would. Renames and removals are not undone (the pool does none
// that a SyncDir does not follow).
//
// Thread safety: every method may be called from any thread at once.
#ifndef THINSIM_ENV_FAULT_ENV_H_
#define THINSIM_ENV_FAULT_ENV_H_

#include <cerrno>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "base/status.h"
#include "env/env.h"

namespace thinsim {

enum class FaultLayer { kData, kMetadata };
enum class FaultOp { kRead, kWrite, kDiscard, kFlush, kSync, kAny };

struct FaultRule {
  FaultLayer layer = FaultLayer::kData;
  FaultOp op = FaultOp::kAny;
  int error = EIO;
  uint64_t offset = 0;    // with length: the byte range the rule covers
  uint64_t length = 0;    // 0: every byte, and operations without bytes
  double probability = 1.0;
  uint64_t count = 0;     // 0: fires for ever; else removed after `count` failures
};

struct FaultInfo {
  uint64_t id = 0;
  FaultRule rule;
  uint64_t fired = 0;  // failures injected so far
};

// Parses and names layers and operations as SPEC section 15 spells them
// ("data", "metadata"; "read", "write", ...). Parse* return false on an
// unknown name.
bool ParseFaultLayer(const std::string& name, FaultLayer* layer);
bool ParseFaultOp(const std::string& name, FaultOp* op);
const char* FaultLayerName(FaultLayer layer);
const char* FaultOpName(FaultOp op);

class VolatileCache;  // env/volatile_cache.h

class FaultEnv final : public Env {
 public:
  struct Options {
    bool volatile_cache = false;
    uint64_t seed = 0;  // for probabilities; the same seed repeats a run
    // Which layer a file belongs to. By default a file named "data" is
    // the data layer (docs/format.md: DIR/data) and any other the metadata.
    std::function<FaultLayer(const std::string& path)> layer_of;
  };

  // REQUIRES: `base` outlives this FaultEnv and every File it opened.
  FaultEnv(Env* base, Options options);
  ~FaultEnv() override;

  uint64_t AddFault(const FaultRule& rule);
  // False when no rule has that id (never added, removed, or spent).
  bool RemoveFault(uint64_t id);
  // The live rules, oldest first.
  std::vector<FaultInfo> Faults() const;

  bool volatile_cache() const { return cache_ != nullptr; }
  // Drops every change not made durable, in every file, and fails every
  // later call on the Files opened before it (the pool that had them is
  // gone, as after a crash); files opened afterwards work again.
  // REQUIRES: volatile_cache(). Files opened before may still be in use.
  Status PowerCut();

  Status OpenFile(const std::string& path, OpenMode mode, std::unique_ptr<File>* out) override;
  bool FileExists(const std::string& path) override { return base_->FileExists(path); }
  Status FileSize(const std::string& path, uint64_t* size) override;
  Status ListDir(const std::string& dir, std::vector<std::string>* names) override {
    return base_->ListDir(dir, names);
  }
  Status RenameFile(const std::string& from, const std::string& to) override;
  Status RemoveFile(const std::string& path) override;
  Status SyncDir(const std::string& dir) override;

 private:
  friend class FaultFile;

  // OK, or the failure of the oldest rule that matches and fires.
  // `length` 0 means the operation has no byte range.
  Status Check(FaultOp op, const std::string& path, uint64_t offset, uint64_t length);
  uint64_t epoch() const;

  Env* const base_;
  const std::function<FaultLayer(const std::string&)> layer_of_;
  const std::unique_ptr<VolatileCache> cache_;  // null unless volatile_cache

  mutable std::mutex mu_;
  struct Rules;
  std::unique_ptr<Rules> rules_;  // guarded by mu_
  std::mt19937_64 rng_;           // guarded by mu_
  uint64_t epoch_ = 0;            // PowerCut() count; guarded by mu_
};

}  // namespace thinsim

#endif  // THINSIM_ENV_FAULT_ENV_H_
