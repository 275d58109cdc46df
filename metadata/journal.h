// Journal: the files of a persistent pool's metadata, and crash-consistent
// commits.
//
//   DIR/metadata             superblock: which generation, how long its log
//                            is, the last commit; written last in a commit
//   DIR/metadata.ckpt.GEN    checkpoint: the whole state as records
//   DIR/metadata.log.GEN     log: transactions since that checkpoint
//
// A commit appends a transaction (records + kCommit) to the log, syncs it,
// then rewrites and syncs the superblock. Bytes past the superblock's log
// length are an interrupted commit and are ignored, so a crash at any
// point reopens at the last completed commit. A checkpoint writes a new
// generation's files, then switches the superblock to it. See
// docs/format.md.
//
// All file I/O goes through the Env given (env/env.h); the default is the
// real file system.
//
// Thread safety: not thread-safe; the pool serialises commits.
#ifndef THINSIM_METADATA_JOURNAL_H_
#define THINSIM_METADATA_JOURNAL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "env/env.h"
#include "metadata/image.h"

namespace thinsim::metadata {

// What loading found wrong. `fatal` damage means the image cannot be
// trusted; `warnings` do not make data wrong.
struct LoadReport {
  std::vector<std::string> fatal;
  std::vector<std::string> warnings;
  uint64_t generation = 0;
  uint64_t commit_seq = 0;    // the last commit the superblock records
  uint64_t transactions = 0;  // replayed from the log
  uint64_t log_bytes = 0;
  uint64_t checkpoint_bytes = 0;
};

class Journal {
 public:
  ~Journal() = default;
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // True when DIR holds a superblock.
  static bool Exists(const std::string& dir, Env* env = Env::Default());
  // Starts a new pool's metadata from `checkpoint` records.
  static Status Create(const std::string& dir, const std::string& checkpoint,
                       std::unique_ptr<Journal>* out, Env* env = Env::Default());
  // Replays DIR's metadata into *image. Damage is listed in *report; the
  // status is an error only when nothing could be read at all.
  static Status Load(const std::string& dir, Image* image, LoadReport* report,
                     Env* env = Env::Default());
  // Opens the journal of a loaded pool for commits.
  static Status OpenForAppend(const std::string& dir, std::unique_ptr<Journal>* out,
                              Env* env = Env::Default());

  // For repair when the superblock cannot be read: replays the newest
  // generation whose checkpoint loads cleanly (else the newest with a good
  // header), then every complete transaction of its log, stopping at the
  // first damaged record (so a complete transaction whose superblock update
  // a crash prevented is kept too). Damage goes to *report. NotFound when
  // DIR holds no readable checkpoint.
  static Status Salvage(const std::string& dir, Image* image, LoadReport* report,
                        Env* env = Env::Default());

  // Replaces DIR's metadata, whatever state it is in, with a new generation
  // holding `checkpoint` (records, no kCommit) closed by commit
  // `commit_seq`, and an empty log. The generation is greater than that of
  // every metadata file in DIR, so a crash leaves the old metadata or the
  // new, never a mix; the other generations' files are removed last. Used
  // by `thinsim restore` and `thinsim repair`. *generation, if given, is set
  // to the new generation.
  static Status Rewrite(const std::string& dir, const std::string& checkpoint, uint64_t commit_seq,
                        uint64_t* generation = nullptr, Env* env = Env::Default());

  // Appends `records` as one transaction and makes it durable.
  Status Commit(const std::string& records);
  // Replaces checkpoint and log with a new generation holding `checkpoint`.
  Status Checkpoint(const std::string& checkpoint);

  uint64_t log_bytes() const { return log_length_; }
  uint64_t commit_seq() const { return commit_seq_; }

 private:
  Journal(std::string dir, Env* env) : dir_(std::move(dir)), env_(env) {}
  Status WriteSuperblock();
  Status OpenLog();

  const std::string dir_;
  Env* const env_;
  uint64_t generation_ = 0;
  uint64_t log_length_ = 0;
  uint64_t commit_seq_ = 0;
  std::unique_ptr<File> log_;
  std::unique_ptr<File> sb_;
};

}  // namespace thinsim::metadata

#endif  // THINSIM_METADATA_JOURNAL_H_
